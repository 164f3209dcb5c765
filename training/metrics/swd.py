"""Sliced Wasserstein distance (SWD) on Laplacian-pyramid patches.

The metric of "Progressive Growing of GANs" (Karras et al. 2018, appendix D); it needs no
pretrained network. For every image a Laplacian pyramid is built from the full resolution down to
16x16 (the 16x16 level is the low-pass residual, the finer ones are band-pass detail). From each
level, 128 random 7x7 neighbourhoods per image are cut out as 7*7*3 = 147-d descriptors. Each set
of descriptors (one per level, real and fake separately) is normalised per colour channel to zero
mean and unit standard deviation over the whole set. The distance between the real and the fake
set of one level is the sliced Wasserstein-1 distance: project both onto random unit directions,
sort the projections, and average the absolute differences of matching order statistics. As in the
original evaluation, 4 repeats of 128 directions (512 projections in all) are averaged, and the
values are reported multiplied by 1e3 ("SWD x 1e3" in the paper's tables).

Details that follow the published evaluation and matter for comparable numbers:
- The pyramid filter is the 5-tap binomial [1, 4, 6, 4, 1] / 16 applied separably, with mirrored
  borders that do not repeat the edge pixel (OpenCV's BORDER_REFLECT_101); downsampling keeps the
  even pixels; upsampling inserts zeros and filters with four times the kernel.
- Neighbourhood centres are uniform over the positions where the whole 7x7 window fits.
- Pixel values stay in [0, 255] (the per-channel normalisation makes the scale irrelevant).

Randomness comes from one seed, split into streams for the neighbourhood positions and the
projection directions, so a result is reproducible and does not depend on the batch size used to
build the pyramids. Unlike the original, real and fake descriptors are by default cut at the same
random positions (`SWDConfig.shared_positions`): identical sets give exactly 0 and the sampling of
positions adds no noise to a comparison; with thousands of images the two choices agree closely.
The real side can be computed once per training run with `SWDReference`.

Real and fake sets may differ in size; the 1-D distances then integrate the difference of the two
empirical quantile functions exactly.

Memory: the descriptors of N images take about N * 128 * 147 * 4 bytes per pyramid level
(75 KiB per image and level; 150 MiB per level for 2048 images).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SWDConfig",
    "SWDInputError",
    "SWDReference",
    "laplacian_pyramid",
    "pyr_down",
    "pyr_up",
    "pyramid_resolutions",
    "random_directions",
    "reconstruct_laplacian_pyramid",
    "sliced_wasserstein",
    "sliced_wasserstein_distance",
    "sorted_projections",
    "swd_descriptors",
    "wasserstein_1d_sorted",
]

# Separable 5-tap binomial; its outer product is the 5x5 Gaussian of cv2.pyrDown.
_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / 16.0

# Stream indices under the user's seed: real descriptors, fake descriptors, directions.
_STREAM_REAL, _STREAM_FAKE, _STREAM_DIRS = 0, 1, 2


class SWDInputError(ValueError):
    """Images or settings the SWD cannot be computed from; the message is one line."""


@dataclass(frozen=True)
class SWDConfig:
    """Settings of the metric; the defaults are those of the published evaluation."""

    nhood_size: int = 7
    nhoods_per_image: int = 128
    dirs_per_repeat: int = 128
    dir_repeats: int = 4
    min_resolution: int = 16
    # Cut real and fake descriptors at the same random positions (common random numbers): identical
    # sets then give exactly 0 and position sampling adds no noise to comparisons. The original
    # draws them independently (False), which adds a small positive offset for small sets.
    shared_positions: bool = True
    # Images per pyramid batch: bounds the float32 working memory only, never the result.
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.nhood_size < 1 or self.nhood_size % 2 == 0:
            raise SWDInputError(f"nhood_size must be odd and >= 1, got {self.nhood_size}")
        for name in ("nhoods_per_image", "dirs_per_repeat", "dir_repeats", "batch_size"):
            if getattr(self, name) < 1:
                raise SWDInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.min_resolution < self.nhood_size:
            raise SWDInputError(f"min_resolution ({self.min_resolution}) must be >= nhood_size ({self.nhood_size})")


# --- Laplacian pyramid (float32, NHWC) ------------------------------------------------------


def _filter_down_axis(x: np.ndarray, axis: int) -> np.ndarray:
    """Binomial filter along `axis`, evaluated only at the even positions that are kept."""
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (2, 2)
    xp = np.pad(x, pad, mode="reflect")  # numpy 'reflect' == BORDER_REFLECT_101
    half = n // 2

    def tap(k: int) -> np.ndarray:
        index = [slice(None)] * x.ndim
        index[axis] = slice(k, k + 2 * half, 2)
        return xp[tuple(index)]

    # The kernel is symmetric: pair the outer taps to save two multiplies.
    return (tap(0) + tap(4)) * _BINOMIAL[0] + (tap(1) + tap(3)) * _BINOMIAL[1] + tap(2) * _BINOMIAL[2]


def _filter_up_axis(x: np.ndarray, axis: int) -> np.ndarray:
    """Zero insertion then the binomial x2 along `axis`, written in its two polyphase halves.

    Mirroring the zero-inserted signal of length 2n (BORDER_REFLECT_101) puts x[1] before the
    first sample and x[n-1] after the last one, hence the asymmetric extension below.
    """
    n = x.shape[axis]
    first = np.take(x, [1 if n > 1 else 0], axis=axis)
    last = np.take(x, [n - 1], axis=axis)
    xe = np.concatenate([first, x, last], axis=axis)

    def part(start: int) -> np.ndarray:
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, start + n)
        return xe[tuple(index)]

    left, centre, right = part(0), part(1), part(2)
    even = (left + right) * np.float32(1.0 / 8.0) + centre * np.float32(6.0 / 8.0)
    odd = (centre + right) * np.float32(0.5)
    out = np.stack([even, odd], axis=axis + 1)
    shape = list(x.shape)
    shape[axis] = 2 * n
    return out.reshape(shape)


def pyr_down(x: np.ndarray) -> np.ndarray:
    """Blur and halve a float32 [N, H, W, C] batch (the operation of cv2.pyrDown)."""
    return _filter_down_axis(_filter_down_axis(x, 1), 2)


def pyr_up(x: np.ndarray) -> np.ndarray:
    """Double a float32 [N, H, W, C] batch: zero insertion and the binomial kernel times four."""
    return _filter_up_axis(_filter_up_axis(x, 1), 2)


def laplacian_pyramid(images: np.ndarray, num_levels: int) -> list[np.ndarray]:
    """Levels finest first, float32 [N, H/2**i, W/2**i, C]; the last one is the low-pass residual."""
    gauss = np.asarray(images, dtype=np.float32)
    levels: list[np.ndarray] = []
    for _ in range(num_levels - 1):
        coarser = pyr_down(gauss)
        levels.append(gauss - pyr_up(coarser))
        gauss = coarser
    levels.append(gauss)
    return levels


def reconstruct_laplacian_pyramid(levels: list[np.ndarray]) -> np.ndarray:
    """Inverse of `laplacian_pyramid` (exact up to float32 rounding)."""
    image = levels[-1]
    for band in levels[-2::-1]:
        image = pyr_up(image) + band
    return image


def pyramid_resolutions(resolution: int, min_resolution: int = 16) -> list[int]:
    """Resolutions of the pyramid levels, finest first: 64 -> [64, 32, 16]."""
    if resolution < min_resolution:
        raise SWDInputError(f"images of {resolution} px are smaller than the SWD minimum of {min_resolution} px")
    out = []
    res = resolution
    while res >= min_resolution:
        out.append(res)
        if res % 2:
            break
        res //= 2
    return out


# --- descriptors ----------------------------------------------------------------------------


def _check_images(images: np.ndarray, what: str, min_resolution: int) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise SWDInputError(f"{what} must be uint8 [N, H, W, 3], got shape {tuple(images.shape)}")
    if images.dtype != np.uint8:
        raise SWDInputError(f"{what} must be uint8 [N, H, W, 3], got dtype {images.dtype}")
    n, h, w, _ = images.shape
    if n < 1:
        raise SWDInputError(f"{what} is empty")
    if h != w or h < min_resolution or h & (h - 1):
        raise SWDInputError(f"{what} must be square with a power-of-two side >= {min_resolution}, got {h}x{w}")
    return images


def swd_descriptors(
    images: np.ndarray,
    rng: np.random.Generator,
    config: SWDConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[np.ndarray]:
    """Normalised descriptors per pyramid level, finest first: float32 [N * nhoods, nhood**2 * 3].

    `images` is uint8 [N, H, W, 3] with H == W a power of two >= `config.min_resolution`.
    `progress(done, total)` is called after each batch of images.
    """
    cfg = config or SWDConfig()
    images = _check_images(images, "images", cfg.min_resolution)
    n, res = images.shape[0], images.shape[1]
    resolutions = pyramid_resolutions(res, cfg.min_resolution)
    k, half = cfg.nhoods_per_image, cfg.nhood_size // 2
    dim = cfg.nhood_size * cfg.nhood_size * 3

    # Every centre is drawn up front, so the result does not depend on the batch size, and from
    # one stream per level, so sets of different sizes share the positions of their first images.
    level_rngs = [np.random.default_rng(int(s)) for s in rng.integers(0, 2**63 - 1, size=len(resolutions))]
    centres = [g.integers(half, r - half, size=(n * k, 2)) for g, r in zip(level_rngs, resolutions, strict=True)]
    # Flat offsets of a window inside one [r, r, 3] image, relative to its top-left pixel.
    windows = []
    for r in resolutions:
        dy, dx, c = np.meshgrid(np.arange(cfg.nhood_size), np.arange(cfg.nhood_size), np.arange(3), indexing="ij")
        windows.append(((dy * r + dx) * 3 + c).reshape(-1))
    out = [np.empty((n * k, dim), dtype=np.float32) for _ in resolutions]

    for start in range(0, n, cfg.batch_size):
        stop = min(start + cfg.batch_size, n)
        levels = laplacian_pyramid(images[start:stop], len(resolutions))
        for lvl, (level, r) in enumerate(zip(levels, resolutions, strict=True)):
            rows = slice(start * k, stop * k)
            cy, cx = centres[lvl][rows, 0], centres[lvl][rows, 1]
            image_index = np.repeat(np.arange(stop - start), k)
            base = ((image_index * r + (cy - half)) * r + (cx - half)) * 3
            out[lvl][rows] = np.take(level.reshape(-1), base[:, None] + windows[lvl][None, :])
        if progress is not None:
            progress(stop, n)

    for desc in out:
        _normalise_channels(desc)
    return out


def _normalise_channels(desc: np.ndarray) -> None:
    """Per colour channel zero mean, unit std over the whole set, in place.

    Statistics are reduced over rows first (fast on the row-major layout) and then grouped by
    channel, the fastest-varying descriptor component; sums accumulate in float64.
    """
    count = desc.shape[0] * (desc.shape[1] // 3)
    col_sum = np.zeros(desc.shape[1], dtype=np.float64)
    for rows in _row_chunks(desc.shape[0]):
        col_sum += desc[rows].sum(axis=0, dtype=np.float64)
    mean = col_sum.reshape(-1, 3).sum(axis=0) / count
    desc -= np.tile(mean, desc.shape[1] // 3).astype(np.float32)
    col_sq = np.zeros(desc.shape[1], dtype=np.float64)
    for rows in _row_chunks(desc.shape[0]):
        col_sq += np.einsum("ij,ij->j", desc[rows], desc[rows])
    std = np.sqrt(col_sq.reshape(-1, 3).sum(axis=0) / count)
    # A constant channel (e.g. flat test images) has no spread to normalise away.
    std = np.where(std > 0, std, 1.0)
    desc *= np.tile(1.0 / std, desc.shape[1] // 3).astype(np.float32)


def _row_chunks(n: int, size: int = 1 << 15) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


# --- sliced Wasserstein ---------------------------------------------------------------------

# Projections of one set are computed for this many bytes' worth of directions at a time.
_PROJECTION_CHUNK_BYTES = 128 << 20


def random_directions(rng: np.random.Generator, dim: int, dirs_per_repeat: int, dir_repeats: int) -> np.ndarray:
    """Unit directions float32 [dim, dirs_per_repeat * dir_repeats], drawn repeat by repeat."""
    blocks = []
    for _ in range(dir_repeats):
        dirs = rng.standard_normal((dim, dirs_per_repeat))
        dirs /= np.sqrt(np.sum(np.square(dirs), axis=0, keepdims=True))
        blocks.append(dirs)
    return np.concatenate(blocks, axis=1).astype(np.float32)


def sorted_projections(
    desc: np.ndarray,
    dirs: np.ndarray,
    pool: ThreadPoolExecutor | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Projections of desc [n, d] on dirs [d, k], each direction sorted: float32 [k, n].

    Rows are contiguous so each sort runs over contiguous memory; with `pool` the rows are sorted
    in parallel (numpy releases the GIL while sorting). `out`: a C-contiguous float32 [k, n] to fill.
    """
    proj = np.matmul(dirs.T, desc.T, out=out)
    if pool is None or proj.shape[0] < 2:
        proj.sort(axis=1)
    else:
        bounds = np.linspace(0, proj.shape[0], _worker_count() + 1).astype(int)
        parts = [proj[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]
        for future in [pool.submit(part.sort, axis=1) for part in parts]:
            future.result()
    return proj


def wasserstein_1d_sorted(a_sorted: np.ndarray, b_sorted: np.ndarray) -> np.ndarray:
    """W1 distance per row between the empirical distributions of sorted rows: float64 [rows]."""
    n, m = a_sorted.shape[1], b_sorted.shape[1]
    if n == m:
        diff = np.subtract(a_sorted, b_sorted)
        np.abs(diff, out=diff)
        # Row sums along contiguous memory use numpy's pairwise summation: float32 is accurate.
        return diff.sum(axis=1).astype(np.float64) / n
    # Unequal sizes: integrate |F^-1(t) - G^-1(t)| over the merged quantile breakpoints.
    t = np.union1d(np.arange(1, n + 1) / n, np.arange(1, m + 1) / m)
    lower = np.concatenate([[0.0], t[:-1]])
    mid = 0.5 * (lower + t)
    ia = np.minimum((mid * n).astype(np.int64), n - 1)
    ib = np.minimum((mid * m).astype(np.int64), m - 1)
    diff = np.abs(a_sorted[:, ia] - b_sorted[:, ib]).astype(np.float64)
    return diff @ (t - lower)


def _direction_chunks(num_dirs: int, num_desc: int) -> list[slice]:
    step = max(1, min(num_dirs, _PROJECTION_CHUNK_BYTES // (4 * max(num_desc, 1))))
    return [slice(i, min(i + step, num_dirs)) for i in range(0, num_dirs, step)]


def sliced_wasserstein(
    a: np.ndarray,
    b: np.ndarray,
    rng: np.random.Generator,
    dirs_per_repeat: int = 128,
    dir_repeats: int = 4,
    pool: ThreadPoolExecutor | None = None,
) -> float:
    """Sliced W1 distance between descriptor sets a [n, d] and b [m, d] (not scaled by 1e3).

    `dir_repeats` blocks of `dirs_per_repeat` random unit directions; the result is the mean of
    the 1-D Wasserstein distances over all of them (the mean over repeats of per-repeat means).
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise SWDInputError(f"descriptor sets must be [n, d] and [m, d], got {a.shape} and {b.shape}")
    dirs = random_directions(rng, a.shape[1], dirs_per_repeat, dir_repeats)
    dists = [
        wasserstein_1d_sorted(sorted_projections(a, dirs[:, part], pool), sorted_projections(b, dirs[:, part], pool))
        for part in _direction_chunks(dirs.shape[1], max(a.shape[0], b.shape[0]))
    ]
    return float(np.mean(np.concatenate(dists)))


# --- the metric -----------------------------------------------------------------------------


def _worker_count() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class SWDReference:
    """Real-image descriptors computed once, compared with any number of fake sets.

    `distance(fakes)` returns {"swd_<res>": value x 1e3 per level, ..., "swd_avg": mean}. With the
    same seed, repeated calls use the same fake neighbourhood positions and the same directions, so
    values from successive training snapshots differ only through the images.

    When the sorted projections of the real descriptors fit in `max_cache_bytes` (N * 128 * 512 * 4
    bytes per level: 512 MiB per level for 2048 images), they are kept instead of the descriptors,
    which halves the work of each `distance` call; 0 turns this off.
    """

    def __init__(
        self,
        real_images: np.ndarray,
        *,
        seed: int = 0,
        config: SWDConfig | None = None,
        max_cache_bytes: int = 2 << 30,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.config = cfg = config or SWDConfig()
        real_images = _check_images(real_images, "real_images", cfg.min_resolution)
        self.seed = seed
        self.resolution = int(real_images.shape[1])
        self.resolutions = pyramid_resolutions(self.resolution, cfg.min_resolution)
        self.descriptors = swd_descriptors(real_images, _stream(seed, _STREAM_REAL), cfg, progress)
        dir_rng = _stream(seed, _STREAM_DIRS)
        dim = self.descriptors[0].shape[1]
        self.directions = [
            random_directions(dir_rng, dim, cfg.dirs_per_repeat, cfg.dir_repeats) for _ in self.resolutions
        ]
        num_dirs = cfg.dirs_per_repeat * cfg.dir_repeats
        cache_bytes = len(self.resolutions) * self.descriptors[0].shape[0] * num_dirs * 4
        self.sorted_real: list[np.ndarray] | None = None
        if cache_bytes <= max_cache_bytes:
            self.sorted_real = []
            with ThreadPoolExecutor(max_workers=_worker_count()) as pool:
                for desc, dirs in zip(self.descriptors, self.directions, strict=True):
                    # Filled a chunk of directions at a time: a smaller working set sorts faster.
                    cached = np.empty((num_dirs, desc.shape[0]), dtype=np.float32)
                    for part in _direction_chunks(num_dirs, desc.shape[0]):
                        sorted_projections(desc, dirs[:, part], pool, out=cached[part])
                    self.sorted_real.append(cached)
            self.descriptors = []

    def distance(
        self,
        fake_images: np.ndarray,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, float]:
        fake_images = _check_images(fake_images, "fake_images", self.config.min_resolution)
        if fake_images.shape[1] != self.resolution:
            raise SWDInputError(
                f"fake_images are {fake_images.shape[1]} px but the real images are {self.resolution} px"
            )
        stream = _STREAM_REAL if self.config.shared_positions else _STREAM_FAKE
        fake = swd_descriptors(fake_images, _stream(self.seed, stream), self.config, progress)
        result: dict[str, float] = {}
        with ThreadPoolExecutor(max_workers=_worker_count()) as pool:
            for lvl, res in enumerate(self.resolutions):
                dirs, fake_desc = self.directions[lvl], fake[lvl]
                dists = []
                for part in _direction_chunks(dirs.shape[1], fake_desc.shape[0]):
                    if self.sorted_real is not None:
                        real_sorted = self.sorted_real[lvl][part]
                    else:
                        real_sorted = sorted_projections(self.descriptors[lvl], dirs[:, part], pool)
                    fake_sorted = sorted_projections(fake_desc, dirs[:, part], pool)
                    dists.append(wasserstein_1d_sorted(real_sorted, fake_sorted))
                fake[lvl] = np.empty((0, 0), np.float32)  # free this level before the next one
                result[f"swd_{res}"] = float(np.mean(np.concatenate(dists))) * 1e3
        result["swd_avg"] = float(np.mean([result[f"swd_{res}"] for res in self.resolutions]))
        return result


def _stream(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(index + 1)[index])


def sliced_wasserstein_distance(
    real_images: np.ndarray,
    fake_images: np.ndarray,
    *,
    seed: int = 0,
    config: SWDConfig | None = None,
) -> dict[str, float]:
    """SWD x 1e3 between two uint8 [N, H, W, 3] sets: {"swd_64": ..., "swd_32": ..., "swd_16": ..., "swd_avg": ...}.

    The sets may differ in size but not in resolution. Deterministic for a given seed.
    """
    # One comparison gains nothing from caching the real projections.
    return SWDReference(real_images, seed=seed, config=config, max_cache_bytes=0).distance(fake_images)
