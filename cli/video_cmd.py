"""`stylegan video`: an interpolation video between seeds, on any backend."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from stylegan_edge.runtime.latents import parse_seeds

from .common import one_line_errors, open_model, progress_bar, resolve_class
from .generate_cmd import BackendOpt, ClassOpt, DeviceOpt, ModelArg, NoiseOpt, PrecisionOpt, PsiOpt


@one_line_errors
def video(
    model: ModelArg,
    seeds: Annotated[str, typer.Option(help="Keyframe seeds, in order, e.g. 0,5,9.")] = "0,5,9",
    seconds_per_seed: Annotated[float, typer.Option(help="Seconds from one keyframe to the next.")] = 2.0,
    fps: Annotated[float, typer.Option(help="Frames per second.")] = 30.0,
    space: Annotated[str, typer.Option(help="w: straight lines in W between mapped seeds; z: slerp in Z, every frame mapped.")] = "w",
    loop: Annotated[bool, typer.Option(help="Return to the first seed, so the video repeats seamlessly.")] = True,
    psi: PsiOpt = None,
    cutoff: Annotated[int | None, typer.Option(help="Truncate only the first N style layers.")] = None,
    mix_seed: Annotated[int | None, typer.Option(help="Copy this seed's styles into every frame (style mixing).")] = None,
    mix_styles: Annotated[str, typer.Option(help="Layers taken from --mix-seed: coarse, middle, fine, or A-B.")] = "coarse",
    noise: NoiseOpt = "const",
    out: Annotated[Path, typer.Option(help="Video file (.mp4, or .avi for MJPG).")] = Path("walk.mp4"),
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "fp32",
    device: DeviceOpt = "auto",
    batch: Annotated[int, typer.Option(help="Frames per engine call.")] = 8,
    class_: ClassOpt = None,
) -> None:
    """Render a walk through the latent space between seeds as a video."""
    from stylegan_edge.runtime.demo.app import VideoOut
    from stylegan_edge.runtime.video import Walk, render_frames, walk_styles

    seed_list = parse_seeds(seeds)
    walk = Walk(tuple(seed_list), seconds_per_seed, fps, space, loop, psi, cutoff, mix_seed, mix_styles, noise)
    g = open_model(model, backend, precision, device)
    label = resolve_class(g, class_, model)
    walk = dataclasses.replace(walk, label=label)
    ws = walk_styles(g, walk)
    writer = VideoOut(out, fps)
    try:
        with progress_bar(len(ws), "rendering") as bar:
            for frame in render_frames(g, ws, noise, batch, progress=bar.update):
                writer.write(frame)
    finally:
        writer.close()
    note = f"; {writer.note}" if writer.note else ""
    typer.echo(f"wrote {writer.path}: {writer.frames} frames, {writer.frames / fps:.1f} s at {fps:g} fps, "
               f"{len(seed_list)} seeds, walk in {space.upper()}{note}")
