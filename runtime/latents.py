"""Latent-space helpers shared by every backend and by the PyTorch path: seeds, interpolation.

Seeds map to z exactly as the official StyleGAN scripts do (`RandomState(seed).randn(z_dim)`),
so seed 42 is the same face in this runtime, in PyTorch and in the official code.
"""

from __future__ import annotations

import math
import numbers
import re

import numpy as np

from .errors import StyleganError


class SeedError(StyleganError, ValueError):
    pass


# numpy's RandomState takes 32-bit seeds, as the official scripts do.
MAX_SEED = 2**32 - 1
# More seeds than any figure or batch run needs; keeps a typo like 0-99999999999 from filling memory.
MAX_SEEDS = 1_000_000


def parse_seeds(text: str) -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise SeedError(f"bad seed list {text!r}: use numbers and ranges like 0-15,20")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a:
            raise SeedError(f"bad seed range {part!r}: the end is before the start")
        if b > MAX_SEED:
            raise SeedError(f"seed {b} is out of range: seeds must be in [0, {MAX_SEED}] (32-bit, as in the official "
                            "scripts)")
        if len(seeds) + (b - a + 1) > MAX_SEEDS:
            raise SeedError(f"too many seeds in {text!r}: at most {MAX_SEEDS} at once")
        seeds.extend(range(a, b + 1))
    if not seeds:
        raise SeedError("no seeds given")
    return seeds


def parse_floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SeedError(f"bad number list {text!r}: use comma-separated numbers like -1,-0.5,0") from None
    if not all(math.isfinite(v) for v in values):
        raise SeedError(f"bad number list {text!r}: NaN and inf are not numbers here")
    return values


def seed_to_z(seed: int, z_dim: int) -> np.ndarray:
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise SeedError(f"bad seed {seed!r}: seeds are integers 0-{MAX_SEED}")
    return np.random.RandomState(int(seed)).randn(z_dim).astype(np.float32)


def seeds_to_z(seeds: list[int], z_dim: int) -> np.ndarray:
    return np.stack([seed_to_z(s, z_dim) for s in seeds]) if seeds else np.zeros((0, z_dim), np.float32)


def lerp(a: np.ndarray, b: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """Linear interpolation, the right path in W (which is not Gaussian)."""
    return (a + (b - a) * np.asarray(t, dtype=np.float32)).astype(np.float32)


def slerp(a: np.ndarray, b: np.ndarray, t: float | np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Spherical interpolation along the last axis, the right path in Z (Gaussian: the norm of
    a linear midpoint is atypically small)."""
    t = np.asarray(t, dtype=np.float64)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    na = a64 / np.maximum(np.linalg.norm(a64, axis=-1, keepdims=True), eps)
    nb = b64 / np.maximum(np.linalg.norm(b64, axis=-1, keepdims=True), eps)
    omega = np.arccos(np.clip((na * nb).sum(-1, keepdims=True), -1.0, 1.0))
    so = np.sin(omega)
    with np.errstate(invalid="ignore", divide="ignore"):
        wa = np.where(so < eps, 1.0 - t, np.sin((1.0 - t) * omega) / so)
        wb = np.where(so < eps, t, np.sin(t * omega) / so)
    return (wa * a64 + wb * b64).astype(np.float32)
