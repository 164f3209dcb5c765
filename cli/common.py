"""Shared pieces of the command line: one-line errors, opening a MODEL argument, progress."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from stylegan_edge.runtime.bundle import BundleError
from stylegan_edge.runtime.errors import StyleganError
from stylegan_edge.runtime.generator import ArgumentError, Generator, class_from_text, class_list

F = TypeVar("F", bound=Callable[..., Any])

# Bad input or a missing capability: every stage raises a StyleganError subclass (one line,
# exit code 1); the OS's file errors read as one line too. Anything else is a bug and keeps its
# traceback. STYLEGAN_DEBUG=1 shows tracebacks always.
USER_ERRORS: tuple[type[BaseException], ...] = (
    StyleganError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
)


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def one_line_errors(fn: F) -> F:
    """Turn the user errors a command raises into one red line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(130) from None
        except Exception as e:
            if os.environ.get("STYLEGAN_DEBUG"):
                raise
            if isinstance(e, USER_ERRORS):
                raise fail(_one_line(e)) from None
            missing = missing_module_message(e)
            if missing is not None:
                raise fail(missing) from None
            raise

    return wrapper  # type: ignore[return-value]


# Which `pip install` brings a module the commands import lazily (pyproject.toml's extras).
MODULE_EXTRAS: dict[str, str] = {
    "torch": "train", "safetensors": "train",
    "onnx": "export", "onnxscript": "export", "onnxconverter_common": "export", "onnxruntime.quantization": "export",
    "cv2": "demo",
    "tensorrt": "trt", "pycuda": "trt",
    "scipy": "dev", "pytest": "dev",
    # The runtime's own dependencies: a broken or partial install.
    "numpy": "", "onnxruntime": "", "typer": "", "PIL": "", "tqdm": "", "rich": "",
}


def missing_module_message(e: BaseException) -> str | None:
    """One line naming the extra that brings a module a command could not import, or None
    when `e` is not an import failure of a known dependency (then it is a bug: traceback)."""
    if not isinstance(e, ImportError) or not e.name:
        return None
    name = e.name
    extra = None
    for candidate in (name, *(name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1))):
        if candidate in MODULE_EXTRAS:
            extra = MODULE_EXTRAS[candidate]
            break
    if extra is None:
        return None
    install = f"pip install '.[{extra}]'" if extra else "pip install ."
    if extra == "trt":  # not on PyPI for Jetson: JetPack brings TensorRT, pycuda builds from source
        install += " (on a Jetson TensorRT comes with JetPack: python3-libnvinfer)"
    if isinstance(e, ModuleNotFoundError):
        return f"this command needs {name}, which is not installed here: {install}"
    # Installed but broken (a missing shared library, an incompatible version).
    return f"{name} is installed but cannot be imported ({_one_line(e)}): reinstall it with {install}"


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror or e}"
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def is_bundle(path: str | Path) -> bool:
    return Path(path).is_dir()


def open_model(model: str | Path, backend: str = "auto", precision: str = "fp32", device: str = "auto") -> Generator:
    """A Generator for a MODEL argument: a bundle directory runs on the runtime's backends; a
    checkpoint (.safetensors) runs on a backend that runs checkpoints (PyTorch), so the two can be
    compared. Which backend does which is the registry's (runtime/backends/registry.py)."""
    from stylegan_edge.runtime.backends import (
        backend_options,
        backend_spec,
        bundle_backend_names,
        checkpoint_backend_names,
    )

    path = Path(model)
    spec = backend_spec(backend) if backend != "auto" else None
    if is_bundle(path):
        if spec is not None and spec.open is None:
            raise BundleError(f"{path}: --backend {backend} needs a checkpoint; a bundle runs on "
                              f"{' or '.join(bundle_backend_names())}")
        options = {"device": device} if device != "auto" and "device" in backend_options(backend) else {}
        return Generator(path, backend=backend, precision=precision, **options)
    if not path.exists():
        raise FileNotFoundError(2, "no such checkpoint or bundle", str(path))
    runner = next(iter(checkpoint_backend_names()), "torch")
    if spec is None:
        spec = backend_spec(runner)
    if spec.open_checkpoint is None:
        raise BundleError(
            f"{path}: a checkpoint runs in PyTorch (--backend {runner}); export it for {backend} with "
            f"`stylegan-export {path} --out NAME.sgbundle`"
        )
    if precision != "fp32":
        raise BundleError(f"{path}: the PyTorch path runs fp32; export a bundle for {precision}")
    return spec.open_checkpoint(path, device)


def resolve_class(g: Any, value: str | None, model: str | Path, option: str = "--class") -> int | None:
    """--class N or NAME -> the class index for a class-conditional model; None for an
    unconditional one. Checked once the model is open and before any work, in one line."""
    names = tuple(getattr(g, "label_names", ()) or ())
    size = int(getattr(g, "label_size", 0) or 0)
    if not size:
        if value is not None:
            raise ArgumentError(f"{option} {value}: {model} is not class-conditional (it has no classes)")
        return None
    if value is None:
        raise ArgumentError(f"{model} is class-conditional: give {option} N (index or name) of its {size} "
                            f"classes: {class_list(names, indices=True)}")
    return class_from_text(value, names, option)


def progress_bar(total: int, desc: str):  # -> tqdm
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=total < 2, leave=False)
