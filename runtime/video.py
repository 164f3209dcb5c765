"""Interpolation videos: a walk between seeds' latents, rendered by any backend.

In W the walk is a straight line between mapped keyframes (the path the paper's perceptual path
length measures in W); in Z it is a great-circle arc (slerp), since a Gaussian latent's norm
stays near sqrt(z_dim) only along the sphere, and every frame is mapped. Truncation and style
mixing apply to every frame as `generate` applies them, so a frame equals what the runtime gives
for the same latent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import StyleganError
from .latents import slerp

SPACES = ("w", "z")


class VideoSpecError(StyleganError, ValueError):
    """A walk that cannot be rendered; one line naming the setting."""


@dataclass(frozen=True)
class Walk:
    """What to render: keyframe seeds, timing, and how the latents are treated."""

    seeds: tuple[int, ...]
    seconds_per_seed: float = 2.0
    fps: float = 30.0
    space: str = "w"
    loop: bool = True  # back to the first seed at the end, so the video repeats seamlessly
    psi: float | None = None  # None: the model's default truncation
    cutoff: int | None = None
    mix_seed: int | None = None  # styles of this seed copied into every frame's `mix_layers`
    mix_layers: str = "coarse"
    noise: str = "const"
    # A class-conditional model's class (index or name) for every keyframe and the mix seed;
    # None for an unconditional model.
    label: int | str | None = None

    def __post_init__(self) -> None:
        if not self.seeds:
            raise VideoSpecError("a video needs at least one seed")
        if self.space not in SPACES:
            raise VideoSpecError(f"space must be one of {', '.join(SPACES)}, got {self.space!r}")
        for name in ("seconds_per_seed", "fps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise VideoSpecError(f"{name.replace('_', '-')} must be a positive number, got {value}")

    @property
    def frames_per_seed(self) -> int:
        return max(1, round(self.seconds_per_seed * self.fps))

    @property
    def num_frames(self) -> int:
        segments = len(self.seeds) if self.loop else len(self.seeds) - 1
        return max(1, segments * self.frames_per_seed + (0 if self.loop else 1))


def frame_positions(walk: Walk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(from keyframe, to keyframe, fraction) per frame; a closed loop ends one frame before its start."""
    k = len(walk.seeds)
    f = np.arange(walk.num_frames)
    pos = f / walk.frames_per_seed
    i = np.minimum(np.floor(pos).astype(int), k - 1)
    t = (pos - i).astype(np.float32)
    j = (i + 1) % k if walk.loop else np.minimum(i + 1, k - 1)
    return i, j, t


def walk_styles(g: Any, walk: Walk) -> np.ndarray:
    """W+ styles [F, L, w_dim] of every frame, truncated and mixed as `walk` says."""
    i, j, t = frame_positions(walk)
    z = g.z_from_seeds(list(walk.seeds))

    def mapped(z: np.ndarray) -> np.ndarray:
        # The walk's class on every row (labels_to_c gives None for an unconditional model).
        return g.map(z, g.labels_to_c(len(z), label=walk.label)) if walk.label is not None else g.map(z)

    if walk.space == "z":
        w = np.concatenate([mapped(slerp(z[i[s]], z[j[s]], t[s, None])) for s in _chunks(len(t), 256)])
    else:
        keys = mapped(z)
        w = (keys[i] + (keys[j] - keys[i]) * t[:, None]).astype(np.float32)
    ws = g.truncate(g.broadcast(w), walk.psi, walk.cutoff)
    if walk.mix_seed is not None:
        src = g.truncate(g.broadcast(mapped(g.z_from_seeds([walk.mix_seed]))), walk.psi, walk.cutoff)
        ws = g.mix(ws, np.broadcast_to(src, ws.shape), walk.mix_layers)
    return ws


def _chunks(n: int, size: int) -> Iterator[slice]:
    for a in range(0, n, size):
        yield slice(a, min(n, a + size))


def render_frames(g: Any, ws: np.ndarray, noise: str = "const", batch: int = 8, bgr: bool = True,
                  progress: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
    """uint8 frames [H, W, 3] (BGR for OpenCV by default), rendered `batch` at a time. Random noise
    is drawn from one generator seeded once, so a video is reproducible."""
    if batch < 1:
        raise VideoSpecError(f"batch must be at least 1, got {batch}")
    rng = np.random.default_rng(0)
    for s in _chunks(len(ws), batch):
        images = g.synthesize(ws[s], noise, rng, bgr=bgr)
        if progress is not None:
            progress(len(images))
        yield from images

