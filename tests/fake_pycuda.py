"""A recording fake of `pycuda` (`pycuda.driver`), of libcuda's graph entry points and of the CUDA
runtime's last-error calls, strict where the TensorRT backend depends on the real behaviour.

Device memory is host bytes at fake addresses, so data really flows: what the backend uploads
is what the fake TensorRT engine reads, and what the engine writes is what comes back. Every
operation is recorded with its stream. Only names that real pycuda has are defined (checked
against pycuda's src/wrapper/wrap_cudadrv.cpp: init, Device(.count/.name/.compute_capability/
.total_memory/.retain_primary_context), Context.pop/push/detach, mem_alloc, pagelocked_empty,
memcpy_htod_async, memcpy_dtoh_async, memcpy_dtod_async, memset_d32_async,
Stream(.handle/.synchronize), Error and its subclasses); anything else is an AttributeError.

The rules it enforces, each with its source (CUDA: the CUDA Driver/Runtime API references and the
CUDA C++ Programming Guide, section "CUDA Graphs" > "Stream Capture"; pycuda: inducer/pycuda
src/cpp/cuda.hpp at its 2024-25 HEAD):
- [ctx-thread] The current context is per thread: memory and stream calls need a context made
  current in the calling thread (CUDA: cuCtxPushCurrent "pushes ... onto the CPU thread's stack").
- [pycuda-stack] pycuda's context stack is per thread (`context_stack_ptr`, a
  boost::thread_specific_ptr); Context.pop() with the calling thread's stack empty raises
  LogicError "cannot pop non-current context" (`context::pop`).
- [pycuda-detach] Context.detach() releases the primary context (cuDevicePrimaryCtxRelease) when
  it is current in the calling thread, or when called in the thread that created the Context
  object; from any other thread it releases nothing and the context is leaked, silently; a second
  detach() raises LogicError "cannot detach from invalid context" (`context::detach`).
- [pycuda-free] DeviceAllocation.free() activates the allocation's context
  (`scoped_context_activation`): fine when that context is current in this thread or this is its
  creating thread; otherwise a UserWarning "... in out-of-thread context could not be cleaned up"
  and the memory leaks; with the context released, it leaks silently (`device_allocation::free`,
  `CUDAPP_CATCH_CLEANUP_ON_DEAD_CONTEXT`).
- [capture-legacy] Capture cannot begin on the legacy default stream: CUDA_ERROR_STREAM_CAPTURE_
  UNSUPPORTED (cuStreamBeginCapture: "Capture may not be initiated if stream is CU_STREAM_LEGACY").
- [capture-record] Work issued to a capturing stream is recorded into the graph, not run
  (Programming Guide, "Stream Capture").
- [capture-sync] Synchronising or querying a capturing stream is invalid, fails with
  CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and invalidates the capture (Programming Guide,
  "Prohibited and Unhandled Operations", "Invalidation").
- [capture-implicit] Using the legacy stream (pycuda: stream=None) while a blocking stream of the
  context is capturing fails with CUDA_ERROR_STREAM_CAPTURE_IMPLICIT and invalidates the capture
  (Programming Guide, "Prohibited and Unhandled Operations").
- [capture-unsafe] Under a GLOBAL or THREAD_LOCAL capture, "potentially unsafe API calls" such as
  memory allocation fail in the capturing thread with CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
  (cuThreadExchangeStreamCaptureMode, CUstreamCaptureMode), which invalidates the capture.
- [capture-end] cuStreamEndCapture ends the capture; an invalidated one returns
  CUDA_ERROR_STREAM_CAPTURE_INVALIDATED and a NULL graph; a thread-local capture ended from another
  thread is CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD (cuStreamEndCapture).
- [runtime-last-error] A failing CUDA runtime call sets the last error of its runtime instance for
  the calling thread; cudaGetLastError returns it and resets it, cudaPeekAtLastError only returns
  it; driver API calls never touch it (cudaGetLastError). The fake models one runtime instance
  (libcudart) shared by TensorRT and the backend.

`simulate_tensorrt_runtime(trt, cuda)` adds what the fake TensorRT engine does not model itself:
the first enqueue after a shape change initialises lazily through the runtime (an allocation),
and an enqueue finds an earlier runtime error left pending (see that function).
"""

from __future__ import annotations

import ctypes
import threading
import types
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# CUresult / cudaError_t values (the same numbers in both APIs for these).
STREAM_CAPTURE_UNSUPPORTED = 900
STREAM_CAPTURE_INVALIDATED = 901
STREAM_CAPTURE_IMPLICIT = 906
STREAM_CAPTURE_WRONG_THREAD = 908
ERROR_NAMES = {STREAM_CAPTURE_UNSUPPORTED: b"CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
               STREAM_CAPTURE_INVALIDATED: b"CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
               STREAM_CAPTURE_IMPLICIT: b"CUDA_ERROR_STREAM_CAPTURE_IMPLICIT",
               STREAM_CAPTURE_WRONG_THREAD: b"CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD"}
MODE_GLOBAL, MODE_THREAD_LOCAL, MODE_RELAXED = 0, 1, 2  # CUstreamCaptureMode
STATUS_NONE, STATUS_ACTIVE, STATUS_INVALIDATED = 0, 1, 2  # CUstreamCaptureStatus


@dataclass
class Op:
    name: str
    stream: int | None  # None: the default stream
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Capture:
    thread: int
    mode: int
    nodes: list[Any] = field(default_factory=list)
    invalidated: bool = False


class FakeCuda:
    """The state behind the fake driver: memory, contexts, streams, graphs, and the op log."""

    def __init__(self, gpu_name: str = "Orin", compute_capability: tuple[int, int] = (8, 7), devices: int = 1) -> None:
        self.gpu_name, self.cc, self.devices = gpu_name, compute_capability, devices
        self.memory: dict[int, bytearray] = {}
        self.pinned: list[tuple[int, int]] = []  # (address, nbytes) of page-locked host arrays
        self.next_addr = 0x7F0000000000
        self.context_stacks: dict[int, list[Any]] = {}  # per thread [ctx-thread]
        self.ops: list[Op] = []
        self.next_stream = 0x5000
        self.capturing: dict[int, Capture] = {}
        self.graphs: dict[int, list[Any]] = {}
        self.execs: dict[int, list[Any]] = {}
        self.runtime_errors: dict[int, int] = {}  # thread -> the runtime's last error [runtime-last-error]
        # The engine holds a layer that is not permitted under capture: its enqueue makes a runtime
        # call that capture prohibits (as a TensorRT engine with such a layer would).
        self.fail_capture = False
        self.driver = _make_driver(self)
        self.package = types.ModuleType("pycuda")
        self.package.driver = self.driver
        self.libcuda = FakeLibCuda(self)
        self.libcudart = FakeLibCudart(self)

    # --- contexts -------------------------------------------------------------------------------
    @property
    def context_stack(self) -> list[Any]:
        """The calling thread's pycuda context stack."""
        return self.context_stacks.setdefault(threading.get_ident(), [])

    def current_context(self) -> Any | None:
        stack = self.context_stack
        return stack[-1] if stack else None

    def require_context(self, call: str) -> None:
        if not self.context_stack:
            raise self.driver.LogicError(f"{call} failed: invalid device context")

    # --- memory ---------------------------------------------------------------------------------
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

    # --- streams and capture ---------------------------------------------------------------------
    def invalidate(self, handle: int) -> None:
        self.capturing[handle].invalidated = True
        self.ops.append(Op("capture_invalidated", handle))

    def enqueue(self, stream_handle: int | None, fn: Any) -> None:
        """Run `fn` now, or record it into the graph being captured on that stream [capture-record].
        The fake TensorRT engine's execute_async_v3 comes here."""
        if stream_handle in self.capturing:
            if self.fail_capture:
                self.runtime_call("cudaMalloc (a layer not permitted under capture)")
            self.capturing[stream_handle].nodes.append(fn)
            return
        self.check_legacy_use(stream_handle, "kernel launch")
        fn()

    def check_legacy_use(self, stream_handle: int | None, call: str) -> None:
        """[capture-implicit]: the legacy stream while a (blocking) stream is capturing."""
        if stream_handle:
            return
        active = [h for h, c in self.capturing.items() if not c.invalidated]
        if active:
            for h in active:
                self.invalidate(h)
            raise self.driver.LogicError(f"{call} failed: CUDA_ERROR_STREAM_CAPTURE_IMPLICIT "
                                         f"(legacy stream used while stream {active[0]:#x} is capturing)")

    def unsafe_call_status(self) -> int:
        """[capture-unsafe]: what an allocation returns in this thread now; invalidates captures."""
        me = threading.get_ident()
        hit = [h for h, c in self.capturing.items()
               if c.mode == MODE_GLOBAL or (c.mode == MODE_THREAD_LOCAL and c.thread == me)]
        for h in hit:
            if not self.capturing[h].invalidated:
                self.invalidate(h)
        return STREAM_CAPTURE_UNSUPPORTED if hit else 0

    def runtime_call(self, name: str) -> int:
        """A CUDA runtime allocation made by TensorRT (its lazy initialisation, or a layer's
        workspace): fails under capture [capture-unsafe] and then sets this thread's last error
        [runtime-last-error]. Returns the cudaError_t."""
        status = self.unsafe_call_status()
        self.ops.append(Op("runtime_call", None, {"call": name, "status": status}))
        if status:
            self.runtime_errors[threading.get_ident()] = status
        return status

    def pending_runtime_error(self) -> int:
        return self.runtime_errors.get(threading.get_ident(), 0)


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
            self.valid = True
            self.thread = threading.get_ident()  # pycuda's `m_thread`: the creating thread

        @property
        def detached(self) -> bool:  # what earlier tests read
            return not self.valid

        def push(self) -> None:
            state.context_stack.append(self)  # [pycuda-stack]: allowed from any thread

        @staticmethod
        def pop() -> None:
            stack = state.context_stack
            while stack and not stack[-1].valid:  # pycuda's current_context() drops invalid entries
                stack.pop()
            if not stack:  # [pycuda-stack]
                raise drv.LogicError("context::pop failed: invalid device context - cannot pop non-current context")
            stack.pop()

        def detach(self) -> None:
            if not self.valid:  # [pycuda-detach]
                raise drv.LogicError("context::detach failed: invalid device context - "
                                     "cannot detach from invalid context")
            me = threading.get_ident()
            if state.current_context() is self:
                state.ops.append(Op("primary_context_release", None, {"thread": me}))
                self.valid = False
                stack = state.context_stack
                while stack and (stack[-1] is self or not stack[-1].valid):
                    stack.pop()
            elif self.thread == me:
                state.ops.append(Op("primary_context_release", None, {"thread": me}))
                self.valid = False
            else:  # released by nobody: pycuda only marks it invalid
                state.ops.append(Op("primary_context_leaked", None, {"thread": me}))
                self.valid = False

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
            self.context = state.current_context()  # pycuda's `context_dependent` ward
            self.freed = False

        def __int__(self) -> int:
            return self.addr

        __index__ = __int__

        def free(self) -> None:
            if self.freed:  # CUDA_ERROR_INVALID_HANDLE -> LogicError
                raise drv.LogicError("device_allocation::free failed: invalid resource handle")
            self.freed = True
            ctx, me = self.context, threading.get_ident()
            if not ctx.valid:  # [pycuda-free]: dead context, silently leaked
                state.ops.append(Op("mem_leaked", None, {"addr": self.addr}))
                return
            if state.current_context() is not ctx and ctx.thread != me:
                warnings.warn("device_allocation in out-of-thread context could not be cleaned up", UserWarning,
                              stacklevel=2)
                state.ops.append(Op("mem_leaked", None, {"addr": self.addr}))
                return
            state.memory.pop(self.addr, None)

    def mem_alloc(nbytes: int) -> DeviceAllocation:
        state.require_context("cuMemAlloc")
        if state.unsafe_call_status():
            raise drv.LogicError("cuMemAlloc failed: operation not permitted when stream is capturing")
        state.ops.append(Op("mem_alloc", None, {"nbytes": nbytes}))
        return DeviceAllocation(state.alloc(nbytes))

    def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> np.ndarray:
        state.require_context("cuMemHostAlloc")
        if state.unsafe_call_status():
            raise drv.LogicError("cuMemHostAlloc failed: operation not permitted when stream is capturing")
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
            state.require_context("cuStreamSynchronize")
            capture = state.capturing.get(self.handle)
            if capture is not None:  # [capture-sync]
                if not capture.invalidated:
                    state.invalidate(self.handle)
                raise drv.LogicError("cuStreamSynchronize failed: operation not permitted when stream is capturing")
            state.record("synchronize", self)

    def _addr(x: Any) -> int:
        return int(x)

    def _issue(call: str, stream: Stream | None, fn: Any, **detail: Any) -> None:
        """An async operation: recorded into a capture on its stream, or run now."""
        state.require_context(call)
        handle = None if stream is None else stream.handle
        if handle in state.capturing:  # [capture-record]
            state.capturing[handle].nodes.append(fn)
            state.ops.append(Op(f"captured:{call}", handle, detail))
            return
        state.check_legacy_use(handle, call)
        state.ops.append(Op(call, handle, detail))
        fn()

    def memcpy_htod_async(dest: Any, src: np.ndarray, stream: Stream | None = None) -> None:
        if not src.flags.c_contiguous:
            raise drv.LogicError("memcpy_htod_async: source is not contiguous")
        _issue("memcpy_htod_async", stream, lambda: state.write(_addr(dest), src.tobytes()),
               dest=_addr(dest), nbytes=src.nbytes, pinned=state.is_pinned(src))

    def memcpy_dtoh_async(dest: np.ndarray, src: Any, stream: Stream | None = None) -> None:
        if not (dest.flags.c_contiguous and dest.flags.writeable):
            raise drv.LogicError("memcpy_dtoh_async: destination is not contiguous and writable")

        def copy() -> None:
            dest.reshape(-1).view(np.uint8)[:] = np.frombuffer(state.read(_addr(src), dest.nbytes), np.uint8)

        _issue("memcpy_dtoh_async", stream, copy, src=_addr(src), nbytes=dest.nbytes, pinned=state.is_pinned(dest))

    def memcpy_dtod_async(dest: Any, src: Any, size: int, stream: Stream | None = None) -> None:
        _issue("memcpy_dtod_async", stream, lambda: state.write(_addr(dest), state.read(_addr(src), size)),
               dest=_addr(dest), src=_addr(src), nbytes=size)

    def memset_d32_async(dest: Any, data: int, size: int, stream: Stream | None = None) -> None:
        _issue("memset_d32_async", stream,
               lambda: state.write(_addr(dest), np.full(size, data, dtype=np.uint32).tobytes()),
               dest=_addr(dest), value=data, count=size)

    for obj in (init, Context, Device, mem_alloc, pagelocked_empty, Stream, memcpy_htod_async, memcpy_dtoh_async,
                memcpy_dtod_async, memset_d32_async):
        setattr(drv, obj.__name__, obj)
    return drv


class FakeLibCuda:
    """libcuda's stream-capture and graph functions, called through ctypes arguments."""

    INVALIDATED = STREAM_CAPTURE_INVALIDATED

    def __init__(self, state: FakeCuda) -> None:
        self.state = state
        self.next_handle = 0x9000

    def _handle(self) -> int:
        self.next_handle += 8
        return self.next_handle

    def cuStreamBeginCapture_v2(self, stream: ctypes.c_void_p, mode: int) -> int:  # noqa: N802 - libcuda's names
        handle = stream.value or 0
        self.state.ops.append(Op("cuStreamBeginCapture", handle, {"mode": int(mode)}))
        if not handle:  # [capture-legacy]
            return STREAM_CAPTURE_UNSUPPORTED
        self.state.capturing[handle] = Capture(threading.get_ident(), int(mode))
        return 0

    def cuStreamEndCapture(self, stream: ctypes.c_void_p, graph_ref: Any) -> int:  # noqa: N802 - libcuda's names
        handle = stream.value or 0
        capture = self.state.capturing.get(handle)
        self.state.ops.append(Op("cuStreamEndCapture", handle))
        if capture is None:
            return 1  # CUDA_ERROR_INVALID_VALUE: the stream is not capturing
        if capture.mode == MODE_THREAD_LOCAL and capture.thread != threading.get_ident():
            return STREAM_CAPTURE_WRONG_THREAD  # [capture-end]; the capture goes on
        del self.state.capturing[handle]
        if capture.invalidated:  # [capture-end]
            graph_ref._obj.value = None
            return STREAM_CAPTURE_INVALIDATED
        graph = self._handle()
        self.state.graphs[graph] = capture.nodes
        graph_ref._obj.value = graph
        return 0

    def cuStreamIsCapturing(self, stream: ctypes.c_void_p, status_ref: Any) -> int:  # noqa: N802 - libcuda's names
        capture = self.state.capturing.get(stream.value or 0)
        status_ref._obj.value = STATUS_NONE if capture is None else (
            STATUS_INVALIDATED if capture.invalidated else STATUS_ACTIVE)
        return 0

    def cuGraphInstantiateWithFlags(self, exe_ref: Any, graph: ctypes.c_void_p, flags: int) -> int:  # noqa: N802
        handle = self._handle()
        self.state.execs[handle] = self.state.graphs[graph.value]
        exe_ref._obj.value = handle
        return 0

    def cuGraphLaunch(self, exe: ctypes.c_void_p, stream: ctypes.c_void_p) -> int:  # noqa: N802 - libcuda's names
        handle = stream.value or 0
        self.state.ops.append(Op("cuGraphLaunch", handle, {"exec": exe.value}))
        for fn in self.state.execs[exe.value]:
            fn()
        return 0

    def cuGraphExecDestroy(self, exe: ctypes.c_void_p) -> int:  # noqa: N802 - libcuda's names
        self.state.execs.pop(exe.value)
        return 0

    def cuGraphDestroy(self, graph: ctypes.c_void_p) -> int:  # noqa: N802 - libcuda's names
        self.state.graphs.pop(graph.value)
        return 0

    def cuGetErrorName(self, status: int, name_ref: Any) -> int:  # noqa: N802 - libcuda's names
        name_ref._obj.value = ERROR_NAMES.get(status, b"CUDA_ERROR")
        return 0


class FakeLibCudart:
    """libcudart's last-error calls [runtime-last-error], for the calling thread."""

    def __init__(self, state: FakeCuda) -> None:
        self.state = state

    def cudaGetLastError(self) -> int:  # noqa: N802 - libcudart's names
        err = self.state.runtime_errors.pop(threading.get_ident(), 0)
        self.state.ops.append(Op("cudaGetLastError", None, {"returned": err}))
        return err

    def cudaPeekAtLastError(self) -> int:  # noqa: N802 - libcudart's names
        return self.state.pending_runtime_error()


def simulate_tensorrt_runtime(trt: Any, cuda: FakeCuda) -> None:
    """Make the fake TensorRT execution contexts of module `trt` do what real ones do at run time
    through the CUDA runtime (a hook the fake engine lacks; it belongs in fake_tensorrt's SimContext):
    - TensorRT's documentation: the first enqueue after a change of input shapes may initialise
      lazily, which is why trtexec runs one plain enqueue and synchronises before it captures
      (NVIDIA/TensorRT samples/common/sampleInference.cpp). Here that enqueue makes a runtime
      allocation [capture-unsafe]: under capture it fails, invalidates the capture, leaves the
      runtime error set, and execute_async_v3 returns False ("the enqueue call may return false if
      the current CUDA graph capture fails", same file).
    - An enqueue that finds a runtime error still pending on its thread reports failure (False)
      and so consumes it, as code that checks cudaGetLastError() after its launches does. How
      TensorRT checks internally is not public (?); this is why a failed capture's error must be
      cleared before the plain fallback runs.
    Every enqueue is logged in cuda.ops as "execute_async_v3" with the batch and whether it was
    captured; shape changes as "set_input_shape"."""
    cls = trt.IExecutionContext
    set_shape = type.__getattribute__(cls, "set_input_shape")
    execute = type.__getattribute__(cls, "execute_async_v3")

    def set_input_shape(self: Any, name: str, shape: Any) -> bool:
        ok = set_shape(self, name, shape)
        seen = self.__dict__.setdefault("_lazy_shapes", {})
        if ok and seen.get(name) != tuple(shape):
            seen[name] = tuple(shape)
            object.__setattr__(self, "_lazy_pending", True)
            cuda.ops.append(Op("set_input_shape", None, {"name": name, "batch": tuple(shape)[0]}))
        return ok

    def execute_async_v3(self: Any, stream_handle: int) -> bool:
        captured = stream_handle in cuda.capturing
        batch = next(iter(self.__dict__.get("_lazy_shapes", {}).values()), (None,))[0]
        cuda.ops.append(Op("execute_async_v3", stream_handle, {"batch": batch, "captured": captured}))
        if cuda.pending_runtime_error():
            cuda.libcudart.cudaGetLastError()
            return False
        if self.__dict__.get("_lazy_pending", True):
            if cuda.runtime_call("lazy initialisation after a shape change"):
                return False
            object.__setattr__(self, "_lazy_pending", False)
        return execute(self, stream_handle)

    type.__setattr__(cls, "set_input_shape", set_input_shape)
    type.__setattr__(cls, "execute_async_v3", execute_async_v3)
