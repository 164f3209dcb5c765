"""Build planning (export/trt_plan.py) against the strict fake of every supported TensorRT release.

The table below is the build plan per release: which path, which ONNX, which flags. It is what
`plan_build` must decide by feature detection alone.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from stylegan_edge.export import trt_plan
from stylegan_edge.export.trt_plan import Fp32Pins, PlanError, pin_matches, plan_build
from stylegan_edge.runtime.bundle import Bundle
from stylegan_edge.runtime.trt_buffers import TensorSpec, batch_range, check_feed, chunks, noise_pool_layout

from .fake_tensorrt import RELEASES, make_fake_tensorrt, write_fake_bundle

NORM = "NATIVE_INSTANCENORM"
OBEY = "OBEY_PRECISION_CONSTRAINTS"
PLAN = "precision_plan.json"
# (release, model, precision) -> (path, onnx, network flags, builder flags, cleared flags, parser flags, FP32 pins)
# with a bundle holding synthesis.fp16.onnx, synthesis.int8.onnx, synthesis.int8-fp16.onnx and a precision plan.
BUILD_PLANS = {
    ("8.6.1", "mapping", "fp32"): ("weak_typed", "mapping.onnx", ["EXPLICIT_BATCH"], [], ["TF32"], [NORM], "none"),
    ("8.6.1", "synthesis", "fp32"): ("weak_typed", "synthesis.onnx", ["EXPLICIT_BATCH"], [], ["TF32"], [NORM], "none"),
    ("8.6.1", "synthesis", "fp16"): ("weak_typed", "synthesis.onnx", ["EXPLICIT_BATCH"], ["FP16", OBEY], [], [NORM],
                                     PLAN),
    ("8.6.1", "synthesis", "int8"): ("weak_typed", "synthesis.int8.onnx", ["EXPLICIT_BATCH"], ["INT8", "FP16", OBEY],
                                     [], [NORM], PLAN),
}
for _v in RELEASES[1:]:
    BUILD_PLANS.update({
        (_v, "mapping", "fp32"): ("strongly_typed", "mapping.onnx", ["STRONGLY_TYPED"], [], ["TF32"], [NORM], "none"),
        (_v, "synthesis", "fp32"): ("strongly_typed", "synthesis.onnx", ["STRONGLY_TYPED"], [], ["TF32"], [NORM],
                                    "none"),
        (_v, "synthesis", "fp16"): ("strongly_typed", "synthesis.fp16.onnx", ["STRONGLY_TYPED"], [], [], [NORM],
                                    "none"),
        (_v, "synthesis", "int8"): ("strongly_typed", "synthesis.int8-fp16.onnx", ["STRONGLY_TYPED"], [], [], [NORM],
                                    "none"),
    })


@pytest.fixture
def full_bundle(tmp_path):
    return Bundle(write_fake_bundle(tmp_path / "b.sgbundle", fp16_onnx=True, int8_onnx=True, int8_fp16_onnx=True,
                                    fp32_nodes=["/b4/layer0/norm/InstanceNormalization"]))


@pytest.fixture
def plain_bundle(tmp_path):
    return Bundle(write_fake_bundle(tmp_path / "p.sgbundle"))


@pytest.mark.parametrize("key", sorted(BUILD_PLANS), ids=lambda k: "-".join(k))
def test_build_plan_per_release(key, full_bundle):
    version, model, precision = key
    plan = plan_build(make_fake_tensorrt(version), full_bundle, precision, model=model)
    got = (plan.mode, plan.onnx.name, list(plan.network_flags), list(plan.builder_flags), list(plan.cleared_flags),
           list(plan.parser_flags), plan.pins.source)
    assert got == BUILD_PLANS[key]
    assert plan.engine.name == f"{model}.{precision}.engine"


@pytest.mark.parametrize("version", ["10.3.0", "10.13.3.9"])
def test_tensorrt10_without_fp16_onnx_falls_back_to_weak_typing(version, plain_bundle):
    plan = plan_build(make_fake_tensorrt(version), plain_bundle, "fp16")
    assert (plan.mode, plan.onnx.name, plan.network_flags) == ("weak_typed", "synthesis.onnx", ())
    assert plan.builder_flags == ("FP16", OBEY)
    assert plan.pins.layer_types == ("NORMALIZATION", "REDUCE")
    assert any("deprecated" in n for n in plan.notes)


def test_tensorrt11_without_fp16_onnx_is_a_one_line_error(plain_bundle):
    with pytest.raises(PlanError) as e:
        plan_build(make_fake_tensorrt("11.4.0.106"), plain_bundle, "fp16")
    msg = str(e.value)
    assert "\n" not in msg and "synthesis.fp16.onnx" in msg and "stylegan-export BUNDLE --fp16" in msg


@pytest.mark.parametrize("version", RELEASES)
def test_int8_needs_the_qdq_onnx_never_a_calibrator(version, plain_bundle):
    with pytest.raises((PlanError, ValueError)) as e:
        plan_build(make_fake_tensorrt(version), plain_bundle, "int8")
    assert "synthesis.int8.onnx" in str(e.value)


@pytest.mark.parametrize("version", RELEASES)
def test_mapping_is_always_fp32(version, full_bundle):
    plan = plan_build(make_fake_tensorrt(version), full_bundle, "fp16", model="mapping")
    assert plan.precision == "fp32" and plan.onnx.name == "mapping.onnx" and "FP16" not in plan.builder_flags


def test_weak_typed_fp16_without_plan_pins_normalization_layers(plain_bundle):
    plan = plan_build(make_fake_tensorrt("8.6.1"), plain_bundle, "fp16")
    assert plan.pins == Fp32Pins("default (normalization layers)", layer_types=("NORMALIZATION", "REDUCE"))


def test_empty_precision_plan_pins_nothing_and_needs_no_obey_flag(tmp_path):
    bundle = Bundle(write_fake_bundle(tmp_path / "b.sgbundle", fp32_nodes=[]))
    plan = plan_build(make_fake_tensorrt("8.6.1"), bundle, "fp16")
    assert plan.pins.empty and plan.builder_flags == ("FP16",)


def test_profile_covers_every_input_on_the_batch_axis(full_bundle):
    plan = plan_build(make_fake_tensorrt("10.3.0"), full_bundle, "fp16", batch="2,4,8")
    shapes = {p.input: (p.min, p.opt, p.max) for p in plan.profile}
    assert sorted(shapes) == sorted(full_bundle.meta.synthesis_inputs)
    assert shapes["w_00"] == ((2, 8), (4, 8), (8, 8))
    assert shapes["noise_02"] == ((2, 1, 8, 8), (4, 1, 8, 8), (8, 1, 8, 8))
    mapping = plan_build(make_fake_tensorrt("10.3.0"), full_bundle, "fp32", model="mapping", batch=(1, 1, 8))
    assert [(p.input, p.max) for p in mapping.profile] == [("z", (8, 8))]


@pytest.mark.parametrize("bad", ["0,1,8", "4,2,8", "1,2", "a,b,c", (3, 2, 1)])
def test_bad_batch_is_a_one_line_error(bad):
    with pytest.raises(PlanError, match="MIN,OPT,MAX"):
        trt_plan.parse_batch(bad)


def test_single_batch_value_fixes_the_profile():
    assert trt_plan.parse_batch("4") == (4, 4, 4)


def test_workspace_and_timing_cache_defaults(full_bundle, tmp_path):
    trt = make_fake_tensorrt("10.3.0")
    plan = plan_build(trt, full_bundle, "fp16")
    assert plan.workspace_bytes is None and plan.timing_cache == full_bundle.path / "timing.cache"
    plan = plan_build(trt, full_bundle, "fp16", workspace_gb=1.5, timing_cache=tmp_path / "t.cache")
    assert plan.workspace_bytes == 3 << 29 and plan.timing_cache == tmp_path / "t.cache"


@pytest.mark.parametrize("content", ['{"format": "other"}', '{"format": "stylegan-edge-precision-plan", "version": 2}',
                                     '{"format": "stylegan-edge-precision-plan", "version": 1, "fp32_nodes": [1]}',
                                     "not json"])
def test_malformed_precision_plan_is_a_one_line_error(tmp_path, content):
    bundle = Bundle(write_fake_bundle(tmp_path / "b.sgbundle"))
    (bundle.path / "precision_plan.json").write_text(content)
    with pytest.raises(PlanError) as e:
        plan_build(make_fake_tensorrt("8.6.1"), bundle, "fp16")
    assert "precision_plan.json" in str(e.value) and "\n" not in str(e.value)


def test_plan_builds_maps_once_then_each_precision(full_bundle):
    plans = trt_plan.plan_builds(make_fake_tensorrt("10.3.0"), full_bundle, ("fp16", "int8", "fp16"))
    assert [p.engine.name for p in plans] == ["mapping.fp32.engine", "synthesis.fp16.engine", "synthesis.int8.engine"]


def test_summary_is_json_serialisable(full_bundle):
    plan = plan_build(make_fake_tensorrt("8.6.1"), full_bundle, "fp16")
    assert json.loads(json.dumps(plan.summary()))["builder_flags"] == ["FP16", OBEY]


# --- matching TensorRT layers to precision-plan nodes ---------------------------------------------------------
PINS = Fp32Pins(PLAN, nodes=frozenset({"/b8/conv1/Conv", "/b4/affine/Gemm"}))


@pytest.mark.parametrize("name, metadata, expected", [
    ("/b8/conv1/Conv", None, True),                           # the node's first layer
    ("/b4/affine/Gemm_17", None, True),                       # a further layer of the same node
    ("/b8/conv1/Conv10", None, False),                        # another node sharing a prefix
    ("/b8/conv1/Conv_x", None, False),                        # not a parser suffix
    ("whatever_3", "[ONNX Layer: /b8/conv1/Conv]", True),     # metadata names the node
    ("/b8/conv1/Conv", "[ONNX Layer: /b8/conv2/Conv]", False),  # metadata wins over the name
    ("x", "[ONNX Layer: /b4/affine/Gemm | Local Function: f]", True),
])
def test_layers_match_plan_nodes_by_metadata_then_name(name, metadata, expected):
    assert pin_matches(PINS, name, "CONVOLUTION", metadata) is expected


def test_qdq_and_shape_layers_are_never_pinned():
    pins = Fp32Pins(PLAN, nodes=frozenset({"/q"}), layer_types=("QUANTIZE", "NORMALIZATION"))
    assert not pin_matches(pins, "/q", "QUANTIZE")
    assert not pin_matches(pins, "/q", "SHAPE")
    assert pin_matches(pins, "/n", "NORMALIZATION")


def test_without_onnx_parser_flags_the_norm_plugin_is_pinned_and_plugins_load(plain_bundle):
    trt = make_fake_tensorrt("8.6.1")
    del trt.OnnxParserFlag  # as TensorRT 8.5 (JetPack 5) has it: InstanceNormalization is a plugin there
    plan = plan_build(trt, plain_bundle, "fp16")
    assert plan.parser_flags == () and plan.init_plugins
    assert plan.pins.layer_types == ("NORMALIZATION", "REDUCE", "PLUGIN_V2")


# --- the runtime's buffer planning (runtime/trt_buffers.py) -----------------------------------------------------
def test_chunks_split_batches_at_the_profile_maximum():
    assert [(s.start, s.stop) for s in chunks(19, 8)] == [(0, 8), (8, 16), (16, 19)]
    with pytest.raises(ValueError):
        chunks(0, 8)


def test_batch_range_is_what_every_input_admits():
    f32 = np.dtype(np.float32)
    specs = [TensorSpec("a", True, f32, (-1, 4), ((1, 4), (2, 4), (8, 4))),
             TensorSpec("b", True, f32, (-1, 2), ((2, 2), (2, 2), (6, 2))),
             TensorSpec("out", False, f32, (-1, 3))]
    assert batch_range(specs) == (2, 6)


def test_noise_pool_respects_budget_floor_and_cap():
    shapes = {"noise_00": (1, 4, 4), "noise_01": (1, 256, 256)}
    pool = noise_pool_layout(shapes, max_batch=8, budget_bytes=8 << 20)
    assert pool.samples["noise_00"] == 64  # tiny layer: capped
    assert pool.samples["noise_01"] == 16  # 4 MiB share / 256 KiB per sample = 16 = the two-batch floor
    assert pool.nbytes == 64 * 16 * 4 + 16 * 65536 * 4


def test_noise_pool_windows_stay_inside_the_pool_and_vary():
    pool = noise_pool_layout({"n": (1, 8, 8)}, max_batch=4, budget_bytes=1 << 20, max_samples=10)
    rng = np.random.default_rng(0)
    offsets = [pool.offsets(rng, 4)["n"] for _ in range(200)]
    assert min(offsets) >= 0 and max(offsets) <= (10 - 4) * 64
    assert len(set(offsets)) > 100  # element-granular starts: many distinct windows
    drawn = pool.draw(np.random.default_rng(1))["n"]
    assert drawn.shape == (10, 1, 8, 8) and drawn.dtype == np.float32
    assert abs(float(drawn.std()) - 1.0) < 0.15


def test_check_feed_names_the_input_and_shapes():
    spec = TensorSpec("w_00", True, np.dtype(np.float32), (-1, 8))
    out = check_feed(spec, np.ones((2, 8), np.float64), 2)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    with pytest.raises(ValueError, match=r"w_00 must be \[3, 8\], got \[2, 8\]"):
        check_feed(spec, np.ones((2, 8)), 3)


@pytest.mark.parametrize("version, path, flags", [("10.3.0", "weak_typed", ["INT8", "FP16", OBEY]),
                                                  ("11.4.0.106", "strongly_typed", [])])
def test_int8_without_the_fp16_based_file_falls_back_and_says_why(version, path, flags, tmp_path):
    bundle = Bundle(write_fake_bundle(tmp_path / "b.sgbundle", fp16_onnx=True, int8_onnx=True,
                                      fp32_nodes=["/b4/layer0/norm/InstanceNormalization"]))
    plan = plan_build(make_fake_tensorrt(version), bundle, "int8")
    assert (plan.mode, plan.onnx.name, list(plan.builder_flags)) == (path, "synthesis.int8.onnx", flags)
    assert any("synthesis.int8-fp16.onnx absent" in n for n in plan.notes)
