"""TensorRT backend: a bundle's prebuilt engine, run with the named-tensor API on a CUDA stream.

- Only the named-tensor API (TensorRT 8.5 and later, the only one 10.x and 11.x have):
  `num_io_tensors`, `get_tensor_name`, `get_tensor_mode`, `set_input_shape`,
  `set_tensor_address`, `execute_async_v3`, on a non-default stream.
- Device buffers for every I/O tensor are allocated once per batch size and reused; outputs come
  back through pinned host memory. Batches above the engine's profile run in chunks.
- Noise stays on the device: the model's constant noise is uploaded once, random noise is a
  window of a pre-drawn device pool (a random offset per call, from the request's generator),
  'none' is a memset, explicit arrays are uploaded. Noise inputs keep fixed buffers, so
- optional CUDA graphs (cuda_graph=True) can replay the enqueue, as `trtexec --useCudaGraph`
  does (NVIDIA/TensorRT samples/common/sampleInference.cpp): after every change of the context's
  shapes or tensor addresses (a new batch size) one plain `execute_async_v3` runs first, since the
  first enqueue after a shape change may initialise lazily and that must not be captured; the
  next call at that batch size synchronises the stream, captures the enqueue, and replays the graph
  from then on. The context holds one set of shapes, so a graph is dropped when the batch size
  changes and recaptured (after a new warm-up) when it comes back. A failed capture is ended and
  cleaned up (`cuda.capture_graph`), the call runs plainly, and that batch size is never captured
  again; after failures at two batch sizes capture stops altogether (the engine is not capturable).
- Before deserialising, the engine's sidecar is checked against this TensorRT, this GPU and the
  bundle's ONNX (`runtime/engine_meta.py`), so a stale or foreign engine is one line naming the
  cause and the command that rebuilds it.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle, engine_filename
from ..engine_meta import (
    EngineMeta,
    EngineMetaError,
    EngineMismatch,
    build_command,
    check_engine,
    read_sidecar,
)
from ..files import sha256_bytes, sha256_file
from ..generator import NOISE_MODES
from ..trt_buffers import NoisePoolLayout, TensorSpec, batch_range, check_feed, chunks, noise_pool_layout
from . import cuda as cudalib
from .base import BackendUnavailable, BaseBackend, NoiseRequest
from .registry import BackendSpec

_log = logging.getLogger("stylegan_edge.tensorrt")

# Failed captures at this many batch sizes mean the engine itself is not capturable: stop trying.
MAX_CAPTURE_FAILURES = 2
# The options this backend takes (the registry drops other `auto` candidates' options before
# they reach it).
OPTIONS = frozenset({"device", "cuda_graph", "noise_pool_mb", "noise_seed", "verify_onnx"})
# Every named noise mode is filled on the device (explicit arrays are uploaded).
DEVICE_NOISE_MODES = NOISE_MODES


class TensorRTError(RuntimeError):
    """A TensorRT call failed; the message names the call."""


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailable(
            f"tensorrt is not importable ({e}): on a Jetson it comes with JetPack (python3-libnvinfer), "
            "elsewhere `pip install tensorrt`"
        ) from None
    return trt


def make_trt_logger(trt: Any, sink: Callable[[str, str], None], min_severity: str = "WARNING") -> Any:
    """A trt.ILogger that hands TensorRT's messages at `min_severity` or worse to sink(severity, text)."""
    limit = int(getattr(trt.ILogger.Severity, min_severity))

    class ForwardingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= limit:
                sink(severity.name, msg)

    return ForwardingLogger()


# TensorRT keeps one process-wide logger and warns when a second Runtime brings another; the
# mapping and synthesis backends share this one (per TensorRT module, for tests that swap it).
_RUNTIME_LOGGERS: dict[int, Any] = {}


def _runtime_logger(trt: Any) -> Any:
    key = id(trt)
    if key not in _RUNTIME_LOGGERS:
        levels = {"INTERNAL_ERROR": logging.CRITICAL, "ERROR": logging.ERROR, "WARNING": logging.WARNING}
        _RUNTIME_LOGGERS[key] = make_trt_logger(trt, lambda sev, msg: _log.log(levels.get(sev, logging.INFO), msg))
    return _RUNTIME_LOGGERS[key]


def parse_device(device: int | str) -> int:
    """0, "cuda", "cuda:1", "auto" -> a CUDA ordinal; "cpu" is not a TensorRT device."""
    if isinstance(device, int):
        return device
    d = str(device).lower()
    if d in ("auto", "cuda", "gpu", "tensorrt"):
        return 0
    if d.startswith("cuda:") and d[5:].isdigit():
        return int(d[5:])
    raise BackendUnavailable(f"TensorRT runs on a CUDA device; device={device!r} is not one (use cuda or cuda:N)")


class _Slot:
    """Everything one batch size needs: shapes, device buffers, pinned host buffers, a graph."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dev: dict[str, cudalib.DeviceBuffer] = {}
        self.host: dict[str, np.ndarray] = {}  # pinned: outputs, and inputs staged from the host
        self.noise_tag: str | None = None  # what the noise buffers hold now, to skip refills
        self.graph: cudalib.CudaGraph | None = None
        self.warm = False  # a plain enqueue ran since the context last took this slot's shapes/addresses
        self.capture_failed: str | None = None  # never capture this batch size again


class TensorRTBackend(BaseBackend):
    name = "tensorrt"

    @classmethod
    def from_bundle(cls, bundle: Bundle, model: str, precision: str, **options: Any) -> TensorRTBackend:
        unknown = set(options) - OPTIONS
        if unknown:
            raise TypeError(f"unknown TensorRT backend option(s) {sorted(unknown)}; it takes {sorted(OPTIONS)}")
        return cls(bundle.path / engine_filename(model, precision), precision, bundle=bundle, model=model, **options)

    def __init__(
        self, engine_path: str | Path, precision: str = "fp32", *, bundle: Bundle | None = None,
        model: str | None = None, device: int | str = 0, cuda_graph: bool = False, noise_pool_mb: float = 128,
        noise_seed: int | None = None, verify_onnx: bool = True,
    ) -> None:
        self.engine_path = Path(engine_path)
        self.precision = precision
        self.bundle = bundle
        self.model = model or self.engine_path.name.split(".")[0]
        self._hint = build_command(bundle.path if bundle is not None else "BUNDLE", precision)
        self._closed = False
        self.cuda: cudalib.CudaDevice | None = None
        self._context = self._engine = self._runtime = None
        self.stream: cudalib.Stream | None = None
        self._slots: dict[int, _Slot] = {}
        self._active: _Slot | None = None
        self._const: dict[str, cudalib.DeviceBuffer] = {}
        self._pool: dict[str, cudalib.DeviceBuffer] = {}
        self._pool_layout: NoisePoolLayout | None = None
        self._noise_pool_bytes = int(noise_pool_mb * (1 << 20))
        self._noise_seed = noise_seed
        self._capture_failures = 0
        self.meta: EngineMeta | None = None

        if not self.engine_path.is_file():
            raise BackendUnavailable(f"{self.engine_path}: no TensorRT engine; build it on this device with "
                                     f"`{self._hint}`")
        trt = self.trt = import_tensorrt()
        ordinal = parse_device(device)
        self.cuda = cudalib.CudaDevice(ordinal)
        self.device = f"cuda:{ordinal}"
        self.gpu = self.cuda.info
        self.tensorrt_version = str(trt.__version__)
        try:
            with self.cuda.active():
                self._load(trt, verify_onnx)
                self.stream = cudalib.Stream(self.cuda.driver)
        except BaseException:
            self.close()
            raise
        api = cudalib.load_libcuda() if cuda_graph else None
        self._graph_api = cudalib.GraphAPI(api) if api is not None else None
        self.cuda_graph = "off" if not cuda_graph else ("ready" if api is not None else "unavailable (no libcuda)")

    # --- loading -----------------------------------------------------------------------------
    def _load(self, trt: Any, verify_onnx: bool) -> None:
        data = self.engine_path.read_bytes()
        self._check_sidecar(data, verify_onnx)
        logger = _runtime_logger(trt)
        if not hasattr(getattr(trt, "OnnxParserFlag", None), "NATIVE_INSTANCENORM"):
            trt.init_libnvinfer_plugins(logger, "")  # 8.5 engines carry the instance-norm plugin
        self._runtime = trt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise EngineMismatch(
                f"{self.engine_path}: TensorRT {self.tensorrt_version} cannot deserialise it (built for another GPU or "
                f"TensorRT version?): rebuild it on this device with `{self._hint}`"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise TensorRTError(f"{self.engine_path}: create_execution_context failed (out of device memory?)")
        self.specs = self._read_specs(trt)
        self.input_names = [s.name for s in self.specs.values() if s.is_input]
        self.output_names = [s.name for s in self.specs.values() if not s.is_input]
        self.min_batch, self.max_batch = batch_range(list(self.specs.values()))
        if self.bundle is not None:
            self.bundle.check_inputs(self.model, self.input_names, self.engine_path)
            noise = set(self.bundle.meta.noise_inputs) if self.model == "synthesis" else set()
        else:
            noise = set()
        self.noise_names = [n for n in self.input_names if n in noise]

    def _check_sidecar(self, data: bytes, verify_onnx: bool) -> None:
        try:
            self.meta = read_sidecar(self.engine_path)
        except EngineMetaError as e:
            raise EngineMismatch(f"{e}: rebuild the engine on this device with `{self._hint}`") from None
        if self.meta is None:
            _log.warning("%s has no sidecar JSON: cannot check it was built for this GPU and TensorRT",
                         self.engine_path)
            return
        onnx_sha = None
        if verify_onnx and self.bundle is not None and (self.bundle.path / self.meta.onnx_file).is_file():
            onnx_sha = sha256_file(self.bundle.path / self.meta.onnx_file)
        check_engine(self.meta, self.engine_path, self.bundle.path if self.bundle is not None else "BUNDLE",
                     tensorrt_version=self.tensorrt_version, gpu=self.gpu, onnx_sha256=onnx_sha,
                     engine_sha256=sha256_bytes(data))

    def _read_specs(self, trt: Any) -> dict[str, TensorSpec]:
        engine, specs = self._engine, {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            profile = None
            if is_input:
                if any(d < 0 for d in shape):
                    profile = tuple(tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(name, 0))
                else:
                    profile = (shape, shape, shape)
            specs[name] = TensorSpec(name, is_input, dtype, shape, profile)
        return specs

    # --- running ------------------------------------------------------------------------------
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ValueError(f"{self.engine_path.name}: missing inputs {missing[:3]}")
        return self._run({n: feeds[n] for n in self.input_names}, None, None)

    def run_with_noise(self, feeds: Mapping[str, np.ndarray], noise: NoiseRequest) -> dict[str, np.ndarray]:
        if not self.noise_names or noise.mode not in DEVICE_NOISE_MODES:
            return super().run_with_noise(feeds, noise)  # explicit arrays: uploaded like any input
        host = {n: feeds[n] for n in self.input_names if n not in self.noise_names}
        return self._run(host, noise.mode, noise.rng or np.random.default_rng())

    def _run(self, host: dict[str, np.ndarray], mode: str | None, rng: np.random.Generator | None,
             ) -> dict[str, np.ndarray]:
        self._ensure_open()
        batch = len(next(iter(host.values()))) if host else 0
        host = {n: check_feed(self.specs[n], v, batch) for n, v in host.items()}
        if batch < self.min_batch:
            raise ValueError(f"{self.engine_path.name}: batch {batch} is below the engine's profile minimum "
                             f"{self.min_batch}")
        parts = [self._run_chunk({n: v[s] for n, v in host.items()}, s.stop - s.start, mode, rng)
                 for s in chunks(batch, self.max_batch)]
        if len(parts) == 1:
            return parts[0]
        return {n: np.concatenate([p[n] for p in parts]) for n in self.output_names}

    def _run_chunk(self, host: dict[str, np.ndarray], batch: int, mode: str | None,
                   rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        stream = self.stream
        with self.cuda.active():
            slot = self._activate(batch)
            for name, value in host.items():
                staging = self._staging(slot, name)
                np.copyto(staging, value)
                stream.htod(slot.dev[name].ptr, staging)
            if mode is None:
                slot.noise_tag = None
            else:
                self._fill_noise(slot, mode, rng)
            self._execute(slot)
            for name in self.output_names:
                stream.dtoh(slot.host[name], slot.dev[name].ptr)
            stream.synchronize()
            return {name: slot.host[name].copy() for name in self.output_names}

    def _activate(self, batch: int) -> _Slot:
        slot = self._slots.get(batch)
        if slot is not None and slot is self._active:
            return slot
        # A captured graph baked in the context's shapes; once they change it must not replay.
        self._drop_graphs()
        if slot is None:
            slot = self._slots[batch] = self._make_slot(batch)
        else:
            self._bind(slot)
        # New shapes and addresses: the next enqueue may initialise lazily, so it runs plainly
        # before any capture (trtexec's warm-up enqueue).
        slot.warm = False
        self._active = slot
        return slot

    def _make_slot(self, batch: int) -> _Slot:
        slot = _Slot(batch)
        driver = self.cuda.driver
        for name in self.input_names:
            spec = self.specs[name]
            slot.shapes[name] = spec.at_batch(batch)
            self._set_input_shape(name, slot.shapes[name])
            slot.dev[name] = cudalib.DeviceBuffer(driver, spec.nbytes(slot.shapes[name]))
        for name in self.output_names:
            spec = self.specs[name]
            shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise TensorRTError(f"get_tensor_shape({name}) returned {list(shape)} after every input shape was set")
            slot.shapes[name] = shape
            slot.dev[name] = cudalib.DeviceBuffer(driver, spec.nbytes(shape))
            slot.host[name] = cudalib.pinned_empty(driver, shape, spec.dtype)
        self._set_addresses(slot)
        return slot

    def _bind(self, slot: _Slot) -> None:
        for name in self.input_names:
            self._set_input_shape(name, slot.shapes[name])
        self._set_addresses(slot)

    def _set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        if not self._context.set_input_shape(name, self.trt.Dims(list(shape))):
            raise TensorRTError(f"set_input_shape({name}, {list(shape)}) failed: outside the engine's profile?")

    def _set_addresses(self, slot: _Slot) -> None:
        for name, buf in slot.dev.items():
            if not self._context.set_tensor_address(name, buf.ptr):
                raise TensorRTError(f"set_tensor_address({name}) failed")

    def _staging(self, slot: _Slot, name: str) -> np.ndarray:
        if name not in slot.host:  # noise inputs get staging only when explicit arrays arrive
            slot.host[name] = cudalib.pinned_empty(self.cuda.driver, slot.shapes[name], self.specs[name].dtype)
        return slot.host[name]

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(self.stream.handle):
            raise TensorRTError(f"execute_async_v3 failed for {self.engine_path.name}")

    def _execute(self, slot: _Slot) -> None:
        if self._graph_api is not None and slot.capture_failed is None:
            if slot.graph is None and slot.warm:
                self._capture(slot)
            if slot.graph is not None:
                slot.graph.launch(self.stream)
                return
        self._enqueue()
        slot.warm = True

    def _capture(self, slot: _Slot) -> None:
        """Capture the enqueue for `slot` (warm: its shapes have run plainly); on failure the
        capture is cleaned up and the caller runs plainly."""
        try:
            slot.graph = cudalib.capture_graph(
                self._graph_api, self.stream, lambda: bool(self._context.execute_async_v3(self.stream.handle)))
        except cudalib.CaptureFailed as e:
            slot.capture_failed = str(e)
            self._capture_failures += 1
            give_up = self._capture_failures >= MAX_CAPTURE_FAILURES
            if give_up:
                self._graph_api = None
            _log.warning("CUDA graph capture failed at batch %d, running it without a graph%s: %s", slot.batch,
                         " (no further captures)" if give_up else "", e)
            self.cuda_graph = f"failed at batch {slot.batch} ({e})"
            return
        self.cuda_graph = "captured"

    def _drop_graphs(self) -> None:
        for slot in self._slots.values():
            if slot.graph is not None:
                slot.graph.close()
                slot.graph = None

    # --- noise on the device ------------------------------------------------------------------
    def _fill_noise(self, slot: _Slot, mode: str, rng: np.random.Generator | None) -> None:
        stream = self.stream
        if mode == "random":
            buffers = self._noise_pool()
            offsets = self._pool_layout.offsets(rng, slot.batch)
            for name in self.noise_names:
                start = buffers[name].ptr + offsets[name] * self.specs[name].dtype.itemsize
                stream.dtod(slot.dev[name].ptr, start, slot.dev[name].nbytes)
        elif slot.noise_tag == mode:
            return
        elif mode == "const":
            const = self._const_noise()
            for name in self.noise_names:
                one = const[name].nbytes
                for k in range(slot.batch):
                    stream.dtod(slot.dev[name].ptr + k * one, const[name].ptr, one)
        else:  # "none": IEEE zero is all zero bits (noise images hold an even number of elements)
            for name in self.noise_names:
                stream.memset32(slot.dev[name].ptr, 0, slot.dev[name].nbytes // 4)
        slot.noise_tag = mode

    def _const_noise(self) -> dict[str, cudalib.DeviceBuffer]:
        if not self._const:
            arrays = self.bundle.noise_const()
            for name in self.noise_names:
                host = np.ascontiguousarray(arrays[name], dtype=self.specs[name].dtype)
                self._const[name] = cudalib.DeviceBuffer(self.cuda.driver, host.nbytes)
                self.stream.htod(self._const[name].ptr, host)
            self.stream.synchronize()  # the host arrays go out of scope
        return self._const

    def _noise_pool(self) -> dict[str, cudalib.DeviceBuffer]:
        if not self._pool:
            shapes = {n: self.specs[n].shape[1:] for n in self.noise_names}
            self._pool_layout = noise_pool_layout(shapes, self.max_batch, self._noise_pool_bytes)
            for name, drawn in self._pool_layout.draw(np.random.default_rng(self._noise_seed)).items():
                host = drawn.astype(self.specs[name].dtype, copy=False)
                self._pool[name] = cudalib.DeviceBuffer(self.cuda.driver, host.nbytes)
                self.stream.htod(self._pool[name].ptr, host)
                self.stream.synchronize()
        return self._pool

    # --- the rest --------------------------------------------------------------------------------
    def describe(self) -> dict[str, str]:
        d = super().describe()
        d.update({
            "gpu": str(self.gpu), "tensorrt": self.tensorrt_version, "engine": self.engine_path.name,
            "build": self.meta.build_mode if self.meta is not None else "unverified (no sidecar)",
            "batch": f"{self.min_batch}-{self.max_batch}", "cuda_graph": self.cuda_graph,
        })
        return d

    def _ensure_open(self) -> None:
        if self._closed:
            raise BackendUnavailable(f"{self.engine_path.name}: the TensorRT backend is closed")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.cuda is None:
            return
        with self.cuda.active():
            self._drop_graphs()
            buffers = [b for s in self._slots.values() for b in s.dev.values()]
            for buf in [*buffers, *self._const.values(), *self._pool.values()]:
                buf.close()
            self._slots, self._const, self._pool, self._active = {}, {}, {}, None
            if self.stream is not None:
                self.stream.close()
            # Context before engine before runtime: each depends on the next.
            self._context = None
            self._engine = None
            self._runtime = None
        self.cuda.close()


def _has_tensorrt() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def _engine_ready(bundle: Bundle, model: str, precision: str) -> bool:
    """`auto` tries TensorRT only where the package and this bundle's engine are both present."""
    return _has_tensorrt() and bundle.has(engine_filename(model, precision))


# First of `auto`'s candidates; an unavailable one (another GPU, a stale engine) falls through.
BACKENDS = (
    BackendSpec("tensorrt", TensorRTBackend.from_bundle, OPTIONS, available=_has_tensorrt, auto_rank=10,
                auto_when=_engine_ready),
)
