"""`stylegan train`: train (or resume) a StyleGAN with a progress bar counted in kimg.

Every option is range-checked (by TrainConfig, so the Python API refuses the same values) before
anything is written; bad input and disk faults are one `error:` line and exit 1; Ctrl-C saves a
checkpoint and exits 130, as an interrupted program does."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import one_line_errors, register_user_error


@one_line_errors
def train(
    data: Annotated[str, typer.Option(help="Image folder, .zip of images, or synthetic:faces (built in).")],
    out: Annotated[Path, typer.Option(help="Run directory: checkpoints, sample grids, metrics.")],
    preset: Annotated[str, typer.Option(help="Model preset: tiny, faces64, edge256, edge512, paper.")] = "tiny",
    kimg: Annotated[float, typer.Option(help="Train until this many thousand real images have been shown.")] = 100.0,
    batch: Annotated[int, typer.Option(help="Global batch size (split across torchrun processes).")] = 16,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoint.safetensors.")] = False,
    g_lr: Annotated[float, typer.Option(help="Generator Adam learning rate.")] = 0.002,
    d_lr: Annotated[float, typer.Option(help="Discriminator Adam learning rate.")] = 0.002,
    r1_gamma: Annotated[float, typer.Option(help="R1 regularisation weight.")] = 10.0,
    r1_interval: Annotated[int, typer.Option(help="Lazy R1: apply every N steps (1: every step).")] = 16,
    mixing: Annotated[float, typer.Option(help="Style-mixing probability (the paper: 0.9).")] = 0.9,
    ema_kimg: Annotated[float, typer.Option(help="G_ema half-life in kimg.")] = 10.0,
    xflip: Annotated[bool, typer.Option(help="Add mirrored copies of the data.")] = False,
    snapshot_kimg: Annotated[float, typer.Option(help="Sample grid + checkpoint every N kimg.")] = 5.0,
    metrics_kimg: Annotated[float, typer.Option(help="SWD every N kimg (0: off).")] = 10.0,
    metric_images: Annotated[int, typer.Option(help="Images per SWD evaluation.")] = 1024,
    fid_model: Annotated[Path | None, typer.Option(help="Also compute FID with this local ONNX Inception feature extractor.")] = None,
    workers: Annotated[int, typer.Option(help="Data-loading worker processes.")] = 2,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    no_mapping: Annotated[bool, typer.Option("--no-mapping", help="Ablation: w = normalised z.")] = False,
    latent_input: Annotated[bool, typer.Option("--latent-input", help="Ablation: the traditional input instead of the learned constant.")] = False,
    no_noise: Annotated[bool, typer.Option("--no-noise", help="Ablation: no noise inputs.")] = False,
) -> None:
    """Train StyleGAN; Ctrl-C saves a checkpoint and exits, --resume continues it."""
    import dataclasses

    from stylegan_edge.training.config import get_preset
    from stylegan_edge.training.loop import TrainConfig, TrainEvent, TrainingError, resolve_device
    from stylegan_edge.training.loop import train as run_training
    from tqdm.auto import tqdm

    register_user_error(TrainingError)
    model_cfg = get_preset(preset)
    if no_mapping or latent_input or no_noise:
        model_cfg = dataclasses.replace(
            model_cfg, use_mapping=not no_mapping, const_input=not latent_input, use_noise=not no_noise,
            z_dim=model_cfg.w_dim if no_mapping else model_cfg.z_dim,
        )
    cfg = TrainConfig(
        data=data, out=str(out), kimg=kimg, batch=batch, g_lr=g_lr, d_lr=d_lr, r1_gamma=r1_gamma,
        r1_interval=r1_interval, mixing_prob=mixing, ema_kimg=ema_kimg, xflip=xflip, seed=seed,
        snapshot_kimg=snapshot_kimg, metrics_kimg=metrics_kimg, metric_images=metric_images,
        fid_model=str(fid_model) if fid_model else None, workers=workers,
        device=device,
    )
    resolve_device(cfg.device)  # --device cuda without CUDA: one line before anything starts
    bars: list[tqdm] = []  # made at the first event, so an error before training is the only output
    interrupted = False

    def on_event(e: TrainEvent) -> None:
        nonlocal interrupted
        if not bars:
            bars.append(tqdm(total=round(cfg.kimg * 1000), unit="img", unit_scale=True, desc="training",
                             dynamic_ncols=True))
        bar = bars[0]
        bar.n = min(round(e.kimg * 1000), bar.total)
        if e.kind == "step":
            bar.set_postfix({k: f"{v:.3f}" for k, v in e.stats.items()}, refresh=False)
            bar.refresh()
        elif e.kind == "metrics":
            bar.write(f"kimg {e.kimg:8.1f}  " + "  ".join(f"{k} {v:.3f}" for k, v in e.stats.items()))
        elif e.kind == "resumed":
            bar.write(f"resumed from {e.path} at kimg {e.kimg:.1f}")
        elif e.kind in ("snapshot", "done", "interrupted", "stopped"):
            note = {"interrupted": "  (interrupted)", "stopped": "  (stopped by a bad image)"}.get(e.kind, "")
            bar.write(f"kimg {e.kimg:8.1f}  saved {e.path}{note}")
        interrupted = interrupted or e.kind == "interrupted"

    try:
        model_path = run_training(cfg, model_cfg, resume=resume, callback=on_event)
    finally:
        for bar in bars:
            bar.close()
    typer.echo(f"model: {model_path}  (export it with: stylegan-export {model_path} --out model.sgbundle)")
    if interrupted:
        typer.echo(f"interrupted: continue with the same command and --resume (saved in {out})", err=True)
        raise typer.Exit(130)
