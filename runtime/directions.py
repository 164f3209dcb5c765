"""Attribute directions in W (InterFaceGAN-style SVM normals) and editing with them. No torch.

`directions.npz` (optional in a bundle directory, or anywhere): one float32 [w_dim] array per
direction name, unit length, pointing to the side where the attribute holds, plus `__meta__`, a
JSON string: {name: {"attribute", "space", "accuracy", ...}} describing how each was found
(`stylegan metrics MODEL --ls --directions-out FILE` writes it). It is read without pickle.

`edit(ws, direction, strength, layers, layer_resolutions)` moves W+ styles [B, L, w_dim] by
`strength` along the direction on the chosen style layers ('coarse', 'middle', 'fine', 'A-B' or
indices, as for style mixing); the rest stay as they were.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import BundleError
from .files import atomic_path
from .generator import ArgumentError, finite_array, finite_float, style_layers

__all__ = ["DIRECTIONS_FILE", "Directions", "DirectionsError", "edit", "load_directions", "save_directions"]

DIRECTIONS_FILE = "directions.npz"
_META_KEY = "__meta__"


class DirectionsError(BundleError):
    """A directions file that cannot be used, or an unknown direction; one line."""


@dataclass(frozen=True)
class Directions:
    """Named unit directions [w_dim] and their descriptions."""

    vectors: dict[str, np.ndarray]
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: Path | None = None

    @property
    def names(self) -> list[str]:
        return sorted(self.vectors)

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.vectors[name]
        except KeyError:
            where = f" in {self.path}" if self.path else ""
            known = ", ".join(self.names) or "none"
            raise DirectionsError(f"no direction {name!r}{where}; there are: {known}") from None


def save_directions(path: str | Path, vectors: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> Path:
    """Write `directions.npz` (a folder is given the standard file name), all or nothing."""
    path = Path(path)
    if path.is_dir():
        path = path / DIRECTIONS_FILE
    arrays: dict[str, np.ndarray] = {}
    for name, v in vectors.items():
        if name == _META_KEY or not name:
            raise DirectionsError(f"bad direction name {name!r}")
        a = np.asarray(v, np.float32).reshape(-1)
        n = float(np.linalg.norm(a))
        if not np.isfinite(a).all() or n == 0:
            raise DirectionsError(f"direction {name!r} is zero or not finite")
        arrays[name] = a / np.float32(n)
    arrays[_META_KEY] = np.array(json.dumps(dict(meta or {}), sort_keys=True))
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return path


def load_directions(source: str | Path) -> Directions:
    """Directions from a bundle directory (its `directions.npz`) or from an .npz file."""
    path = Path(source)
    if path.is_dir():
        path = path / DIRECTIONS_FILE
        if not path.is_file():
            raise DirectionsError(f"{source} has no {DIRECTIONS_FILE}: make one with "
                                  f"`stylegan metrics CHECKPOINT --ls --directions-out {path}`")
    if not path.is_file():
        raise FileNotFoundError(2, "no such directions file", str(path))
    try:
        with np.load(path, allow_pickle=False) as data:
            vectors = {k: np.asarray(data[k], np.float32) for k in data.files if k != _META_KEY}
            meta = json.loads(str(data[_META_KEY])) if _META_KEY in data.files else {}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        text = str(e).strip().splitlines()
        raise DirectionsError(f"cannot read directions {path}: {text[0] if text else type(e).__name__}") from None
    if not vectors:
        raise DirectionsError(f"{path} holds no directions")
    dims = {v.shape for v in vectors.values()}
    if len(dims) != 1 or len(next(iter(dims))) != 1:
        raise DirectionsError(f"{path}: directions must all be [w_dim] vectors, got shapes {sorted(dims)}")
    if not all(np.isfinite(v).all() for v in vectors.values()):
        raise DirectionsError(f"{path}: a direction holds NaN or inf")
    if not isinstance(meta, dict):
        raise DirectionsError(f"{path}: {_META_KEY} must be a JSON object")
    return Directions(vectors, meta, path)


def edit(
    ws: np.ndarray, direction: np.ndarray, strength: float, layers: str | Sequence[int],
    layer_resolutions: Sequence[int],
) -> np.ndarray:
    """ws [B, L, w_dim] + strength * direction on `layers`; a new float32 array."""
    ws = finite_array(ws, "ws", " [B, L, w_dim]")
    d = finite_array(direction, "direction", " [w_dim]").reshape(-1)
    strength = finite_float(strength, "strength")
    if ws.ndim != 3 or ws.shape[1] != len(layer_resolutions):
        raise ArgumentError(f"ws must be [B, {len(layer_resolutions)}, w_dim], got {list(ws.shape)}")
    if d.shape[0] != ws.shape[2]:
        raise ArgumentError(f"direction is {d.shape[0]}-d but the styles are {ws.shape[2]}-d")
    idx = style_layers(layers, layer_resolutions)
    out = np.array(ws, dtype=np.float32, copy=True)
    out[:, idx] += np.float32(strength) * d
    return out
