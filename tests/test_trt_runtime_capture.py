"""CUDA-graph capture and CUDA-context handling of the TensorRT backend, against fakes that enforce
the rules of the real CUDA driver and runtime and of pycuda (each rule is cited in
tests/fake_pycuda.py), with the fake TensorRT's contexts initialising lazily on the first enqueue
after a shape change, as real ones may.

What NVIDIA's own tool does, and what these tests hold the backend to (trtexec: NVIDIA/TensorRT
samples/common/sampleInference.cpp and sampleDevice.h `TrtCudaGraph`): a plain enqueue and a
stream synchronisation before every capture; capture on a non-default stream, thread-local; on
failure the capture is still ended, a returned graph destroyed, the runtime's last error cleared,
and inference goes on without a graph.
"""

from __future__ import annotations

import ctypes
import threading
import warnings

import numpy as np
import pytest

from stylegan_edge.export.tensorrt_build import build_engines
from stylegan_edge.runtime.backends import cuda as cudalib
from stylegan_edge.runtime.backends import open_backend
from stylegan_edge.runtime.backends.base import NoiseRequest
from stylegan_edge.runtime.backends.tensorrt import TensorRTError
from stylegan_edge.runtime.bundle import Bundle

from .fake_pycuda import STREAM_CAPTURE_INVALIDATED, STREAM_CAPTURE_UNSUPPORTED
from .fake_tensorrt import RELEASES, install_fakes, reference_outputs, write_fake_bundle

RELEASE = RELEASES[-1]  # capture uses only the named-tensor API, the same in every release


@pytest.fixture
def env(monkeypatch):
    return install_fakes(monkeypatch, RELEASE)  # with the run-time simulation and the fake libcudart


@pytest.fixture
def built(env, tmp_path):
    bundle = Bundle(write_fake_bundle(tmp_path / "faces.sgbundle", fp16_onnx=True))
    build_engines(bundle.path, ("fp16",))
    return bundle


def open_synthesis(bundle, **options):
    return open_backend("tensorrt", bundle, "synthesis", "fp16", **options)


def generate(be, bundle, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One call with fresh random styles and the bundle's constant noise: (output, reference)."""
    rng = np.random.default_rng(seed)
    ws = {n: rng.standard_normal((batch, bundle.meta.w_dim)).astype(np.float32) for n in bundle.meta.w_inputs}
    out = be.run_with_noise(ws, NoiseRequest("const", batch, lambda: None, np.random.default_rng(seed)))["image"]
    const = bundle.noise_const()
    feeds = {**ws, **{n: np.broadcast_to(a, (batch, *a.shape[1:])) for n, a in const.items()}}
    r = bundle.meta.resolution
    return out, reference_outputs(feeds, {"image": (batch, 3, r, r)})["image"]


def run_sequence(be, bundle, batches: list[int]) -> None:
    for i, batch in enumerate(batches):
        out, ref = generate(be, bundle, batch, seed=100 + i)
        np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6, err_msg=f"call {i} (batch {batch})")


def check_captures_follow_a_warm_up(ops, stream: int) -> None:
    """Every capture began after a plain enqueue at the current shapes and a synchronisation of
    the stream after it, with no shape change in between."""
    for i, op in enumerate(ops):
        if op.name != "cuStreamBeginCapture":
            continue
        since = max(j for j in range(i) if ops[j].name == "set_input_shape")
        plain = [j for j in range(since, i) if ops[j].name == "execute_async_v3" and not ops[j].detail["captured"]]
        assert plain, f"capture at op {i} without a plain enqueue since the shape change at op {since}"
        assert any(o.name == "synchronize" and o.stream == stream for o in ops[plain[0] + 1:i]), \
            f"capture at op {i} without a synchronisation after the warm-up enqueue"


def graph_batches(ops) -> dict[int, int]:
    """exec handle -> the batch its capture saw; and checks each launch replays its own batch."""
    captured_batch, exec_batch, batch = None, {}, None
    for op in ops:
        if op.name == "set_input_shape":
            batch = op.detail["batch"]
        elif op.name == "execute_async_v3" and op.detail["captured"]:
            captured_batch = op.detail["batch"]
        elif op.name == "cuGraphLaunch":
            exec_batch.setdefault(op.detail["exec"], captured_batch)
            assert exec_batch[op.detail["exec"]] == batch, "a graph replayed at another batch size"
    return exec_batch


# --- the backend ----------------------------------------------------------------------------------------------------
def test_capture_happens_only_after_a_warm_up_and_sync_at_every_batch_size(env, built):
    _, cuda = env
    with open_synthesis(built, cuda_graph=True) as be:
        run_sequence(be, built, [1, 1, 1, 3, 3, 3, 1, 1, 3, 3])
        stream = be.stream.handle
        assert be.describe()["cuda_graph"] == "captured"
    check_captures_follow_a_warm_up(cuda.ops, stream)
    # One capture per run of equal batch sizes (its second call), replayed from then on.
    assert len(cuda.ops_named("cuStreamBeginCapture")) == 4
    assert len(cuda.ops_named("cuGraphLaunch")) == 2 + 2 + 1 + 1
    assert cuda.ops_named("capture_invalidated") == [] and cuda.runtime_errors == {}
    assert all(o.detail["mode"] == 1 for o in cuda.ops_named("cuStreamBeginCapture"))  # thread-local


def test_alternating_batch_sizes_replay_the_graph_of_their_own_batch(env, built):
    _, cuda = env
    with open_synthesis(built, cuda_graph=True) as be:
        run_sequence(be, built, [1, 3, 1, 3])  # every call follows a shape change: plain runs, no capture
        assert cuda.ops_named("cuStreamBeginCapture") == []
        run_sequence(be, built, [1, 1, 3, 3, 1, 1, 3, 3])
        stream = be.stream.handle
    check_captures_follow_a_warm_up(cuda.ops, stream)
    batches = graph_batches(cuda.ops)
    assert sorted(batches.values()) == [1, 1, 3, 3]  # four graphs, each replayed at its own batch size
    assert cuda.execs == {} and cuda.graphs == {}  # dropped on every change and at close


def test_a_capture_without_warm_up_fails_in_the_fake_and_is_cleaned_up(env, built):
    _, cuda = env
    with open_synthesis(built, cuda_graph=True) as be, be.cuda.active():
        be._activate(2)  # new shapes: the context's next enqueue initialises lazily
        with pytest.raises(cudalib.CaptureFailed, match="returned False under capture.*cleared CUDA runtime error 900"):
            cudalib.capture_graph(be._graph_api, be.stream,
                                  lambda: be._context.execute_async_v3(be.stream.handle))
        assert cuda.ops_named("capture_invalidated") and cuda.capturing == {} and cuda.graphs == {}
        assert cuda.runtime_errors == {}
        be._enqueue()  # the plain run after it works: initialisation outside capture
        be.stream.synchronize()


def test_failed_capture_falls_back_clears_the_error_and_later_calls_work(env, built):
    _, cuda = env
    cuda.fail_capture = True  # the engine holds a layer that capture does not permit
    with open_synthesis(built, cuda_graph=True) as be:
        run_sequence(be, built, [1, 1, 1, 3, 3, 3, 2, 2, 1])
        assert be.describe()["cuda_graph"].startswith("failed at batch 3")
    # One attempt per batch size, none after the second failure; every capture ended.
    assert [o.stream for o in cuda.ops_named("cuStreamBeginCapture")] == [o.stream for o in
                                                                          cuda.ops_named("cuStreamEndCapture")]
    assert len(cuda.ops_named("cuStreamBeginCapture")) == 2
    assert cuda.ops_named("cuGraphLaunch") == [] and cuda.graphs == {} and cuda.capturing == {}
    cleared = [o.detail["returned"] for o in cuda.ops_named("cudaGetLastError")]
    assert cleared.count(STREAM_CAPTURE_UNSUPPORTED) == 2 and cuda.runtime_errors == {}


def test_without_clearing_the_runtime_error_the_fallback_run_fails(env, built, monkeypatch):
    """Why the clean-up matters: the fake's enqueue, like TensorRT's, reports a pending error."""
    _, cuda = env
    monkeypatch.setattr(cudalib, "load_libcudart", lambda: None)  # as if no shared libcudart were loaded
    cuda.fail_capture = True
    with open_synthesis(built, cuda_graph=True) as be:
        run_sequence(be, built, [1])
        with pytest.raises(TensorRTError, match="execute_async_v3 failed"):
            run_sequence(be, built, [1])
        run_sequence(be, built, [1])  # the failing call consumed the error; the slot never captures again
    assert len(cuda.ops_named("cuStreamBeginCapture")) == 1


def test_an_exception_inside_the_capture_ends_it_and_propagates(env, built):
    _, cuda = env
    with open_synthesis(built, cuda_graph=True) as be, be.cuda.active():
        def broken() -> bool:
            raise KeyError("boom")

        with pytest.raises(KeyError, match="boom"):
            cudalib.capture_graph(be._graph_api, be.stream, broken)
        assert cuda.capturing == {} and cuda.graphs == {}
        assert be._graph_api.is_capturing(be.stream.handle) == 0


def test_close_from_another_thread_releases_memory_and_the_context(env, built):
    _, cuda = env
    be = open_synthesis(built, cuda_graph=True)
    run_sequence(be, built, [1, 1, 2])
    first = len(cuda.ops)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # pycuda warns when it cannot free out of thread
                be.close()
            assert cuda.context_stack == []
        except BaseException as e:  # noqa: BLE001 - reported in the main thread
            errors.append(e)

    worker = threading.Thread(target=close)
    worker.start()
    worker.join()
    assert errors == []
    assert cuda.live_allocations() == 0 and cuda.context_stack == [] and cuda.execs == {}
    released = [o for o in cuda.ops[first:] if o.name == "primary_context_release"]
    assert [o.detail["thread"] for o in released] == [worker.ident]
    assert cuda.ops_named("primary_context_leaked") == []


def test_runs_from_several_threads_leave_every_stack_empty(env, built):
    _, cuda = env
    with open_synthesis(built) as be:
        worker = threading.Thread(target=run_sequence, args=(be, built, [2, 2]))
        worker.start()
        worker.join()
        run_sequence(be, built, [2])
        assert all(stack == [] for stack in cuda.context_stacks.values())


# --- the fake against the real libraries' rules ----------------------------------------------------------------------
def test_fake_refuses_capture_on_the_default_stream(env):
    _, cuda = env
    assert cuda.libcuda.cuStreamBeginCapture_v2(ctypes.c_void_p(0), 1) == STREAM_CAPTURE_UNSUPPORTED
    with pytest.raises(cudalib.CudaError, match="CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"):
        cudalib.GraphAPI(cuda.libcuda).begin_capture(0)
    assert cuda.capturing == {}


@pytest.mark.parametrize("prohibited", ["synchronize", "mem_alloc", "legacy_stream_copy"])
def test_fake_invalidates_a_capture_on_prohibited_calls(env, prohibited):
    _, cuda = env
    drv, api = cuda.driver, cudalib.GraphAPI(cuda.libcuda)
    ctx = drv.Device(0).retain_primary_context()
    ctx.push()
    try:
        stream, buf = drv.Stream(), drv.mem_alloc(16)
        data = np.random.default_rng(0).standard_normal(4).astype(np.float32)
        api.begin_capture(stream.handle)
        drv.memcpy_htod_async(buf, data, stream)  # recorded into the graph, not run
        assert cuda.read_array(int(buf), (4,), np.float32).tolist() == [0.0] * 4
        with pytest.raises(drv.LogicError):
            {"synchronize": stream.synchronize, "mem_alloc": lambda: drv.mem_alloc(8),
             "legacy_stream_copy": lambda: drv.memcpy_htod_async(buf, data)}[prohibited]()
        assert api.is_capturing(stream.handle) == 2  # CU_STREAM_CAPTURE_STATUS_INVALIDATED
        assert api.end_capture_status(stream.handle) == (STREAM_CAPTURE_INVALIDATED, 0)
        assert api.is_capturing(stream.handle) == 0
        stream.synchronize()  # an ordinary stream again
    finally:
        drv.Context.pop()


def test_fake_capture_records_and_replays_async_work(env):
    _, cuda = env
    drv, api = cuda.driver, cudalib.GraphAPI(cuda.libcuda)
    ctx = drv.Device(0).retain_primary_context()
    ctx.push()
    try:
        stream, buf = drv.Stream(), drv.mem_alloc(16)
        host = np.random.default_rng(1).standard_normal(4).astype(np.float32)
        api.begin_capture(stream.handle)
        drv.memcpy_htod_async(buf, host, stream)
        status, graph = api.end_capture_status(stream.handle)
        assert status == 0 and graph
        exe = api.instantiate(graph)
        api.launch(exe, stream.handle)
        np.testing.assert_array_equal(cuda.read_array(int(buf), (4,), np.float32), host)
        api.destroy(exe, graph)
    finally:
        drv.Context.pop()


def test_fake_pycuda_context_rules(env):
    """pycuda (src/cpp/cuda.hpp): per-thread stacks; detach out of thread leaks; free out of thread warns."""
    _, cuda = env
    drv = cuda.driver
    ctx = drv.Device(0).retain_primary_context()
    ctx.push()
    buf = drv.mem_alloc(64)
    drv.Context.pop()
    seen: dict[str, object] = {}

    def other_thread() -> None:
        try:
            drv.Context.pop()
        except drv.LogicError as e:
            seen["pop"] = str(e)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            buf.free()
        seen["free"] = [str(w.message) for w in caught]
        ctx.detach()

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join()
    assert "cannot pop non-current context" in str(seen["pop"])
    assert seen["free"] == ["device_allocation in out-of-thread context could not be cleaned up"]
    assert cuda.live_allocations() == 1  # leaked, as pycuda leaks it
    assert cuda.ops_named("primary_context_leaked") and cuda.ops_named("primary_context_release") == []
    with pytest.raises(drv.LogicError, match="cannot detach from invalid context"):
        ctx.detach()


def test_fake_tensorrt_enqueue_after_a_shape_change_initialises_lazily(env, built):
    _, cuda = env
    with open_synthesis(built) as be:
        run_sequence(be, built, [2, 2, 3])
    inits = [o for o in cuda.ops_named("runtime_call") if o.detail["call"].startswith("lazy")]
    assert len(inits) == 2 and all(o.detail["status"] == 0 for o in inits)  # batch 2 once, batch 3 once
