"""Did a class-conditional generator learn its classes? Per-class SWD against a shuffled control.

No classifier is needed. For every real class i and every label j the generator was given,
`matrix[i, j]` is the SWD (x 1e3, averaged over the pyramid levels; training/metrics/swd.py)
between the real images of class i and the fakes generated with label j. A generator that ignores
its label makes every column alike, so the diagonal (`matched`: class k's fakes against class
k's reals) is no better than the rest (`control`: the same fakes against the reals of the other
classes, i.e. with the labels shuffled). One that learned the classes has matched < control, and
each real class is nearest to the fakes of its own label (`accuracy`: the share of real classes
whose row minimum is on the diagonal; chance is 1 / classes).

Every class of the reals gets one `SWDReference` (same seed: same directions and positions), so a
comparison costs about two full-set SWDs for any number of classes up to the cost of the K x K
1-D distances, which are cheap beside the descriptors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .swd import (
    _STREAM_DIRS,
    _STREAM_FAKE,
    _STREAM_REAL,
    SWDConfig,
    SWDInputError,
    _stream,
    pyramid_resolutions,
    random_directions,
    sorted_projections,
    swd_descriptors,
    wasserstein_1d_sorted,
)

if TYPE_CHECKING:  # torch only where a generator is run
    from stylegan_edge.training.data import ImageDataset
    from stylegan_edge.training.networks import Generator


@dataclass(frozen=True)
class ClassSWDResult:
    """`matrix[i, j]`: SWD x 1e3 between real class i and fakes of label j (NaN where either side
    has no image); `real_counts`, `fake_counts`: images per class."""

    matrix: np.ndarray
    real_counts: np.ndarray
    fake_counts: np.ndarray

    @property
    def classes(self) -> np.ndarray:
        """The classes present on both sides, the ones the summaries use."""
        return np.flatnonzero((self.real_counts > 0) & (self.fake_counts > 0))

    @property
    def matched(self) -> float:
        """Mean SWD of each class's fakes against its own reals."""
        k = self.classes
        return float(np.mean(self.matrix[k, k])) if len(k) else float("nan")

    @property
    def control(self) -> float:
        """Mean SWD of each class's reals against the fakes of every other label (shuffled labels)."""
        k = self.classes
        if len(k) < 2:
            return float("nan")
        sub = self.matrix[np.ix_(k, k)]
        return float(sub[~np.eye(len(k), dtype=bool)].mean())

    @property
    def accuracy(self) -> float:
        """Share of real classes nearest (lowest SWD) to the fakes of their own label."""
        k = self.classes
        if not len(k):
            return float("nan")
        sub = self.matrix[np.ix_(k, k)]
        return float(np.mean(np.argmin(sub, axis=1) == np.arange(len(k))))

    def to_json(self) -> dict[str, Any]:
        return {"swd_class": self.matched, "swd_class_control": self.control, "class_accuracy": self.accuracy,
                "matrix": [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in self.matrix],
                "real_counts": self.real_counts.tolist(), "fake_counts": self.fake_counts.tolist()}


def _check_labels(labels: np.ndarray, n: int, num_classes: int, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise SWDInputError(f"{what} must be {n} integer class indices, got shape {labels.shape} {labels.dtype}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise SWDInputError(f"{what} must be in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    return labels.astype(np.int64)


class ClassSWD:
    """The real images split by class, computed once; `compare(fakes, fake_labels)` any number
    of times (as `SWDReference` is for the unconditional SWD of a training run).

    `matrix[i, j]` equals `SWDReference(reals of class i, seed).distance(fakes of label j)["swd_avg"]`
    (a test checks it), but each fake set's descriptors and sorted projections are made once, not
    once per real class: with one seed every class uses the same directions and positions.
    """

    def __init__(self, real_images: np.ndarray, real_labels: np.ndarray, num_classes: int, *, seed: int = 0,
                 config: SWDConfig | None = None) -> None:
        if num_classes < 1:
            raise SWDInputError(f"num_classes must be >= 1, got {num_classes}")
        self.config = cfg = config or SWDConfig()
        self.seed, self.num_classes = seed, num_classes
        self.labels = _check_labels(real_labels, len(real_images), num_classes, "real_labels")
        self.real_counts = np.bincount(self.labels, minlength=num_classes)
        self.resolution = int(real_images.shape[1]) if real_images.ndim == 4 else 0
        levels = len(pyramid_resolutions(max(self.resolution, cfg.min_resolution), cfg.min_resolution))
        dim = cfg.nhood_size * cfg.nhood_size * 3
        dir_rng = _stream(seed, _STREAM_DIRS)
        self.directions = [random_directions(dir_rng, dim, cfg.dirs_per_repeat, cfg.dir_repeats)
                           for _ in range(levels)]
        self.sorted_real = {k: self._sorted(real_images[self.labels == k], _STREAM_REAL)
                            for k in range(num_classes) if self.real_counts[k]}

    def _sorted(self, images: np.ndarray, stream: int) -> list[np.ndarray]:
        desc = swd_descriptors(images, _stream(self.seed, stream), self.config)
        return [sorted_projections(d, dirs) for d, dirs in zip(desc, self.directions, strict=True)]

    def compare(self, fake_images: np.ndarray, fake_labels: np.ndarray) -> ClassSWDResult:
        labels = _check_labels(fake_labels, len(fake_images), self.num_classes, "fake_labels")
        if len(fake_images) and fake_images.shape[1:3] != (self.resolution, self.resolution):
            raise SWDInputError(f"fake_images are {fake_images.shape[1]} px but the real images are "
                                f"{self.resolution} px")
        fake_counts = np.bincount(labels, minlength=self.num_classes)
        matrix = np.full((self.num_classes, self.num_classes), np.nan)
        # As SWDReference: fakes cut at the reals' positions unless the config says otherwise.
        stream = _STREAM_REAL if self.config.shared_positions else _STREAM_FAKE
        for j in np.flatnonzero(fake_counts):
            fake = self._sorted(fake_images[labels == j], stream)
            for i, real in self.sorted_real.items():
                per_level = [np.mean(wasserstein_1d_sorted(r, f)) * 1e3 for r, f in zip(real, fake, strict=True)]
                matrix[i, j] = float(np.mean(per_level))
        return ClassSWDResult(matrix, self.real_counts.copy(), fake_counts)


def class_swd(real_images: np.ndarray, real_labels: np.ndarray, fake_images: np.ndarray, fake_labels: np.ndarray,
              num_classes: int, *, seed: int = 0, config: SWDConfig | None = None) -> ClassSWDResult:
    """The per-class SWD matrix of one real and one fake set (uint8 [N, H, W, 3] each)."""
    return ClassSWD(real_images, real_labels, num_classes, seed=seed, config=config).compare(fake_images, fake_labels)


def measure_generator(G: Generator, dataset: ImageDataset, num_images: int = 1024, *, seed: int = 0,
                      batch: int = 32) -> ClassSWDResult:
    """Per-class SWD of a conditional generator against a labelled dataset: `num_images` reals
    (a seeded random choice), and as many fakes made with the same labels (psi 1)."""
    import torch

    from stylegan_edge.training.loop import generate_images

    size = G.cfg.label_size
    if not size:
        raise SWDInputError("the per-class SWD needs a class-conditional generator (label_size > 0)")
    if not dataset.has_labels or dataset.label_size != size:
        have = f"{dataset.label_size} classes" if dataset.has_labels else "no class labels"
        raise SWDInputError(f"{dataset.source}: has {have}, the generator {size}")
    if dataset.resolution != G.cfg.resolution:
        raise SWDInputError(f"{dataset.source}: opened at {dataset.resolution} px, the generator makes "
                            f"{G.cfg.resolution} px")
    n = min(num_images, len(dataset))
    idx = np.random.default_rng(seed).choice(len(dataset), size=n, replace=False)
    reals = dataset.images(idx.tolist())
    labels = dataset.labels(idx.tolist())
    z = torch.randn(n, G.cfg.z_dim, generator=torch.Generator().manual_seed(seed + 1))
    c = torch.nn.functional.one_hot(torch.from_numpy(labels), size).float()
    fakes = generate_images(G, z, batch=batch, c=c)
    return class_swd(reals, labels, fakes, labels, size, seed=seed)
