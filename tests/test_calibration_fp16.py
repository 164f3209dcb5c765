"""FP16: the converter's output (float32 I/O, FP32 norms), the emulation that measures it, and a
precision plan that catches a layer which overflows FP16."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from stylegan_edge.calibration import metrics
from stylegan_edge.calibration.data import CalibrationSettings, make_calibration_data
from stylegan_edge.calibration.fp16_analysis import Fp16Thresholds, analyse_fp16, style_layer_nodes
from stylegan_edge.calibration.fp16_convert import convert_fp16
from stylegan_edge.calibration.fp16_emulation import emulate_fp16
from stylegan_edge.calibration.graph import NORM_OP, nodes_of_type, run_images, session, value_types

from .bundles import seal

OVERFLOW_LAYER = 3
OVERFLOW_SCALE = 1e5  # conv outputs of ~1e5, past FP16's 65504; weights stay below it


@pytest.fixture(scope="module")
def tiny_model(tiny_bundle):
    return onnx.load(str(tiny_bundle / "synthesis.onnx"))


@pytest.fixture(scope="module")
def eval_data(tiny_bundle):
    return make_calibration_data(tiny_bundle, CalibrationSettings(samples=8, seed=11, noise="random"))


@pytest.fixture(scope="module")
def overflow_bundle(tiny_bundle, tmp_path_factory):
    """The tiny bundle with one layer's convolution, bias and noise scaled up. Leaky ReLU and
    instance norm are scale invariant, so in FP32 the image is the same; in FP16 it overflows."""
    out = tmp_path_factory.mktemp("overflow") / "overflow.sgbundle"
    shutil.copytree(tiny_bundle, out)
    model = onnx.load(str(out / "synthesis.onnx"))
    names = {f"layers.{OVERFLOW_LAYER}.{p}" for p in ("weight", "bias", "noise_strength")}
    for init in model.graph.initializer:
        if init.name in names:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(OVERFLOW_SCALE), init.name))
    onnx.save(model, str(out / "synthesis.onnx"))
    return seal(out)  # as a re-export would record the changed graph


def test_fp16_model_keeps_float32_io_passes_the_checker_and_feeds_norms_float32(tiny_model):
    m16 = convert_fp16(tiny_model, nodes_of_type(tiny_model, NORM_OP))
    onnx.checker.check_model(m16, full_check=True)
    assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT for v in [*m16.graph.input, *m16.graph.output])
    types = value_types(m16)
    norms = [n for n in m16.graph.node if n.op_type == NORM_OP]
    assert len(norms) == len(style_layer_nodes(tiny_model))
    assert all(types[n.input[0]] == TensorProto.FLOAT for n in norms)
    convs = [n for n in m16.graph.node if n.op_type == "Conv"]
    assert all(types[n.input[1]] == TensorProto.FLOAT16 for n in convs)


def test_fp16_model_runs_on_onnxruntime_cpu_close_to_fp32(tiny_model, eval_data):
    m16 = convert_fp16(tiny_model, nodes_of_type(tiny_model, NORM_OP))
    ref = run_images(session(tiny_model), eval_data)
    out = run_images(session(m16), eval_data)
    assert out.dtype == np.float32 and metrics.psnr(out, ref).mean() > 45


def test_emulation_rounds_every_fp16_value_as_a_gpu_would():
    # x (fp32) -> Cast fp16 -> Add 2^-12 (fp16) -> Cast fp32: in FP16, 1 + 2^-12 rounds back to 1.
    eps = numpy_helper.from_array(np.array([2.0**-12], np.float16), "eps")
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
             helper.make_node("Add", ["h", "eps"], ["s"]),
             helper.make_node("Cast", ["s"], ["y"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [eps])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    emulated = emulate_fp16(model)
    assert all(i.data_type == TensorProto.FLOAT for i in emulated.graph.initializer)
    x = np.array([1.0, 70000.0], np.float32)
    y = session(emulated).run(None, {"x": x})[0]
    assert y[0] == 1.0 and np.isinf(y[1])


@pytest.mark.slow
def test_plan_keeps_an_overflowing_layer_fp32_for_range_and_the_planned_model_stays_close(overflow_bundle,
                                                                                          tiny_bundle, eval_data):
    scaled = onnx.load(str(overflow_bundle / "synthesis.onnx"))
    ref = run_images(session(scaled), eval_data)
    # In FP32 the scaling changes nothing, so FP32 is a fair reference for both FP16 models.
    assert metrics.psnr(ref, run_images(session(str(tiny_bundle / "synthesis.onnx")), eval_data)).min() > 60

    data = make_calibration_data(overflow_bundle, CalibrationSettings(samples=16))
    plan = analyse_fp16(overflow_bundle, data, Fp16Thresholds(analysis_samples=8))
    layer = next(d for d in plan.layers if d.name == f"layers.{OVERFLOW_LAYER}")
    assert layer.keep_fp32 and layer.reason == "range" and layer.max_abs > 65504
    assert set(style_layer_nodes(scaled)[OVERFLOW_LAYER]) <= set(plan.fp32_nodes)
    assert set(nodes_of_type(scaled, NORM_OP)) <= set(plan.fp32_nodes)

    planned = run_images(session(emulate_fp16(convert_fp16(scaled, plan.fp32_nodes))), eval_data)
    naive = run_images(session(emulate_fp16(convert_fp16(scaled, [], check=False))), eval_data)
    assert metrics.psnr(planned, ref).mean() > 45
    assert not np.isfinite(naive).all() or metrics.psnr(naive, ref).mean() < 20


def test_plan_of_a_well_behaved_model_measures_every_layer(tiny_bundle):
    data = make_calibration_data(tiny_bundle, CalibrationSettings(samples=8))
    plan = analyse_fp16(tiny_bundle, data, Fp16Thresholds(analysis_samples=4))
    assert [d.name for d in plan.layers] == [f"layers.{i}" for i in range(len(plan.layers))]
    assert all(d.fp16_psnr_db is not None and d.fp16_psnr_db > 45 and d.reason in ("ok", "error") for d in plan.layers)
    assert plan.measured["fp16_psnr_db_mean"] >= plan.thresholds["target_psnr_db"]
