"""`stylegan project IMAGE... --model MODEL --out DIR`: recover the latent that reproduces an image."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import one_line_errors

# Frames of the optimisation video: about this many per run, at this rate, at least this tall.
VIDEO_FRAMES = 100
VIDEO_FPS = 25.0
VIDEO_MIN_HEIGHT = 256


@one_line_errors
def project(
    images: Annotated[list[Path], typer.Argument(help="Image files to project (any size; centre-cropped and resized).")],
    model: Annotated[str, typer.Option("--model", help="A checkpoint, or a bundle whose source checkpoint lies beside it.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the latents, reconstructions and videos.")],
    steps: Annotated[int, typer.Option(help="Optimisation steps per image (W+ adds half as many again).")] = 500,
    space: Annotated[str, typer.Option(help="w (one w for every layer) or w+ (one w per layer).")] = "w",
    noise: Annotated[bool, typer.Option("--noise/--no-noise", help="Optimise the noise maps too (regularised).")] = False,
    perceptual: Annotated[Path | None, typer.Option(
        help="VGG16 feature weights (.safetensors) for a perceptual loss; default: pixel + Laplacian pyramid.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the latent noise added early in the optimisation.")] = 0,
    video: Annotated[bool, typer.Option("--video/--no-video", help="Write a video of the optimisation.")] = True,
    checkpoint: Annotated[Path | None, typer.Option(help="The checkpoint of a bundle, when not beside it.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Project images into the generator's W (or W+) space and report PSNR and SSIM."""
    import numpy as np
    import torch

    from stylegan_edge.runtime.images import make_grid, save_png, to_uint8, write_text_output
    from stylegan_edge.training.checkpoint import load_generator
    from stylegan_edge.training.projector import (
        ProjectConfig,
        ProjectionError,
        checkpoint_for_model,
        image_to_tensor,
        load_perceptual,
        load_target,
        project,
        reconstruction_metrics,
        save_latent,
        w_spread,
    )

    stems = [p.stem for p in images]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise ProjectionError(f"two images are named {dup}: their outputs would overwrite each other")
    if device not in ("auto", "cpu", "cuda"):
        raise ProjectionError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ProjectionError("--device cuda: PyTorch sees no CUDA device here")
    dev = "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
    ckpt = checkpoint_for_model(model, checkpoint)
    G = load_generator(ckpt, device=dev)
    res, channels = G.cfg.resolution, G.cfg.img_channels
    targets = [load_target(p, res, channels) for p in images]  # every file checked before any work
    loss_fn = load_perceptual(perceptual, dev) if perceptual is not None else None
    cfg = ProjectConfig(
        steps=steps, space=space, optimize_noise=noise, seed=seed,
        frame_every=max(1, steps // VIDEO_FRAMES) if video else 0,
    )
    VideoOut = None
    if video:
        from stylegan_edge.runtime.demo.app import VideoOut  # needs OpenCV (the demo extra)
    w_std = w_spread(G, cfg.w_std_samples)
    loss_name = f"perceptual ({perceptual.name})" if perceptual is not None else "pixel + Laplacian pyramid"
    typer.echo(f"projecting {len(images)} image(s) into {space.upper()} of {ckpt} ({res} px, {dev}, "
               f"{steps} steps, loss: {loss_name}{', noise maps too' if noise else ''})")

    from tqdm.auto import tqdm

    scale = max(1, -(-VIDEO_MIN_HEIGHT // res))  # integer upscaling keeps the pixels sharp
    report: list[dict[str, Any]] = []
    interrupted = False
    for path, target_u8 in zip(images, targets):
        target = image_to_tensor(target_u8, dev)
        stem = path.stem
        writer = VideoOut(out / f"{stem}.mp4", VIDEO_FPS) if VideoOut is not None else None

        def frame(step: int, image: torch.Tensor, target_u8: np.ndarray = target_u8, writer: Any = writer) -> None:
            pair = np.concatenate([target_u8, to_uint8(image.cpu().numpy())[0]], axis=1)
            pair = pair.repeat(scale, axis=0).repeat(scale, axis=1)
            writer.write(np.ascontiguousarray(pair[..., ::-1] if pair.shape[-1] == 3 else pair))

        t0 = time.perf_counter()
        with tqdm(total=cfg.total_steps, desc=stem, unit="step", leave=False) as bar:
            def tick(step: int, loss: float, bar: Any = bar) -> None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

            result = project(G, target, cfg, loss_fn=loss_fn, progress=tick,
                             on_frame=frame if writer is not None else None, w_std=w_std)
        seconds = time.perf_counter() - t0
        if writer is not None:
            writer.close()
        psnr_db, ssim_value = reconstruction_metrics(result.image, target)
        recon_u8 = to_uint8(result.image.cpu().numpy())[0]
        save_latent(out / f"{stem}.npz", result)
        save_png(recon_u8, out / f"{stem}.png")
        save_png(make_grid(np.stack([target_u8, recon_u8]), cols=2, pad=2, pad_value=255), out / f"{stem}-compare.png")
        entry = {
            "image": str(path), "space": space, "noise": noise, "steps": result.steps_done, "best_step": result.best_step,
            "loss": result.loss, "psnr_db": psnr_db, "ssim": ssim_value, "seconds": round(seconds, 2),
            "interrupted": result.interrupted,
        }
        if writer is not None:
            entry["video"] = str(writer.path)
        report.append(entry)
        note = f" ({writer.note})" if writer is not None and writer.note else ""
        typer.echo(f"{stem}: PSNR {psnr_db:.2f} dB, SSIM {ssim_value:.4f} after {result.steps_done} steps "
                   f"({seconds:.1f}s) -> {out / stem}.npz, .png, -compare.png" + (", .mp4" if writer else "") + note)
        if result.interrupted:
            interrupted = True
            break
    summary = {
        "model": str(ckpt), "loss": loss_name, "space": space, "noise": noise, "steps": steps, "seed": seed,
        "mean_psnr_db": float(np.mean([r["psnr_db"] for r in report])),
        "mean_ssim": float(np.mean([r["ssim"] for r in report])), "images": report,
    }
    write_text_output(out / "projection.json", json.dumps(summary, indent=2) + "\n")
    if len(report) > 1:
        typer.echo(f"mean over {len(report)} images: PSNR {summary['mean_psnr_db']:.2f} dB, "
                   f"SSIM {summary['mean_ssim']:.4f}")
    if interrupted:
        typer.secho("interrupted: kept the best latent found so far; later images were not projected",
                    fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(130)
