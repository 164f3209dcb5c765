"""The engine builder and the TensorRT backend against the strict fake of each supported release.

Every test runs once per release (8.6.1, 10.3.0, 10.13.3.9, 11.4.0.106): the fake refuses any
name the release lacks, checks call signatures, and records calls, so these tests fail when the
code uses an API a supported release does not have, and they assert the build plan and the
runtime's call sequence. The last test needs a real GPU with TensorRT and pycuda and skips here.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from stylegan_edge.export import tensorrt_build
from stylegan_edge.export.tensorrt_build import BuildError, TensorRTMissing, build_engine, build_engines
from stylegan_edge.export.trt_plan import plan_build
from stylegan_edge.runtime.backends import open_backend
from stylegan_edge.runtime.backends.base import BackendUnavailable, NoiseRequest
from stylegan_edge.runtime.bundle import Bundle
from stylegan_edge.runtime.engine_meta import EngineMismatch, GpuInfo, read_sidecar
from stylegan_edge.runtime.files import file_record

from .fake_tensorrt import RELEASES, install_fakes, load_api, make_fake_tensorrt, reference_outputs, write_fake_bundle

ROOT = Path(__file__).resolve().parents[1]
ORIN = GpuInfo("Orin", "8.7")
NORM = "NATIVE_INSTANCENORM"
OBEY = "OBEY_PRECISION_CONSTRAINTS"
# What each release's build records for the FP16 synthesis engine of a bundle with the FP16 ONNX.
FP16_BUILD = {
    "8.6.1": dict(network=["EXPLICIT_BATCH"], set=["FP16", OBEY], cleared=[], parser=[NORM], onnx="synthesis.onnx"),
    **{v: dict(network=["STRONGLY_TYPED"], set=[], cleared=[], parser=[NORM], onnx="synthesis.fp16.onnx")
       for v in RELEASES[1:]},
}
NAMED_TENSOR_API = {
    "Runtime()", "Runtime.deserialize_cuda_engine", "ICudaEngine.num_io_tensors", "ICudaEngine.get_tensor_name",
    "ICudaEngine.get_tensor_mode", "ICudaEngine.get_tensor_dtype", "ICudaEngine.get_tensor_shape",
    "ICudaEngine.get_tensor_profile_shape", "ICudaEngine.create_execution_context",
    "IExecutionContext.set_input_shape", "IExecutionContext.get_tensor_shape", "IExecutionContext.set_tensor_address",
    "IExecutionContext.execute_async_v3", "Dims()", "nptype",
}


@pytest.fixture(params=RELEASES)
def release(request):
    return request.param


@pytest.fixture
def env(release, monkeypatch):
    trt, cuda = install_fakes(monkeypatch, release)
    return trt, trt.__fake__, cuda


@pytest.fixture
def bundle(tmp_path):
    # What calibration writes: both INT8 files (Q/DQ on FP32 and on the mixed FP16 graph).
    return Bundle(write_fake_bundle(tmp_path / "faces.sgbundle", fp16_onnx=True, int8_onnx=True, int8_fp16_onnx=True,
                                    fp32_nodes=["/b4/layer0/affine/Gemm", "/b8/layer2/norm/InstanceNormalization"]))


def flag_names(enum, bits: int) -> list[str]:
    return sorted(n for n, m in enum.__members__.items() if bits & (1 << int(m)))


def build_one(trt, bundle, precision="fp16", model="synthesis", log=None, **kw):
    plan = plan_build(trt, bundle, precision, model=model, **kw)
    trt.__fake__.calls.clear()
    build_engine(trt, plan, gpu=ORIN, log=log)
    return plan


# --- building -------------------------------------------------------------------------------------------------
def test_build_records_network_builder_and_parser_flags(env, bundle, release):
    trt, fake, _ = env
    build_one(trt, bundle)
    want = FP16_BUILD[release]
    (create,) = fake.called("Builder.create_network")
    assert flag_names(trt.NetworkDefinitionCreationFlag, create.args[0]) == sorted(want["network"])
    assert [c.args[0].name for c in fake.called("IBuilderConfig.set_flag")] == want["set"]
    assert [c.args[0].name for c in fake.called("IBuilderConfig.clear_flag")] == want["cleared"]
    assert [c.args[0].name for c in fake.called("OnnxParser.set_flag")] == want["parser"]
    (parse,) = fake.called("OnnxParser.parse_from_file")
    assert Path(parse.args[0]).name == want["onnx"]
    assert fake.build_errors == []


def test_fp32_build_clears_tf32(env, bundle):
    trt, fake, _ = env
    build_one(trt, bundle, "fp32", model="mapping")
    assert [c.args[0].name for c in fake.called("IBuilderConfig.clear_flag")] == ["TF32"]
    assert fake.called("IBuilderConfig.set_flag") == []


def test_build_sets_a_batch_profile_for_every_input(env, bundle):
    trt, fake, _ = env
    build_one(trt, bundle, batch=(1, 2, 8))
    shapes = {c.args[0]: tuple(tuple(d) for d in c.args[1:]) for c in fake.called("IOptimizationProfile.set_shape")}
    assert sorted(shapes) == sorted(bundle.meta.synthesis_inputs)
    assert shapes["w_03"] == ((1, 8), (2, 8), (8, 8))
    assert shapes["noise_00"] == ((1, 1, 4, 4), (2, 1, 4, 4), (8, 1, 4, 4))
    assert len(fake.called("IBuilderConfig.add_optimization_profile")) == 1


def test_workspace_limit_goes_through_the_memory_pool_api(env, bundle):
    trt, fake, _ = env
    build_one(trt, bundle, workspace_gb=0.5)
    (call,) = fake.called("IBuilderConfig.set_memory_pool_limit")
    assert call.args[0].name == "WORKSPACE" and call.args[1] == 1 << 29
    build_one(trt, bundle)
    assert fake.called("IBuilderConfig.set_memory_pool_limit") == []


def test_timing_cache_is_saved_then_loaded(env, bundle):
    trt, fake, _ = env
    logs: list[str] = []
    build_one(trt, bundle, log=logs.append)
    cache_file = bundle.path / "timing.cache"
    assert cache_file.is_file()
    assert bytes(fake.called("IBuilderConfig.create_timing_cache")[0].args[0]) == b""
    assert fake.called("ITimingCache.serialize")
    build_one(trt, bundle, log=logs.append)
    assert json.loads(bytes(fake.called("IBuilderConfig.create_timing_cache")[0].args[0]))["entries"] > 0
    assert any("loaded" in m for m in logs)
    (first_set, *_) = fake.called("IBuilderConfig.set_timing_cache")
    assert first_set.kwargs == {"ignore_mismatch": False}


def test_timing_cache_from_another_gpu_is_replaced(env, bundle):
    trt, fake, _ = env
    (bundle.path / "timing.cache").write_text(json.dumps({"fake_timing_cache": "other", "gpu": "x", "entries": 3}))
    logs: list[str] = []
    build_one(trt, bundle, log=logs.append)
    assert any("another GPU" in m for m in logs)
    assert [bytes(c.args[0]) for c in fake.called("IBuilderConfig.create_timing_cache")][-1] == b""


def test_timing_cache_path_can_be_given(env, bundle, tmp_path):
    trt, _, _ = env
    build_one(trt, bundle, timing_cache=tmp_path / "shared.cache")
    assert (tmp_path / "shared.cache").is_file() and not (bundle.path / "timing.cache").exists()


def test_engine_file_is_the_serialized_plan_with_nothing_prepended(env, bundle, release):
    trt, _, _ = env
    plan = build_one(trt, bundle)
    data = plan.engine.read_bytes()
    assert json.loads(data)["fake_engine"] == release  # parses from byte 0: no header
    assert not (bundle.path / "synthesis.fp16.engine.tmp").exists()


def test_sidecar_describes_the_build(env, bundle, release):
    trt, _, _ = env
    plan = build_one(trt, bundle, workspace_gb=1, batch=(1, 2, 4))
    meta = read_sidecar(plan.engine)
    want = FP16_BUILD[release]
    assert (meta.tensorrt_version, meta.gpu, meta.precision, meta.model) == (release, ORIN, "fp16", "synthesis")
    assert meta.build_mode == ("weak_typed" if release == "8.6.1" else "strongly_typed")
    assert list(meta.network_flags) == want["network"] and list(meta.builder_flags) == want["set"]
    assert list(meta.parser_flags) == want["parser"]
    assert meta.onnx_file == want["onnx"]
    assert meta.onnx_sha256 == hashlib.sha256((bundle.path / want["onnx"]).read_bytes()).hexdigest()
    assert meta.engine_sha256 == hashlib.sha256(plan.engine.read_bytes()).hexdigest()
    assert meta.batch == (1, 2, 4) and meta.profile["w_00"] == [[1, 8], [2, 8], [4, 8]]
    assert meta.workspace_bytes == 1 << 30 and meta.build_seconds >= 0 and meta.built_at


def test_weak_typed_build_pins_the_plan_layers_to_fp32(monkeypatch, bundle):
    trt, _ = install_fakes(monkeypatch, "8.6.1")
    fake = trt.__fake__
    build_one(trt, bundle)
    pinned = json.loads((bundle.path / "synthesis.fp16.engine").read_bytes())["pinned"]
    # Real parsers name only the registered layer: Gemm's bias add and the norm's scale/bias
    # reshapes are "(Unnamed Layer* N) [...]" (onnx-tensorrt release/8.6-GA Gemm importer,
    # normalizationHelper), and still belong to their nodes.
    assert pinned[0] == "/b4/layer0/affine/Gemm" and pinned[-1] == "/b8/layer2/norm/InstanceNormalization"
    assert [re.sub(r"\d+", "N", n) for n in pinned[1:-1]] == [
        "(Unnamed Layer* N) [ElementWise]", "(Unnamed Layer* N) [Shuffle]", "(Unnamed Layer* N) [Shuffle]"]
    assert all(c.args[0].name == "FLOAT" for c in fake.called("ILayer.precision="))
    assert [(c.args[0], c.args[1].name) for c in fake.called("ILayer.set_output_type")] == [(0, "FLOAT")] * 5


def test_int8_pins_on_tensorrt86_never_cover_quantised_layers(monkeypatch, tmp_path):
    trt, _ = install_fakes(monkeypatch, "8.6.1")
    bundle = Bundle(write_fake_bundle(tmp_path / "q.sgbundle", int8_onnx=True,
                                      fp32_nodes=["/b4/layer0/conv/Conv", "/b4/layer0/affine/Gemm"]))
    build_one(trt, bundle, "int8")
    pinned = json.loads((bundle.path / "synthesis.int8.engine").read_bytes())["pinned"]
    assert "/b4/layer0/conv/Conv" not in pinned  # fed by DequantizeLinear: it runs INT8
    assert "/b4/layer0/affine/Gemm" in pinned


def test_build_engines_builds_on_the_device_it_records(monkeypatch, bundle):
    import stylegan_edge.runtime.backends.cuda as cudalib

    from .fake_pycuda import FakeCuda

    cuda = FakeCuda("Orin", (8, 7), devices=2)
    trt = make_fake_tensorrt("10.3.0", cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "pycuda", cuda.package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda.driver)
    monkeypatch.setattr(cudalib, "load_libcuda", lambda: cuda.libcuda)
    build_engines(bundle.path, ("fp16",), device=1)
    assert trt.__fake__.build_devices == [1, 1]
    assert json.loads((bundle.path / "synthesis.fp16.engine").read_bytes())["device"] == 1
    assert len(cuda.ops_named("primary_context_release")) == 1  # the device's context is released after


def test_fake_builder_without_a_current_context_builds_on_device_zero(env, bundle):
    trt, fake, _ = env
    build_one(trt, bundle)
    assert fake.build_devices == [0]


def test_weak_typed_build_without_plan_pins_normalization_layers(monkeypatch, tmp_path):
    trt, _ = install_fakes(monkeypatch, "8.6.1")
    bundle = Bundle(write_fake_bundle(tmp_path / "b.sgbundle"))
    build_one(trt, bundle)
    pinned = json.loads((bundle.path / "synthesis.fp16.engine").read_bytes())["pinned"]
    assert pinned == [f"/b{r}/layer{i}/norm/InstanceNormalization" for i, r in enumerate((4, 4, 8, 8))]


@pytest.mark.parametrize("version", RELEASES[1:])
def test_strongly_typed_build_sets_no_precision_flags_or_layer_precision(monkeypatch, bundle, version):
    trt, _ = install_fakes(monkeypatch, version)
    fake = trt.__fake__
    for precision in ("fp16", "int8"):
        build_one(trt, bundle, precision)
        assert fake.called("IBuilderConfig.set_flag") == [] and fake.called("ILayer.precision=") == []
    assert fake.build_errors == []


def test_int8_on_tensorrt86_builds_the_qdq_onnx_without_a_calibrator(monkeypatch, bundle):
    trt, _ = install_fakes(monkeypatch, "8.6.1")
    fake = trt.__fake__
    build_one(trt, bundle, "int8")
    assert Path(fake.called("OnnxParser.parse_from_file")[0].args[0]).name == "synthesis.int8.onnx"
    assert [c.args[0].name for c in fake.called("IBuilderConfig.set_flag")] == ["INT8", "FP16", OBEY]
    assert not [c for c in fake.calls if "calibrator" in c.name.lower()]
    assert fake.build_errors == []


def test_build_engines_builds_mapping_and_synthesis_and_skips_current_ones(env, bundle):
    trt, fake, _ = env
    logs: list[str] = []
    out = build_engines(bundle.path, ("fp16",), log=logs.append)
    assert [p.name for p in out] == ["mapping.fp32.engine", "synthesis.fp16.engine"]
    assert len(fake.called("Builder.build_serialized_network")) == 2
    fake.calls.clear()
    build_engines(bundle.path, ("fp16",), log=logs.append)
    assert fake.called("Builder.build_serialized_network") == []
    assert sum("up to date" in m for m in logs) == 2
    build_engines(bundle.path, ("fp16",), force=True)
    assert len(fake.called("Builder.build_serialized_network")) == 2


def test_build_engines_rebuilds_when_the_onnx_changes(env, bundle):
    trt, fake, _ = env
    import onnx

    build_engines(bundle.path, ("fp16",))
    model = onnx.load(str(bundle.path / "mapping.onnx"))
    model.doc_string = "re-exported"
    onnx.save(model, str(bundle.path / "mapping.onnx"))
    # A re-export rewrites meta.json's record of the file too (bundle format 2 checks it).
    meta = json.loads((bundle.path / "meta.json").read_text())
    meta["files"]["mapping.onnx"] = file_record(bundle.path / "mapping.onnx")
    (bundle.path / "meta.json").write_text(json.dumps(meta))
    fake.calls.clear()
    build_engines(bundle.path, ("fp16",))
    assert len(fake.called("Builder.build_serialized_network")) == 1  # mapping only


def test_build_logs_each_step_and_prints_nothing(env, bundle, capsys):
    logs: list[str] = []
    build_engines(bundle.path, ("fp16",), log=logs.append)
    assert any(m.startswith("parse synthesis") and " s, " in m for m in logs)
    assert any(m.startswith("build synthesis.fp16.engine") and "MB" in m for m in logs)
    assert capsys.readouterr() == ("", "")


def test_unparsable_onnx_is_a_one_line_build_error(env, bundle):
    trt, _, _ = env
    strong = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    onnx = "synthesis.fp16.onnx" if strong else "synthesis.onnx"
    (bundle.path / onnx).write_bytes(b"not an onnx file")
    with pytest.raises(BuildError) as e:
        build_one(trt, bundle)
    assert onnx in str(e.value) and "cannot parse" in str(e.value) and "\n" not in str(e.value)


def test_missing_tensorrt_says_where_to_build_in_one_line(monkeypatch, bundle):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(TensorRTMissing) as e:
        build_engines(bundle.path, ("fp16",))
    msg = str(e.value)
    assert "\n" not in msg and "TensorRT is not installed" in msg and "target GPU" in msg
    assert f"`stylegan-export {bundle.path} --fp16`" in msg


# --- running -----------------------------------------------------------------------------------------------------
@pytest.fixture
def built(env, bundle):
    build_engines(bundle.path, ("fp16",))
    return bundle


def open_synthesis(bundle, **options):
    return open_backend("tensorrt", bundle, "synthesis", "fp16", **options)


def ws_feeds(bundle, batch, seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal((batch, bundle.meta.w_dim)).astype(np.float32) for n in bundle.meta.w_inputs}


def noise_feeds(bundle, batch, seed=1):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal((batch, 1, r, r)).astype(np.float32)
            for n, r in zip(bundle.meta.noise_inputs, bundle.meta.layer_resolutions, strict=True)}


def expected(bundle, feeds, batch):
    r = bundle.meta.resolution
    return reference_outputs(feeds, {"image": (batch, 3, r, r)})["image"]


def request(mode, batch, bundle=None, seed=0, arrays=None):
    return NoiseRequest(mode, batch, lambda: arrays, np.random.default_rng(seed))


def test_backend_uses_only_the_named_tensor_api(env, built):
    trt, fake, _ = env
    fake.calls.clear()
    with open_synthesis(built) as be:
        be.run({**ws_feeds(built, 2), **noise_feeds(built, 2)})
    names = set(fake.call_names())
    assert names <= NAMED_TENSOR_API, names - NAMED_TENSOR_API
    assert {"IExecutionContext.execute_async_v3", "IExecutionContext.set_tensor_address",
            "IExecutionContext.set_input_shape", "ICudaEngine.num_io_tensors"} <= names


def test_backend_describes_itself(env, built, release):
    with open_synthesis(built) as be:
        d = be.describe()
    assert d["backend"] == "tensorrt" and d["precision"] == "fp16" and d["tensorrt"] == release
    assert d["gpu"] == "Orin (sm_87)" and d["batch"] == "1-8" and d["device"] == "cuda:0"


def test_backend_outputs_match_the_engine_reference(env, built):
    feeds = {**ws_feeds(built, 3), **noise_feeds(built, 3)}
    with open_synthesis(built) as be:
        out = be.run(feeds)["image"]
    np.testing.assert_allclose(out, expected(built, feeds, 3), rtol=1e-6, atol=1e-6)
    with open_backend("tensorrt", built, "mapping", "fp32") as mapping:
        z = np.random.default_rng(5).standard_normal((2, built.meta.z_dim)).astype(np.float32)
        w = mapping.run({"z": z})["w"]
    np.testing.assert_allclose(w, reference_outputs({"z": z}, {"w": (2, built.meta.w_dim)})["w"], rtol=1e-6)


def test_backend_works_on_a_non_default_stream_with_pinned_copies(env, built):
    _, fake, cuda = env
    with open_synthesis(built) as be:
        be.run({**ws_feeds(built, 2), **noise_feeds(built, 2)})
        be.run_with_noise(ws_feeds(built, 1), request("const", 1))  # uploads the constant noise, once
        first = len(cuda.ops)
        be.run({**ws_feeds(built, 2), **noise_feeds(built, 2)})
        be.run_with_noise(ws_feeds(built, 1), request("const", 1))
    copies = [o for o in cuda.ops if o.name.startswith("mem") and o.name != "mem_alloc"]
    assert copies and all(o.stream is not None for o in copies)
    assert fake.default_stream_executions == 0
    per_call = [o for o in cuda.ops[first:] if o.name in ("memcpy_htod_async", "memcpy_dtoh_async")]
    assert per_call and all(o.detail["pinned"] for o in per_call)


def test_buffers_are_allocated_once_per_batch_size(env, built):
    _, _, cuda = env
    with open_synthesis(built) as be:
        be.run({**ws_feeds(built, 2), **noise_feeds(built, 2)})
        allocs = len(cuda.ops_named("mem_alloc"))
        for seed in range(3):
            be.run({**ws_feeds(built, 2, seed), **noise_feeds(built, 2, seed)})
        assert len(cuda.ops_named("mem_alloc")) == allocs
        be.run({**ws_feeds(built, 1), **noise_feeds(built, 1)})
        assert len(cuda.ops_named("mem_alloc")) > allocs
        grown = len(cuda.ops_named("mem_alloc"))
        be.run({**ws_feeds(built, 2), **noise_feeds(built, 2)})
        assert len(cuda.ops_named("mem_alloc")) == grown


def test_const_noise_is_uploaded_once_and_matches_the_bundle(env, built):
    _, _, cuda = env
    const = built.noise_const()
    with open_synthesis(built) as be:
        for seed in range(3):
            ws = ws_feeds(built, 2, seed)
            out = be.run_with_noise(ws, request("const", 2))["image"]
            ref = {**ws, **{n: np.broadcast_to(a, (2, *a.shape[1:])) for n, a in const.items()}}
            np.testing.assert_allclose(out, expected(built, ref, 2), rtol=1e-6, atol=1e-6)
    # Per call only the styles go up; the constant noise went up once, one buffer per noise input.
    uploads = len(cuda.ops_named("memcpy_htod_async"))
    assert uploads == 3 * len(built.meta.w_inputs) + len(built.meta.noise_inputs)


def test_none_noise_is_zeros_on_the_device(env, built):
    _, _, cuda = env
    ws = ws_feeds(built, 3)
    with open_synthesis(built) as be:
        out = be.run_with_noise(ws, request("none", 3))["image"]
        be.run_with_noise(ws, request("none", 3))
    zeros = {n: np.zeros((3, 1, r, r), np.float32)
             for n, r in zip(built.meta.noise_inputs, built.meta.layer_resolutions, strict=True)}
    np.testing.assert_allclose(out, expected(built, {**ws, **zeros}, 3), atol=1e-6)
    assert len(cuda.ops_named("memset_d32_async")) == built.meta.num_layers  # the second call reuses them


def test_random_noise_comes_from_the_device_pool(env, built):
    _, _, cuda = env
    ws = ws_feeds(built, 2)
    with open_synthesis(built, noise_seed=3) as be:
        a = be.run_with_noise(ws, request("random", 2, seed=10))["image"]
        uploads = len(cuda.ops_named("memcpy_htod_async"))
        b = be.run_with_noise(ws, request("random", 2, seed=11))["image"]
        c = be.run_with_noise(ws, request("random", 2, seed=10))["image"]
        assert len(cuda.ops_named("memcpy_htod_async")) - uploads == 2 * len(built.meta.w_inputs)  # only the styles
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, c)
    assert len(cuda.ops_named("memcpy_dtod_async")) >= 3 * built.meta.num_layers


def test_explicit_noise_uploads_the_given_arrays(env, built):
    ws, noise = ws_feeds(built, 2), noise_feeds(built, 2, seed=9)
    with open_synthesis(built) as be:
        out = be.run_with_noise(ws, request("explicit", 2, arrays=noise))["image"]
    np.testing.assert_allclose(out, expected(built, {**ws, **noise}, 2), rtol=1e-6, atol=1e-6)


def test_batches_above_the_profile_run_in_chunks(env, built):
    _, fake, _ = env
    feeds = {**ws_feeds(built, 11), **noise_feeds(built, 11)}
    with open_synthesis(built) as be:
        before = fake.executions
        out = be.run(feeds)["image"]
        assert fake.executions - before == 2  # 8 + 3
    np.testing.assert_allclose(out, expected(built, feeds, 11), rtol=1e-6, atol=1e-6)


def test_wrong_input_shape_is_a_one_line_error(env, built):
    feeds = {**ws_feeds(built, 2), **noise_feeds(built, 2)}
    feeds["w_01"] = feeds["w_01"][:, :5]
    with open_synthesis(built) as be, pytest.raises(ValueError, match=r"w_01 must be \[2, 8\]"):
        be.run(feeds)


def test_cuda_graph_replays_batch1_calls_after_a_warm_up(env, built):
    _, fake, cuda = env
    ws = ws_feeds(built, 1)
    with open_synthesis(built, cuda_graph=True) as be:
        plain = be.run_with_noise(ws, request("const", 1))["image"]
        assert cuda.ops_named("cuStreamBeginCapture") == []  # the warm-up run is not captured
        outs = [be.run_with_noise(ws, request("const", 1))["image"] for _ in range(3)]
        assert be.describe()["cuda_graph"] == "captured"
    assert len(cuda.ops_named("cuStreamBeginCapture")) == 1 and len(cuda.ops_named("cuGraphLaunch")) == 3
    for out in outs:
        np.testing.assert_array_equal(out, plain)
    assert cuda.ops_named("cuStreamBeginCapture")[0].detail["mode"] == 1  # thread-local capture


def test_cuda_graph_capture_failure_falls_back_to_plain_execution(env, built):
    _, fake, cuda = env
    cuda.fail_capture = True
    ws = ws_feeds(built, 1)
    with open_synthesis(built, cuda_graph=True) as be:
        first = be.run_with_noise(ws, request("const", 1))["image"]
        second = be.run_with_noise(ws, request("const", 1))["image"]
        third = be.run_with_noise(ws, request("const", 1))["image"]
        assert be.describe()["cuda_graph"].startswith("failed")
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, third)
    assert len(cuda.ops_named("cuStreamBeginCapture")) == 1 and cuda.ops_named("cuGraphLaunch") == []


def test_engine_for_another_gpu_is_refused_before_deserialising(env, built, monkeypatch):
    trt, fake, cuda = env
    cuda.gpu_name, cuda.cc = "NVIDIA GeForce RTX 4090", (8, 9)
    fake.calls.clear()
    with pytest.raises(EngineMismatch) as e:
        open_synthesis(built)
    msg = str(e.value)
    assert "\n" not in msg and "Orin (sm_87)" in msg and "sm_89" in msg and "--fp16`" in msg
    assert fake.called("Runtime.deserialize_cuda_engine") == []
    assert cuda.context_stack == []


def test_engine_from_a_changed_onnx_is_refused(env, built):
    trt, _, _ = env
    onnx = read_sidecar(built.path / "synthesis.fp16.engine").onnx_file
    (built.path / onnx).write_bytes((built.path / onnx).read_bytes() + b"\0")
    with pytest.raises(EngineMismatch, match="has changed since the build"):
        open_synthesis(built)
    open_synthesis(built, verify_onnx=False).close()


def test_engine_without_sidecar_still_loads(env, built):
    (built.path / "synthesis.fp16.engine.json").unlink()
    with open_synthesis(built) as be:
        assert be.describe()["build"].startswith("unverified")


def test_missing_engine_names_the_command_that_builds_it(env, bundle):
    with pytest.raises(BackendUnavailable) as e:
        open_synthesis(bundle)
    assert "synthesis.fp16.engine" in str(e.value) and f"`stylegan-export {bundle.path} --fp16`" in str(e.value)


@pytest.mark.parametrize("module", ["tensorrt", "pycuda.driver"])
def test_missing_library_is_backend_unavailable(env, built, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(BackendUnavailable, match="pip install") as e:
        open_synthesis(built)
    assert "\n" not in str(e.value)


def test_cpu_device_is_not_a_tensorrt_device(env, built):
    with pytest.raises(BackendUnavailable, match="CUDA device"):
        open_synthesis(built, device="cpu")


def test_unknown_option_is_refused_but_onnxruntime_options_are_ignored(env, built):
    with pytest.raises(TypeError, match="colour"):
        open_synthesis(built, colour="blue")
    open_synthesis(built, providers=["CPUExecutionProvider"]).close()


def test_close_frees_device_memory_and_contexts(env, built):
    _, _, cuda = env
    be = open_synthesis(built, cuda_graph=True)
    for _ in range(3):
        be.run_with_noise(ws_feeds(built, 1), request("random", 1))
    be.run_with_noise(ws_feeds(built, 2), request("const", 2))
    be.close()
    be.close()
    assert cuda.live_allocations() == 0 and cuda.context_stack == [] and cuda.execs == {}
    with pytest.raises(BackendUnavailable, match="closed"):
        be.run({**ws_feeds(built, 1), **noise_feeds(built, 1)})


def test_generator_runs_end_to_end_on_the_fake(env, built):
    from stylegan_edge.runtime import Generator

    with Generator(built.path, backend="tensorrt", precision="fp16") as g:
        imgs = g.generate(seeds=range(10), noise="random", noise_seed=1)
    assert imgs.shape == (10, 8, 8, 3) and imgs.dtype == np.uint8


# --- the fake itself, and what our sources use ---------------------------------------------------------------------
@pytest.mark.parametrize("version, expr", [
    ("11.4.0.106", "trt.BuilderFlag.FP16"),
    ("11.4.0.106", "trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH"),
    ("11.4.0.106", "trt.IInt8EntropyCalibrator2"),
    ("10.3.0", "trt.Builder.build_engine"),
    ("10.3.0", "trt.IExecutionContext.execute_async_v2"),
    ("8.6.1", "trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED"),
    ("8.6.1", "trt.ParserError.node_name"),
])
def test_fake_refuses_names_the_release_lacks(version, expr):
    trt = make_fake_tensorrt(version)
    with pytest.raises(AttributeError, match=version):
        eval(expr, {"trt": trt})


def test_fake_refuses_instance_members_the_release_lacks(monkeypatch, bundle):
    trt, _ = install_fakes(monkeypatch, "11.4.0.106")
    network = trt.Builder(trt.Logger()).create_network(0)
    trt.OnnxParser(network, trt.Logger()).parse_from_file(str(bundle.path / "synthesis.onnx"))
    layer = network.get_layer(0)
    with pytest.raises(AttributeError):
        layer.precision = trt.float32
    with pytest.raises(AttributeError):
        layer.set_output_type(0, trt.float32)


def test_fake_checks_call_signatures(monkeypatch):
    trt, _ = install_fakes(monkeypatch, "10.3.0")
    config = trt.Builder(trt.Logger()).create_builder_config()
    cache = config.create_timing_cache(b"")
    with pytest.raises(TypeError, match="set_timing_cache"):
        config.set_timing_cache(cache)
    with pytest.raises(TypeError):
        config.set_timing_cache(cache, ignore_mismatch=True, extra=1)


def _trt_attribute_chains(path: Path) -> set[tuple[str, ...]]:
    """`trt.A.B` chains in a source file (the module is always imported as `trt`)."""
    chains = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            parts, cur = [], node
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id == "trt":
                chains.add(tuple(reversed(parts)))
    return chains


SOURCES = ["export/tensorrt_build.py", "export/trt_plan.py", "runtime/backends/tensorrt.py"]


@pytest.mark.parametrize("version", RELEASES)
def test_sources_name_only_what_every_release_has(version):
    api = load_api(version)
    problems = []
    for src in SOURCES:
        for chain in _trt_attribute_chains(ROOT / src):
            head = chain[0]
            if head.startswith("__"):
                continue
            known = head in api["constants"] or head in api["functions"] or head in api["classes"] \
                or head in api["enums"]
            if known and len(chain) > 1 and head in api["enums"]:
                known = chain[1] in api["enums"][head] or chain[1].startswith("_")
            elif known and len(chain) > 1 and head in api["classes"]:
                info = api["classes"][head]
                members = set(info["methods"]) | set(info["properties"]) | set(info["types"]) | set(info["attributes"])
                known = chain[1] in members or chain[1].startswith("_")
            if not known:
                problems.append(f"{src}: trt.{'.'.join(chain)}")
    assert not problems, f"names TensorRT {version} lacks: {problems}"


# --- a real GPU ----------------------------------------------------------------------------------------------------
def _real_stack_missing() -> str | None:
    import importlib.util

    for mod in ("tensorrt", "pycuda"):
        if importlib.util.find_spec(mod) is None:
            return f"needs {mod} and an NVIDIA GPU ({mod} is not installed)"
    try:
        import pycuda.driver as drv

        drv.init()
        if drv.Device.count() == 0:
            return "needs an NVIDIA GPU (none found)"
    except Exception as e:  # noqa: BLE001 - any failure means no usable GPU
        return f"needs an NVIDIA GPU ({e})"
    return None


@pytest.mark.skipif(_real_stack_missing() is not None, reason=str(_real_stack_missing()))
def test_real_tensorrt_builds_and_runs_the_mapping_engine(tmp_path):
    import tensorrt as trt

    from stylegan_edge.runtime.backends.cuda import gpu_identity

    bundle = Bundle(write_fake_bundle(tmp_path / "real.sgbundle"))
    plan = plan_build(trt, bundle, "fp32", model="mapping", batch=(1, 2, 4))
    build_engine(trt, plan, gpu=gpu_identity(0))
    z = np.random.default_rng(0).standard_normal((3, bundle.meta.z_dim)).astype(np.float32)
    with open_backend("tensorrt", bundle, "mapping", "fp32") as be:
        w = be.run({"z": z})["w"]
    h = z @ np.ones((bundle.meta.z_dim, bundle.meta.w_dim), np.float32)
    np.testing.assert_allclose(w, np.where(h > 0, h, 0.01 * h), rtol=1e-5, atol=1e-5)  # Gemm, LeakyRelu(0.01)


def test_tensorrt_build_module_exports_the_public_api():
    assert {"build_engines", "plan_build", "TensorRTMissing"} <= set(tensorrt_build.__all__)
