"""onnxruntime backend: the CPU provider (the embedded default) and the CUDA and TensorRT
execution providers where the installed onnxruntime has them."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle, BundleError
from ..files import atomic_path
from .base import BackendClosed, BackendUnavailable, BaseBackend
from .registry import BackendSpec

# The options `open_backend("onnxruntime", ...)` takes.
OPTIONS = frozenset({"device", "settings", "providers"})

# Our device names -> onnxruntime providers, best first.
DEVICE_PROVIDERS = {
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "cpu": ["CPUExecutionProvider"],
}


@dataclass(frozen=True)
class SessionSettings:
    """onnxruntime session options that matter for speed.

    threads=None lets onnxruntime use one thread per physical core, which measured fastest
    for this generator on small machines; sequential execution because the graph is a chain;
    the memory arena stays on because synthesis allocates the same shapes every call.
    """

    threads: int | None = None
    sequential: bool = True
    arena: bool = True
    optimization: str = "all"  # "all", "extended", "basic", "none"
    # Keep onnxruntime's optimised graph beside the model (CPU only), so later loads skip the
    # graph optimisation; keyed by the source file, onnxruntime version and CPU.
    cache_optimized: bool = True
    # CPU only: run a larger batch as consecutive calls of at most this many images. Batching
    # only pays while a call's feature maps stay in cache; past that, memory traffic grows
    # faster than the work (see `cpu_batch_chunk`). None: one call per batch.
    max_batch: int | None = None

    def session_options(self):  # -> ort.SessionOptions
        import onnxruntime as ort

        so = quiet_session_options()
        if self.threads:
            so.intra_op_num_threads = self.threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL if self.sequential else ort.ExecutionMode.ORT_PARALLEL
        so.enable_cpu_mem_arena = self.arena
        so.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[self.optimization]
        return so


def quiet_session_options():  # -> ort.SessionOptions
    """onnxruntime's default session options without its warnings (unused initialisers and the
    like are noise for users)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return so


def open_session(model: str | os.PathLike[str] | bytes, options=None,  # options: ort.SessionOptions | None
                 providers: Sequence[str] = ("CPUExecutionProvider",)):  # -> ort.InferenceSession
    """An onnxruntime session of a model file or serialised model: the one place sessions are made
    (calibration, export's check, this backend). Options default to `quiet_session_options()`,
    providers to the CPU."""
    import onnxruntime as ort

    src = model if isinstance(model, bytes) else os.fspath(model)
    so = options if options is not None else quiet_session_options()
    return ort.InferenceSession(src, so, providers=list(providers))


# Feature-map bytes per call above which batching stops paying on the CPU. Measured on a 2-core
# EPYC (1 MiB L2 per core, 32 MiB L3), side by side in one process: edge256 (largest map 4 MiB
# per image) runs batch 4 15% faster as four calls of one than as one call; faces64 (0.25 MiB)
# runs it 25% faster as one call.
CPU_BATCH_BUDGET_BYTES = 2 << 20


def cpu_batch_chunk(largest_map_bytes: int, budget: int = CPU_BATCH_BUDGET_BYTES) -> int:
    """Images per onnxruntime CPU call for a model whose largest feature map takes
    `largest_map_bytes` per image: as many as fit the budget, at least one."""
    return max(1, budget // max(1, largest_map_bytes))


def optimized_cache_path(model: Path, ort_version: str) -> Path:
    """Where onnxruntime's optimised copy of `model` lives: its layout transformations depend on
    the onnxruntime version and the CPU's instruction sets, and the copy is only valid for the
    exact source file (size and modification time)."""
    st = model.stat()
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        pass
    key = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}:{ort_version}:{flags}".encode()).hexdigest()[:16]
    return model.with_name(f".{model.stem}.ort-{key}.onnx")


def available_devices() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    have = set(ort.get_available_providers())
    return [d for d, provs in DEVICE_PROVIDERS.items() if provs[0] in have]


def resolve_device(device: str) -> str:
    devices = available_devices()
    if not devices:
        raise BackendUnavailable("onnxruntime is not installed (pip install onnxruntime)")
    if device == "auto":
        # The TensorRT provider compiles engines on first run (minutes): opt in, never default.
        return "cuda" if "cuda" in devices else "cpu"
    if device not in DEVICE_PROVIDERS:
        raise BackendUnavailable(f"unknown onnxruntime device {device!r}; choose auto, cpu, cuda or tensorrt")
    if device not in devices:
        raise BackendUnavailable(
            f"onnxruntime has no {DEVICE_PROVIDERS[device][0]} here (install onnxruntime-gpu with a matching CUDA)"
        )
    return device


class OnnxRuntimeBackend(BaseBackend):
    name = "onnxruntime"

    def __init__(
        self, path: str | Path, precision: str = "fp32", device: str = "auto",
        settings: SessionSettings | None = None, providers: Sequence[str] | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.precision = precision
        self.settings = settings or SessionSettings()
        self.device = resolve_device(device) if providers is None else "custom"
        provs = list(providers) if providers is not None else DEVICE_PROVIDERS[self.device]
        self.cached = False
        cache = optimized_cache_path(self.path, ort.__version__) \
            if self.settings.cache_optimized and provs == ["CPUExecutionProvider"] else None
        try:
            self.session = self._open(ort, cache, provs)
        except (OSError, MemoryError):
            raise
        except Exception as e:
            # onnxruntime's own error classes (InvalidProtobuf, InvalidGraph, Fail, ...): an empty,
            # truncated, garbled or bit-flipped file. Its message is multi-line and internal.
            text = " ".join(str(e).split())
            raise BundleError(f"{self.path}: not a loadable ONNX graph ({text[:160]})") from None
        self.providers = self.session.get_providers()
        if self.device == "custom":
            self.device = "cpu" if self.providers[0] == "CPUExecutionProvider" else "cuda"
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self.input_names = [i.name for i in inputs]
        self.output_names = [o.name for o in outputs]
        # name -> shape; a symbolic dim (the batch axis) is a string or None.
        self.input_shapes = {i.name: list(i.shape) for i in inputs}
        self.output_shapes = {o.name: list(o.shape) for o in outputs}
        for node in (*inputs, *outputs):
            if node.type != "tensor(float)":
                raise BundleError(f"{self.path}: {node.name} is {node.type}, the runtime feeds and reads float32")

    def _open(self, ort, cache: Path | None, provs: list[str]):  # -> ort.InferenceSession
        so = self.settings.session_options()
        if cache is not None and cache.is_file():
            cached = self.settings.session_options()
            cached.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            try:
                session = open_session(cache, cached, provs)
                self.cached = True
                return session
            except Exception:  # a cache from an interrupted write or another build: rebuild it
                cache.unlink(missing_ok=True)
        if cache is not None and os.access(cache.parent, os.W_OK):
            try:
                with atomic_path(cache, suffix=".onnx") as tmp:
                    so.optimized_model_filepath = os.fspath(tmp)
                    return open_session(self.path, so, provs)
            except OSError:  # a full disk or an I/O error: the cache is an optimisation, run without it
                so = self.settings.session_options()
        return open_session(self.path, so, provs)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # One read of the session: a close() in another thread then lets this call finish on the
        # session it started with, and later calls see the closed state.
        session = self.session
        if session is None:
            raise BackendClosed(f"{self.path}: the onnxruntime session is closed")
        feeds = {k: feeds[k] for k in self.input_names}
        chunk = self.settings.max_batch if self.device == "cpu" else None
        batch = len(next(iter(feeds.values()))) if feeds else 0
        if not chunk or batch <= chunk:
            return dict(zip(self.output_names, session.run(self.output_names, feeds)))
        parts = [session.run(self.output_names, {k: v[i:i + chunk] for k, v in feeds.items()})
                 for i in range(0, batch, chunk)]
        return {name: np.concatenate([p[j] for p in parts]) for j, name in enumerate(self.output_names)}

    def close(self) -> None:
        # Dropping the session frees its memory and stops its thread pool now, not at garbage
        # collection (a benchmark opens many sessions in one process).
        self.session = None

    def describe(self) -> dict[str, str]:
        d = super().describe()
        d["providers"] = ",".join(p.replace("ExecutionProvider", "") for p in self.providers)
        d["threads"] = str(self.settings.threads or "auto")
        if self.settings.max_batch and self.device == "cpu":
            d["max_batch"] = str(self.settings.max_batch)
        d["optimized_cache"] = "hit" if self.cached else "miss"
        return d


def open_onnxruntime(bundle: Bundle, model: str, precision: str = "fp32", **options: Any) -> OnnxRuntimeBackend:
    """The registry's opener: one of a bundle's ONNX graphs, checked against `meta.json`."""
    path = bundle.onnx_path(model, precision)
    # `auto` hands every backend the same options: a TensorRT device index means the GPU.
    if isinstance(options.get("device"), int):
        options["device"] = "cuda"
    if model == "synthesis" and "settings" not in options:
        options["settings"] = SessionSettings(max_batch=cpu_batch_chunk(bundle.meta.largest_feature_map_bytes))
    backend = OnnxRuntimeBackend(path, precision=precision, **options)
    try:
        bundle.check_graph(model, backend.input_shapes, backend.output_shapes, path)
    except BaseException:
        backend.close()
        raise
    return backend


# The last of `auto`'s candidates: it always opens (its device `auto` is CUDA when present, else the CPU).
BACKENDS = (
    BackendSpec("onnxruntime", open_onnxruntime, OPTIONS,
                available=lambda: importlib.util.find_spec("onnxruntime") is not None, auto_rank=20),
)
