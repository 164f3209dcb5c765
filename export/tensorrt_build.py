"""Build a bundle's TensorRT engines on the GPU that will run them (no torch: runs on a Jetson).

    from stylegan_edge.export.tensorrt_build import build_engines
    build_engines("ffhq256.sgbundle", precisions=("fp16",), log=print)

For each engine `plan_build` (export/trt_plan.py) decides the path, flags, profile and FP32 pins;
this module carries the plan out with the installed TensorRT: parse the ONNX, pin layers,
configure (profile, workspace, timing cache), `build_serialized_network`, then write
`<model>.<precision>.engine` exactly as TensorRT serialised it and the sidecar
`<model>.<precision>.engine.json` beside it. Every step is reported through `log` with its time
and size; TensorRT's own warnings and errors go the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

from stylegan_edge.runtime.bundle import Bundle, open_bundle
from stylegan_edge.runtime.engine_meta import (
    EngineMeta,
    GpuInfo,
    build_command,
    mismatches,
    read_sidecar,
    write_sidecar,
)
from stylegan_edge.runtime.files import atomic_write_bytes, sha256_bytes, sha256_file

from .trt_plan import STRONGLY_TYPED, BuildPlan, LayerInfo, layer_nodes, pinned_layers, plan_build, plan_builds

Log = Callable[[str], None]

__all__ = ["BuildError", "TensorRTMissing", "build_engine", "build_engines", "plan_build"]


class TensorRTMissing(RuntimeError):  # noqa: N818 - the name the CLI and users know
    """TensorRT is not installed where the build was asked for."""

    def __init__(self, bundle_path: str | Path, precision: str = "fp16") -> None:
        super().__init__(
            "TensorRT is not installed here; engines are built on the target GPU (they only run on the GPU model "
            "and TensorRT version that built them): copy the bundle there and run "
            f"`{build_command(bundle_path, precision)}`"
        )


class BuildError(RuntimeError):
    """TensorRT could not parse or build; the message is one line naming the file."""


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


class _Step:
    """Times one step and logs it: '<what>: 1.23 s[, size]'."""

    def __init__(self, log: Log, what: str) -> None:
        self.log, self.what, self.detail = log, what, ""

    def __enter__(self) -> _Step:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.seconds = time.perf_counter() - self.t0
            self.log(f"{self.what}: {self.seconds:.2f} s" + (f", {self.detail}" if self.detail else ""))


def import_tensorrt(bundle_path: str | Path, precision: str) -> ModuleType:
    try:
        import tensorrt as trt
    except ImportError:
        raise TensorRTMissing(bundle_path, precision) from None
    return trt


def tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stylegan-edge")
    except PackageNotFoundError:
        return "unknown"


def build_logger(trt: ModuleType, log: Log, errors: list[str]) -> Any:
    from stylegan_edge.runtime.backends.tensorrt import make_trt_logger

    def sink(severity: str, msg: str) -> None:
        if severity in ("ERROR", "INTERNAL_ERROR"):
            errors.append(msg)
        log(f"TensorRT {severity.lower()}: {msg}")

    return make_trt_logger(trt, sink)


def _flag_bits(enum: Any, names: Sequence[str]) -> int:
    bits = 0
    for name in names:
        bits |= 1 << int(getattr(enum, name))
    return bits


def _parse(trt: ModuleType, plan: BuildPlan, network: Any, logger: Any) -> Any:
    parser = trt.OnnxParser(network, logger)
    for name in plan.parser_flags:
        parser.set_flag(getattr(trt.OnnxParserFlag, name))
    if not parser.parse_from_file(str(plan.onnx)):
        n = parser.num_errors
        first = parser.get_error(0) if n else None
        what = first.desc() if first is not None else "unknown error"
        where = ""
        if first is not None and first.node() >= 0:
            node_name = getattr(first, "node_name", None)  # 10.0 onwards
            where = f" at node {(node_name() if callable(node_name) else '') or first.node()}"
        more = f" (and {n - 1} more)" if n > 1 else ""
        raise BuildError(f"{plan.onnx}: TensorRT {trt.__version__} cannot parse it: {what}{where}{more}")
    return parser


def network_layers(network: Any) -> list[LayerInfo]:
    """Name, type, metadata and tensor names of every layer of a parsed network."""
    out = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        ins = [layer.get_input(j) for j in range(layer.num_inputs)]
        outs = [layer.get_output(j) for j in range(layer.num_outputs)]
        out.append(LayerInfo(layer.name, layer.type.name, getattr(layer, "metadata", None),
                             tuple(t.name for t in ins if t is not None), tuple(t.name for t in outs if t is not None)))
    return out


def apply_fp32_pins(trt: ModuleType, network: Any, plan: BuildPlan, log: Log) -> list[str]:
    """Pin the plan's layers to FP32 (weak-typed builds); returns the pinned layers' names.

    Helper layers the parser adds without a name belong to their node through the graph
    (trt_plan.layer_nodes); on the INT8 path layers fed by DequantizeLinear are left alone."""
    if plan.pins.empty:
        return []
    floats = {trt.DataType.FLOAT, trt.DataType.HALF}
    infos = network_layers(network)
    nodes = layer_nodes(infos)
    pinned, matched_nodes = [], set()
    for i in pinned_layers(plan.pins, infos, avoid_quantized=plan.precision == "int8"):
        layer = network.get_layer(i)
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not any(t.dtype in floats for t in outputs):
            continue  # shape arithmetic and the like: nothing to keep in FP32
        layer.precision = trt.float32
        for j, t in enumerate(outputs):
            if t.dtype in floats:
                layer.set_output_type(j, trt.float32)
        pinned.append(infos[i].name)
        matched_nodes.add(nodes[i] if nodes[i] is not None else infos[i].name)
    quantized = {n for i, n in enumerate(nodes) if n is not None and plan.precision == "int8"
                 and i not in set(pinned_layers(plan.pins, infos))}
    unmatched = sorted(n for n in plan.pins.nodes if n not in matched_nodes and n not in quantized
                       and not any(m.startswith(n + "_") for m in matched_nodes))
    if unmatched:
        log(f"warning: {len(unmatched)} precision-plan node(s) match no TensorRT layer of {plan.onnx.name} "
            f"(first: {unmatched[0]}); is the plan from another export?")
    return pinned


def _configure(trt: ModuleType, builder: Any, plan: BuildPlan, log: Log) -> tuple[Any, Any]:
    config = builder.create_builder_config()
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in plan.cleared_flags:
        config.clear_flag(getattr(trt.BuilderFlag, name))
    if plan.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    profile = builder.create_optimization_profile()
    for p in plan.profile:
        profile.set_shape(p.input, trt.Dims(list(p.min)), trt.Dims(list(p.opt)), trt.Dims(list(p.max)))
    if config.add_optimization_profile(profile) < 0:
        raise BuildError(f"{plan.onnx}: TensorRT rejected the optimisation profile {plan.profile_dict()}")
    cache = _load_timing_cache(config, plan.timing_cache, log)
    return config, cache


def _load_timing_cache(config: Any, path: Path, log: Log) -> Any:
    data = path.read_bytes() if path.is_file() else b""
    cache = None
    if data:
        try:
            cache = config.create_timing_cache(data)
        except (RuntimeError, TypeError, ValueError):
            cache = None
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            log(f"timing cache {path} is unreadable or from another GPU/TensorRT: starting a new one")
            cache = None
        else:
            log(f"timing cache {path}: loaded, {_mb(len(data))}")
    if cache is None:
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def build_engine(trt: ModuleType, plan: BuildPlan, *, gpu: GpuInfo, log: Log | None = None) -> Path:
    """Carry out one BuildPlan: write the engine and its sidecar; returns the engine path."""
    log = log or (lambda _msg: None)
    errors: list[str] = []
    logger = build_logger(trt, log, errors)
    onnx_bytes = plan.onnx.stat().st_size
    log(f"{plan.engine.name}: {plan.path.replace('_', ' ')} from {plan.onnx.name} ({_mb(onnx_bytes)}); "
        f"flags {', '.join(plan.network_flags + plan.builder_flags) or 'none'}; FP32 pins: {plan.pins.source}")
    for note in plan.notes:
        log(f"note: {note}")
    t_start = time.perf_counter()
    if plan.init_plugins:
        trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    network = builder.create_network(_flag_bits(trt.NetworkDefinitionCreationFlag, plan.network_flags))
    with _Step(log, f"parse {plan.onnx.name}") as step:
        parser = _parse(trt, plan, network, logger)
        step.detail = f"{network.num_layers} layers"
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    expected = [p.input for p in plan.profile]
    if sorted(inputs) != sorted(expected):
        raise BuildError(f"{plan.onnx}: inputs {sorted(inputs)[:4]} disagree with meta.json {sorted(expected)[:4]}")
    pinned = [] if plan.path == STRONGLY_TYPED else apply_fp32_pins(trt, network, plan, log)
    if pinned:
        log(f"kept {len(pinned)} layer(s) in FP32 ({plan.pins.source})")
    config, _cache = _configure(trt, builder, plan, log)
    with _Step(log, f"build {plan.engine.name}") as step:
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            reason = errors[-1] if errors else "see the TensorRT messages above"
            raise BuildError(f"{plan.onnx}: TensorRT {trt.__version__} failed to build {plan.engine.name}: {reason}")
        engine = memoryview(serialized)
        step.detail = _mb(engine.nbytes)
    del parser  # the parser owns weights the network refers to: keep it until the build is done
    atomic_write_bytes(plan.engine, engine)
    cache_bytes = memoryview(config.get_timing_cache().serialize())
    atomic_write_bytes(plan.timing_cache, cache_bytes)
    log(f"timing cache {plan.timing_cache}: saved, {_mb(cache_bytes.nbytes)}")
    meta = EngineMeta(
        model=plan.model, precision=plan.precision, engine_file=plan.engine.name, engine_sha256=sha256_bytes(engine),
        engine_bytes=engine.nbytes, tensorrt_version=str(trt.__version__), gpu=gpu, onnx_file=plan.onnx.name,
        onnx_sha256=sha256_file(plan.onnx), build_path=plan.path, network_flags=plan.network_flags,
        builder_flags=plan.builder_flags, cleared_flags=plan.cleared_flags, parser_flags=plan.parser_flags,
        fp32_layers={"source": plan.pins.source, "count": len(pinned), "layer_types": list(plan.pins.layer_types)},
        batch=plan.batch, profile=plan.profile_dict(), workspace_bytes=plan.workspace_bytes,
        timing_cache=str(plan.timing_cache), build_seconds=round(time.perf_counter() - t_start, 3),
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), tool_version=tool_version(),
    )
    write_sidecar(plan.engine, meta)
    log(f"wrote {plan.engine} ({_mb(engine.nbytes)}) and {plan.sidecar.name}")
    return plan.engine


def is_up_to_date(trt: ModuleType, plan: BuildPlan, gpu: GpuInfo) -> bool:
    """The engine exists, its sidecar matches this TensorRT, GPU, ONNX and plan, and the file is
    the one the sidecar describes."""
    if not plan.engine.is_file():
        return False
    try:
        meta = read_sidecar(plan.engine)
    except ValueError:
        return False
    if meta is None:
        return False
    same_plan = (meta.onnx_file == plan.onnx.name and meta.build_path == plan.path
                 and tuple(meta.batch) == plan.batch and tuple(meta.builder_flags) == plan.builder_flags
                 and tuple(meta.network_flags) == plan.network_flags and meta.workspace_bytes == plan.workspace_bytes)
    return same_plan and not mismatches(meta, tensorrt_version=str(trt.__version__), gpu=gpu,
                                        onnx_sha256=sha256_file(plan.onnx),
                                        engine_sha256=sha256_file(plan.engine))


def build_engines(
    bundle_path: str | Path | Bundle, precisions: Sequence[str] = ("fp16",), batch: str | Sequence[int] = (1, 1, 8),
    workspace_gb: float | None = None, timing_cache: str | Path | None = None, log: Log | None = None, *,
    force: bool = False, device: int = 0,
) -> list[Path]:
    """Build the mapping engine (FP32) and a synthesis engine per precision for this GPU.

    Engines whose sidecar shows they are current (same TensorRT, GPU, ONNX and plan) are kept
    unless force=True. Raises TensorRTMissing where TensorRT is not installed.
    """
    log = log or (lambda _msg: None)
    bundle = open_bundle(bundle_path)
    trt = import_tensorrt(bundle.path, precisions[0] if precisions else "fp16")
    from stylegan_edge.runtime.backends.cuda import CudaDevice, CudaError, CudaUnavailable

    # TensorRT builds on the CUDA runtime's current device, which is device 0 unless a context is
    # current on this thread: make device N's primary context current around the builds, so the
    # engine is built (timed, tuned) on the GPU the sidecar names.
    try:
        cuda_device = CudaDevice(device)
    except CudaUnavailable as e:
        raise BuildError(f"cannot identify the GPU the engines are for: {e}") from None
    gpu = cuda_device.info
    try:
        log(f"TensorRT {trt.__version__} on {gpu} (CUDA device {device}); bundle {bundle.path}")
        plans = plan_builds(trt, bundle, precisions, batch=batch, workspace_gb=workspace_gb,
                            timing_cache=timing_cache)
        engines = []
        with cuda_device.active():
            for plan in plans:
                if not force and is_up_to_date(trt, plan, gpu):
                    log(f"{plan.engine.name}: up to date (built for {gpu}, TensorRT {trt.__version__})")
                else:
                    build_engine(trt, plan, gpu=gpu, log=log)
                engines.append(plan.engine)
    except CudaError as e:
        raise BuildError(f"CUDA device {device}: {e}") from None
    finally:
        cuda_device.close()
    return engines
