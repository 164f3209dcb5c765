"""Fréchet Inception distance (FID) with a local, user-supplied Inception feature extractor.

Nothing is downloaded and nothing is unpickled: the feature extractor is an ONNX file given by the
user (`--fid-model inception.onnx`) and run with onnxruntime (the CUDA provider when it is there,
else the CPU). Real-image statistics can be cached in an .npz file (loaded without pickle).

The model's input/output contract and how to make `inception.onnx`: docs/fid.md.

FID itself is ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)). The trace of the matrix
square root is computed from the eigenvalues of the symmetric PSD matrix S1^(1/2) S2 S1^(1/2),
which has the same spectrum as S1 S2; tiny negative eigenvalues from rounding are clipped to zero,
so no complex parts arise and no epsilon has to be added to near-singular covariances.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stylegan_edge.runtime.backends.onnxruntime import open_session
from stylegan_edge.runtime.errors import StyleganError
from stylegan_edge.runtime.files import atomic_path, sha256_file

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "DEFAULT_VALUE_RANGE",
    "FIDError",
    "FIDModelError",
    "FIDModelNotFoundError",
    "FIDReference",
    "FIDStatistics",
    "FIDStatisticsError",
    "InceptionONNX",
    "compute_fid",
    "feature_statistics",
    "frechet_distance",
    "load_statistics",
    "preprocess_images",
    "resize_bilinear",
    "save_statistics",
]

DEFAULT_INPUT_SIZE = (299, 299)
DEFAULT_VALUE_RANGE = (-1.0, 1.0)


class FIDError(StyleganError, ValueError):
    """Base class of FID errors; messages are one line."""


class FIDModelError(FIDError):
    """The feature-extractor ONNX file cannot be used."""


class FIDModelNotFoundError(FIDModelError, FileNotFoundError):
    """The feature-extractor ONNX file does not exist."""


class FIDStatisticsError(FIDError):
    """Feature statistics, or a cache of them, that cannot be used."""


# --- the distance ---------------------------------------------------------------------------


def _real_part(x: np.ndarray, what: str) -> np.ndarray:
    # Statistics written by other tools sometimes carry a numerically zero imaginary part.
    if np.iscomplexobj(x):
        if np.max(np.abs(x.imag), initial=0.0) > 1e-6 * max(np.max(np.abs(x.real), initial=0.0), 1.0):
            raise FIDStatisticsError(f"{what} has a non-negligible imaginary part")
        x = x.real
    return np.asarray(x, dtype=np.float64)


def _sym_sqrt(sigma: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2), in float64."""
    mu1, mu2 = np.atleast_1d(_real_part(np.asarray(mu1), "mu1")), np.atleast_1d(_real_part(np.asarray(mu2), "mu2"))
    s1 = np.atleast_2d(_real_part(np.asarray(sigma1), "sigma1"))
    s2 = np.atleast_2d(_real_part(np.asarray(sigma2), "sigma2"))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise FIDStatisticsError(
            f"statistics do not match: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}"
        )
    for name, x in (("mu1", mu1), ("mu2", mu2), ("sigma1", s1), ("sigma2", s2)):
        if not np.all(np.isfinite(x)):
            raise FIDStatisticsError(f"{name} contains NaN or infinity")
    # Covariances are symmetric up to rounding; symmetrise so eigh sees exactly what it assumes.
    s1 = 0.5 * (s1 + s1.T)
    s2 = 0.5 * (s2 + s2.T)
    root1 = _sym_sqrt(s1)
    inner = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    tr_covmean = float(np.sum(np.sqrt(np.clip(eig, 0.0, None))))
    diff = mu1 - mu2
    fid = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    # The exact value is >= 0; a negative result is rounding around zero.
    return max(fid, 0.0)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D, D] (float64) of features [N, D], N >= 2."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise FIDStatisticsError(f"features must be [N >= 2, D], got shape {features.shape}")
    mu = features.mean(axis=0)
    centred = features - mu
    sigma = centred.T @ centred / (features.shape[0] - 1)
    return mu, sigma


# --- image preprocessing --------------------------------------------------------------------


def _bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] weights of half-pixel bilinear resampling (no antialiasing), as torch's
    `F.interpolate(mode="bilinear", align_corners=False)`."""
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    w1 = src - i0
    m = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    np.add.at(m, (rows, i0), 1.0 - w1)
    np.add.at(m, (rows, i1), w1)
    return m.astype(np.float32)


def resize_bilinear(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize float32 NCHW images to size = (H, W)."""
    h, w = images.shape[-2:]
    if (h, w) == tuple(size):
        return images.astype(np.float32, copy=False)
    my = _bilinear_matrix(h, size[0])
    mx = _bilinear_matrix(w, size[1])
    return np.matmul(np.matmul(my, images.astype(np.float32, copy=False)), mx.T)


def preprocess_images(
    images: np.ndarray,
    size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    value_range: tuple[float, float] = DEFAULT_VALUE_RANGE,
) -> np.ndarray:
    """uint8 NHWC RGB -> float32 NCHW of `size`, values mapped from [0, 255] to `value_range`."""
    x = np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2), dtype=np.float32)
    x = resize_bilinear(x, size)
    lo, hi = value_range
    # Resizing commutes with this affine map (the weights sum to one), so the order is free.
    return (x * np.float32((hi - lo) / 255.0) + np.float32(lo)).astype(np.float32, copy=False)


def _check_images(images: np.ndarray, what: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise FIDError(f"{what} must be uint8 [N, H, W, 3], got {images.dtype} {tuple(images.shape)}")
    if images.shape[0] < 2:
        raise FIDError(f"{what} needs at least 2 images for a covariance, got {images.shape[0]}")
    return images


# --- the feature extractor ------------------------------------------------------------------


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def default_providers(ort: Any) -> list[str]:
    """The CUDA provider when onnxruntime-gpu has one, else the CPU (the FID and PPL models)."""
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available] or list(available)


class InceptionONNX:
    """A local ONNX feature extractor: uint8 NHWC images in, float64 [N, D] features out."""

    def __init__(
        self,
        path: str | Path,
        *,
        input_size: tuple[int, int] | None = None,
        value_range: tuple[float, float] = DEFAULT_VALUE_RANGE,
        providers: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FIDModelNotFoundError(f"FID model file not found: {self.path}")
        import onnxruntime as ort  # deferred: only FID needs it

        try:
            self.session = open_session(self.path, providers=providers or default_providers(ort))
        except Exception as e:  # onnxruntime raises several unrelated classes for a bad file
            raise FIDModelError(f"cannot load FID model {self.path}: {_first_line(e)}") from e
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise FIDModelError(
                f"FID model {self.path} must have one input and an output, has {len(inputs)} and {len(outputs)}"
            )
        inp, out = inputs[0], outputs[0]
        self.input_name, self.output_name = inp.name, out.name
        rank4 = len(inp.shape) == 4
        if inp.type != "tensor(float)" or not rank4 or (isinstance(inp.shape[1], int) and inp.shape[1] != 3):
            raise FIDModelError(f"FID model {self.path} input must be float32 [N, 3, H, W], got {inp.type} {inp.shape}")
        if len(out.shape) not in (2, 4):
            raise FIDModelError(f"FID model {self.path} output must be [N, D], got {out.shape}")
        static_hw = tuple(inp.shape[2:])
        if all(isinstance(s, int) for s in static_hw):
            if input_size is not None and tuple(input_size) != static_hw:
                raise FIDModelError(f"FID model {self.path} takes {static_hw} images, not input_size={input_size}")
            self.input_size: tuple[int, int] = (int(static_hw[0]), int(static_hw[1]))
        else:
            self.input_size = tuple(input_size) if input_size is not None else DEFAULT_INPUT_SIZE  # type: ignore[assignment]
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.static_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self._sha256: str | None = None

    @property
    def sha256(self) -> str:
        """Digest of the model file; ties cached statistics to the model that produced them."""
        if self._sha256 is None:
            self._sha256 = sha256_file(self.path)
        return self._sha256

    def _run(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        if self.static_batch is not None and n < self.static_batch:
            batch = np.concatenate([batch, np.repeat(batch[-1:], self.static_batch - n, axis=0)])
        out = np.asarray(self.session.run([self.output_name], {self.input_name: batch})[0])
        if out.ndim == 4 and out.shape[2:] == (1, 1):
            out = out.reshape(out.shape[0], out.shape[1])
        if out.ndim != 2 or out.shape[0] != batch.shape[0]:
            raise FIDModelError(
                f"FID model {self.path} output must be [N, D], got {tuple(out.shape)} for a batch of {batch.shape[0]}"
            )
        return out[:n]

    def features(
        self,
        images: np.ndarray,
        batch_size: int = 64,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Features float64 [N, D] of uint8 [N, H, W, 3] RGB images (any size; they are resized)."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise FIDError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {tuple(images.shape)}")
        step = self.static_batch or max(1, batch_size)
        parts = []
        for start in range(0, images.shape[0], step):
            batch = preprocess_images(images[start : start + step], self.input_size, self.value_range)
            parts.append(self._run(batch).astype(np.float64))
            if progress is not None:
                progress(min(start + step, images.shape[0]), images.shape[0])
        if not parts:
            raise FIDError("images is empty")
        return np.concatenate(parts)


# --- cached statistics ----------------------------------------------------------------------


@dataclass(frozen=True)
class FIDStatistics:
    """Feature statistics with what they depend on, as stored in a cache file."""

    mu: np.ndarray
    sigma: np.ndarray
    num_images: int
    model_sha256: str
    input_size: tuple[int, int]
    value_range: tuple[float, float]


def save_statistics(path: str | Path, stats: FIDStatistics) -> None:
    """Write statistics to an .npz (plain arrays, no pickle), atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(
            tmp,
            mu=stats.mu,
            sigma=stats.sigma,
            num_images=np.int64(stats.num_images),
            model_sha256=np.str_(stats.model_sha256),
            input_size=np.asarray(stats.input_size, dtype=np.int64),
            value_range=np.asarray(stats.value_range, dtype=np.float64),
        )


def load_statistics(path: str | Path) -> FIDStatistics:
    """Read statistics written by `save_statistics`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
            stats = FIDStatistics(
                mu=mu,
                sigma=sigma,
                num_images=int(data["num_images"]),
                model_sha256=str(data["model_sha256"]),
                input_size=(int(data["input_size"][0]), int(data["input_size"][1])),
                value_range=(float(data["value_range"][0]), float(data["value_range"][1])),
            )
    except FileNotFoundError:
        raise
    except (OSError, KeyError, ValueError, IndexError, zipfile.BadZipFile) as e:
        raise FIDStatisticsError(f"cannot read FID statistics {path}: {_first_line(e)}") from e
    d = stats.mu.shape[0] if stats.mu.ndim == 1 else -1
    if d < 1 or stats.sigma.shape != (d, d):
        raise FIDStatisticsError(f"FID statistics {path} have mu {stats.mu.shape} and sigma {stats.sigma.shape}")
    return stats


# --- the metric -----------------------------------------------------------------------------


class FIDReference:
    """Real-image statistics computed once (or read from `cache_path`), compared with fake sets.

    With `cache_path`, an existing file is used when it was made with the same model file, input
    size and value range (else a one-line error names it), and a missing one is written after the
    real features are computed; `real_images` may be None when the cache exists.
    """

    def __init__(
        self,
        model: InceptionONNX | str | Path,
        real_images: np.ndarray | None = None,
        *,
        cache_path: str | Path | None = None,
        batch_size: int = 64,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.model = model if isinstance(model, InceptionONNX) else InceptionONNX(model)
        self.batch_size = batch_size
        cache = Path(cache_path) if cache_path is not None else None
        if cache is not None and cache.exists():
            self.real = load_statistics(cache)
            self._check_cache(cache)
            return
        if real_images is None:
            raise FIDError(f"real_images are needed: no cached FID statistics at {cache}")
        real_images = _check_images(real_images, "real_images")
        mu, sigma = feature_statistics(self.model.features(real_images, batch_size, progress))
        self.real = FIDStatistics(
            mu, sigma, real_images.shape[0], self.model.sha256, self.model.input_size, self.model.value_range
        )
        if cache is not None:
            save_statistics(cache, self.real)

    def _check_cache(self, cache: Path) -> None:
        m, r = self.model, self.real
        if r.model_sha256 != m.sha256:
            raise FIDStatisticsError(f"FID statistics {cache} were made with another model file; delete the file")
        if r.input_size != m.input_size or r.value_range != m.value_range:
            raise FIDStatisticsError(
                f"FID statistics {cache} were made for input {r.input_size} in {r.value_range}, "
                f"not {m.input_size} in {m.value_range}; delete the file"
            )

    def distance(self, fake_images: np.ndarray, progress: Callable[[int, int], None] | None = None) -> float:
        fake_images = _check_images(fake_images, "fake_images")
        mu, sigma = feature_statistics(self.model.features(fake_images, self.batch_size, progress))
        if mu.shape != self.real.mu.shape:
            real_dim = self.real.mu.shape[0]
            raise FIDStatisticsError(f"fake features are {mu.shape[0]}-d but the real statistics {real_dim}-d")
        return frechet_distance(self.real.mu, self.real.sigma, mu, sigma)


def compute_fid(
    real_images: np.ndarray | None,
    fake_images: np.ndarray,
    model_path: str | Path,
    *,
    cache_path: str | Path | None = None,
    batch_size: int = 64,
    input_size: tuple[int, int] | None = None,
    value_range: tuple[float, float] = DEFAULT_VALUE_RANGE,
    providers: Sequence[str] | None = None,
) -> float:
    """FID between uint8 [N, H, W, 3] image sets with the ONNX feature extractor at `model_path`.

    `real_images` may be None when `cache_path` holds statistics for this model.
    """
    model = InceptionONNX(model_path, input_size=input_size, value_range=value_range, providers=providers)
    return FIDReference(model, real_images, cache_path=cache_path, batch_size=batch_size).distance(fake_images)
