"""Perceptual path length (Karras et al. 2019, section 4.1 and appendix), in Z and in W.

Facts taken from the official implementation (NVlabs/stylegan, metrics/perceptual_path_length.py):

- pairs of latents z0, z1 ~ N(0, I); t ~ U(0, 1) for 'full' sampling, t = 0 for 'end' (the paper
  writes t in {0, 1}; the pairs are exchangeable, so measuring at t = 0 only is the same
  distribution, and it is what the official code does);
- in Z: slerp between the unit-normalised z0 and z1, at t and t + epsilon, then the mapping;
  in W: the mapping of z0 and z1, then lerp at t and t + epsilon; the same w for every layer;
- epsilon = 1e-4; both images of a minibatch see the same noise images;
- the images are cropped to the face: with c = H // 8, rows 3c..7c and columns 2c..6c (the FFHQ
  face box; the procedural faces put the brows, eyes, nose and mouth in the same box), then box
  downscaled to 256 px when larger, then the distance of each pair divided by epsilon^2;
- the metric is the mean of the distances that lie between the 1st ('lower') and the 99th
  ('higher') percentile.

The distance is the perceptual one of a user-supplied ONNX model (`PerceptualONNX`: the project
downloads nothing, as for FID). Without one, `pixel_distance` (mean squared difference of the
cropped images in [-1, 1]) is used and the result is named `PIXEL_NAME`, never PPL: a pixel path
length says how fast pixels change, not how fast a face changes for a viewer.

The perceptual ONNX model, either of
- a distance model (LPIPS): two inputs, float32 [N, 3, H, W] each, output [N] (or [N, 1, 1, 1]);
- a feature model (VGG): one input [N, 3, H, W], one or more outputs [N, C, h, w] (or [N, D]);
  the distance is LPIPS with unit weights: per output, features unit-normalised over channels,
  squared differences summed over channels and averaged over positions; summed over outputs.
Images reach the model mapped from [-1, 1] to `value_range` (default [-1, 1], what LPIPS takes;
(0, 255) for NVIDIA's vgg16_zhang_perceptual), resized bilinearly when its H x W is static.
docs/metrics.md shows how to make one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylegan_edge.runtime.backends.onnxruntime import open_session
from stylegan_edge.runtime.errors import StyleganError

from .fid import default_providers, resize_bilinear

__all__ = [
    "EPSILON",
    "PIXEL_NAME",
    "PPL_NAME",
    "PPLError",
    "PathLengthResult",
    "PerceptualONNX",
    "crop_face",
    "filtered_mean",
    "path_distances",
    "perceptual_path_length",
    "pixel_distance",
    "slerp_unit",
]

EPSILON = 1e-4
PPL_NAME = "PPL"
PIXEL_NAME = "pixel-path-length (not PPL: no perceptual model given)"
SPACES = ("z", "w")
SAMPLINGS = ("full", "end")

Distance = Callable[[np.ndarray, np.ndarray], np.ndarray]


class PPLError(StyleganError, ValueError):
    """Bad input to the path-length metric; messages are one line."""


# --- pieces ---------------------------------------------------------------------------------


def slerp_unit(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of the unit-normalised a and b along the last axis; t [B, 1].
    The result lies on the unit sphere (the mapping's pixel norm makes the radius irrelevant)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    d = (a * b).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    # c: the unit vector of b orthogonal to a, so the path is a cos(t w) + c sin(t w).
    c = b - d * a
    c = c / c.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    p = t * torch.acos(d)
    out = a * torch.cos(p) + c * torch.sin(p)
    return out / out.norm(dim=-1, keepdim=True)


def crop_face(images: torch.Tensor) -> torch.Tensor:
    """The official face box (rows 3/8..7/8, columns 2/8..6/8), then a box downscale to 256 px."""
    c = images.shape[2] // 8
    x = images[:, :, c * 3 : c * 7, c * 2 : c * 6]
    if x.shape[2] > 256:
        f = x.shape[2] // 256
        n, ch, h, w = x.shape
        x = x.reshape(n, ch, h // f, f, w // f, f).mean(dim=(3, 5))
    return x


def pixel_distance(img0: np.ndarray, img1: np.ndarray) -> np.ndarray:
    """The fallback: mean squared difference per pair, float32 NCHW in [-1, 1] -> [N] float64."""
    d = img0.astype(np.float64) - img1.astype(np.float64)
    return (d * d).reshape(d.shape[0], -1).mean(axis=1)


def filtered_mean(distances: np.ndarray) -> float:
    """Mean of the distances between the 1st ('lower') and 99th ('higher') percentile."""
    d = np.asarray(distances, dtype=np.float64)
    lo = np.percentile(d, 1, method="lower")
    hi = np.percentile(d, 99, method="higher")
    return float(d[(d >= lo) & (d <= hi)].mean())


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


class PerceptualONNX:
    """A perceptual distance from a local ONNX file (see the module docstring for the contract)."""

    def __init__(
        self, path: str | Path, *, value_range: tuple[float, float] = (-1.0, 1.0),
        providers: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(2, "perceptual model file not found", str(self.path))
        import onnxruntime as ort  # deferred: only the perceptual metric needs it

        try:
            self.session = open_session(self.path, providers=providers or default_providers(ort))
        except Exception as e:  # onnxruntime raises several unrelated classes for a bad file
            raise PPLError(f"cannot load perceptual model {self.path}: {_first_line(e)}") from e
        inputs = self.session.get_inputs()
        self.outputs = [o.name for o in self.session.get_outputs()]
        if len(inputs) not in (1, 2) or not self.outputs:
            raise PPLError(f"perceptual model {self.path} must have 1 input (features) or 2 (a distance), "
                           f"has {len(inputs)}")
        for inp in inputs:
            channels = inp.shape[1] if len(inp.shape) == 4 else None
            if inp.type != "tensor(float)" or len(inp.shape) != 4 or (isinstance(channels, int) and channels != 3):
                raise PPLError(f"perceptual model {self.path} inputs must be float32 [N, 3, H, W], "
                               f"got {inp.type} {inp.shape}")
        self.input_names = [i.name for i in inputs]
        self.kind = "distance" if len(inputs) == 2 else "features"
        hw = tuple(inputs[0].shape[2:])
        self.input_size = (int(hw[0]), int(hw[1])) if all(isinstance(s, int) for s in hw) else None
        self.static_batch = inputs[0].shape[0] if isinstance(inputs[0].shape[0], int) else None
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.name = PPL_NAME

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        if self.input_size is not None:
            x = resize_bilinear(x, self.input_size)
        lo, hi = self.value_range
        return ((x + 1.0) * ((hi - lo) / 2.0) + lo).astype(np.float32)

    def _run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        n = feeds[0].shape[0]
        if self.static_batch is not None and n != self.static_batch:
            if n > self.static_batch:  # run in pieces of the model's batch
                parts = [self._run([f[i : i + self.static_batch] for f in feeds])
                         for i in range(0, n, self.static_batch)]
                return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
            feeds = [np.concatenate([f, np.repeat(f[-1:], self.static_batch - n, axis=0)]) for f in feeds]
        out = self.session.run(self.outputs, dict(zip(self.input_names, feeds)))
        return [np.asarray(o)[:n] for o in out]

    def __call__(self, img0: np.ndarray, img1: np.ndarray) -> np.ndarray:
        a, b = self._prepare(img0), self._prepare(img1)
        n = a.shape[0]
        if self.kind == "distance":
            d = self._run([a, b])[0].astype(np.float64)
            if d.size != n:
                raise PPLError(f"perceptual model {self.path} must output one distance per pair, got {d.shape}")
            return d.reshape(n)
        both = self._run([np.concatenate([a, b])])
        total = np.zeros(n, np.float64)
        for f in both:
            f = f.astype(np.float64)
            if f.ndim == 2:
                f = f[:, :, None, None]
            if f.ndim != 4 or f.shape[0] != 2 * n:
                raise PPLError(f"perceptual model {self.path} outputs must be [N, C, h, w] or [N, D], got {f.shape}")
            f = f / (np.sqrt((f * f).sum(axis=1, keepdims=True)) + 1e-10)
            diff = f[:n] - f[n:]
            total += (diff * diff).sum(axis=1).mean(axis=(1, 2))
        return total


# --- the metric -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PathLengthResult:
    """One path-length measurement. `name` is PPL only when a perceptual model was used."""

    name: str
    value: float
    space: str
    sampling: str
    epsilon: float
    num_samples: int
    seconds: float
    distances: np.ndarray = field(repr=False)  # [N] distance / epsilon^2, before filtering
    t: np.ndarray = field(repr=False)  # [N] where on each path it was measured

    @property
    def label(self) -> str:
        return f"{self.name} {self.sampling} {self.space.upper()}"

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.name, "value": self.value, "space": self.space, "sampling": self.sampling,
                "epsilon": self.epsilon, "samples": self.num_samples, "seconds": round(self.seconds, 2)}


def _noise_for(G: Any, generator: torch.Generator | None) -> Any:
    # One noise draw per minibatch, shared by every image (as officially): [1, 1, r, r] broadcasts.
    synthesis = G.synthesis
    if hasattr(synthesis, "make_noise"):
        return synthesis.make_noise(1, "random", generator=generator)
    return None


def _device(G: Any) -> torch.device:
    try:
        return next(G.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


@torch.no_grad()
def path_distances(
    G: Any, lat0: torch.Tensor, lat1: torch.Tensor, t: torch.Tensor, space: str,
    distance: Distance = pixel_distance, epsilon: float = EPSILON, noise: Any = None,
) -> np.ndarray:
    """distance(img(t), img(t + epsilon)) / epsilon^2 for each pair of z [B, z_dim] in `space`.

    `G` has `.mapping` (z -> w), `.synthesis(ws [B, L, w_dim], noise=...)` and `.num_layers`.
    """
    if space not in SPACES:
        raise PPLError(f"space must be z or w, got {space!r}")
    t = t.reshape(-1, 1).to(lat0.dtype)
    if space == "w":
        w0, w1 = G.mapping(lat0), G.mapping(lat1)
        e0 = w0 + (w1 - w0) * t
        e1 = w0 + (w1 - w0) * (t + epsilon)
    else:
        e0 = G.mapping(slerp_unit(lat0, lat1, t))
        e1 = G.mapping(slerp_unit(lat0, lat1, t + epsilon))
    ws = torch.cat([e0, e1]).unsqueeze(1).expand(-1, G.num_layers, -1)
    images = crop_face(G.synthesis(ws, noise=noise).float()).cpu().numpy()
    n = lat0.shape[0]
    return np.asarray(distance(images[:n], images[n:]), dtype=np.float64) / (epsilon * epsilon)


def perceptual_path_length(
    G: Any, *, space: str = "w", sampling: str = "full", num_samples: int = 2000, batch_size: int = 8,
    distance: Distance | None = None, epsilon: float = EPSILON, seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> PathLengthResult:
    """The path length of `G` in `space` with `sampling`, over `num_samples` pairs.

    `distance` None uses `pixel_distance` and names the result `PIXEL_NAME`; pass a
    `PerceptualONNX` for the paper's PPL.
    """
    if space not in SPACES:
        raise PPLError(f"space must be z or w, got {space!r}")
    if sampling not in SAMPLINGS:
        raise PPLError(f"sampling must be full or end, got {sampling!r}")
    if num_samples < 2 or batch_size < 1:
        raise PPLError(f"num_samples must be >= 2 and batch_size >= 1, got {num_samples} and {batch_size}")
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise PPLError(f"epsilon must be a positive number, got {epsilon}")
    name = PIXEL_NAME if distance is None else getattr(distance, "name", PPL_NAME)
    distance = pixel_distance if distance is None else distance
    dev = _device(G)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    z_dim = int(G.z_dim) if hasattr(G, "z_dim") else int(G.cfg.z_dim)
    start = time.perf_counter()
    parts, ts = [], []
    done = 0
    while done < num_samples:
        b = min(batch_size, num_samples - done)
        lat = torch.randn(2 * b, z_dim, generator=gen)
        t = torch.rand(b, generator=gen) if sampling == "full" else torch.zeros(b)
        noise = _noise_for(G, gen)
        noise = None if noise is None else [n if n is None else n.to(dev) for n in noise]
        parts.append(path_distances(G, lat[:b].to(dev), lat[b:].to(dev), t.to(dev), space, distance, epsilon, noise))
        ts.append(t.numpy())
        done += b
        if progress is not None:
            progress(done, num_samples)
    d = np.concatenate(parts)
    return PathLengthResult(name, filtered_mean(d), space, sampling, epsilon, num_samples,
                            time.perf_counter() - start, d, np.concatenate(ts))
