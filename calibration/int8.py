"""Explicit INT8 (`synthesis.int8.onnx`): Q/DQ from calibration data with onnxruntime's quantizer.

The recipe is fixed by what TensorRT accepts: QDQ format, QInt8 activations and weights,
symmetric (zero point 0) activations and weights, per-channel weight scales (axis 0 of each
convolution). Only convolutions are quantised: they carry the arithmetic, StyleGAN1's weights are
fixed (the style acts on activations), and the instance norm and the style's scale and shift stay
float. The model is first run through `quant_pre_process` (shape inference and onnxruntime's
basic graph clean-up), as onnxruntime recommends.

Fidelity is the hard part: every convolution is followed by an instance norm that rescales each
channel, so quantisation error does not fade with depth. `sensitivity` quantises one style layer
at a time (and everything but one layer); `tradeoff` ranks the layers by the speed an INT8 layer
brings per unit of error it adds, builds a few exclusion sets from that order (the least
efficient layers kept in FP32 first), and measures each set's PSNR and onnxruntime CPU speed
side by side with FP32. The bundle gets the fewest exclusions that reach the target PSNR (found
by bisection over that order), or, if none does, the most faithful set still faster than FP32.

Two files carry the chosen set, because no single form serves both consumers (docs/precision.md,
"Two INT8 files"):

- `synthesis.int8.onnx`: the FP32 graph with Q/DQ, as the quantizer writes it. onnxruntime's CPU
  provider fuses it into integer kernels, and TensorRT 8.6 builds it weakly typed with the INT8 and
  FP16 flags, choosing FP16 for the rest itself.
- `synthesis.int8-fp16.onnx` (`qdq_on_mixed`): the same Q/DQ placed on the mixed FP16 graph of
  `synthesis.fp16.onnx`, for strongly typed TensorRT builds (10.x, 11.x), which run every layer in
  the type the file states: INT8 where quantised, FP16 elsewhere, FP32 for the precision plan's
  FP32 nodes. Measured on faces64, onnxruntime CPU runs this form 3.7x slower than the first one
  (no integer-kernel fusion, FP16 emulated node by node), hence two files.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from stylegan_edge.runtime.bundle import INT8_FILE, INT8_FP16_FILE, onnx_filename
from stylegan_edge.runtime.node_names import TO_RGB_SCOPE, is_style_layer_scope

from . import metrics
from .data import CalibrationData, SynthesisDataReader
from .errors import CalibrationError
from .graph import load_model, run_images, save_model, session, value_types
from .speed import SpeedSettings, optimized_op_counts, time_models

# QuantizeBias False: biases stay float (TensorRT parses no DequantizeLinear of int32).
EXTRA_OPTIONS = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
QUANT_OPS = ("Conv",)
TO_RGB = TO_RGB_SCOPE  # the group of the toRGB convolution, named as its nodes are
# QuantizeLinear/DequantizeLinear take float16 data and scales from opset 19 (onnx/docs/Changelog.md,
# QuantizeLinear-19). TensorRT's 10.x parser reads opsets 9 to 20 (onnx-tensorrt release/10.1-GA
# docs/operators.md) and, strongly typed, gives a DequantizeLinear the output type of its scale
# (QuantDequantLinearHelper in onnxOpImporters.cpp): FP16 scales are what make the consumer FP16.
QDQ_FP16_OPSET = 19
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_FLOAT_NP = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16}


@dataclass(frozen=True)
class Int8Settings:
    target_psnr_db: float = 31.0  # 30 dB asked for, plus 1 dB for latents the calibration did not draw
    analysis_samples: int = 16
    batch_size: int = 8
    table_rows: int = 5  # exclusion sets spread from full INT8 to one INT8 layer (plus the target's)
    speed: SpeedSettings = field(default_factory=SpeedSettings)


@dataclass(frozen=True)
class LayerSensitivity:
    name: str  # "layers.5" or "to_rgb"
    convs: list[str]
    macs: int  # multiply-adds per image of its convolutions
    only_psnr_db: float  # only this layer in INT8
    all_but_psnr_db: float  # everything but this layer in INT8
    only_mse: float


@dataclass(frozen=True)
class TradeoffRow:
    excluded: list[str]  # layers kept in FP32
    psnr_db_mean: float
    psnr_db_worst: float
    ms_per_image: float
    fp32_ms_per_image: float

    @property
    def speedup(self) -> float:
        return self.fp32_ms_per_image / self.ms_per_image


@dataclass
class Int8Result:
    path: Path
    chosen: TradeoffRow
    rows: list[TradeoffRow]
    sensitivity: list[LayerSensitivity]
    ort_kernels: dict[str, int]
    met_target: bool

    def to_dict(self) -> dict[str, Any]:
        def row(r: TradeoffRow) -> dict[str, Any]:
            return {**asdict(r), "speedup": round(r.speedup, 3)}

        return {
            "file": self.path.name, "met_target": self.met_target, "chosen": row(self.chosen),
            "tradeoff": [row(r) for r in self.rows], "sensitivity": [asdict(s) for s in self.sensitivity],
            "ort_kernels": self.ort_kernels,
        }


def preprocess(src: Path, dst: Path) -> Path:
    """onnxruntime's quantisation pre-processing (symbolic shape inference, basic optimisations)."""
    quant_pre_process(str(src), str(dst))
    return dst


def quantize(model_path: Path, out: Path, data: CalibrationData, cache: Path,
             nodes_to_quantize: Sequence[str] | None = None, nodes_to_exclude: Sequence[str] | None = None,
             batch_size: int = 8) -> Path:
    """quantize_static with the TensorRT-compatible recipe. `cache` holds the calibrated ranges:
    the first call computes them from `data`, later calls with the same cache reuse them."""
    names = [i.name for i in load_model(model_path).graph.input]
    reader = SynthesisDataReader(data, batch_size, names)
    # The quantizer logs per-tensor notes through the root logger; they are not ours to print.
    with _quiet():
        quantize_static(
            str(model_path), str(out), reader, quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANT_OPS),
            per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            nodes_to_quantize=list(nodes_to_quantize) if nodes_to_quantize is not None else None,
            nodes_to_exclude=list(nodes_to_exclude or []), calibrate_method=CalibrationMethod.MinMax,
            extra_options=dict(EXTRA_OPTIONS), calibration_cache_path=str(cache),
        )
    return out


@contextlib.contextmanager
def _quiet():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def conv_groups(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Convolutions per style layer (`layers.N`), and the toRGB convolution as `to_rgb`; not the
    noise scaling."""
    groups: dict[str, list[str]] = {}
    graph_inputs = {i.name for i in model.graph.input}
    for node in model.graph.node:
        # The 1x1 convolution that scales a noise input does a few multiply-adds per pixel:
        # nothing to gain from INT8, and the noise image is not worth rounding to 8 bits.
        if node.op_type in QUANT_OPS and node.input[0] not in graph_inputs:
            head = node.name.split("/")[0]
            groups.setdefault(head if is_style_layer_scope(head) else TO_RGB, []).append(node.name)
    if not groups:
        raise CalibrationError("the synthesis graph has no convolutions to quantise")
    return groups


def conv_macs(model: onnx.ModelProto) -> dict[str, int]:
    """Multiply-adds per image of each convolution (weights' size times output pixels)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.output]}
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type in QUANT_OPS:
            w = weights.get(node.input[1], [])
            o = shapes.get(node.output[0], [])
            out[node.name] = int(np.prod(w)) * int(np.prod(o[2:])) if w and len(o) == 4 else 0
    return out


def sensitivity(pre: Path, data: CalibrationData, reference: np.ndarray, cache: Path, tmp: Path,
                settings: Int8Settings, log: Callable[[str], None]) -> list[LayerSensitivity]:
    model = load_model(pre)
    groups = conv_groups(model)
    macs = conv_macs(model)
    all_convs = [c for convs in groups.values() for c in convs]
    out = []
    for name, convs in groups.items():
        only = _images(quantize(pre, tmp / "only.onnx", data, cache, nodes_to_quantize=convs), data, settings)
        but = _psnr(quantize(pre, tmp / "but.onnx", data, cache, nodes_to_quantize=all_convs, nodes_to_exclude=convs),
                    data, reference, settings)
        out.append(LayerSensitivity(name, convs, sum(macs[c] for c in convs),
                                    round(float(metrics.psnr(only, reference).mean()), 2), round(float(but.mean()), 2),
                                    float(metrics.mse_per_image(only, reference).mean())))
        s = out[-1]
        log(f"int8 sensitivity {name}: alone {s.only_psnr_db:.1f} dB, all but it {s.all_but_psnr_db:.1f} dB")
    return out


def _images(model: Path, data: CalibrationData, settings: Int8Settings) -> np.ndarray:
    return run_images(session(model), data, settings.batch_size, settings.analysis_samples)


def _psnr(model: Path, data: CalibrationData, reference: np.ndarray, settings: Int8Settings) -> np.ndarray:
    return metrics.psnr(_images(model, data, settings), reference)


def exclusion_order(sens: list[LayerSensitivity]) -> list[str]:
    """Layers in the order they should leave INT8: least speed (MACs) per unit of error first."""
    return [s.name for s in sorted(sens, key=lambda s: s.macs / max(s.only_mse, 1e-20))]


def spread_sizes(n: int, rows: int) -> list[int]:
    """`rows` prefix lengths spread evenly over 0 .. n-1 (at least one layer stays INT8)."""
    if n <= 1 or rows <= 1:
        return [0]
    return sorted({round(i * (n - 1) / (rows - 1)) for i in range(rows)})


def smallest_meeting(psnr_of: Callable[[int], float], n: int, target: float) -> int | None:
    """The shortest prefix (0 .. n-1) whose PSNR reaches `target`, by bisection: keeping more
    layers in FP32 does not lower the PSNR (checked where measured). None if even n-1 misses."""
    if psnr_of(n - 1) < target:
        return None
    lo, hi = 0, n - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if psnr_of(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def tradeoff(pre: Path, src: Path, data: CalibrationData, reference: np.ndarray, cache: Path, tmp: Path,
             sens: list[LayerSensitivity], settings: Int8Settings) -> tuple[list[TradeoffRow], dict[int, Path]]:
    """Exclusion sets (prefixes of `exclusion_order`): a spread from full INT8 to one INT8 layer,
    and the shortest prefix that reaches the target with the one just short of it; each
    measured for PSNR and, side by side with FP32, speed. Rows are keyed by prefix length."""
    groups = {s.name: s.convs for s in sens}
    order = exclusion_order(sens)
    all_convs = [c for s in sens for c in s.convs]
    paths: dict[int, Path] = {}
    psnrs: dict[int, np.ndarray] = {}

    def measure(k: int) -> float:
        if k not in psnrs:
            excl = [c for n in order[:k] for c in groups[n]]
            paths[k] = quantize(pre, tmp / f"int8_{k}.onnx", data, cache, nodes_to_quantize=all_convs,
                                nodes_to_exclude=excl)
            psnrs[k] = _psnr(paths[k], data, reference, settings)
        return float(psnrs[k].mean())

    for k in spread_sizes(len(order), settings.table_rows):
        measure(k)
    best = smallest_meeting(measure, len(order), settings.target_psnr_db)
    if best is not None and best > 0:
        measure(best - 1)
    sizes = sorted(psnrs)
    feeds = data.feeds(0, min(settings.speed.batch, len(data)))
    speed = time_models({"fp32": src, **{f"int8_{k}": paths[k] for k in sizes}}, feeds, settings.speed)
    rows = [TradeoffRow(order[:k], round(float(psnrs[k].mean()), 2), round(float(psnrs[k].min()), 2),
                        round(speed[f"int8_{k}"], 2), round(speed["fp32"], 2)) for k in sizes]
    return rows, {i: paths[k] for i, k in enumerate(sizes)}


def choose(rows: list[TradeoffRow], target_psnr_db: float) -> tuple[int, bool]:
    """Index of the row to ship and whether it meets the target."""
    for i, r in enumerate(rows):
        if r.psnr_db_mean >= target_psnr_db:
            return i, True
    faster = [i for i, r in enumerate(rows) if r.speedup > 1.0] or list(range(len(rows)))
    return max(faster, key=lambda i: rows[i].psnr_db_mean), False


def make_int8(bundle_dir: Path, data: CalibrationData, settings: Int8Settings | None = None,
              log: Callable[[str], None] | None = None) -> Int8Result:
    """Write `synthesis.int8.onnx` into the bundle from calibration data; returns the measurements."""
    settings = settings or Int8Settings()
    log = log or (lambda msg: None)
    src = Path(bundle_dir) / onnx_filename("synthesis")
    with tempfile.TemporaryDirectory(prefix="sg-int8.") as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        pre = preprocess(src, tmp / "pre.onnx")
        cache = tmp / "ranges.json"
        reference = run_images(session(src), data, settings.batch_size, settings.analysis_samples)
        quantize(pre, tmp / "full.onnx", data, cache, batch_size=settings.batch_size)
        log(f"int8: pre-processed and calibrated on {len(data)} samples in {time.perf_counter() - t0:.1f}s")

        t0 = time.perf_counter()
        sens = sensitivity(pre, data, reference, cache, tmp, settings, log)
        log(f"int8: per-layer sensitivity of {len(sens)} layers in {time.perf_counter() - t0:.1f}s")

        t0 = time.perf_counter()
        rows, paths = tradeoff(pre, src, data, reference, cache, tmp, sens, settings)
        for r in rows:
            log(f"int8 tradeoff: FP32 {_names(r.excluded)}: {r.psnr_db_mean:.1f} dB (worst {r.psnr_db_worst:.1f}), "
                f"{r.ms_per_image:.1f} ms/img vs FP32 {r.fp32_ms_per_image:.1f} ({r.speedup:.2f}x)")
        idx, met = choose(rows, settings.target_psnr_db)
        chosen_path = paths[idx]
        kernels = {k: v for k, v in optimized_op_counts(chosen_path, tmp).items()
                   if k.startswith("QLinear") or k.endswith("Integer") or k in ("QuantizeLinear", "DequantizeLinear")}
        dst = Path(bundle_dir) / INT8_FILE
        _install(chosen_path, dst)
        log(f"int8: trade-off of {len(rows)} sets in {time.perf_counter() - t0:.1f}s; onnxruntime runs {kernels}")
    return Int8Result(dst, rows[idx], rows, sens, kernels, met)


def _names(layers: list[str]) -> str:
    return "[" + ", ".join(layers) + "]" if layers else "none"


def _install(src: Path, dst: Path) -> None:
    save_model(without_unused_domains(onnx.load(str(src))), dst)


# --- the file for strongly typed TensorRT builds ------------------------------------------------------
def without_unused_domains(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop opset imports that no node uses (in place; returned for chaining).

    `quant_pre_process` leaves onnxruntime's whole list (com.microsoft.nchwc, org.pytorch.aten, ...)
    although our graph uses standard operators only; a reader should see only what it must support.
    The default domain always stays: the model's opset version is declared there.
    """
    used = {"", *(_node_domains(model.graph)), *(f.domain for f in model.functions)}
    for f in model.functions:
        used.update(n.domain for n in f.node)
    keep = [o for o in model.opset_import if o.domain in used or (o.domain == "ai.onnx" and "" in used)]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    return model


def _node_domains(graph: onnx.GraphProto) -> set[str]:
    domains = set()
    for node in graph.node:
        domains.add(node.domain)
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                domains |= _node_domains(sub)
    return domains


@dataclass(frozen=True)
class _QdqUse:
    """One input of one node that the quantizer routed through a DequantizeLinear."""

    node: str
    index: int
    scale: np.ndarray  # float32: a scalar (activation) or one per output channel (weights)
    weights: np.ndarray | None  # int8 weights when the dequantised value is an initializer
    axis: int


def qdq_uses(qdq: onnx.ModelProto) -> list[_QdqUse]:
    """Every node input fed by a DequantizeLinear in the quantizer's output, with its scale; zero
    points must be 0 (TensorRT takes symmetric quantisation only)."""
    inits = {i.name: i for i in qdq.graph.initializer}
    producer = {o: n for n in qdq.graph.node for o in n.output}
    uses = []
    for node in qdq.graph.node:
        if node.op_type in QDQ_OPS:
            continue
        for index, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            zero = numpy_helper.to_array(inits[dq.input[2]]) if len(dq.input) > 2 and dq.input[2] else None
            if zero is None or zero.dtype != np.int8 or zero.any():
                raise CalibrationError(f"the quantizer gave {dq.name} a non-zero or non-int8 zero point; TensorRT "
                                       "needs symmetric int8")
            scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
            if dq.input[0] in inits:
                weights = numpy_helper.to_array(inits[dq.input[0]])
            else:
                q = producer.get(dq.input[0])
                if q is None or q.op_type != "QuantizeLinear":
                    raise CalibrationError(f"{dq.name} dequantises neither a weight nor a QuantizeLinear output")
                weights = None
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            uses.append(_QdqUse(node.name, index, scale, weights, axis))
    return uses


def _fp_scale(scale: np.ndarray, dtype: type) -> np.ndarray:
    """`scale` in `dtype`, rounded up where it is not exact: the calibrated range stays covered
    (no clipping) and a scale never rounds to zero."""
    out = np.asarray(scale, dtype=dtype)
    low = out.astype(np.float32) < scale
    out = np.where(low, np.nextafter(out, np.asarray(np.inf, dtype=dtype)), out).astype(dtype)
    return np.maximum(out, np.finfo(dtype).smallest_subnormal).astype(dtype)


def qdq_on_mixed(qdq: onnx.ModelProto, mixed: onnx.ModelProto) -> onnx.ModelProto:
    """The mixed-precision graph `mixed` (synthesis.fp16.onnx's form) with the Q/DQ of `qdq` (the
    quantizer's output on the FP32 graph) placed on the same node inputs.

    Each scale takes the type of the value it quantises there, so a DequantizeLinear yields FP16
    in front of FP16 nodes and FP32 in front of the plan's FP32 nodes (TensorRT's strongly typed
    DequantizeLinear outputs its scale's type). Weights are the quantizer's int8 values, requantised
    to the rounded scale. The graph moves to opset 19, the first with FP16 Q/DQ.
    """
    uses = qdq_uses(qdq)
    out = onnx.version_converter.convert_version(mixed, max(QDQ_FP16_OPSET, _default_opset(mixed)))
    graph = out.graph
    types = value_types(out)
    inits = {i.name: i for i in graph.initializer}
    nodes = {n.name: n for n in graph.node}
    before: dict[str, list[onnx.NodeProto]] = {}  # node name -> Q/DQ nodes to insert in front of it
    made: dict[tuple[str, bytes], str] = {}  # (value, scale bytes) -> dequantised value
    for use in uses:
        node = nodes.get(use.node)
        if node is None or use.index >= len(node.input):
            raise CalibrationError(f"the mixed FP16 graph lacks node {use.node} that the INT8 graph quantises "
                                   "(made from another synthesis.onnx?)")
        value = node.input[use.index]
        elem = types.get(value)
        if elem not in _FLOAT_NP:
            raise CalibrationError(f"{use.node} input {value} is not float16 or float32 in the mixed graph")
        dtype = _FLOAT_NP[elem]
        scale = _fp_scale(use.scale, dtype)
        key = (value, scale.tobytes())
        if key not in made:
            base = f"{value}/{'w' if use.weights is not None else 'x'}{len(made)}"
            s_init = numpy_helper.from_array(scale, f"{base}/scale")
            z_init = numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{base}/zero_point")
            graph.initializer.extend([s_init, z_init])
            if use.weights is not None:
                shape = [-1 if i == use.axis else 1 for i in range(use.weights.ndim)]
                # The quantizer's int8 values times its scale, requantised to the rounded scale;
                # rounding the scale up keeps every value within int8's range.
                w = use.weights.astype(np.float32) * use.scale.reshape(shape)
                q = np.clip(np.rint(w / scale.astype(np.float32).reshape(shape)), -127, 127).astype(np.int8)
                q_init = numpy_helper.from_array(q, f"{base}/quantized")
                graph.initializer.append(q_init)
                dq_in = q_init.name
                new = []
            else:
                dq_in = f"{base}/quantized"
                new = [helper.make_node("QuantizeLinear", [value, s_init.name, z_init.name], [dq_in],
                                        name=f"{base}/QuantizeLinear")]
            attrs = {"axis": use.axis} if scale.ndim else {}
            new.append(helper.make_node("DequantizeLinear", [dq_in, s_init.name, z_init.name], [f"{base}/dequantized"],
                                        name=f"{base}/DequantizeLinear", **attrs))
            before.setdefault(use.node, []).extend(new)
            made[key] = f"{base}/dequantized"
        node.input[use.index] = made[key]
    order: list[onnx.NodeProto] = []
    for node in graph.node:
        order.extend(before.get(node.name, []))
        order.append(node)
    del graph.node[:]
    graph.node.extend(order)
    # Float weights that only quantised nodes read are replaced by their int8 form.
    read = {name for n in graph.node for name in n.input}
    unused = [i for i in graph.initializer if i.name not in read and i.name in inits]
    for init in unused:
        graph.initializer.remove(init)
    del graph.value_info[:]  # stale where inputs were rerouted; shape inference remakes them
    return without_unused_domains(out)


def _default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def check_int8_fp16_model(model: onnx.ModelProto) -> None:
    """The full ONNX checker and strict shape inference with type checks; CalibrationError if not."""
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise CalibrationError(f"{INT8_FP16_FILE} fails the ONNX checker: {str(e).splitlines()[0]}") from None
    for v in [*model.graph.input, *model.graph.output]:
        if v.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise CalibrationError(f"{INT8_FP16_FILE}: input/output {v.name} is not float32")
