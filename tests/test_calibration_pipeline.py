"""The exporter's pipeline on the tiny bundle: the files it writes, the plan TensorRT reads, the
INT8 graph TensorRT accepts (symmetric Q/DQ, per-channel weights) and onnxruntime runs as integer
kernels, and the exclusion-set logic of the INT8 trade-off."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from stylegan_edge.calibration import metrics
from stylegan_edge.calibration.data import ORIGIN_CLI, CalibrationSettings, make_calibration_data
from stylegan_edge.calibration.errors import CalibrationError
from stylegan_edge.calibration.fp16_analysis import Fp16Thresholds
from stylegan_edge.calibration.graph import run_images, session
from stylegan_edge.calibration.int8 import (
    Int8Settings,
    LayerSensitivity,
    TradeoffRow,
    choose,
    exclusion_order,
    smallest_meeting,
    spread_sizes,
)
from stylegan_edge.calibration.pipeline import PipelineSettings, prepare_precisions
from stylegan_edge.calibration.speed import SpeedSettings, optimized_op_counts
from stylegan_edge.runtime.bundle import PRECISION_METADATA_KEY as METADATA_KEY
from stylegan_edge.runtime.bundle import Bundle
from stylegan_edge.runtime.files import sha256_file
from stylegan_edge.runtime.precision_plan import PrecisionPlan

FAST = PipelineSettings(
    fp16=Fp16Thresholds(analysis_samples=8), holdout_samples=4,
    int8=Int8Settings(analysis_samples=8, table_rows=3, speed=SpeedSettings(batch=1, rounds=2, seconds=0, warmup=1)),
)


@pytest.fixture(scope="module")
def prepared(tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "tiny.sgbundle"
    shutil.copytree(tiny_bundle, out)
    lines: list[str] = []
    written = prepare_precisions(out, ["fp16", "int8"], samples=16, log=lines.append, settings=FAST)
    return out, written, lines


@pytest.mark.slow
def test_pipeline_writes_calibration_data_plan_and_both_onnx_files(prepared):
    bundle, written, lines = prepared
    # INT8 comes in two forms: Q/DQ on the FP32 graph and on the mixed FP16 graph (strongly typed TensorRT).
    assert {p.name for p in written} == {"calib.npz", "precision_plan.json", "synthesis.fp16.onnx",
                                         "synthesis.int8.onnx", "synthesis.int8-fp16.onnx"}
    assert all(p.is_file() and p.parent == bundle for p in written)
    assert Bundle(bundle).precisions() == ["fp32", "fp16", "int8"]
    fp16_line = next(m for m in lines if m.startswith("synthesis.fp16.onnx"))
    assert "PSNR" in fp16_line and "s;" in fp16_line
    assert any(m.startswith("synthesis.int8.onnx") and "PSNR" in m for m in lines)


@pytest.mark.slow
def test_plan_is_what_the_tensorrt_builder_reads(prepared):
    from stylegan_edge.export.trt_plan import read_fp32_nodes

    bundle, _, _ = prepared
    plan = PrecisionPlan.read(bundle)
    raw = json.loads((bundle / "precision_plan.json").read_text())
    assert raw["format"] == "stylegan-edge-precision-plan" and raw["version"] == 1
    assert raw["source_onnx"] == "synthesis.onnx" and len(raw["source_sha256"]) == 64
    assert read_fp32_nodes(Bundle(bundle)) == frozenset(plan.fp32_nodes)
    names = {n.name for n in onnx.load(str(bundle / "synthesis.onnx")).graph.node}
    assert set(plan.fp32_nodes) <= names
    assert {"name", "resolution", "max_abs", "fp16_psnr_db", "keep_fp32", "reason"} <= set(raw["layers"][0])


@pytest.mark.slow
def test_int8_onnx_has_symmetric_qdq_pairs_and_per_channel_weight_scales(prepared):
    bundle, _, _ = prepared
    model = onnx.load(str(bundle / "synthesis.int8.onnx"))
    onnx.checker.check_model(model, full_check=True)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert qs and len(dqs) >= len(qs)
    for node in qs + dqs:
        zero_point = inits[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any()
    weight_dqs = [n for n in dqs if n.input[0] in inits and inits[n.input[0]].ndim == 4]
    assert weight_dqs
    for node in weight_dqs:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        assert axis == 0 and inits[node.input[1]].shape == (inits[node.input[0]].shape[0],)
    outputs = [v for v in [*model.graph.input, *model.graph.output]]
    assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT for v in outputs)


@pytest.mark.slow
def test_onnxruntime_runs_the_int8_onnx_with_integer_convolutions(prepared, tmp_path):
    bundle, _, _ = prepared
    ops = optimized_op_counts(bundle / "synthesis.int8.onnx", tmp_path)
    assert ops.get("QLinearConv", 0) >= 1


@pytest.mark.slow
def test_written_files_declare_only_the_opset_domains_their_nodes_use(prepared):
    bundle, _, _ = prepared
    for name in ("synthesis.fp16.onnx", "synthesis.int8.onnx", "synthesis.int8-fp16.onnx"):
        model = onnx.load(str(bundle / name))
        declared = [o.domain for o in model.opset_import]
        assert declared == [""], (name, declared)  # our graphs use standard operators only
        assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}


@pytest.mark.slow
def test_strongly_typed_int8_file_quantises_what_the_fp32_based_one_does_on_the_fp16_graph(prepared):
    bundle, _, _ = prepared
    fp32_based = onnx.load(str(bundle / "synthesis.int8.onnx"))
    strong = onnx.load(str(bundle / "synthesis.int8-fp16.onnx"))
    fp16 = onnx.load(str(bundle / "synthesis.fp16.onnx"))
    assert next(o.version for o in strong.opset_import if o.domain == "") >= 19  # FP16 Q/DQ

    def quantised_convs(model):
        producer = {o: n.op_type for n in model.graph.node for o in n.output}
        return sorted(n.name for n in model.graph.node if n.op_type == "Conv"
                      and producer.get(n.input[1]) == "DequantizeLinear")

    assert quantised_convs(strong) == quantised_convs(fp32_based) != []
    assert sorted(n.name for n in strong.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")) \
        == sorted(n.name for n in fp16.graph.node)
    inits = {i.name: numpy_helper.to_array(i) for i in strong.graph.initializer}
    for node in strong.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            assert inits[node.input[2]].dtype == np.int8 and not inits[node.input[2]].any()


@pytest.mark.slow
def test_onnxruntime_cpu_runs_the_strongly_typed_int8_file_on_fresh_latents(prepared):
    bundle, _, _ = prepared
    seed = int(np.random.default_rng().integers(1 << 30))
    fresh = make_calibration_data(bundle, CalibrationSettings(samples=4, seed=seed))
    reference = run_images(session(bundle / "synthesis.onnx"), fresh)
    images = run_images(session(bundle / "synthesis.int8-fp16.onnx"), fresh)
    # The trade-off aims at 31 dB on calibration latents; on the tiny preset fresh ones measured 29-33 dB.
    assert metrics.psnr(images, reference).mean() > 24.0, seed


@pytest.mark.slow
def test_reduced_precision_files_carry_their_measurements(prepared):
    bundle, _, _ = prepared
    source = sha256_file(bundle / "synthesis.onnx")
    for name, precision in (("synthesis.fp16.onnx", "fp16"), ("synthesis.int8.onnx", "int8"),
                            ("synthesis.int8-fp16.onnx", "int8")):
        props = {p.key: p.value for p in onnx.load(str(bundle / name)).metadata_props}
        info = json.loads(props[METADATA_KEY])
        assert info["precision"] == precision and info["psnr_db_mean_vs_fp32"] > 0
        assert info["source_sha256"] == source


@pytest.mark.slow
def test_pipeline_uses_calibration_data_drawn_by_stylegan_calibrate(tiny_bundle, tmp_path):
    bundle = tmp_path / "b.sgbundle"
    shutil.copytree(tiny_bundle, bundle)
    data = make_calibration_data(bundle, CalibrationSettings(samples=8, psi=0.5, mixing=0.0, seed=5))
    data.settings["origin"] = ORIGIN_CLI
    data.save(bundle / "calib.npz")
    lines: list[str] = []
    prepare_precisions(bundle, ["fp16"], samples=64, log=lines.append, settings=FAST)
    assert any("8 samples from calib.npz" in m and "psi 0.5" in m for m in lines)
    assert PrecisionPlan.read(bundle).calibration["psi"] == 0.5


def test_unknown_precision_is_a_one_line_error(tiny_bundle):
    with pytest.raises(CalibrationError, match="int4"):
        prepare_precisions(tiny_bundle, ["int4"])


def _sens(name: str, macs: int, only_psnr: float) -> LayerSensitivity:
    return LayerSensitivity(name, [f"{name}/Conv"], macs, only_psnr, 0.0, 4.0 / 10 ** (only_psnr / 10))


def test_layers_leave_int8_least_speed_per_error_first():
    sens = [_sens("layers.1", 10, 25.0), _sens("layers.5", 1000, 33.0), _sens("layers.9", 1000, 25.0)]
    assert exclusion_order(sens) == ["layers.1", "layers.9", "layers.5"]


def test_table_rows_spread_from_full_int8_to_a_single_int8_layer():
    assert spread_sizes(14, 5) == [0, 3, 6, 10, 13]
    assert spread_sizes(3, 5) == [0, 1, 2] and spread_sizes(1, 5) == [0]


def test_bisection_finds_the_shortest_prefix_reaching_the_target_with_few_measurements():
    psnr = [18.0, 19.0, 21.0, 24.0, 27.0, 29.5, 30.5, 33.0, 35.0, 36.0]
    asked: list[int] = []

    def measure(k: int) -> float:
        asked.append(k)
        return psnr[k]

    assert smallest_meeting(measure, len(psnr), 30.0) == 6
    assert len(set(asked)) <= 5
    assert smallest_meeting(lambda k: psnr[k], len(psnr), 40.0) is None


def test_choose_ships_the_fewest_exclusions_that_meet_the_target_else_the_best_faster_one():
    rows = [TradeoffRow([], 20.0, 18.0, 5.0, 10.0), TradeoffRow(["a"], 31.0, 29.0, 6.0, 10.0),
            TradeoffRow(["a", "b"], 35.0, 33.0, 9.0, 10.0)]
    assert choose(rows, 30.0) == (1, True)
    assert choose(rows, 40.0) == (2, False)
    slow = [TradeoffRow([], 20.0, 18.0, 5.0, 10.0), TradeoffRow(["a"], 25.0, 20.0, 12.0, 10.0)]
    assert choose(slow, 40.0) == (0, False)
