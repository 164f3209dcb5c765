"""What a TensorRT engine build will do, decided before TensorRT does anything (pure, testable).

Kept apart by name: the precision plan (`PrecisionPlan`, runtime/precision_plan.py: which ONNX
nodes stay FP32) is read here; the build spec of one engine (`BuildSpec`) is made here; TensorRT's
own serialised plan is the engine file the build writes; the runtime's `NoisePoolLayout`
(runtime/trt_buffers.py) is none of them.

Two build modes, chosen by what the installed TensorRT has (feature detection, never version
strings):

- strongly_typed (TensorRT 10.x and 11.x): the network is created STRONGLY_TYPED and the engine
  runs exactly the precision the ONNX states: `synthesis.fp16.onnx` / `synthesis.int8.onnx` as
  calibration wrote them, the FP32 files for FP32. No precision builder flags at all (TensorRT 11
  has none; 10.12 deprecated them).
- weak_typed (TensorRT 8.6 / 8.5, and 10.x when the reduced-precision ONNX is absent): the
  builder gets precision flags (FP16; INT8 + FP16 for the Q/DQ ONNX) and the precision plan's
  layers are pinned to FP32 with per-layer constraints that the builder must obey. Never an
  implicit-INT8 calibrator: INT8 is explicit Q/DQ only.

`plan_build` returns a frozen BuildSpec; `export/tensorrt_build.py` carries it out. The spec names
flags by their TensorRT enum member names, so it is readable, comparable in tests and recorded
as is in the engine's sidecar.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from stylegan_edge.runtime.bundle import (
    LABEL_INPUT,
    LATENT_INPUT,
    PLAN_FILE,
    TIMING_CACHE_FILE,
    Bundle,
    BundleError,
    engine_filename,
    noise_input,
    onnx_filename,
    open_bundle,
    strongly_typed_onnx_filename,
    w_input,
)
from stylegan_edge.runtime.engine_meta import sidecar_path
from stylegan_edge.runtime.errors import StyleganError
from stylegan_edge.runtime.precision_plan import PrecisionPlanError
from stylegan_edge.runtime.precision_plan import read_fp32_nodes as read_plan_fp32_nodes

# Kept in FP32 by weak-typed reduced-precision builds when the bundle has no precision plan:
# instance-norm statistics overflow FP16 (sums of squares), and a decomposed norm shows up as
# reductions.
DEFAULT_FP32_LAYER_TYPES = ("NORMALIZATION", "REDUCE")
# Never pinned: they carry no float computation of their own (or, Q/DQ, define their own types).
UNPINNABLE_LAYER_TYPES = ("QUANTIZE", "DEQUANTIZE", "SHAPE", "CONSTANT", "CAST", "ASSERTION")
# The build modes (BuildSpec.mode; the sidecar records it as "build_path").
STRONGLY_TYPED = "strongly_typed"
WEAK_TYPED = "weak_typed"


class PlanError(StyleganError, ValueError):
    """A build that cannot be specified (bad argument, unreadable precision plan); the message is
    one line naming the file or argument."""


@dataclass(frozen=True)
class ProfileShape:
    input: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class Fp32Pins:
    """Which network layers a weak-typed build keeps in FP32.

    nodes: ONNX node names from the precision plan; a TensorRT layer matches a node when the
    parser recorded that node in the layer's metadata ("[ONNX Layer: <node>...]"), else when its
    name equals the node's or is the node's name plus the parser's "_<n>" suffix for the further
    layers one node produced. layer_types: LayerType member names matched by type.
    """

    source: str  # PLAN_FILE ("precision_plan.json"), "default (normalization layers)", "none"
    nodes: frozenset[str] = frozenset()
    layer_types: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.nodes and not self.layer_types


@dataclass(frozen=True)
class BuildSpec:
    """Everything one engine build does, decided before TensorRT runs (see the module docstring)."""

    model: str  # "mapping" | "synthesis"
    precision: str  # "fp32" | "fp16" | "int8"
    mode: str  # STRONGLY_TYPED | WEAK_TYPED
    onnx: Path
    engine: Path
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag members
    builder_flags: tuple[str, ...]  # BuilderFlag members to set
    cleared_flags: tuple[str, ...]  # BuilderFlag members to clear
    parser_flags: tuple[str, ...]  # OnnxParserFlag members
    pins: Fp32Pins
    batch: tuple[int, int, int]
    profile: tuple[ProfileShape, ...]
    workspace_bytes: int | None
    timing_cache: Path
    init_plugins: bool  # load libnvinfer_plugin (8.5: InstanceNormalization is a plugin there)
    notes: tuple[str, ...] = field(default=())

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.engine)

    def profile_dict(self) -> dict[str, list[list[int]]]:
        return {p.input: [list(p.min), list(p.opt), list(p.max)] for p in self.profile}

    def summary(self) -> dict[str, Any]:
        """The spec as plain data (logged, compared in tests)."""
        return {
            "model": self.model, "precision": self.precision, "mode": self.mode, "onnx": self.onnx.name,
            "engine": self.engine.name, "network_flags": list(self.network_flags),
            "builder_flags": list(self.builder_flags), "cleared_flags": list(self.cleared_flags),
            "parser_flags": list(self.parser_flags), "fp32_pins": self.pins.source, "batch": list(self.batch),
        }


# --- feature detection -------------------------------------------------------------------------
def has_member(enum: Any, name: str) -> bool:
    return enum is not None and hasattr(enum, name)


def supports_strong_typing(trt: ModuleType) -> bool:
    return has_member(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED")


def supports_weak_typing(trt: ModuleType) -> bool:
    return has_member(getattr(trt, "BuilderFlag", None), "FP16")


def needs_explicit_batch_flag(trt: ModuleType) -> bool:
    """8.x still has implicit-batch networks (and Builder.max_batch_size) and its ONNX parser needs
    EXPLICIT_BATCH; 10.x ignores the flag (deprecated) and 11.x no longer has it."""
    return has_member(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and hasattr(trt.Builder, "max_batch_size")


def choose_build_mode(trt: ModuleType, precision: str, reduced_onnx_present: bool) -> str:
    """strongly_typed or weak_typed, from what this TensorRT has.

    FP32 builds strongly typed wherever the flag exists (exact FP32 either way). FP16/INT8 build
    strongly typed when the flag exists and calibration's reduced-precision ONNX is in the bundle;
    otherwise weak typed from the FP32 ONNX with precision flags, where this TensorRT still has
    them (8.x, 10.x).
    """
    strong = supports_strong_typing(trt)
    if precision == "fp32":
        return STRONGLY_TYPED if strong else WEAK_TYPED
    if strong and reduced_onnx_present:
        return STRONGLY_TYPED
    if supports_weak_typing(trt):
        return WEAK_TYPED
    raise PlanError(
        f"TensorRT {getattr(trt, '__version__', '?')} has no {precision.upper()} builder flag and builds {precision} "
        f"only from {onnx_filename('synthesis', precision)}, which the bundle lacks: create it where the export "
        f"extras are installed (`stylegan-export BUNDLE --{precision}`)"
    )


# --- the precision plan -------------------------------------------------------------------------
def read_fp32_nodes(bundle: Bundle) -> frozenset[str] | None:
    """fp32_nodes of the bundle's precision plan, or None when the bundle has none."""
    try:
        return read_plan_fp32_nodes(bundle.path)
    except PrecisionPlanError as e:
        raise PlanError(str(e)) from None


_METADATA_NODE = re.compile(r"^\[ONNX Layer: (.*?)(?: \|.*)?\]$", re.DOTALL)


def layer_node_name(layer_name: str, metadata: str | None) -> str | None:
    """The ONNX node a layer came from when its metadata says so (parsers of 8.6 onwards)."""
    if metadata:
        m = _METADATA_NODE.match(metadata.strip())
        if m:
            return m.group(1)
    return None


def pin_matches(pins: Fp32Pins, layer_name: str, layer_type: str, metadata: str | None = None) -> bool:
    """Whether a network layer (name, LayerType member name, metadata) is kept in FP32."""
    if layer_type in UNPINNABLE_LAYER_TYPES:
        return False
    if layer_type in pins.layer_types:
        return True
    if not pins.nodes:
        return False
    node = layer_node_name(layer_name, metadata)
    if node is not None:
        return node in pins.nodes
    if layer_name in pins.nodes:
        return True
    # The parser names a node's further layers "<node>_<n>" (a counter shared by all nodes).
    base, sep, suffix = layer_name.rpartition("_")
    return bool(sep) and suffix.isdigit() and base in pins.nodes


UNNAMED_PREFIX = "(Unnamed Layer* "


@dataclass(frozen=True)
class LayerInfo:
    """What pinning needs of one network layer: name, LayerType member name, metadata and the
    names of the tensors it reads and writes (network order)."""

    name: str
    type: str
    metadata: str | None = None
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


def layer_nodes(layers: Sequence[LayerInfo]) -> list[str | None]:
    """The ONNX node each layer came from, helper layers included.

    The ONNX parsers (onnx-tensorrt release/8.6-GA ImporterContext.cpp `registerLayer`, 10.x the
    same) name only the layer an importer registers and give it the metadata "[ONNX Layer: <node>]";
    the helpers an importer adds (Gemm's bias add, InstanceNormalization's scale/bias reshapes,
    Shape's cast and slice from 10.0) keep TensorRT's "(Unnamed Layer* N) [Type]" and no metadata.
    A helper is given to a node by the graph: to the node of the layers that produce its tensor
    inputs when they are one node (Gemm's bias add reads only the node's matrix product), else, when
    it reads no layer's output (constant operands), to the node of the layers that consume it.
    """
    nodes: list[str | None] = []
    for layer in layers:
        node = layer_node_name(layer.name, layer.metadata)
        if node is None and not layer.name.startswith(UNNAMED_PREFIX):
            node = layer.name  # named without metadata (8.6 Q/DQ: setName only)
        nodes.append(node)
    producer = {t: i for i, layer in enumerate(layers) for t in layer.outputs}
    consumers: dict[str, list[int]] = {}
    for i, layer in enumerate(layers):
        for t in layer.inputs:
            consumers.setdefault(t, []).append(i)
    changed = True
    while changed:
        changed = False
        for i, layer in enumerate(layers):
            if nodes[i] is not None:
                continue
            feeding = [producer[t] for t in layer.inputs if t in producer and layers[producer[t]].type != "CONSTANT"]
            if feeding:
                owners = {nodes[j] for j in feeding}
            else:
                owners = {nodes[j] for t in layer.outputs for j in consumers.get(t, [])}
            if len(owners) == 1 and None not in owners:
                nodes[i] = owners.pop()
                changed = True
    return nodes


def _fed_by_dequantize(index: int, layers: Sequence[LayerInfo], producer: dict[str, int]) -> bool:
    """Whether a layer reads a DequantizeLinear output (directly or through shuffles): a quantised
    layer that TensorRT fuses with its Q/DQ to run in INT8."""
    seen, todo = set(), [index]
    while todo:
        i = todo.pop()
        for t in layers[i].inputs:
            j = producer.get(t)
            if j is None or j in seen:
                continue
            seen.add(j)
            if layers[j].type == "DEQUANTIZE":
                return True
            if layers[j].type == "SHUFFLE":
                todo.append(j)
    return False


def pinned_layers(pins: Fp32Pins, layers: Sequence[LayerInfo], *, avoid_quantized: bool = False) -> list[int]:
    """Indices of the layers a weak-typed build keeps in FP32: those of the plan's nodes (helper
    layers included, see layer_nodes) and those of the pinned types. avoid_quantized (weak-typed
    INT8, TensorRT 8.6): never a layer fed by DequantizeLinear, since pinning a quantised layer to
    FP32 drops its INT8 or fails the build (the Q/DQ pair then has no INT8 consumer)."""
    if pins.empty:
        return []
    nodes = layer_nodes(layers)
    producer = {t: i for i, layer in enumerate(layers) for t in layer.outputs}
    out = []
    for i, layer in enumerate(layers):
        node = nodes[i]
        if not pin_matches(pins, node if node is not None else layer.name, layer.type):
            continue
        if avoid_quantized and _fed_by_dequantize(i, layers, producer):
            continue
        out.append(i)
    return out


def choose_pins(bundle: Bundle, mode: str, precision: str) -> Fp32Pins:
    if mode != WEAK_TYPED or precision == "fp32":
        return Fp32Pins("none")
    nodes = read_fp32_nodes(bundle)
    if nodes is None:
        return Fp32Pins("default (normalization layers)", layer_types=DEFAULT_FP32_LAYER_TYPES)
    return Fp32Pins(PLAN_FILE, nodes=nodes)


# --- shapes ----------------------------------------------------------------------------------------
def parse_batch(batch: str | Sequence[int]) -> tuple[int, int, int]:
    """"1,1,8" or (1, 1, 8) -> (min, opt, max), checked."""
    if isinstance(batch, str):
        try:
            values = tuple(int(v) for v in batch.split(","))
        except ValueError:
            raise PlanError(f"--batch must be MIN,OPT,MAX integers, got {batch!r}") from None
    else:
        values = tuple(int(v) for v in batch)
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise PlanError(f"--batch must be MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, got {batch!r}")
    return values  # type: ignore[return-value]


def input_shapes(bundle: Bundle, model: str) -> dict[str, tuple[int, ...]]:
    """Each graph input's shape without the batch axis, from meta.json."""
    m = bundle.meta
    if model == "mapping":  # z, and a conditional model's labels c, whose profile follows z's batch
        mapping = {LATENT_INPUT: (m.z_dim,)}
        if m.label_size:
            mapping[LABEL_INPUT] = (m.label_size,)
        return mapping
    shapes: dict[str, tuple[int, ...]] = {w_input(i): (m.w_dim,) for i in range(m.num_layers)}
    if m.use_noise:
        for i, r in enumerate(m.layer_resolutions):
            shapes[noise_input(i)] = (1, r, r)
    return shapes


def profile_shapes(bundle: Bundle, model: str, batch: tuple[int, int, int]) -> tuple[ProfileShape, ...]:
    lo, opt, hi = batch
    return tuple(ProfileShape(name, (lo, *rest), (opt, *rest), (hi, *rest))
                 for name, rest in input_shapes(bundle, model).items())


# --- the build spec ----------------------------------------------------------------------------------
def plan_build(
    trt: ModuleType, bundle: Bundle | str | Path, precision: str, *, model: str = "synthesis",
    batch: str | Sequence[int] = (1, 1, 8), workspace_gb: float | None = None,
    timing_cache: str | Path | None = None,
) -> BuildSpec:
    """Decide how TensorRT module `trt` builds `model` of `bundle` at `precision` (no building).

    The mapping network is a few dense layers and always builds FP32.
    """
    bundle = open_bundle(bundle)
    if model == "mapping":
        precision = "fp32"
    if precision not in ("fp32", "fp16", "int8"):
        raise PlanError(f"unknown precision {precision!r}; choose fp32, fp16 or int8")
    if model not in ("mapping", "synthesis"):
        raise PlanError(f"unknown model {model!r}; choose mapping or synthesis")
    if workspace_gb is not None and workspace_gb <= 0:
        raise PlanError(f"--workspace must be a positive number of GiB, got {workspace_gb}")
    batch = parse_batch(batch)
    typed_name = strongly_typed_onnx_filename(model, precision)
    reduced = precision != "fp32" and bundle.has(typed_name)
    notes: list[str] = []
    if (precision == "int8" and not reduced and supports_strong_typing(trt) and not supports_weak_typing(trt)
            and bundle.has(onnx_filename(model, "int8"))):
        # TensorRT 11 without the FP16-based Q/DQ file: the FP32-based one still builds, slower.
        typed_name, reduced = onnx_filename(model, "int8"), True
        notes.append(f"{strongly_typed_onnx_filename(model, 'int8')} absent: strongly typed from {typed_name}, "
                     "whose layers outside the quantised convolutions run FP32 (remake the INT8 files to fix)")
    mode = choose_build_mode(trt, precision, reduced)

    if mode == STRONGLY_TYPED:
        onnx = bundle.path / typed_name
        network_flags = ["STRONGLY_TYPED"]
        builder_flags: list[str] = []
    elif precision == "int8":
        # Weak-typed INT8 only from the explicit Q/DQ graph: no calibrator, ever.
        try:
            onnx = bundle.onnx_path(model, "int8")
        except BundleError as e:
            raise PlanError(str(e)) from None
        network_flags = []
        builder_flags = ["INT8", "FP16"]
        if supports_strong_typing(trt):
            notes.append(f"{typed_name} absent: weak-typed INT8 from {onnx.name} (deprecated in TensorRT 10.12; "
                         "remake the INT8 files to build strongly typed)")
    else:
        onnx = bundle.onnx_path(model, "fp32")
        network_flags = []
        builder_flags = ["FP16"] if precision == "fp16" else []
        if precision == "fp16" and supports_strong_typing(trt):
            notes.append(f"{onnx_filename(model, 'fp16')} absent: weak-typed FP16 from {onnx.name} (deprecated "
                         "in TensorRT 10.12; add the FP16 ONNX to build strongly typed)")
    if needs_explicit_batch_flag(trt):
        network_flags.insert(0, "EXPLICIT_BATCH")

    parser_flags = ["NATIVE_INSTANCENORM"] if has_member(getattr(trt, "OnnxParserFlag", None),
                                                         "NATIVE_INSTANCENORM") else []
    pins = choose_pins(bundle, mode, precision)
    if pins.layer_types and not parser_flags:  # 8.5: InstanceNormalization becomes a plugin layer
        pins = Fp32Pins(pins.source, pins.nodes, (*pins.layer_types, "PLUGIN_V2"))
    if not pins.empty:
        builder_flags.append("OBEY_PRECISION_CONSTRAINTS")
    # "fp32" means FP32: TF32 would round matmul and convolution inputs to a 10-bit mantissa.
    cleared_flags = ["TF32"] if precision == "fp32" and has_member(trt.BuilderFlag, "TF32") else []
    return BuildSpec(
        model=model, precision=precision, mode=mode, onnx=onnx,
        engine=bundle.path / engine_filename(model, precision),
        network_flags=tuple(network_flags), builder_flags=tuple(builder_flags),
        cleared_flags=tuple(cleared_flags), parser_flags=tuple(parser_flags), pins=pins, batch=batch,
        profile=profile_shapes(bundle, model, batch),
        workspace_bytes=None if workspace_gb is None else int(workspace_gb * (1 << 30)),
        timing_cache=Path(timing_cache) if timing_cache is not None else bundle.path / TIMING_CACHE_FILE,
        init_plugins=not parser_flags, notes=tuple(notes),
    )


def plan_builds(
    trt: ModuleType, bundle: Bundle | str | Path, precisions: Sequence[str] = ("fp16",), **kwargs: Any,
) -> list[BuildSpec]:
    """The mapping engine (FP32, once) and one synthesis engine per precision."""
    bundle = open_bundle(bundle)
    specs = [plan_build(trt, bundle, "fp32", model="mapping", **kwargs)]
    for p in dict.fromkeys(precisions):
        specs.append(plan_build(trt, bundle, p, model="synthesis", **kwargs))
    return specs
