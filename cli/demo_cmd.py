"""`stylegan demo`: generated faces over a camera in real time, in a window or into a video file.

OpenCV is imported inside the command, so `stylegan` itself works where the demo extra is not
installed; the demo runs without PyTorch (a Jetson).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from stylegan_edge.runtime.backends.base import BackendUnavailable
from stylegan_edge.runtime.latents import parse_seeds

from .common import one_line_errors, open_model
from .generate_cmd import (
    DEVICES,
    NOISE_MODES,
    PRECISIONS,
    BackendOpt,
    ClassOpt,
    check_device,
    choice_option,
    float_option,
    int_option,
    seed_option,
    seeds_option,
)

# Frames a headless run records from a source that never ends, when --max-frames is not given.
HEADLESS_DEFAULT_FRAMES = 300


@one_line_errors
def demo(
    model: Annotated[str, typer.Argument(help="A bundle directory (onnxruntime/TensorRT) or a checkpoint (PyTorch).")],
    source: Annotated[str, typer.Option(help="Camera index (0), video file, image, GStreamer pipeline ('... ! appsink'), or synthetic.")] = "0",
    mode: Annotated[str, typer.Option(help="pip: walking faces in a corner; replace-faces: a generated face over each detected face.", callback=choice_option(("pip", "replace-faces")))] = "pip",
    out: Annotated[Path | None, typer.Option(help="Record to this video (.mp4: mp4v, .avi: MJPG). Headless default: demo.mp4.")] = None,
    headless: Annotated[bool, typer.Option("--headless", help="No window (servers, CI): record --out.")] = False,
    max_frames: Annotated[int | None, typer.Option(help=f"Stop after N frames (headless default for endless sources: {HEADLESS_DEFAULT_FRAMES}; 0: no limit).", callback=int_option(0))] = None,
    seeds: Annotated[str, typer.Option(help="The walk's keyframes, e.g. 0-15.", callback=seeds_option)] = "0-15",
    seconds_per_seed: Annotated[float, typer.Option(help="Seconds from one keyframe to the next.", callback=float_option(0.0, 3600.0, lo_open=True))] = 2.0,
    psi: Annotated[float | None, typer.Option(help="Truncation psi (default: the model's); +/- change it live.", callback=float_option(-16.0, 16.0))] = None,
    noise: Annotated[str, typer.Option(help="const, random or none; n cycles it live.", callback=choice_option(NOISE_MODES))] = "const",
    mix_seed: Annotated[int, typer.Option(help="Second seed whose coarse/middle/fine styles keys 1/2/3 mix in.", callback=seed_option)] = 1000,
    size: Annotated[int, typer.Option(help="Picture-in-picture size in pixels.", callback=int_option(16, 4096))] = 256,
    fps: Annotated[float | None, typer.Option(help="Output video rate, and the pace of file/synthetic sources (default: the source's, else 30).", callback=float_option(0.0, 1000.0, lo_open=True))] = None,
    camera_size: Annotated[str | None, typer.Option(help="WxH: camera resolution to ask for (default 640x480), synthetic frame size, or resize for files.")] = None,
    detect_every: Annotated[int, typer.Option(help="replace-faces: run the face detector every N frames (tracks coast between).", callback=int_option(1, 10_000))] = 2,
    realtime: Annotated[bool, typer.Option(help="Pace file and synthetic sources at --fps like a camera (--no-realtime: as fast as possible).")] = True,
    snapshots: Annotated[Path, typer.Option(help="Folder for snapshots (key s).")] = Path("."),
    backend: BackendOpt = "auto",
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8 (bundles that have them).", callback=choice_option(PRECISIONS))] = "fp32",
    device: Annotated[str, typer.Option(help="onnxruntime device: auto, cpu, cuda, tensorrt.", callback=choice_option(DEVICES))] = "auto",
    class_: ClassOpt = None,
) -> None:
    """Real-time demo: faces walking through W over a camera (pip), or a local face anonymiser (replace-faces).

    Window keys: +/- psi, n noise, 1/2/3 mix coarse/middle/fine from --mix-seed, d/[/] direction, c next class
    (class-conditional models: they start at --class, else class 0), space pause, s snapshot, q quit.
    """
    try:
        import cv2  # noqa: F401
    except ImportError:
        raise BackendUnavailable("the demo needs OpenCV 4.x: pip install 'opencv-python-headless>=4.8,<5'") from None
    from stylegan_edge.runtime.demo import (
        DemoConfig,
        DetectorConfig,
        Window,
        display_problem,
        open_source,
        parse_size,
        run_demo,
    )

    check_device(model, backend, device)
    note = ""
    if not headless:
        problem = display_problem()
        if problem:
            headless = True
            note = f"{problem}: running headless"
    if headless and out is None:
        out = Path("demo.mp4")
    config = DemoConfig(
        mode=mode, seeds=tuple(parse_seeds(seeds)), psi=psi, seconds_per_seed=seconds_per_seed, pip_size=size,
        fps=fps, noise=noise, mix_seed=mix_seed, out=out, max_frames=max_frames or None, realtime=realtime,
        show_keys=not headless, snapshot_dir=snapshots, detector=DetectorConfig(every=max(1, detect_every)),
        label=class_,
    )
    frame_size = parse_size(camera_size) if camera_size else None
    # The source first: a missing camera is the likeliest failure, and says so before a model loads.
    src = open_source(source, frame_size, fps)
    try:
        g = open_model(model, backend, precision, device)
    except BaseException:
        src.close()
        raise
    if headless and max_frames is None and src.endless:
        config = dataclasses.replace(config, max_frames=HEADLESS_DEFAULT_FRAMES)
        note = (note + "; " if note else "") + f"stopping after {HEADLESS_DEFAULT_FRAMES} frames (--max-frames)"
    if note:
        typer.secho(note, fg=typer.colors.YELLOW, err=True)
    stats = run_demo(g, src, config, window=None if headless else Window(f"stylegan demo: {Path(model).name}"))
    desc = g.describe()
    where = f" to {stats.out}" if stats.out else ""
    typer.echo(
        f"{stats.frames} frames{where} ({mode}, {stats.stopped}): camera {stats.camera_fps:.1f} fps, "
        f"generation {stats.generation_fps:.1f} fps, latency {stats.latency_ms:.0f} ms "
        f"({desc.get('backend', '?')}, {desc.get('device', '?')}, {desc.get('precision', '?')})"
        + (f"; {stats.note}" if stats.note else "")
        + (f"; {len(stats.snapshots)} snapshots in {snapshots}" if stats.snapshots else "")
    )

