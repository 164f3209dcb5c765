"""The backend protocol: what `Generator` needs from an inference engine.

A backend opens one of a bundle's graphs (`mapping` or `synthesis`) at one precision, runs named
float32 inputs to named float32 outputs, and describes itself. Everything above that (seeds,
truncation, mixing, noise modes, uint8 conversion) belongs to `Generator`, once for all backends.

Noise is passed as a `NoiseRequest` rather than as arrays so that a backend with device memory
(TensorRT) can keep the constant noise, a pool of random noise and zero buffers on the device;
the default `run_with_noise` simply asks the request for host arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from stylegan_edge.runtime.errors import StyleganError

# How a layer's noise image is chosen: the model's saved images, fresh draws, or none. Here, in the
# smallest torch-free module, so the training networks and every runtime backend share one tuple.
NOISE_MODES = ("const", "random", "none")


class BackendUnavailable(StyleganError, RuntimeError):  # noqa: N818 - reads as a state, like TensorRTMissing
    """The backend cannot run here (library missing, no device, no engine file)."""


class BackendClosed(BackendUnavailable):
    """The backend was closed; nothing more runs on it."""


@dataclass
class NoiseRequest:
    """The noise a synthesis call wants: a mode, the batch size, and host arrays on demand.

    mode: 'const' (the model's stored noise), 'random' (fresh draws), 'none' (zeros) or
    'explicit' (arrays the caller gave). `host_arrays()` builds the arrays by input name.
    """

    mode: str
    batch: int
    host_arrays: Callable[[], dict[str, np.ndarray]]
    rng: np.random.Generator | None = field(default=None, repr=False)


@runtime_checkable
class Backend(Protocol):
    name: str  # "onnxruntime", "tensorrt"
    device: str  # "cpu", "cuda:0", ...
    precision: str  # "fp32", "fp16", "int8"
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def run_with_noise(self, feeds: Mapping[str, np.ndarray], noise: NoiseRequest) -> dict[str, np.ndarray]: ...

    def describe(self) -> dict[str, str]: ...

    def close(self) -> None: ...


class BaseBackend:
    """Shared defaults; a backend subclasses this and implements `run`."""

    name = "base"
    device = "cpu"
    precision = "fp32"
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def run_with_noise(self, feeds: Mapping[str, np.ndarray], noise: NoiseRequest) -> dict[str, np.ndarray]:
        return self.run({**feeds, **noise.host_arrays()})

    def describe(self) -> dict[str, str]:
        return {"backend": self.name, "device": self.device, "precision": self.precision}

    def close(self) -> None:
        pass

    def __enter__(self) -> BaseBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
