"""FP16 safety: which style layers may run in FP16, measured per layer on calibration data.

1. Ranges. onnxruntime's MinMax calibrator (the same one INT8 uses) runs the FP32 model on the
   calibration set and records every activation's range; a layer whose activations or weights
   pass `max_abs` stays FP32 (reason "range"). FP16 ends at 65504; the default threshold keeps
   a factor 4 of headroom for latents the calibration set did not draw.
2. Error. For each style layer, a model with only that layer in FP16 (made by the same converter
   as the shipped file) runs by emulation (`fp16_emulation`) and its output image is compared
   with FP32; the error of the graph-level nodes, FP16 in every variant (see below), is measured
   on its own and subtracted, so each layer is charged only for its own error. Instance norm
   divides by each channel's spread, so FP16 rounding before it is amplified where a channel
   barely varies (frequent at 4-16 px): a property of the trained weights, measured, not a list
   of operator types.
3. Budget. Errors of different layers add up roughly as mean squared errors. Layers enter FP16
   from the least harmful while the summed MSE stays within the budget that `target_psnr_db`
   allows; the rest stay FP32 (reason "error"). The mixed model is then measured as a whole and,
   while it misses the target, the most harmful FP16 layer moves back to FP32.

InstanceNormalization is always FP32 (its statistics are sums of squares, past FP16 once |x|
passes about 256, and TensorRT 11 computes a normalisation in its input type); the converter
feeds it float32. The nodes outside the style layers (the constant's broadcast, the toRGB 1x1
convolution) always follow FP16: the converter cannot keep a node that writes a graph output in
FP32 without retyping the output.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationMethod, create_calibrator

from stylegan_edge.runtime.bundle import Bundle, open_bundle
from stylegan_edge.runtime.node_names import LAYER_SCOPE, style_layer_index, style_layer_scope
from stylegan_edge.runtime.precision_plan import LayerDecision, PrecisionPlan

from . import metrics
from .data import CalibrationData, SynthesisDataReader, sha256_file
from .errors import CalibrationError
from .fp16_convert import FP16_MAX, convert_fp16
from .fp16_emulation import emulate_fp16
from .graph import NORM_OP, load_model, nodes_of_type, run_images, session

NORM_REASON = ("statistics are sums of squares (past FP16 once |x| > 256) and TensorRT 11 computes a "
               "normalisation in its input type: always fed and computed in FP32")


@dataclass(frozen=True)
class Fp16Thresholds:
    max_abs: float = FP16_MAX / 4
    target_psnr_db: float = 45.0
    analysis_samples: int = 16
    batch_size: int = 8

    def budget_mse(self) -> float:
        return metrics.DATA_RANGE**2 / 10 ** (self.target_psnr_db / 10)


def style_layer_nodes(model: onnx.ModelProto) -> dict[int, list[str]]:
    """Node names of each style layer (`layers.N/...`), in graph order."""
    groups: dict[int, list[str]] = {}
    for node in model.graph.node:
        index = style_layer_index(node.name)
        if index is not None:
            groups.setdefault(index, []).append(node.name)
    if not groups:
        raise CalibrationError(f"the synthesis graph has no `{LAYER_SCOPE}.N/...` node names (export it with "
                               "stylegan-export)")
    return dict(sorted(groups.items()))


def fp32_node_list(model: onnx.ModelProto, fp32_layers: list[int]) -> list[str]:
    """The plan's fp32_nodes: every InstanceNormalization, then whole FP32 layers, in graph order."""
    groups = style_layer_nodes(model)
    keep = set(nodes_of_type(model, NORM_OP))
    for i in fp32_layers:
        keep.update(groups[i])
    return [n.name for n in model.graph.node if n.name in keep]


def activation_ranges(model_path: Path, data: CalibrationData, batch_size: int = 8) -> dict[str, float]:
    """max |value| of every float activation over the calibration set (onnxruntime's MinMax calibrator)."""
    with tempfile.TemporaryDirectory(prefix="sg-ranges.") as tmp:
        calibrator = create_calibrator(model_path, [], augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=CalibrationMethod.MinMax)
        calibrator.collect_data(SynthesisDataReader(data, batch_size, _input_names(model_path)))
        ranges = calibrator.compute_data()
        del calibrator
    out = {}
    for name, td in ranges.data.items():
        lo, hi = td.range_value
        out[name] = float(max(abs(float(np.asarray(lo).min())), abs(float(np.asarray(hi).max()))))
    return out


def _input_names(model_path: Path) -> list[str]:
    return [i.name for i in load_model(model_path).graph.input]


def layer_max_abs(model: onnx.ModelProto, nodes: list[str], ranges: dict[str, float]) -> tuple[float, float]:
    """(largest |value| computed or read as weight by these nodes, largest |InstanceNorm input|)."""
    inits = {i.name: i for i in model.graph.initializer}
    names = set(nodes)
    biggest, norm_in = 0.0, 0.0
    for node in model.graph.node:
        if node.name not in names:
            continue
        for out in node.output:
            biggest = max(biggest, ranges.get(out, 0.0))
        for inp in node.input:
            if inp in inits and inits[inp].data_type == onnx.TensorProto.FLOAT:
                biggest = max(biggest, float(np.abs(onnx.numpy_helper.to_array(inits[inp])).max(initial=0.0)))
        if node.op_type == NORM_OP:
            norm_in = max(norm_in, ranges.get(node.input[0], 0.0))
    return biggest, norm_in


def fp16_images(model: onnx.ModelProto, fp32_nodes: list[str], data: CalibrationData, thresholds: Fp16Thresholds,
                check: bool = True) -> np.ndarray:
    """Output images of the model converted with `fp32_nodes` kept FP32, by emulation."""
    emulated = emulate_fp16(convert_fp16(model, fp32_nodes, check=check))
    return run_images(session(emulated), data, thresholds.batch_size, thresholds.analysis_samples)


def analyse_fp16(
    bundle: str | Path | Bundle, data: CalibrationData, thresholds: Fp16Thresholds | None = None,
    log: Callable[[str], None] | None = None,
) -> PrecisionPlan:
    """Measure every style layer and decide which stay FP32; returns the plan (not yet written)."""
    thresholds = thresholds or Fp16Thresholds()
    log = log or (lambda msg: None)
    b = open_bundle(bundle)
    path = b.onnx_path("synthesis", "fp32")
    model = load_model(path)
    groups = style_layer_nodes(model)
    norms = nodes_of_type(model, NORM_OP)
    all_nodes = [n.name for n in model.graph.node]
    n_eval = min(thresholds.analysis_samples, len(data))

    t0 = time.perf_counter()
    ranges = activation_ranges(path, data, thresholds.batch_size)
    reference = run_images(session(model), data, thresholds.batch_size, n_eval)
    log(f"fp16 analysis: ranges of {len(ranges)} activations on {len(data)} samples in {time.perf_counter() - t0:.1f}s")

    # The nodes outside the style layers are FP16 in every variant: measure their error alone
    # (the floor) and charge each layer only what it adds to it.
    t0 = time.perf_counter()
    style_nodes = [n for nodes in groups.values() for n in nodes]
    floor_images = fp16_images(model, style_nodes, data, thresholds)
    floor = float(metrics.mse_per_image(floor_images, reference).mean())
    mse: dict[int, float] = {}
    psnr_one: dict[int, float | None] = {}
    for i, nodes in groups.items():
        mine = set(nodes)
        images = fp16_images(model, [n for n in style_nodes if n not in mine] + norms, data, thresholds)
        mse[i] = max(float(metrics.mse_per_image(images, reference).mean()) - floor, 0.0)
        psnr_one[i] = round(float(metrics.psnr_from_mse(mse[i])), 2) if np.isfinite(images).all() else None
    log(f"fp16 analysis: {len(groups)} layers measured one at a time by emulation in {time.perf_counter() - t0:.1f}s")

    decisions: dict[int, tuple[bool, str, str]] = {}
    stats = {i: layer_max_abs(model, nodes, ranges) for i, nodes in groups.items()}
    for i, (biggest, _) in stats.items():
        if biggest > thresholds.max_abs:
            decisions[i] = (True, "range", f"|x| reaches {biggest:.4g} > {thresholds.max_abs:g} (FP16 max 65504)")
    budget = thresholds.budget_mse() - floor
    spent = 0.0
    for i in sorted((i for i in groups if i not in decisions), key=lambda i: mse[i]):
        if psnr_one[i] is not None and spent + mse[i] <= budget:
            spent += mse[i]
            decisions[i] = (False, "ok", f"within range; its own FP16 error {psnr_one[i]:.1f} dB")
        else:
            decisions[i] = (True, "error", f"its own FP16 error {_db(psnr_one[i])}: past the error budget of "
                                           f"{thresholds.target_psnr_db:g} dB")

    # The budget assumes errors add; check the mixed model as a whole.
    t0 = time.perf_counter()
    while True:
        fp32_layers = [i for i in groups if decisions[i][0]]
        images = fp16_images(model, fp32_node_list(model, fp32_layers), data, thresholds)
        joint = metrics.psnr(images, reference)
        fp16_layers = [i for i in groups if not decisions[i][0]]
        if joint.mean() >= thresholds.target_psnr_db or not fp16_layers:
            break
        worst = max(fp16_layers, key=lambda i: mse[i])
        decisions[worst] = (True, "error", f"its own FP16 error {_db(psnr_one[worst])}; the mixed model missed "
                                           f"{thresholds.target_psnr_db:g} dB with it")
    all_fp16 = metrics.psnr(fp16_images(model, [], data, thresholds, check=False), reference)
    log(f"fp16 analysis: mixed model checked in {time.perf_counter() - t0:.1f}s")

    meta = b.meta
    layers = [
        LayerDecision(
            name=style_layer_scope(i), resolution=meta.layer_resolutions[i], channels=meta.layer_channels[i],
            max_abs=round(stats[i][0], 4), norm_input_max_abs=round(stats[i][1], 4),
            norm_squares_overflow_fp16=stats[i][1] ** 2 > FP16_MAX, fp16_psnr_db=psnr_one[i],
            keep_fp32=decisions[i][0], reason=decisions[i][1], detail=decisions[i][2],
        )
        for i in groups
    ]
    fp32_layers = [i for i in groups if decisions[i][0]]
    return PrecisionPlan(
        source_onnx=path.name, source_sha256=sha256_file(path),
        thresholds={k: float(v) for k, v in asdict(thresholds).items()},
        fp32_nodes=fp32_node_list(model, fp32_layers),
        layers=layers,
        measured={
            "method": "FP16 storage with float32 arithmetic (emulated on the onnxruntime CPU provider)",
            "samples": n_eval,
            "fp16_psnr_db_mean": round(float(joint.mean()), 2),
            "fp16_psnr_db_worst": round(float(joint.min()), 2),
            "all_fp16_psnr_db_mean": round(float(all_fp16.mean()), 2),
            "graph_level_fp16_psnr_db": round(float(metrics.psnr_from_mse(floor)), 2),
            "graph_level_fp16_nodes": len(all_nodes) - sum(len(v) for v in groups.values()),
        },
        calibration=dict(data.settings),
        always_fp32={NORM_OP: NORM_REASON},
    )


def _db(v: float | None) -> str:
    return "non-finite (inf/NaN)" if v is None else f"{v:.1f} dB"
