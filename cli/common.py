"""Shared pieces of the command line: one-line errors, opening a MODEL argument, progress."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from stylegan_edge.runtime.backends.base import BackendUnavailable
from stylegan_edge.runtime.bundle import BundleError
from stylegan_edge.runtime.generator import Generator
from stylegan_edge.runtime.latents import SeedError

F = TypeVar("F", bound=Callable[..., Any])

# Errors that describe bad input or a missing capability: shown as one line, exit code 1.
# Anything else is a bug and keeps its traceback. STYLEGAN_DEBUG=1 shows tracebacks always.
USER_ERRORS: tuple[type[BaseException], ...] = (
    BundleError, BackendUnavailable, SeedError, FileNotFoundError, PermissionError, IsADirectoryError,
    NotADirectoryError,
)


def register_user_error(*classes: type[BaseException]) -> None:
    """Stages that are imported lazily (training, export, calibration) add their error classes."""
    global USER_ERRORS
    USER_ERRORS = USER_ERRORS + tuple(c for c in classes if c not in USER_ERRORS)


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
            _register_stage_errors()  # the stages the command imported on its way
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


def _register_stage_errors() -> None:
    """Error classes of the stages that are installed (torch may be absent on a Jetson)."""
    for module, names in (
        ("stylegan_edge.training.checkpoint", ["CheckpointError"]),
        ("stylegan_edge.training.config", ["ConfigError"]),
        ("stylegan_edge.training.data", ["DatasetError"]),
        ("stylegan_edge.training.metrics.fid", ["FIDError"]),
        ("stylegan_edge.export.onnx_export", ["ExportError"]),
        ("stylegan_edge.runtime.engine_meta", ["EngineMismatch"]),
        ("stylegan_edge.export.tensorrt_build", ["TensorRTMissing", "BuildError"]),
        ("stylegan_edge.export.trt_plan", ["PlanError"]),
        ("stylegan_edge.runtime.engine_meta", ["EngineMetaError"]),
        ("stylegan_edge.training.official", ["OfficialPickleError"]),
        ("stylegan_edge.calibration.errors", ["CalibrationError"]),
        ("stylegan_edge.runtime.demo.errors", ["DemoError"]),
        ("stylegan_edge.runtime.video", ["VideoSpecError"]),
        ("stylegan_edge.runtime.images", ["OutputWriteError"]),
        ("stylegan_edge.training.loop", ["TrainingError"]),
    ):
        mod = sys.modules.get(module)
        if mod is not None:
            register_user_error(*(getattr(mod, n) for n in names if hasattr(mod, n)))


def is_bundle(path: str | Path) -> bool:
    return Path(path).is_dir()


def open_model(model: str | Path, backend: str = "auto", precision: str = "fp32", device: str = "auto") -> Generator:
    """A Generator for a MODEL argument: a bundle directory runs on the runtime's backends; a
    checkpoint (.safetensors) runs in PyTorch, so the two can be compared."""
    path = Path(model)
    if is_bundle(path):
        if backend == "torch":
            raise BundleError(f"{path}: --backend torch needs a checkpoint; a bundle runs on onnxruntime or tensorrt")
        options = {"device": device} if backend in ("auto", "onnxruntime") and device != "auto" else {}
        return Generator(path, backend=backend, precision=precision, **options)
    if not path.exists():
        raise FileNotFoundError(2, "no such checkpoint or bundle", str(path))
    if backend not in ("auto", "torch"):
        raise BundleError(
            f"{path}: a checkpoint runs in PyTorch (--backend torch); export it for {backend} with "
            f"`stylegan-export {path} --out NAME.sgbundle`"
        )
    if precision != "fp32":
        raise BundleError(f"{path}: the PyTorch path runs fp32; export a bundle for {precision}")
    try:
        from stylegan_edge.export.torch_backend import torch_generator
    except ImportError as e:
        raise BackendUnavailable(f"running a checkpoint needs PyTorch ({e.name} is missing): pip install '.[train]'") from None
    torch_device = "cuda" if device == "cuda" else "cpu"
    return torch_generator(path, device=torch_device)


def progress_bar(total: int, desc: str):  # -> tqdm
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=total < 2, leave=False)
