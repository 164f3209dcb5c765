"""The few CUDA services the TensorRT backend needs, on pycuda, every call checked.

pycuda gives device memory, pinned host memory, streams and async copies; it has no CUDA-graph
API, so stream capture goes through the driver library (libcuda, always present with the NVIDIA
driver) with ctypes, as `trtexec --useCudaGraph` does in C++. Every call that can fail is wrapped
so the exception names the CUDA call ("cuMemcpyHtoDAsync failed: ..."), and every resource is
owned by a small object that frees it. pycuda is imported only when a device is opened, so this
module imports anywhere.
"""

from __future__ import annotations

import ctypes
import ctypes.util
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


class CudaUnavailable(BackendUnavailable):
    """pycuda is missing or no CUDA device can be opened."""


class CudaError(RuntimeError):
    """A CUDA call failed; the message names the call."""


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
    around our calls so the backend works from any thread."""

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
        if not self._closed:
            self._closed = True
            checked("cuDevicePrimaryCtxRelease", self.context.detach)


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
        "cuGetErrorName": [c_int, ctypes.POINTER(ctypes.c_char_p)],
    }
    try:
        for fn, argtypes in signatures.items():
            f = getattr(lib, fn)
            f.argtypes, f.restype = argtypes, c_int
    except AttributeError:  # a driver older than CUDA 11.4
        return None
    return lib


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

    def end_capture(self, stream: int) -> int:
        graph = ctypes.c_void_p()
        self._check("cuStreamEndCapture", self.lib.cuStreamEndCapture(ctypes.c_void_p(stream), ctypes.byref(graph)))
        if not graph.value:
            raise CudaError("cuStreamEndCapture failed: the capture was invalidated")
        return int(graph.value)

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


def capture_graph(api: GraphAPI, stream: Stream, enqueue: Callable[[], None]) -> CudaGraph:
    """Capture what `enqueue` puts on `stream` into a graph; CudaError if capture fails. The
    capture is always ended, so the stream stays usable for plain execution."""
    api.begin_capture(stream.handle)
    try:
        enqueue()
    except BaseException:
        try:  # end the capture so the stream is usable; the enqueue's error is the one to report
            api.destroy(None, api.end_capture(stream.handle))
        except CudaError:
            pass
        raise
    graph = api.end_capture(stream.handle)
    try:
        exe = api.instantiate(graph)
    except CudaError:
        api.destroy(None, graph)
        raise
    return CudaGraph(api, graph, exe)
