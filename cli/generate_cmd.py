"""`stylegan generate | mix | noise | truncation`: images and the paper's figures from a model."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from stylegan_edge.runtime.backends.base import BackendUnavailable
from stylegan_edge.runtime.bundle import PRECISIONS
from stylegan_edge.runtime.generator import NOISE_MODES
from stylegan_edge.runtime.latents import MAX_SEED, SeedError, parse_floats, parse_seeds

from .common import fail, is_bundle, one_line_errors, open_model, progress_bar, resolve_class

# --- option checks, shared by every command but train and export ---------------------------------
# Typer's own min=/max= print a framed usage box, and a float range lets NaN through (every
# comparison with NaN is false); these callbacks print the project's one `error:` line instead.



def _name(param: typer.CallbackParam) -> str:
    return max(param.opts, key=len) if param.opts else param.name or "option"


def int_option(lo: int | None = None, hi: int | None = None) -> Callable[..., Any]:
    """A callback refusing integers outside [lo, hi] (None: open) with one line."""

    def check(param: typer.CallbackParam, value: int | None) -> int | None:
        if value is not None and ((lo is not None and value < lo) or (hi is not None and value > hi)):
            span = f"in [{lo}, {hi}]" if lo is not None and hi is not None else f">= {lo}" if lo is not None else f"<= {hi}"
            raise fail(f"{_name(param)} must be {span}, got {value}")
        return value

    return check


def float_option(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Callable[..., Any]:
    """A callback refusing NaN, infinity and numbers outside [lo, hi] ((lo, hi] with lo_open)."""

    def check(param: typer.CallbackParam, value: float | None) -> float | None:
        if value is None:
            return value
        low_bad = lo is not None and (value <= lo if lo_open else value < lo)
        if not math.isfinite(value) or low_bad or (hi is not None and value > hi):
            left = "(" if lo_open else "["
            span = f"in {left}{lo:g}, {hi:g}]" if lo is not None and hi is not None else \
                f"{'>' if lo_open else '>='} {lo:g}" if lo is not None else "finite"
            raise fail(f"{_name(param)} must be a finite number {span}, got {value}")
        return value

    return check


def choice_option(choices: Sequence[str]) -> Callable[..., Any]:
    def check(param: typer.CallbackParam, value: str | None) -> str | None:
        if value is not None and value not in choices:
            raise fail(f"{_name(param)} must be one of {', '.join(choices)}, got {value!r}")
        return value

    return check


def list_option(choices: Sequence[str]) -> Callable[..., Any]:
    """Comma lists whose every item is one of `choices`."""

    def check(param: typer.CallbackParam, value: str) -> str:
        items = [t.strip() for t in value.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise fail(f"{_name(param)} takes a comma list of {', '.join(choices)}, got {value!r}")
        return value

    return check


def seeds_option(param: typer.CallbackParam, value: str | None) -> str | None:
    """Seed lists, checked by the runtime's parser (32-bit seeds, at most MAX_SEEDS, bounded
    before anything is expanded) when the option is parsed, so a bad list fails before any work."""
    if value is not None:
        try:
            parse_seeds(value)
        except SeedError as e:
            raise fail(f"{_name(param)}: {e}") from None
    return value


def seed_option(param: typer.CallbackParam, value: int | None) -> int | None:
    return int_option(0, MAX_SEED)(param, value)


def floats_option(param: typer.CallbackParam, value: str) -> str:
    """Comma lists of finite numbers (psi sweeps), checked by the runtime's parser."""
    try:
        if not parse_floats(value):
            raise SeedError(f"bad number list {value!r}: give at least one number")
    except SeedError as e:
        raise fail(f"{_name(param)}: {e}") from None
    return value


def check_device(model: str | Path, backend: str, device: str) -> None:
    """--device cuda / tensorrt where this machine has neither: one line before any model loads."""
    if device in ("auto", "cpu"):
        return
    if not is_bundle(model) or backend == "torch":
        if device != "cuda":
            raise BackendUnavailable(f"--device {device} is for bundles; a checkpoint runs in PyTorch on cpu or cuda")
        try:
            import torch
        except ImportError:
            return  # open_model says that PyTorch is missing
        if not torch.cuda.is_available():
            raise BackendUnavailable("--device cuda: PyTorch sees no CUDA device here; use --device cpu")
        return
    try:
        import onnxruntime as ort
    except ImportError:
        return  # the backend says that onnxruntime is missing
    provider = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[device]
    if backend in ("auto", "onnxruntime") and provider not in ort.get_available_providers():
        raise BackendUnavailable(
            f"--device {device}: onnxruntime has no {provider} here (install onnxruntime-gpu with a matching CUDA); "
            "use --device cpu"
        )


def check_cutoff(cutoff: int | None, num_layers: int) -> None:
    """--cutoff above the model's style layers (known once the model is open)."""
    if cutoff is not None and not 0 <= cutoff <= num_layers:
        raise fail(f"--cutoff must be in [0, {num_layers}] for this model ({num_layers} style layers), got {cutoff}")




def _backend_choice(param: typer.CallbackParam, value: str | None) -> str | None:
    # Read when the option is parsed, so a backend registered by a plugin is a valid choice.
    from stylegan_edge.runtime.backends import backend_names

    return choice_option(("auto", *backend_names()))(param, value)

DEVICES = ("auto", "cpu", "cuda", "tensorrt")

ModelArg = Annotated[str, typer.Argument(help="A bundle directory (onnxruntime/TensorRT) or a checkpoint (PyTorch).")]
BackendOpt = Annotated[str, typer.Option(help="auto, onnxruntime, tensorrt, torch (checkpoints), or a registered backend.",
                                         callback=_backend_choice)]
PrecisionOpt = Annotated[str, typer.Option(help="fp32, fp16 or int8 (bundles that have them).",
                                           callback=choice_option(PRECISIONS))]
DeviceOpt = Annotated[str, typer.Option(help="onnxruntime device: auto, cpu, cuda, tensorrt.",
                                        callback=choice_option(DEVICES))]
NoiseOpt = Annotated[str, typer.Option(help="const (the model's fixed noise), random, or none.",
                                       callback=choice_option(NOISE_MODES))]
PsiOpt = Annotated[float | None, typer.Option(help="Truncation psi (default: the model's, 0.7).",
                                              callback=float_option(-16.0, 16.0))]
CutoffOpt = Annotated[int | None, typer.Option(help="Truncate only the first N style layers.", callback=int_option(0))]
# `class` is a Python keyword, hence the parameter name `class_` behind the option --class.
ClassOpt = Annotated[str | None, typer.Option(
    "--class", help="Class of a class-conditional model: index or name (`stylegan info MODEL` lists them).")]


@one_line_errors
def generate(
    model: ModelArg,
    seeds: Annotated[str, typer.Option(help="Seeds, e.g. 0-15,42.", callback=seeds_option)] = "0-7",
    psi: PsiOpt = None,
    cutoff: CutoffOpt = None,
    noise: NoiseOpt = "const",
    out: Annotated[Path, typer.Option(help="Folder for one PNG per seed.")] = Path("out"),
    grid: Annotated[Path | None, typer.Option(help="Also write all images as one grid PNG.")] = None,
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "fp32",
    device: DeviceOpt = "auto",
    batch: Annotated[int, typer.Option(help="Images per engine call.", callback=int_option(1, 4096))] = 8,
    class_: ClassOpt = None,
) -> None:
    """Generate one PNG per seed (and optionally a grid)."""
    from stylegan_edge.runtime.images import make_grid, save_png

    seed_list = parse_seeds(seeds)
    check_device(model, backend, device)
    g = open_model(model, backend, precision, device)
    check_cutoff(cutoff, g.num_layers)
    label = resolve_class(g, class_, model)
    with progress_bar(len(seed_list), "generating") as bar:
        images = g.generate(seeds=seed_list, psi=psi, cutoff=cutoff, noise=noise, batch_size=batch,
                            progress=bar.update, label=label)
    # Each PNG is written all or nothing (save_png); a full disk or read-only folder is one line.
    for seed, img in zip(seed_list, images):
        save_png(img, out / f"seed{seed:04d}.png")
    if grid:
        save_png(make_grid(images), grid)
    desc = g.describe()
    which = "" if label is None else f"class {label} {g.label_names[label]}, "
    typer.echo(f"wrote {len(images)} images to {out}/" + (f" and {grid}" if grid else "")
               + f" ({which}{desc['backend']}, {desc['device']}, {desc['precision']})")


@one_line_errors
def mix(
    model: ModelArg,
    rows: Annotated[str, typer.Option(help="Style-source seeds (source B, left column).", callback=seeds_option)] = "1-3",
    cols: Annotated[str, typer.Option(help="Destination seeds (source A, top row).", callback=seeds_option)] = "10-14",
    styles: Annotated[str, typer.Option(help="Layers taken from B: coarse, middle, fine, or A-B.")] = "coarse",
    psi: PsiOpt = None,
    noise: NoiseOpt = "const",
    out: Annotated[Path, typer.Option(help="PNG file.")] = Path("mix.png"),
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "fp32",
    device: DeviceOpt = "auto",
    class_: ClassOpt = None,
) -> None:
    """The paper's style-mixing figure: B's coarse/middle/fine styles copied into A."""
    from stylegan_edge.runtime.figures import style_mixing_figure
    from stylegan_edge.runtime.images import save_png

    check_device(model, backend, device)
    g = open_model(model, backend, precision, device)
    label = resolve_class(g, class_, model)
    fig = style_mixing_figure(g, parse_seeds(rows), parse_seeds(cols), styles, psi, noise, label=label)
    save_png(fig, out)
    typer.echo(f"wrote {out} ({styles} styles from rows into columns)")


@one_line_errors
def noise_cmd(
    model: ModelArg,
    seed: Annotated[int, typer.Option(help="The seed whose w is held fixed.", callback=seed_option)] = 0,
    draws: Annotated[int, typer.Option(help="Noise draws.", callback=int_option(2, 1024))] = 6,
    psi: PsiOpt = None,
    out: Annotated[Path, typer.Option(help="PNG file.")] = Path("noise.png"),
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "fp32",
    device: DeviceOpt = "auto",
    class_: ClassOpt = None,
) -> None:
    """The stochastic-variation figure: one w, several noise draws, and their per-pixel std."""
    from stylegan_edge.runtime.figures import noise_figure
    from stylegan_edge.runtime.images import save_png

    check_device(model, backend, device)
    g = open_model(model, backend, precision, device)
    label = resolve_class(g, class_, model)
    save_png(noise_figure(g, seed, draws, psi, label=label), out)
    typer.echo(f"wrote {out} ({draws} noise draws and their standard deviation)")


@one_line_errors
def truncation(
    model: ModelArg,
    seeds: Annotated[str, typer.Option(help="Seeds (rows).", callback=seeds_option)] = "0-3",
    psi: Annotated[str, typer.Option(help="psi values (columns).", callback=floats_option)] = "-1,-0.5,0,0.5,1",
    cutoff: CutoffOpt = None,
    out: Annotated[Path, typer.Option(help="PNG file.")] = Path("truncation.png"),
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "fp32",
    device: DeviceOpt = "auto",
    class_: ClassOpt = None,
) -> None:
    """The truncation sweep: rows are seeds, columns psi values."""
    from stylegan_edge.runtime.figures import truncation_figure
    from stylegan_edge.runtime.images import save_png

    check_device(model, backend, device)
    g = open_model(model, backend, precision, device)
    check_cutoff(cutoff, g.num_layers)
    label = resolve_class(g, class_, model)
    save_png(truncation_figure(g, parse_seeds(seeds), parse_floats(psi), cutoff, label=label), out)
    typer.echo(f"wrote {out}")
