"""A recording fake of `pycuda` (`pycuda.driver`) and of libcuda's graph entry points.

Device memory is host bytes at fake addresses, so data really flows: what the backend uploads
is what the fake TensorRT engine reads, and what the engine writes is what comes back. Every
operation is recorded with its stream; memory operations without a current context fail as they
do in CUDA. Only names that real pycuda has are defined (checked against pycuda's
src/wrapper/wrap_cudadrv.cpp: init, Device(.count/.name/.compute_capability/.total_memory/
.retain_primary_context), Context.pop/push/detach, mem_alloc, pagelocked_empty, memcpy_htod_async,
memcpy_dtoh_async, memcpy_dtod_async, memset_d32_async, Stream(.handle/.synchronize), Error
and its subclasses); anything else is an AttributeError.
"""

from __future__ import annotations

import ctypes
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Op:
    name: str
    stream: int | None  # None: the default stream
    detail: dict[str, Any] = field(default_factory=dict)


class FakeCuda:
    """The state behind the fake driver: memory, contexts, streams, graphs, and the op log."""

    def __init__(self, gpu_name: str = "Orin", compute_capability: tuple[int, int] = (8, 7), devices: int = 1) -> None:
        self.gpu_name, self.cc, self.devices = gpu_name, compute_capability, devices
        self.memory: dict[int, bytearray] = {}
        self.pinned: list[tuple[int, int]] = []  # (address, nbytes) of page-locked host arrays
        self.next_addr = 0x7F0000000000
        self.context_stack: list[Any] = []
        self.ops: list[Op] = []
        self.next_stream = 0x5000
        self.capturing: dict[int, list[Any]] = {}
        self.graphs: dict[int, list[Any]] = {}
        self.execs: dict[int, list[Any]] = {}
        self.fail_capture = False
        self.driver = _make_driver(self)
        self.package = types.ModuleType("pycuda")
        self.package.driver = self.driver
        self.libcuda = FakeLibCuda(self)

    # --- memory ---------------------------------------------------------------------------------
    def require_context(self, call: str) -> None:
        if not self.context_stack:
            raise self.driver.LogicError(f"{call} failed: invalid device context")

    def alloc(self, nbytes: int) -> int:
        addr = self.next_addr
        self.next_addr += (nbytes + 511) // 256 * 256 + 256
        self.memory[addr] = bytearray(nbytes)
        return addr

    def _find(self, addr: int, nbytes: int) -> tuple[bytearray, int]:
        for base, buf in self.memory.items():
            if base <= addr and addr + nbytes <= base + len(buf):
                return buf, addr - base
        raise self.driver.LogicError(f"invalid device address {addr:#x} (+{nbytes} bytes)")

    def read(self, addr: int, nbytes: int) -> bytes:
        buf, off = self._find(addr, nbytes)
        return bytes(buf[off:off + nbytes])

    def write(self, addr: int, data: bytes) -> None:
        buf, off = self._find(addr, len(data))
        buf[off:off + len(data)] = data

    def read_array(self, addr: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return np.frombuffer(self.read(addr, n), dtype=dtype).reshape(shape).copy()

    def is_pinned(self, arr: np.ndarray) -> bool:
        ptr = arr.__array_interface__["data"][0]
        return any(a <= ptr and ptr + arr.nbytes <= a + n for a, n in self.pinned)

    def live_allocations(self) -> int:
        return len(self.memory)

    # --- op log -------------------------------------------------------------------------------
    def record(self, name: str, stream: Any, **detail: Any) -> None:
        handle = None if stream is None else stream.handle
        self.ops.append(Op(name, handle, detail))

    def ops_named(self, name: str) -> list[Op]:
        return [o for o in self.ops if o.name == name]

    def enqueue(self, stream_handle: int, fn: Any) -> None:
        """Run `fn` now, or record it into the graph being captured on that stream."""
        if stream_handle in self.capturing:
            self.capturing[stream_handle].append(fn)
        else:
            fn()


class _Error(Exception):
    pass


def _make_driver(state: FakeCuda) -> types.ModuleType:
    drv = types.ModuleType("pycuda.driver")
    drv.Error = _Error
    for name in ("MemoryError", "LogicError", "LaunchError", "RuntimeError"):
        setattr(drv, name, type(name, (_Error,), {}))

    def init(flags: int = 0) -> None:
        state.ops.append(Op("init", None))

    class Context:
        def __init__(self, device: Device) -> None:
            self.device = device
            self.detached = False

        def push(self) -> None:
            state.context_stack.append(self)

        @staticmethod
        def pop() -> None:
            if not state.context_stack:
                raise drv.LogicError("cuCtxPopCurrent failed: no current context")
            state.context_stack.pop()

        def detach(self) -> None:
            self.detached = True
            state.ops.append(Op("primary_context_release", None))

    class Device:
        def __init__(self, ordinal: int) -> None:
            if ordinal >= state.devices:
                raise drv.LogicError("cuDeviceGet failed: invalid device ordinal")
            self.ordinal = ordinal

        @staticmethod
        def count() -> int:
            return state.devices

        def name(self) -> str:
            return state.gpu_name

        def compute_capability(self) -> tuple[int, int]:
            return state.cc

        def total_memory(self) -> int:
            return 8 << 30

        def retain_primary_context(self) -> Context:
            return Context(self)

    class DeviceAllocation:
        def __init__(self, addr: int) -> None:
            self.addr = addr

        def __int__(self) -> int:
            return self.addr

        __index__ = __int__

        def free(self) -> None:
            state.require_context("cuMemFree")
            state.memory.pop(self.addr, None)

    def mem_alloc(nbytes: int) -> DeviceAllocation:
        state.require_context("cuMemAlloc")
        state.ops.append(Op("mem_alloc", None, {"nbytes": nbytes}))
        return DeviceAllocation(state.alloc(nbytes))

    def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> np.ndarray:
        state.require_context("cuMemHostAlloc")
        arr = np.empty(shape, dtype=dtype, order=order)
        state.pinned.append((arr.__array_interface__["data"][0], arr.nbytes))
        state.ops.append(Op("pagelocked_empty", None, {"shape": tuple(arr.shape)}))
        return arr

    class Stream:
        def __init__(self, flags: int = 0) -> None:
            state.require_context("cuStreamCreate")
            self.handle = state.next_stream
            state.next_stream += 16

        def synchronize(self) -> None:
            state.record("synchronize", self)

    def _addr(x: Any) -> int:
        return int(x)

    def memcpy_htod_async(dest: Any, src: np.ndarray, stream: Stream | None = None) -> None:
        state.require_context("cuMemcpyHtoDAsync")
        if not src.flags.c_contiguous:
            raise drv.LogicError("memcpy_htod_async: source is not contiguous")
        state.record("memcpy_htod_async", stream, dest=_addr(dest), nbytes=src.nbytes, pinned=state.is_pinned(src))
        state.write(_addr(dest), src.tobytes())

    def memcpy_dtoh_async(dest: np.ndarray, src: Any, stream: Stream | None = None) -> None:
        state.require_context("cuMemcpyDtoHAsync")
        if not (dest.flags.c_contiguous and dest.flags.writeable):
            raise drv.LogicError("memcpy_dtoh_async: destination is not contiguous and writable")
        state.record("memcpy_dtoh_async", stream, src=_addr(src), nbytes=dest.nbytes, pinned=state.is_pinned(dest))
        dest.reshape(-1).view(np.uint8)[:] = np.frombuffer(state.read(_addr(src), dest.nbytes), np.uint8)

    def memcpy_dtod_async(dest: Any, src: Any, size: int, stream: Stream | None = None) -> None:
        state.require_context("cuMemcpyDtoDAsync")
        state.record("memcpy_dtod_async", stream, dest=_addr(dest), src=_addr(src), nbytes=size)
        state.write(_addr(dest), state.read(_addr(src), size))

    def memset_d32_async(dest: Any, data: int, size: int, stream: Stream | None = None) -> None:
        state.require_context("cuMemsetD32Async")
        state.record("memset_d32_async", stream, dest=_addr(dest), value=data, count=size)
        state.write(_addr(dest), np.full(size, data, dtype=np.uint32).tobytes())

    for obj in (init, Context, Device, mem_alloc, pagelocked_empty, Stream, memcpy_htod_async, memcpy_dtoh_async,
                memcpy_dtod_async, memset_d32_async):
        setattr(drv, obj.__name__, obj)
    return drv


class FakeLibCuda:
    """libcuda's stream-capture and graph functions, called through ctypes arguments."""

    INVALIDATED = 901  # CUDA_ERROR_STREAM_CAPTURE_INVALIDATED

    def __init__(self, state: FakeCuda) -> None:
        self.state = state
        self.next_handle = 0x9000

    def _handle(self) -> int:
        self.next_handle += 8
        return self.next_handle

    def cuStreamBeginCapture_v2(self, stream: ctypes.c_void_p, mode: int) -> int:  # noqa: N802 - libcuda\'s names
        self.state.ops.append(Op("cuStreamBeginCapture", stream.value, {"mode": mode}))
        self.state.capturing[stream.value] = []
        return 0

    def cuStreamEndCapture(self, stream: ctypes.c_void_p, graph_ref: Any) -> int:  # noqa: N802 - libcuda\'s names
        fns = self.state.capturing.pop(stream.value)
        self.state.ops.append(Op("cuStreamEndCapture", stream.value))
        if self.state.fail_capture:
            graph_ref._obj.value = None
            return self.INVALIDATED
        handle = self._handle()
        self.state.graphs[handle] = fns
        graph_ref._obj.value = handle
        return 0

    def cuGraphInstantiateWithFlags(self, exe_ref: Any, graph: ctypes.c_void_p, flags: int) -> int:  # noqa: N802 - libcuda\'s names
        handle = self._handle()
        self.state.execs[handle] = self.state.graphs[graph.value]
        exe_ref._obj.value = handle
        return 0

    def cuGraphLaunch(self, exe: ctypes.c_void_p, stream: ctypes.c_void_p) -> int:  # noqa: N802 - libcuda\'s names
        self.state.ops.append(Op("cuGraphLaunch", stream.value))
        for fn in self.state.execs[exe.value]:
            fn()
        return 0

    def cuGraphExecDestroy(self, exe: ctypes.c_void_p) -> int:  # noqa: N802 - libcuda\'s names
        self.state.execs.pop(exe.value)
        return 0

    def cuGraphDestroy(self, graph: ctypes.c_void_p) -> int:  # noqa: N802 - libcuda\'s names
        self.state.graphs.pop(graph.value)
        return 0

    def cuGetErrorName(self, status: int, name_ref: Any) -> int:  # noqa: N802 - libcuda\'s names
        name_ref._obj.value = b"CUDA_ERROR_STREAM_CAPTURE_INVALIDATED" if status == self.INVALIDATED else b"CUDA_ERROR"
        return 0
