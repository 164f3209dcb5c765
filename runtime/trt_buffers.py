"""The TensorRT backend's device-buffer layout: shapes, sizes and offsets, in pure code (numpy only,
tested on any machine).

- TensorSpec: one engine I/O tensor as the named-tensor API describes it (-1 marks the dynamic
  batch axis), and the concrete shape and size it has at a batch size.
- Batches larger than the engine's optimisation profile allows run in chunks.
- The random-noise pool: per noise input, a block of pre-drawn standard normals that lives on the
  device. A call copies a window of `batch` samples' worth of elements from a random element
  offset: every contiguous window of i.i.d. normals is itself an i.i.d. normal field, so a pool a
  few batches long yields a fresh-looking field per call with no host draw and no upload.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    name: str
    is_input: bool
    dtype: np.dtype
    shape: tuple[int, ...]  # as the engine reports it: -1 for the dynamic batch axis
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None  # inputs: min, opt, max

    def at_batch(self, batch: int) -> tuple[int, ...]:
        """The concrete shape at `batch` (only axis 0 may be dynamic)."""
        if any(d < 0 for d in self.shape[1:]):
            raise ValueError(f"engine tensor {self.name} has dynamic axes other than the batch: {list(self.shape)}")
        return (batch, *self.shape[1:])

    def nbytes(self, shape: tuple[int, ...]) -> int:
        return int(np.prod(shape, dtype=np.int64)) * self.dtype.itemsize


def batch_range(specs: list[TensorSpec]) -> tuple[int, int]:
    """The batch sizes every input's profile admits: (largest minimum, smallest maximum)."""
    profiles = [s.profile for s in specs if s.is_input and s.profile is not None]
    if not profiles:
        return 1, 1
    return max(p[0][0] for p in profiles), min(p[2][0] for p in profiles)


def chunks(total: int, max_batch: int) -> list[slice]:
    """Split `total` samples into slices of at most `max_batch`."""
    if total < 1:
        raise ValueError("batch is empty")
    return [slice(i, min(i + max_batch, total)) for i in range(0, total, max_batch)]


def check_feed(spec: TensorSpec, value: np.ndarray, batch: int) -> np.ndarray:
    """A feed as the engine wants it (dtype, C order), or one line saying what is wrong."""
    arr = np.ascontiguousarray(value, dtype=spec.dtype)
    want = spec.at_batch(batch)
    if arr.shape != want:
        raise ValueError(f"input {spec.name} must be {list(want)}, got {list(arr.shape)}")
    return arr


@dataclass(frozen=True)
class NoisePoolLayout:
    """How many samples of pre-drawn noise each noise input keeps on the device."""

    samples: dict[str, int]
    sample_shape: dict[str, tuple[int, ...]]  # one sample, e.g. (1, H, W)

    def elems(self, name: str) -> int:
        return int(np.prod(self.sample_shape[name]))

    @property
    def nbytes(self) -> int:
        return sum(n * self.elems(k) * 4 for k, n in self.samples.items())

    def offsets(self, rng: np.random.Generator, batch: int) -> dict[str, int]:
        """A random element offset per input at which a `batch`-sample window starts."""
        out = {}
        for name, n in self.samples.items():
            if batch > n:
                raise ValueError(f"noise pool for {name} holds {n} samples, fewer than the batch {batch}")
            e = self.elems(name)
            out[name] = int(rng.integers(0, (n - batch) * e + 1))
        return out

    def draw(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The pool's host arrays, [samples, *sample_shape] float32 standard normals."""
        return {k: rng.standard_normal((n, *self.sample_shape[k]), dtype=np.float32) for k, n in self.samples.items()}


def noise_pool_layout(
    sample_shapes: Mapping[str, tuple[int, ...]], max_batch: int, budget_bytes: int, max_samples: int = 64,
) -> NoisePoolLayout:
    """Samples per input: the budget split evenly across inputs, at least two full batches (so
    windows vary), at most `max_samples` (small layers would otherwise take thousands)."""
    if not sample_shapes:
        return NoisePoolLayout({}, {})
    share = budget_bytes // len(sample_shapes)
    floor = 2 * max_batch
    samples = {}
    for name, shape in sample_shapes.items():
        per_sample = int(np.prod(shape)) * 4
        samples[name] = max(floor, min(max_samples, share // per_sample))
    return NoisePoolLayout(samples, {k: tuple(v) for k, v in sample_shapes.items()})
