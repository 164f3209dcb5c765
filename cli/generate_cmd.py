"""`stylegan generate | mix | noise | truncation`: images and the paper's figures from a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from stylegan_edge.runtime.latents import parse_floats, parse_seeds

from .common import one_line_errors, open_model, progress_bar

ModelArg = Annotated[str, typer.Argument(help="A bundle directory (onnxruntime/TensorRT) or a checkpoint (PyTorch).")]
BackendOpt = Annotated[str, typer.Option(help="auto, onnxruntime, tensorrt, or torch (checkpoints).")]
PrecisionOpt = Annotated[str, typer.Option(help="fp32, fp16 or int8 (bundles that have them).")]
DeviceOpt = Annotated[str, typer.Option(help="onnxruntime device: auto, cpu, cuda, tensorrt.")]
NoiseOpt = Annotated[str, typer.Option(help="const (the model's fixed noise), random, or none.")]
PsiOpt = Annotated[float | None, typer.Option(help="Truncation psi (default: the model's, 0.7).")]


@one_line_errors
def generate(
    model: ModelArg,
    seeds: Annotated[str, typer.Option(help="Seeds, e.g. 0-15,42.")] = "0-7",
    psi: PsiOpt = None,
    cutoff: Annotated[int | None, typer.Option(help="Truncate only the first N style layers.")] = None,
    noise: NoiseOpt = "const",
    out: Annotated[Path, typer.Option(help="Folder for one PNG per seed.")] = Path("out"),
    grid: Annotated[Path | None, typer.Option(help="Also write all images as one grid PNG.")] = None,
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "fp32",
    device: DeviceOpt = "auto",
    batch: Annotated[int, typer.Option(help="Images per engine call.")] = 8,
) -> None:
    """Generate one PNG per seed (and optionally a grid)."""
    from stylegan_edge.runtime.images import make_grid, save_png

    seed_list = parse_seeds(seeds)
    g = open_model(model, backend, precision, device)
    with progress_bar(len(seed_list), "generating") as bar:
        images = g.generate(seeds=seed_list, psi=psi, cutoff=cutoff, noise=noise, batch_size=batch,
                            progress=bar.update)
    out.mkdir(parents=True, exist_ok=True)
    for seed, img in zip(seed_list, images):
        save_png(img, out / f"seed{seed:04d}.png")
    if grid:
        save_png(make_grid(images), grid)
    desc = g.describe()
    typer.echo(f"wrote {len(images)} images to {out}/" + (f" and {grid}" if grid else "")
               + f" ({desc['backend']}, {desc['device']}, {desc['precision']})")


@one_line_errors
def mix(
    model: ModelArg,
    rows: Annotated[str, typer.Option(help="Style-source seeds (source B, left column).")] = "1-3",
    cols: Annotated[str, typer.Option(help="Destination seeds (source A, top row).")] = "10-14",
    styles: Annotated[str, typer.Option(help="Layers taken from B: coarse, middle, fine, or A-B.")] = "coarse",
    psi: PsiOpt = None,
    noise: NoiseOpt = "const",
    out: Annotated[Path, typer.Option(help="PNG file.")] = Path("mix.png"),
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "fp32",
    device: DeviceOpt = "auto",
) -> None:
    """The paper's style-mixing figure: B's coarse/middle/fine styles copied into A."""
    from stylegan_edge.runtime.figures import style_mixing_figure
    from stylegan_edge.runtime.images import save_png

    g = open_model(model, backend, precision, device)
    fig = style_mixing_figure(g, parse_seeds(rows), parse_seeds(cols), styles, psi, noise)
    save_png(fig, out)
    typer.echo(f"wrote {out} ({styles} styles from rows into columns)")


@one_line_errors
def noise_cmd(
    model: ModelArg,
    seed: Annotated[int, typer.Option(help="The seed whose w is held fixed.")] = 0,
    draws: Annotated[int, typer.Option(help="Noise draws.")] = 6,
    psi: PsiOpt = None,
    out: Annotated[Path, typer.Option(help="PNG file.")] = Path("noise.png"),
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "fp32",
    device: DeviceOpt = "auto",
) -> None:
    """The stochastic-variation figure: one w, several noise draws, and their per-pixel std."""
    from stylegan_edge.runtime.figures import noise_figure
    from stylegan_edge.runtime.images import save_png

    g = open_model(model, backend, precision, device)
    save_png(noise_figure(g, seed, draws, psi), out)
    typer.echo(f"wrote {out} ({draws} noise draws and their standard deviation)")


@one_line_errors
def truncation(
    model: ModelArg,
    seeds: Annotated[str, typer.Option(help="Seeds (rows).")] = "0-3",
    psi: Annotated[str, typer.Option(help="psi values (columns).")] = "-1,-0.5,0,0.5,1",
    cutoff: Annotated[int | None, typer.Option(help="Truncate only the first N style layers.")] = None,
    out: Annotated[Path, typer.Option(help="PNG file.")] = Path("truncation.png"),
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "fp32",
    device: DeviceOpt = "auto",
) -> None:
    """The truncation sweep: rows are seeds, columns psi values."""
    from stylegan_edge.runtime.figures import truncation_figure
    from stylegan_edge.runtime.images import save_png

    g = open_model(model, backend, precision, device)
    save_png(truncation_figure(g, parse_seeds(seeds), parse_floats(psi), cutoff), out)
    typer.echo(f"wrote {out}")
