"""Image fidelity measures: max error, PSNR and SSIM, per image, in numpy.

Images are the network's float output in [-1, 1] (NCHW), compared as 8-bit images would be but
without the rounding: clipped to [-1, 1], data range 2. A reduced-precision output with NaN or
inf pixels is scored as if those pixels were as wrong as they can be (and counted), so a broken
model shows a low PSNR rather than a NaN that averages away.

SSIM is the standard Gaussian-window form (Wang et al. 2004): an 11-tap Gaussian of sigma 1.5,
K1 = 0.01, K2 = 0.03, population (not sample) covariances, the mean over the pixels whose window
lies inside the image, averaged over colour channels. This is what scikit-image's
`structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)` computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DATA_RANGE = 2.0
PSNR_CAP_DB = 100.0  # identical images: an infinite PSNR is reported as this (JSON has no inf)


def finite_clipped(images: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, int]:
    """`images` clipped to [-1, 1], non-finite pixels set to the value farthest from the
    reference; and how many pixels were non-finite."""
    x = np.asarray(images, dtype=np.float64)
    bad = ~np.isfinite(x)
    x = np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    if bad.any():
        far = np.where(np.asarray(reference) >= 0, -1.0, 1.0)
        x = np.where(bad, far, x)
    return x, int(bad.sum())


def mse_per_image(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    ref = np.clip(np.asarray(reference, dtype=np.float64), -1.0, 1.0)
    x, _ = finite_clipped(images, ref)
    return ((x - ref) ** 2).reshape(len(x), -1).mean(axis=1)


def psnr_from_mse(mse: np.ndarray | float, data_range: float = DATA_RANGE) -> np.ndarray:
    mse = np.asarray(mse, dtype=np.float64)
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(data_range**2 / mse)
    return np.minimum(db, PSNR_CAP_DB)


def psnr(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """PSNR in dB per image (NCHW batches)."""
    return psnr_from_mse(mse_per_image(images, reference))


def max_abs_error(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Largest absolute difference per image, before clipping (inf where non-finite)."""
    d = np.abs(np.asarray(images, dtype=np.float64) - np.asarray(reference, dtype=np.float64))
    d = np.where(np.isfinite(d), d, np.inf)
    return d.reshape(len(d), -1).max(axis=1)


def gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> np.ndarray:
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable correlation over the last two axes, keeping only windows inside the image."""
    k = len(g)
    x = np.lib.stride_tricks.sliding_window_view(x, k, axis=-1) @ g
    x = np.lib.stride_tricks.sliding_window_view(x, k, axis=-2) @ g
    return x


def structural_similarity(x: np.ndarray, y: np.ndarray, data_range: float, sigma: float = 1.5, k1: float = 0.01,
                          k2: float = 0.03) -> np.ndarray:
    """Mean SSIM of float arrays [..., C, H, W] over their last three axes (as they are: no clipping)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    g = gaussian_window(sigma)
    if min(x.shape[-2:]) < len(g):
        raise ValueError(f"SSIM needs images of at least {len(g)}x{len(g)} pixels, got {x.shape[-2:]}")
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    vx = _filter_valid(x * x, g) - mx * mx
    vy = _filter_valid(y * y, g) - my * my
    cxy = _filter_valid(x * y, g) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(axis=(-1, -2)).mean(axis=-1)


def ssim(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """SSIM per image of network outputs (NCHW, [-1, 1]); 1.0 for identical images."""
    ref = np.clip(np.asarray(reference, dtype=np.float64), -1.0, 1.0)
    x, _ = finite_clipped(images, ref)
    return structural_similarity(x, ref, DATA_RANGE)


@dataclass(frozen=True)
class Comparison:
    """Per-image figures of one precision against a reference."""

    max_abs: np.ndarray
    psnr_db: np.ndarray
    ssim: np.ndarray
    nonfinite_pixels: int

    def summary(self) -> dict[str, float | int]:
        return {
            "psnr_db_mean": float(self.psnr_db.mean()), "psnr_db_worst": float(self.psnr_db.min()),
            "ssim_mean": float(self.ssim.mean()), "ssim_worst": float(self.ssim.min()),
            "max_abs_mean": float(self.max_abs.mean()), "max_abs_worst": float(self.max_abs.max()),
            "nonfinite_pixels": self.nonfinite_pixels,
        }


def compare(images: np.ndarray, reference: np.ndarray) -> Comparison:
    _, bad = finite_clipped(images, reference)
    return Comparison(max_abs_error(images, reference), psnr(images, reference), ssim(images, reference), bad)
