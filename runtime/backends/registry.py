"""Which backends exist, what options each takes, and which one `auto` picks.

A backend is one module plus one `BackendSpec`. The built-in modules (below) each hold a
`BACKENDS` tuple of specs and are imported on the first lookup, not when the runtime is
imported, so importing `stylegan_edge.runtime` costs no backend module (and never TensorRT,
pycuda or torch, which the modules themselves import only when a backend opens). Anything else
(a plugin, a test) calls `register_backend`.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..bundle import Bundle
from .base import Backend, BackendUnavailable

# Modules of this package that declare built-in backends, each in a `BACKENDS` tuple.
BUILTIN_MODULES = ("tensorrt", "onnxruntime", "torch")

# open(bundle, model, precision, **options) -> Backend, with only the options the spec declares.
BundleOpener = Callable[..., Backend]
# open_checkpoint(checkpoint path or in-memory training Generator, device) -> runtime Generator.
CheckpointOpener = Callable[[Any, str], Any]


def _always() -> bool:
    return True


@dataclass(frozen=True)
class BackendSpec:
    """One backend as the registry knows it.

    open: opens one of a bundle's graphs (None: the backend runs training checkpoints only).
    options: the keyword options `open` takes; others are refused, naming the option.
    available: whether its libraries are importable here (cheap; engines may still be missing).
    auto_rank: its place in `auto`'s order, lowest first; None: only when asked for by name.
    auto_when: whether `auto` should try it for this bundle, model and precision (e.g. an
        engine file exists); None: always.
    open_checkpoint: runs a training checkpoint directly (PyTorch), for MODEL arguments that
        are checkpoints and for the PyTorch rows of the bench.
    """

    name: str
    open: BundleOpener | None
    options: frozenset[str] = frozenset()
    available: Callable[[], bool] = _always
    auto_rank: int | None = None
    auto_when: Callable[[Bundle, str, str], bool] | None = None
    open_checkpoint: CheckpointOpener | None = None


class BackendRegistry:
    """Backends by name; the built-in ones are loaded on the first lookup."""

    def __init__(self, builtin_modules: tuple[str, ...] = ()) -> None:
        self._specs: dict[str, BackendSpec] = {}
        self._pending = list(builtin_modules)
        self._lock = threading.RLock()

    def _load_builtins(self) -> None:
        with self._lock:
            while self._pending:
                module = importlib.import_module(f"{__package__}.{self._pending.pop(0)}")
                for spec in module.BACKENDS:
                    self._specs.setdefault(spec.name, spec)

    def register(self, spec: BackendSpec, replace: bool = False) -> None:
        self._load_builtins()  # a plugin registered first must not be shadowed by a built-in later
        with self._lock:
            if spec.name in self._specs and not replace:
                raise ValueError(f"a backend named {spec.name!r} is already registered (pass replace=True)")
            if spec.name == "auto":
                raise ValueError("'auto' is not a backend name: it picks one of the registered backends")
            self._specs[spec.name] = spec

    def unregister(self, name: str) -> None:
        self._load_builtins()
        with self._lock:
            self._specs.pop(name, None)

    def get(self, name: str) -> BackendSpec | None:
        self._load_builtins()
        return self._specs.get(name)

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(self._specs)

    def auto_order(self) -> list[BackendSpec]:
        self._load_builtins()
        ranked = [s for s in self._specs.values() if s.auto_rank is not None]
        return sorted(ranked, key=lambda s: (s.auto_rank, s.name))


_REGISTRY = BackendRegistry(BUILTIN_MODULES)


def register_backend(
    name: str, open: BundleOpener | None, *, options: frozenset[str] | set[str] = frozenset(),
    available: Callable[[], bool] = _always, auto_rank: int | None = None,
    auto_when: Callable[[Bundle, str, str], bool] | None = None, open_checkpoint: CheckpointOpener | None = None,
    replace: bool = False,
) -> BackendSpec:
    """Make a backend available by name to `Generator(..., backend=name)`, `open_backend` and
    `stylegan bench --backends name`. Returns its spec."""
    spec = BackendSpec(name, open, frozenset(options), available, auto_rank, auto_when, open_checkpoint)
    _REGISTRY.register(spec, replace=replace)
    return spec


def unregister_backend(name: str) -> None:
    """Forget a backend (tests remove what they registered)."""
    _REGISTRY.unregister(name)


def backend_spec(name: str) -> BackendSpec:
    """The spec of a registered backend; an unknown name is one line listing the known ones."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise BackendUnavailable(f"unknown backend {name!r}; choose auto, {', '.join(_REGISTRY.names())}")
    return spec


def backend_names() -> list[str]:
    """Every registered backend name, sorted (without 'auto')."""
    return _REGISTRY.names()


def bundle_backend_names() -> list[str]:
    """The backends that run bundles (not only checkpoints)."""
    return [n for n in _REGISTRY.names() if backend_spec(n).open is not None]


def checkpoint_backend_names() -> list[str]:
    """The backends that run training checkpoints directly."""
    return [n for n in _REGISTRY.names() if backend_spec(n).open_checkpoint is not None]


def _auto_options() -> frozenset[str]:
    return frozenset().union(*(s.options for s in _REGISTRY.auto_order()))


def backend_options(name: str) -> frozenset[str]:
    """The options `open_backend(name, ...)` understands (`auto` passes them to each backend it tries)."""
    spec = _REGISTRY.get(name) if name != "auto" else None
    # An unknown name answers like auto: the open that follows names the unknown backend.
    return spec.options if spec is not None else _auto_options()


def available_backends() -> list[str]:
    """Backends whose libraries are importable here (engines may still be missing), auto's first."""
    ranked = [s.name for s in _REGISTRY.auto_order()]
    rest = [n for n in _REGISTRY.names() if n not in ranked]
    return [n for n in (*ranked, *rest) if backend_spec(n).available()]


def _open(spec: BackendSpec, bundle: Bundle, model: str, precision: str, options: dict[str, Any]) -> Backend:
    if spec.open is None:
        raise BackendUnavailable(
            f"{bundle.path}: the {spec.name} backend runs a training checkpoint, not a bundle; a bundle runs on "
            f"{' or '.join(bundle_backend_names())}"
        )
    return spec.open(bundle, model, precision, **{k: v for k, v in options.items() if k in spec.options})


def open_backend(name: str, bundle: Bundle, model: str, precision: str = "fp32", **options: Any) -> Backend:
    """Open `model` ('mapping' or 'synthesis') of a bundle on a backend, or on the first of
    `auto`'s candidates that opens (a later one is tried only when an earlier one is unavailable)."""
    if name == "auto":
        candidates = [s for s in _REGISTRY.auto_order()
                      if s.auto_when is None or s.auto_when(bundle, model, precision)]
        if not candidates:
            raise BackendUnavailable(f"no backend can open {bundle.path} here; registered: "
                                     f"{', '.join(_REGISTRY.names())}")
        for spec in candidates[:-1]:
            try:
                return _open(spec, bundle, model, precision, options)
            except BackendUnavailable:
                pass
        return _open(candidates[-1], bundle, model, precision, options)
    spec = backend_spec(name)
    # `auto` hands every candidate the same options, so a candidate's options are ignored by a
    # backend that does not take them; anything else is a typo.
    unknown = set(options) - spec.options - _auto_options()
    if unknown:
        raise TypeError(f"unknown {name} backend option(s) {sorted(unknown)}; it takes {sorted(spec.options)}")
    return _open(spec, bundle, model, precision, options)
