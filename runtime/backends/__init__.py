"""Inference backends behind one protocol (see `base.py`).

Each backend is its own module, imported only when asked for, so a missing TensorRT costs
nothing to onnxruntime users. `auto` picks TensorRT (when the package and a matching engine
are present), then onnxruntime on CUDA, then onnxruntime on the CPU.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ..bundle import Bundle, engine_filename
from .base import Backend, BackendClosed, BackendUnavailable, BaseBackend, NoiseRequest

__all__ = [
    "Backend", "BackendClosed", "BackendUnavailable", "BaseBackend", "NoiseRequest", "open_backend",
    "available_backends", "backend_options", "BACKEND_NAMES",
]

BACKEND_NAMES = ("onnxruntime", "tensorrt")
ORT_OPTIONS = frozenset({"device", "settings", "providers"})


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def backend_options(name: str) -> frozenset[str]:
    """The options `open_backend(name, ...)` understands (`auto` passes them to either backend)."""
    from .tensorrt import OPTIONS as TRT_OPTIONS  # its module imports no TensorRT until a backend opens

    return {"onnxruntime": ORT_OPTIONS, "tensorrt": TRT_OPTIONS}.get(name, ORT_OPTIONS | TRT_OPTIONS)


def available_backends() -> list[str]:
    """Backends whose libraries are importable here (engines may still be missing)."""
    return [n for n, mod in (("tensorrt", "tensorrt"), ("onnxruntime", "onnxruntime")) if _has_module(mod)]


def open_backend(
    name: str, bundle: Bundle, model: str, precision: str = "fp32", **options: Any,
) -> Backend:
    """Open `model` ('mapping' or 'synthesis') of a bundle on a backend."""
    if name == "auto":
        if _has_module("tensorrt") and bundle.has(engine_filename(model, precision)):
            try:
                return open_backend("tensorrt", bundle, model, precision, **options)
            except BackendUnavailable:
                pass
        return open_backend("onnxruntime", bundle, model, precision, **options)
    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        path = bundle.onnx_path(model, precision)
        # `auto` hands every backend the same options: keep onnxruntime's own (a TensorRT
        # device index means the GPU).
        ort_options = {k: v for k, v in options.items() if k in ORT_OPTIONS}
        if isinstance(ort_options.get("device"), int):
            ort_options["device"] = "cuda"
        if model == "synthesis" and "settings" not in ort_options:
            from .onnxruntime import SessionSettings, cpu_batch_chunk

            ort_options["settings"] = SessionSettings(max_batch=cpu_batch_chunk(bundle.meta.largest_feature_map_bytes))
        backend = OnnxRuntimeBackend(path, precision=precision, **ort_options)
        try:
            bundle.check_graph(model, backend.input_shapes, backend.output_shapes, path)
        except BaseException:
            backend.close()
            raise
        return backend
    if name == "tensorrt":
        from .tensorrt import TensorRTBackend

        backend = TensorRTBackend.from_bundle(bundle, model, precision, **options)
        return backend
    raise BackendUnavailable(f"unknown backend {name!r}; choose auto, {', '.join(BACKEND_NAMES)}")
