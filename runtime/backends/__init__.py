"""Inference backends behind one protocol (see `base.py`), found by name in a registry
(`registry.py`).

Each backend is its own module declaring its options, imported only when a backend is first
looked up, so a missing TensorRT costs nothing to onnxruntime users. `auto` picks TensorRT (when
the package and a matching engine are present), then onnxruntime on CUDA, then onnxruntime on
the CPU.
"""

from __future__ import annotations

from .base import Backend, BackendClosed, BackendUnavailable, BaseBackend, NoiseRequest
from .registry import (
    BackendSpec,
    available_backends,
    backend_names,
    backend_options,
    backend_spec,
    bundle_backend_names,
    checkpoint_backend_names,
    open_backend,
    register_backend,
    unregister_backend,
)

__all__ = [
    "Backend", "BackendClosed", "BackendSpec", "BackendUnavailable", "BaseBackend", "NoiseRequest",
    "available_backends", "backend_names", "backend_options", "backend_spec", "bundle_backend_names",
    "checkpoint_backend_names", "open_backend", "register_backend", "unregister_backend",
]
