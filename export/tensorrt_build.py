"""Build a bundle's TensorRT engines on the GPU that will run them (no torch: runs on a Jetson).

    from stylegan_edge.export.tensorrt_build import build_engines
    build_engines("ffhq256.sgbundle", precisions=("fp16",), log=print)

For each engine `plan_build` (export/trt_plan.py) decides the build mode, flags, profile and FP32
pins (a `BuildSpec`); this module carries the spec out with the installed TensorRT: parse the ONNX,
pin layers, configure (profile, workspace, timing cache), `build_serialized_network`, then write
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

from stylegan_edge.runtime.backends.base import BackendUnavailable
from stylegan_edge.runtime.bundle import Bundle, open_bundle
from stylegan_edge.runtime.engine_meta import (
    EngineMeta,
    GpuInfo,
    build_command,
    mismatches,
    read_sidecar,
    write_sidecar,
)
from stylegan_edge.runtime.errors import StyleganError
from stylegan_edge.runtime.files import atomic_write_bytes, sha256_bytes, sha256_file
from stylegan_edge.runtime.version import tool_version

from .trt_plan import STRONGLY_TYPED, BuildSpec, LayerInfo, layer_nodes, pinned_layers, plan_build, plan_builds

Log = Callable[[str], None]

__all__ = ["BuildError", "TensorRTMissing", "build_engine", "build_engines", "plan_build"]


class TensorRTMissing(StyleganError, RuntimeError):  # noqa: N818 - the name the CLI and users know
    """TensorRT is not installed where the build was asked for."""

    def __init__(self, bundle_path: str | Path, precision: str = "fp16") -> None:
        super().__init__(
            "TensorRT is not installed here; engines are built on the target GPU (they only run on the GPU model "
            "and TensorRT version that built them): copy the bundle there and run "
            f"`{build_command(bundle_path, precision)}`"
        )


class BuildError(StyleganError, RuntimeError):
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


def _parse(trt: ModuleType, spec: BuildSpec, network: Any, logger: Any) -> Any:
    parser = trt.OnnxParser(network, logger)
    for name in spec.parser_flags:
        parser.set_flag(getattr(trt.OnnxParserFlag, name))
    if not parser.parse_from_file(str(spec.onnx)):
        n = parser.num_errors
        first = parser.get_error(0) if n else None
        what = first.desc() if first is not None else "unknown error"
        where = ""
        if first is not None and first.node() >= 0:
            node_name = getattr(first, "node_name", None)  # 10.0 onwards
            where = f" at node {(node_name() if callable(node_name) else '') or first.node()}"
        more = f" (and {n - 1} more)" if n > 1 else ""
        raise BuildError(f"{spec.onnx}: TensorRT {trt.__version__} cannot parse it: {what}{where}{more}")
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


def apply_fp32_pins(trt: ModuleType, network: Any, spec: BuildSpec, log: Log) -> list[str]:
    """Pin the precision plan's layers to FP32 (weak-typed builds); returns the pinned layers' names.

    Helper layers the parser adds without a name belong to their node through the graph
    (trt_plan.layer_nodes); on the INT8 path layers fed by DequantizeLinear are left alone."""
    if spec.pins.empty:
        return []
    floats = {trt.DataType.FLOAT, trt.DataType.HALF}
    infos = network_layers(network)
    nodes = layer_nodes(infos)
    pinned, matched_nodes = [], set()
    for i in pinned_layers(spec.pins, infos, avoid_quantized=spec.precision == "int8"):
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
    quantized = {n for i, n in enumerate(nodes) if n is not None and spec.precision == "int8"
                 and i not in set(pinned_layers(spec.pins, infos))}
    unmatched = sorted(n for n in spec.pins.nodes if n not in matched_nodes and n not in quantized
                       and not any(m.startswith(n + "_") for m in matched_nodes))
    if unmatched:
        log(f"warning: {len(unmatched)} precision-plan node(s) match no TensorRT layer of {spec.onnx.name} "
            f"(first: {unmatched[0]}); is the plan from another export?")
    return pinned


def _configure(trt: ModuleType, builder: Any, spec: BuildSpec, log: Log) -> tuple[Any, Any]:
    config = builder.create_builder_config()
    for name in spec.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in spec.cleared_flags:
        config.clear_flag(getattr(trt.BuilderFlag, name))
    if spec.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_bytes)
    profile = builder.create_optimization_profile()
    for p in spec.profile:
        profile.set_shape(p.input, trt.Dims(list(p.min)), trt.Dims(list(p.opt)), trt.Dims(list(p.max)))
    if config.add_optimization_profile(profile) < 0:
        raise BuildError(f"{spec.onnx}: TensorRT rejected the optimisation profile {spec.profile_dict()}")
    cache = _load_timing_cache(config, spec.timing_cache, log)
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


def build_engine(trt: ModuleType, spec: BuildSpec, *, gpu: GpuInfo, log: Log | None = None) -> Path:
    """Carry out one BuildSpec: write the engine and its sidecar; returns the engine path."""
    log = log or (lambda _msg: None)
    errors: list[str] = []
    logger = build_logger(trt, log, errors)
    onnx_bytes = spec.onnx.stat().st_size
    log(f"{spec.engine.name}: {spec.mode.replace('_', ' ')} from {spec.onnx.name} ({_mb(onnx_bytes)}); "
        f"flags {', '.join(spec.network_flags + spec.builder_flags) or 'none'}; FP32 pins: {spec.pins.source}")
    for note in spec.notes:
        log(f"note: {note}")
    t_start = time.perf_counter()
    if spec.init_plugins:
        trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    network = builder.create_network(_flag_bits(trt.NetworkDefinitionCreationFlag, spec.network_flags))
    with _Step(log, f"parse {spec.onnx.name}") as step:
        parser = _parse(trt, spec, network, logger)
        step.detail = f"{network.num_layers} layers"
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    expected = [p.input for p in spec.profile]
    if sorted(inputs) != sorted(expected):
        raise BuildError(f"{spec.onnx}: inputs {sorted(inputs)[:4]} disagree with meta.json {sorted(expected)[:4]}")
    pinned = [] if spec.mode == STRONGLY_TYPED else apply_fp32_pins(trt, network, spec, log)
    if pinned:
        log(f"kept {len(pinned)} layer(s) in FP32 ({spec.pins.source})")
    config, _cache = _configure(trt, builder, spec, log)
    with _Step(log, f"build {spec.engine.name}") as step:
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            reason = errors[-1] if errors else "see the TensorRT messages above"
            raise BuildError(f"{spec.onnx}: TensorRT {trt.__version__} failed to build {spec.engine.name}: {reason}")
        engine = memoryview(serialized)
        step.detail = _mb(engine.nbytes)
    del parser  # the parser owns weights the network refers to: keep it until the build is done
    atomic_write_bytes(spec.engine, engine)
    cache_bytes = memoryview(config.get_timing_cache().serialize())
    atomic_write_bytes(spec.timing_cache, cache_bytes)
    log(f"timing cache {spec.timing_cache}: saved, {_mb(cache_bytes.nbytes)}")
    meta = EngineMeta(
        model=spec.model, precision=spec.precision, engine_file=spec.engine.name, engine_sha256=sha256_bytes(engine),
        engine_bytes=engine.nbytes, tensorrt_version=str(trt.__version__), gpu=gpu, onnx_file=spec.onnx.name,
        onnx_sha256=sha256_file(spec.onnx), build_mode=spec.mode, network_flags=spec.network_flags,
        builder_flags=spec.builder_flags, cleared_flags=spec.cleared_flags, parser_flags=spec.parser_flags,
        fp32_layers={"source": spec.pins.source, "count": len(pinned), "layer_types": list(spec.pins.layer_types)},
        batch=spec.batch, profile=spec.profile_dict(), workspace_bytes=spec.workspace_bytes,
        timing_cache=str(spec.timing_cache), build_seconds=round(time.perf_counter() - t_start, 3),
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), tool_version=tool_version(),
    )
    write_sidecar(spec.engine, meta)
    log(f"wrote {spec.engine} ({_mb(engine.nbytes)}) and {spec.sidecar.name}")
    return spec.engine


def is_up_to_date(trt: ModuleType, spec: BuildSpec, gpu: GpuInfo) -> bool:
    """The engine exists, its sidecar matches this TensorRT, GPU, ONNX and spec, and the file is
    the one the sidecar describes."""
    if not spec.engine.is_file():
        return False
    try:
        meta = read_sidecar(spec.engine)
    except ValueError:
        return False
    if meta is None:
        return False
    same_spec = (meta.onnx_file == spec.onnx.name and meta.build_mode == spec.mode
                 and tuple(meta.batch) == spec.batch and tuple(meta.builder_flags) == spec.builder_flags
                 and tuple(meta.network_flags) == spec.network_flags and meta.workspace_bytes == spec.workspace_bytes)
    return same_spec and not mismatches(meta, tensorrt_version=str(trt.__version__), gpu=gpu,
                                        onnx_sha256=sha256_file(spec.onnx),
                                        engine_sha256=sha256_file(spec.engine))


def build_engines(
    bundle_path: str | Path | Bundle, precisions: Sequence[str] = ("fp16",), batch: str | Sequence[int] = (1, 1, 8),
    workspace_gb: float | None = None, timing_cache: str | Path | None = None, log: Log | None = None, *,
    force: bool = False, device: int = 0,
) -> list[Path]:
    """Build the mapping engine (FP32) and a synthesis engine per precision for this GPU.

    Engines whose sidecar shows they are current (same TensorRT, GPU, ONNX and spec) are kept
    unless force=True. Raises TensorRTMissing where TensorRT is not installed.
    """
    log = log or (lambda _msg: None)
    bundle = open_bundle(bundle_path)
    from stylegan_edge.runtime.backends.cuda import CudaDevice, CudaError, CudaUnavailable
    from stylegan_edge.runtime.backends.tensorrt import import_tensorrt

    try:
        trt = import_tensorrt()
    except BackendUnavailable:
        raise TensorRTMissing(bundle.path, precisions[0] if precisions else "fp16") from None

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
        specs = plan_builds(trt, bundle, precisions, batch=batch, workspace_gb=workspace_gb,
                            timing_cache=timing_cache)
        engines = []
        with cuda_device.active():
            for spec in specs:
                if not force and is_up_to_date(trt, spec, gpu):
                    log(f"{spec.engine.name}: up to date (built for {gpu}, TensorRT {trt.__version__})")
                else:
                    build_engine(trt, spec, gpu=gpu, log=log)
                engines.append(spec.engine)
    except CudaError as e:
        raise BuildError(f"CUDA device {device}: {e}") from None
    finally:
        cuda_device.close()
    return engines
