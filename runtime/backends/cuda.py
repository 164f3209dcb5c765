"""The few CUDA services the TensorRT backend needs, on pycuda, every call checked.

pycuda gives device memory, pinned host memory, streams and async copies; it has no CUDA-graph
API, so stream capture goes through the driver library (libcuda, always present with the NVIDIA
driver) with ctypes, following `trtexec --useCudaGraph` (NVIDIA/TensorRT samples/common:
sampleInference.cpp builds the enqueue, sampleDevice.h `TrtCudaGraph` captures it). Every call that
can fail is wrapped so the exception names the CUDA call ("cuMemcpyHtoDAsync failed: ..."), and
every resource is owned by a small object that frees it. pycuda is imported only when a device is
opened, so this module imports anywhere.

What a failed capture leaves behind, and how it is cleared:
- The driver API has no "last error": cuStreamEndCapture of an invalidated capture returns
  CUDA_ERROR_STREAM_CAPTURE_INVALIDATED once, with a NULL graph, and the stream is an ordinary
  stream again. Capture invalidation is not a sticky (context-corrupting) error.
- The runtime API keeps a per-thread last error per runtime instance (CUDA Runtime API,
  cudaGetLastError: "the last error produced by any of the runtime calls in the same instance of the
  CUDA Runtime library in the host thread", reset by that call). TensorRT makes its CUDA calls
  through the runtime, so a call it made that the capture prohibited leaves that error set.
  trtexec ends the capture even on failure, destroys a graph that came back anyway, then calls
  cudaGetLastError() to clear and once more to check (sampleDevice.h `endCaptureOnError`,
  sampleInference.cpp). We do the same through the libcudart already loaded in this process (the
  instance TensorRT shares when it links the runtime dynamically; a statically linked runtime is
  out of anyone's reach, trtexec's included), and check with cuStreamIsCapturing that the stream
  left capture mode before the plain fallback runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..engine_meta import GpuInfo
from .base import BackendUnavailable

PYCUDA_HINT = ("pip install pycuda (it builds from source: on a Jetson first `export PATH=/usr/local/cuda/bin:$PATH`"
               " so that nvcc and cuda.h are found)")
# CUstreamCaptureMode: capture only this thread's CUDA calls, as trtexec does.
CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1
CU_STREAM_CAPTURE_STATUS_NONE = 0  # CUstreamCaptureStatus: not capturing
CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901

_log = logging.getLogger("stylegan_edge.cuda")


class CudaUnavailable(BackendUnavailable):
    """pycuda is missing or no CUDA device can be opened."""


class CudaError(RuntimeError):
    """A CUDA call failed; the message names the call."""


class CaptureFailed(CudaError):  # noqa: N818 - a CudaError already; reads as what happened
    """A stream capture did not produce a usable graph; the stream is usable for plain execution."""


def import_driver() -> Any:
    """pycuda.driver, or CudaUnavailable with the install hint."""
    try:
        import pycuda.driver as driver
    except ImportError as e:
        raise CudaUnavailable(f"pycuda is not importable ({e}): {PYCUDA_HINT}") from None
    return driver


def checked(call: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run one pycuda call; a CUDA failure becomes CudaError naming `call`."""
    driver = import_driver()
    try:
        return fn(*args)
    except driver.Error as e:
        raise CudaError(f"{call} failed: {e}") from None


def gpu_identity(ordinal: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device `ordinal` (what engines are built for)."""
    driver = import_driver()
    try:
        driver.init()
        dev = driver.Device(ordinal)
        major, minor = dev.compute_capability()
        return GpuInfo(str(dev.name()), f"{major}.{minor}")
    except driver.Error as e:
        raise CudaUnavailable(f"no CUDA device {ordinal} here ({e})") from None


class CudaDevice:
    """One device's primary context (the one TensorRT's runtime-API calls use), made current
    around our calls so the backend works from any thread.

    pycuda's rules (src/cpp/cuda.hpp): its context stack is per thread (`context_stack_ptr` is a
    boost::thread_specific_ptr), so Context.pop() only undoes a push made in the same thread;
    and `context::detach()` releases the context only when it is current in the calling thread
    or is called in the thread that created the Context object, otherwise it marks it invalid and
    silently leaks it. So every push here is popped in the same `with` block, and close() makes
    the context current in its own thread before detaching, which works from any thread."""

    def __init__(self, ordinal: int = 0) -> None:
        self.driver = driver = import_driver()
        try:
            driver.init()
            count = driver.Device.count()
            if ordinal >= count:
                raise CudaUnavailable(f"no CUDA device {ordinal} here ({count} device(s))")
            self.device = driver.Device(ordinal)
            self.context = self.device.retain_primary_context()
        except driver.Error as e:
            raise CudaUnavailable(f"cannot open CUDA device {ordinal} ({e})") from None
        self.ordinal = ordinal
        self.thread = threading.get_ident()  # pycuda ties the Context object to this thread
        major, minor = self.device.compute_capability()
        self.info = GpuInfo(str(self.device.name()), f"{major}.{minor}")
        self._closed = False

    @contextmanager
    def active(self) -> Iterator[None]:
        checked("cuCtxPushCurrent", self.context.push)
        try:
            yield
        finally:
            checked("cuCtxPopCurrent", self.driver.Context.pop)

    def close(self) -> None:
        """Release the primary context, from any thread. Current in this thread, pycuda's detach()
        releases it and takes it off this thread's stack itself, so there is no pop to match."""
        if self._closed:
            return
        self._closed = True
        checked("cuCtxPushCurrent", self.context.push)
        try:
            checked("cuDevicePrimaryCtxRelease", self.context.detach)
        except CudaError:
            checked("cuCtxPopCurrent", self.driver.Context.pop)
            raise


class DeviceBuffer:
    """`nbytes` of device memory, freed by close()."""

    def __init__(self, driver: Any, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self._alloc = checked(f"cuMemAlloc ({self.nbytes} bytes)", driver.mem_alloc, max(self.nbytes, 1))
        self.ptr = int(self._alloc)

    def close(self) -> None:
        if self._alloc is not None:
            checked("cuMemFree", self._alloc.free)
            self._alloc = None


class Stream:
    """A non-default stream (the default stream makes TensorRT add device-wide synchronisation)
    and the checked async operations on it."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self._stream = checked("cuStreamCreate", driver.Stream)
        self.handle = int(self._stream.handle)

    def htod(self, dst: int, src: np.ndarray) -> None:
        checked("cuMemcpyHtoDAsync", self.driver.memcpy_htod_async, dst, src, self._stream)

    def dtoh(self, dst: np.ndarray, src: int) -> None:
        checked("cuMemcpyDtoHAsync", self.driver.memcpy_dtoh_async, dst, src, self._stream)

    def dtod(self, dst: int, src: int, nbytes: int) -> None:
        checked("cuMemcpyDtoDAsync", self.driver.memcpy_dtod_async, dst, src, nbytes, self._stream)

    def memset32(self, dst: int, value: int, count: int) -> None:
        checked("cuMemsetD32Async", self.driver.memset_d32_async, dst, value, count, self._stream)

    def synchronize(self) -> None:
        checked("cuStreamSynchronize", self._stream.synchronize)

    def close(self) -> None:
        self._stream = None


def pinned_empty(driver: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Page-locked host memory: async copies from it are truly async and run at full speed."""
    return checked(f"cuMemHostAlloc ({int(np.prod(shape)) * np.dtype(dtype).itemsize} bytes)",
                   driver.pagelocked_empty, tuple(shape), dtype)


# --- CUDA graphs through the driver library ---------------------------------------------------------
def load_libcuda() -> Any | None:
    """The CUDA driver library with the graph entry points typed, or None where it cannot load."""
    name = ctypes.util.find_library("cuda") or "libcuda.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    vp, c_int, c_ull = ctypes.c_void_p, ctypes.c_int, ctypes.c_ulonglong
    pvp = ctypes.POINTER(ctypes.c_void_p)
    signatures = {
        "cuStreamBeginCapture_v2": [vp, c_int],
        "cuStreamEndCapture": [vp, pvp],
        "cuGraphInstantiateWithFlags": [pvp, vp, c_ull],
        "cuGraphLaunch": [vp, vp],
        "cuGraphExecDestroy": [vp],
        "cuGraphDestroy": [vp],
        "cuStreamIsCapturing": [vp, ctypes.POINTER(c_int)],
        "cuGetErrorName": [c_int, ctypes.POINTER(ctypes.c_char_p)],
    }
    try:
        for fn, argtypes in signatures.items():
            f = getattr(lib, fn)
            f.argtypes, f.restype = argtypes, c_int
    except AttributeError:  # a driver older than CUDA 11.4
        return None
    return lib


def _loaded_libraries(stem: str) -> list[str]:
    """Paths of shared objects named `stem`* that this process has mapped (Linux)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if f"/{stem}" in line}
    except OSError:
        return []
    return sorted(p for p in paths if p.rsplit("/", 1)[-1].startswith(stem))


def load_libcudart() -> Any | None:
    """The CUDA runtime library this process already uses (TensorRT's, when it links it
    dynamically), with cudaGetLastError typed; None where none is loaded. A runtime that is not
    loaded yet holds no error of anyone's, and loading a second copy would only add an instance."""
    for path in _loaded_libraries("libcudart.so"):
        try:
            lib = ctypes.CDLL(path)
            fn = lib.cudaGetLastError
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [], ctypes.c_int
        return lib
    return None


class GraphAPI:
    """Checked stream capture, instantiation and launch on a libcuda-like object."""

    def __init__(self, lib: Any) -> None:
        self.lib = lib

    def _check(self, call: str, status: int) -> None:
        if status != 0:
            name = ctypes.c_char_p()
            self.lib.cuGetErrorName(status, ctypes.byref(name))
            raise CudaError(f"{call} failed: {(name.value or b'CUDA error').decode()} ({status})")

    def begin_capture(self, stream: int) -> None:
        self._check("cuStreamBeginCapture", self.lib.cuStreamBeginCapture_v2(
            ctypes.c_void_p(stream), CU_STREAM_CAPTURE_MODE_THREAD_LOCAL))

    def end_capture_status(self, stream: int) -> tuple[int, int]:
        """(status, graph) of cuStreamEndCapture, unchecked: a failed capture must still be ended
        and a graph it returned destroyed (sampleDevice.h `endCaptureOnError`)."""
        graph = ctypes.c_void_p()
        status = self.lib.cuStreamEndCapture(ctypes.c_void_p(stream), ctypes.byref(graph))
        return int(status), int(graph.value or 0)

    def is_capturing(self, stream: int) -> int:
        """The stream's CUstreamCaptureStatus (0: not capturing)."""
        status = ctypes.c_int()
        self._check("cuStreamIsCapturing", self.lib.cuStreamIsCapturing(ctypes.c_void_p(stream), ctypes.byref(status)))
        return int(status.value)

    def clear_runtime_error(self) -> int | None:
        """Reset the CUDA runtime's last error on this thread as trtexec does after a failed
        capture (cudaGetLastError, then once more to check it stayed clear). Returns the error
        that was pending (0 for none), or None where this process has no shared libcudart."""
        runtime = load_libcudart()
        if runtime is None:
            return None
        pending = int(runtime.cudaGetLastError())
        again = int(runtime.cudaGetLastError())
        if again != 0:  # a sticky error: the context is unusable, the plain fallback will say so
            _log.warning("the CUDA runtime reports error %d again after clearing it", again)
        return pending

    def instantiate(self, graph: int) -> int:
        exe = ctypes.c_void_p()
        self._check("cuGraphInstantiateWithFlags",
                    self.lib.cuGraphInstantiateWithFlags(ctypes.byref(exe), ctypes.c_void_p(graph), 0))
        return int(exe.value or 0)

    def launch(self, exe: int, stream: int) -> None:
        self._check("cuGraphLaunch", self.lib.cuGraphLaunch(ctypes.c_void_p(exe), ctypes.c_void_p(stream)))

    def destroy(self, exe: int | None, graph: int | None) -> None:
        if exe:
            self._check("cuGraphExecDestroy", self.lib.cuGraphExecDestroy(ctypes.c_void_p(exe)))
        if graph:
            self._check("cuGraphDestroy", self.lib.cuGraphDestroy(ctypes.c_void_p(graph)))


class CudaGraph:
    """One captured, instantiated enqueue, replayed with launch()."""

    def __init__(self, api: GraphAPI, graph: int, exe: int) -> None:
        self.api, self.graph, self.exe = api, graph, exe

    def launch(self, stream: Stream) -> None:
        self.api.launch(self.exe, stream.handle)

    def close(self) -> None:
        if self.exe or self.graph:
            exe, graph, self.exe, self.graph = self.exe, self.graph, 0, 0
            self.api.destroy(exe, graph)


def capture_graph(api: GraphAPI, stream: Stream, enqueue: Callable[[], bool]) -> CudaGraph:
    """Capture what `enqueue` puts on `stream` into an instantiated graph, as trtexec does. The
    caller has run the enqueue once plainly since the last change of shapes or addresses
    (initialisation must not be captured); here the stream is synchronised, captured thread-locally,
    and the capture is ended whatever happens. `enqueue` returns False when TensorRT reports a
    failure (it may, when a call it makes is not permitted under capture). On failure any graph is
    destroyed, the runtime's last error cleared, the stream checked to be out of capture mode,
    and CaptureFailed raised: the stream is then fit for plain execution. An exception from
    `enqueue` is re-raised after the same clean-up."""
    stream.synchronize()
    try:
        api.begin_capture(stream.handle)
    except CudaError as e:  # nothing was captured, nothing to end
        raise CaptureFailed(str(e)) from None
    failure: BaseException | str | None = None
    try:
        if not enqueue():
            failure = "execute_async_v3 returned False under capture"
    except BaseException as e:  # noqa: BLE001 - the capture is ended first, then this is re-raised
        failure = e
    status, graph = api.end_capture_status(stream.handle)
    if failure is None and status == 0 and graph:
        try:
            return CudaGraph(api, graph, api.instantiate(graph))
        except CudaError as e:
            failure = str(e)
    elif failure is None:
        failure = ("cuStreamEndCapture: the capture was invalidated" if status in (
            0, CUDA_ERROR_STREAM_CAPTURE_INVALIDATED) else f"cuStreamEndCapture failed with CUDA error {status}")
    if graph:  # a capture TensorRT reported as failed can still return a graph: never use it
        api.destroy(None, graph)
    pending = api.clear_runtime_error()
    if api.is_capturing(stream.handle) != CU_STREAM_CAPTURE_STATUS_NONE:
        raise CudaError("the stream is still capturing after cuStreamEndCapture")
    if isinstance(failure, BaseException):
        raise failure
    detail = f"; cleared CUDA runtime error {pending}" if pending else ""
    raise CaptureFailed(f"{failure}{detail}")
