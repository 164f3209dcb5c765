"""`Generator`: StyleGAN inference from a bundle on any backend, with no PyTorch.

Owns everything above the engine, once for every backend: seeds to z, truncation with a layer
cutoff, style mixing by layer range, the three noise modes, and conversion to uint8 images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backends import Backend, NoiseRequest, open_backend
from .bundle import Bundle, BundleError, BundleMeta, open_bundle
from .images import to_uint8
from .latents import lerp as _lerp
from .latents import seeds_to_z, slerp

NOISE_MODES = ("const", "random", "none")
# The paper's groups of style layers, by resolution: coarse 4-8 px, middle 16-32 px, fine 64+.
STYLE_RANGES = {"coarse": (4, 8), "middle": (16, 32), "fine": (64, 1 << 30)}


def style_layers(spec: str | Sequence[int], layer_resolutions: Sequence[int]) -> list[int]:
    """Layer indices for 'coarse' | 'middle' | 'fine' | 'A-B' (inclusive) | explicit indices."""
    n = len(layer_resolutions)
    if not isinstance(spec, str):
        layers = sorted({int(i) for i in spec})
    elif spec in STYLE_RANGES:
        lo, hi = STYLE_RANGES[spec]
        layers = [i for i, r in enumerate(layer_resolutions) if lo <= r <= hi]
    else:
        try:
            a, b = (int(v) for v in spec.split("-"))
        except ValueError:
            raise ValueError(f"style range must be coarse, middle, fine or A-B, got {spec!r}") from None
        layers = list(range(a, b + 1))
    if not layers or min(layers) < 0 or max(layers) >= n:
        raise ValueError(f"style range {spec!r} selects no layers within 0-{n - 1}")
    return layers


class Generator:
    """Generate images from a bundle.

    >>> g = Generator("faces64.sgbundle")                      # auto: TensorRT > ORT CUDA > ORT CPU
    >>> imgs = g.generate(seeds=[1, 2, 3], psi=0.7)            # uint8 [3, H, W, 3] RGB
    """

    def __init__(
        self, bundle: str | Path | Bundle, backend: str = "auto", precision: str = "fp32", **options: Any,
    ) -> None:
        b = open_bundle(bundle)
        # The mapping network is a few dense layers: always FP32.
        mapping = open_backend(backend, b, "mapping", "fp32", **options)
        synthesis = open_backend(backend, b, "synthesis", precision, **options)
        self._setup(b.meta, mapping, synthesis, b.noise_const(), str(b.path))

    @classmethod
    def from_backends(
        cls, meta: BundleMeta, mapping: Backend, synthesis: Backend, const_noise: dict[str, np.ndarray],
        source: str = "",
    ) -> Generator:
        """A Generator over backends opened elsewhere (the PyTorch reference, tests)."""
        g = cls.__new__(cls)
        g._setup(meta, mapping, synthesis, const_noise, source)
        return g

    def _setup(
        self, meta: BundleMeta, mapping: Backend, synthesis: Backend, const_noise: dict[str, np.ndarray],
        source: str,
    ) -> None:
        self.meta = meta
        self.mapping = mapping
        self.synthesis = synthesis
        self.source = source
        self._const_noise = const_noise
        self._noise_cache: dict[tuple[str, int], dict[str, np.ndarray]] = {}

    # --- facts ---------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return self.meta.num_layers

    @property
    def resolution(self) -> int:
        return self.meta.resolution

    @property
    def z_dim(self) -> int:
        return self.meta.z_dim

    @property
    def w_avg(self) -> np.ndarray:
        return self.meta.w_avg

    def describe(self) -> dict[str, str]:
        return {"model": self.source, **self.synthesis.describe()}

    def close(self) -> None:
        self.mapping.close()
        self.synthesis.close()

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- latents ---------------------------------------------------------------------------
    def z_from_seeds(self, seeds: Sequence[int]) -> np.ndarray:
        return seeds_to_z(list(seeds), self.z_dim)

    def map(self, z: np.ndarray) -> np.ndarray:
        """z [B, z_dim] -> w [B, w_dim]."""
        z = np.ascontiguousarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [B, {self.z_dim}], got {list(z.shape)}")
        return self.mapping.run({"z": z})["w"]

    def broadcast(self, w: np.ndarray) -> np.ndarray:
        """w [B, w_dim] -> W+ [B, L, w_dim] (the same style for every layer)."""
        return np.repeat(w[:, None, :], self.num_layers, axis=1)

    def truncate(self, ws: np.ndarray, psi: float | None = None, cutoff: int | None = None) -> np.ndarray:
        """w_avg + psi (w - w_avg) on the first `cutoff` layers (None: the bundle's default)."""
        psi = self.meta.truncation_psi if psi is None else psi
        cutoff = self.meta.truncation_cutoff if cutoff is None else cutoff
        if psi == 1.0:
            return ws
        n = self.num_layers if cutoff is None else cutoff
        coefs = np.ones((self.num_layers, 1), np.float32)
        coefs[:n] = psi
        return (self.w_avg + coefs * (ws - self.w_avg)).astype(np.float32)

    def mix(self, ws_dst: np.ndarray, ws_src: np.ndarray, layers: str | Sequence[int]) -> np.ndarray:
        """Copy the styles of `layers` ('coarse', 'middle', 'fine', 'A-B') from src into dst."""
        idx = style_layers(layers, self.meta.layer_resolutions)
        out = np.array(ws_dst, dtype=np.float32, copy=True)
        out[:, idx] = ws_src[:, idx]
        return out

    def interpolate_z(self, z0: np.ndarray, z1: np.ndarray, t: float | np.ndarray) -> np.ndarray:
        return slerp(z0, z1, t)

    def interpolate_w(self, w0: np.ndarray, w1: np.ndarray, t: float | np.ndarray) -> np.ndarray:
        return _lerp(w0, w1, t)

    # --- noise -------------------------------------------------------------------------------
    def noise(self, batch: int, mode: str, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """Host noise arrays by input name for a noise mode."""
        if mode not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES} or a list of arrays, got {mode!r}")
        names, res = self.meta.noise_inputs, self.meta.layer_resolutions
        if mode == "random":
            rng = rng or np.random.default_rng()
            return {n: rng.standard_normal((batch, 1, r, r), dtype=np.float32) for n, r in zip(names, res)}
        key = (mode, batch)
        if key not in self._noise_cache:
            if mode == "const":
                arrays = {n: np.ascontiguousarray(np.broadcast_to(self._const_noise[n], (batch, 1, r, r)))
                          for n, r in zip(names, res)}
            else:
                arrays = {n: np.zeros((batch, 1, r, r), np.float32) for n, r in zip(names, res)}
            self._noise_cache = {k: v for k, v in self._noise_cache.items() if k[0] != mode}
            self._noise_cache[key] = arrays
        return self._noise_cache[key]

    def _noise_request(
        self, batch: int, noise: str | Sequence[np.ndarray], rng: np.random.Generator | None,
    ) -> NoiseRequest:
        if isinstance(noise, str):
            rng = rng or np.random.default_rng()
            return NoiseRequest(noise if self.meta.use_noise else "none", batch,
                                lambda: self.noise(batch, noise, rng), rng)
        arrays = [np.asarray(a, dtype=np.float32) for a in noise]
        if len(arrays) != len(self.meta.noise_inputs):
            raise ValueError(f"expected {len(self.meta.noise_inputs)} noise arrays, got {len(arrays)}")
        feeds = {n: np.ascontiguousarray(np.broadcast_to(a, (batch, 1, r, r)))
                 for n, a, r in zip(self.meta.noise_inputs, arrays, self.meta.layer_resolutions)}
        return NoiseRequest("explicit", batch, lambda: feeds, None)

    # --- synthesis -------------------------------------------------------------------------
    def synthesize_float(
        self, ws: np.ndarray, noise: str | Sequence[np.ndarray] = "const", rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """W+ styles [B, L, w_dim] (or [B, w_dim]) -> float32 images [B, C, R, R] in ~[-1, 1]."""
        ws = np.asarray(ws, dtype=np.float32)
        if ws.ndim == 2:
            ws = self.broadcast(ws)
        if ws.ndim != 3 or ws.shape[1:] != (self.num_layers, self.meta.w_dim):
            raise ValueError(f"ws must be [B, {self.num_layers}, {self.meta.w_dim}], got {list(ws.shape)}")
        feeds = {name: np.ascontiguousarray(ws[:, i]) for i, name in enumerate(self.meta.w_inputs)}
        request = self._noise_request(ws.shape[0], noise, rng)
        return self.synthesis.run_with_noise(feeds, request)["image"]

    def synthesize(
        self, ws: np.ndarray, noise: str | Sequence[np.ndarray] = "const", rng: np.random.Generator | None = None,
        bgr: bool = False,
    ) -> np.ndarray:
        """W+ styles -> uint8 images [B, H, W, 3] (RGB, or BGR for OpenCV)."""
        return to_uint8(self.synthesize_float(ws, noise, rng), bgr=bgr)

    def styles(
        self, seeds: Sequence[int] | None = None, z: np.ndarray | None = None, psi: float | None = None,
        cutoff: int | None = None,
    ) -> np.ndarray:
        """Truncated W+ styles [B, L, w_dim] for seeds or z."""
        if (seeds is None) == (z is None):
            raise ValueError("give exactly one of seeds= or z=")
        z = self.z_from_seeds(seeds) if seeds is not None else np.asarray(z, dtype=np.float32)
        return self.truncate(self.broadcast(self.map(z)), psi, cutoff)

    def generate(
        self, seeds: Sequence[int] | None = None, z: np.ndarray | None = None, psi: float | None = None,
        cutoff: int | None = None, noise: str = "const", bgr: bool = False, noise_seed: int | None = None,
        batch_size: int = 16, progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Images for seeds or z: uint8 [B, H, W, 3]. Large requests run in batches."""
        ws = self.styles(seeds, z, psi, cutoff)
        rng = np.random.default_rng(noise_seed)
        out = []
        for i in range(0, len(ws), batch_size):
            out.append(self.synthesize(ws[i : i + batch_size], noise, rng, bgr=bgr))
            if progress:
                progress(len(out[-1]))
        if not out:
            raise BundleError("nothing to generate: no seeds or latents given")
        return np.concatenate(out)
