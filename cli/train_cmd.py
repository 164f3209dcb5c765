"""`stylegan train`: train (or resume) a StyleGAN with a progress bar counted in kimg.

Every option is range-checked (by TrainConfig, so the Python API refuses the same values) before
anything is written; bad input and disk faults are one `error:` line and exit 1; Ctrl-C saves a
checkpoint and exits 130, as an interrupted program does."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import one_line_errors


@one_line_errors
def train(
    data: Annotated[str, typer.Option(
        help="Image folder, .zip of images, or synthetic:faces / synthetic:faces-classes (built in).")],
    out: Annotated[Path, typer.Option(help="Run directory: checkpoints, sample grids, metrics.")],
    preset: Annotated[str, typer.Option(help="Model preset: tiny, faces64, edge256, edge512, paper.")] = "tiny",
    kimg: Annotated[float, typer.Option(help="Train until this many thousand real images have been shown.")] = 100.0,
    batch: Annotated[int | None, typer.Option(
        help="Global batch size (split across torchrun processes); with --progressive the base minibatch. "
             "(default: 16, or the --schedule's)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoint.safetensors.")] = False,
    g_lr: Annotated[float | None, typer.Option(
        help="Generator Adam learning rate (with --progressive the base). (default: 0.002, or the --schedule's)")] = None,
    d_lr: Annotated[float | None, typer.Option(
        help="Discriminator Adam learning rate (with --progressive the base). (default: 0.002, or the --schedule's)",
    )] = None,
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
    no_styles: Annotated[bool, typer.Option("--no-styles", help="Ablation (Table 1 A-B): no AdaIN styles; pixel norm instead of instance norm.")] = False,
    no_blur: Annotated[bool, typer.Option("--no-blur", help="Ablation (Table 1 A): no [1,2,1] filter when resampling.")] = False,
    progressive: Annotated[bool, typer.Option("--progressive", help="Grow from --lod-initial-resolution to the preset's resolution, fading each new resolution in (official schedule).")] = False,
    schedule: Annotated[str, typer.Option(help="With --progressive: official, paper-8gpu or paper-1gpu (phase lengths, minibatch and learning rates by resolution).")] = "official",
    lod_initial_resolution: Annotated[int | None, typer.Option(help="With --progressive: the starting resolution. (default: the --schedule's)")] = None,
    lod_training_kimg: Annotated[float | None, typer.Option(help="With --progressive: kimg each resolution trains before the next fades in. (default: the --schedule's)")] = None,
    lod_transition_kimg: Annotated[float | None, typer.Option(help="With --progressive: kimg each fade-in lasts. (default: the --schedule's)")] = None,
    cond: Annotated[bool, typer.Option("--cond", help="Class-conditional: train on the dataset's labels (a dataset.json, one folder per class, or synthetic:faces-classes).")] = False,
    minibatch: Annotated[str | None, typer.Option(help="With --progressive: minibatch by resolution, e.g. 4:64,8:32 (over the --schedule's table).")] = None,
) -> None:
    """Train StyleGAN; Ctrl-C saves a checkpoint and exits, --resume continues it."""
    import dataclasses

    from tqdm.auto import tqdm

    from stylegan_edge.training.config import get_preset
    from stylegan_edge.training.loop import TrainConfig, TrainEvent, resolve_device
    from stylegan_edge.training.loop import train as run_training

    model_cfg = get_preset(preset)
    if no_mapping or latent_input or no_noise:
        model_cfg = dataclasses.replace(
            model_cfg, use_mapping=not no_mapping, const_input=not latent_input, use_noise=not no_noise,
            z_dim=model_cfg.w_dim if no_mapping else model_cfg.z_dim,
        )
    if no_styles:
        model_cfg = dataclasses.replace(model_cfg, use_styles=False, use_pixel_norm=True, use_instance_norm=False)
    if no_blur:
        model_cfg = dataclasses.replace(model_cfg, use_blur=False)
    sched = None
    if progressive:
        from stylegan_edge.training.progressive import get_schedule, parse_minibatch

        named = get_schedule(schedule)
        overrides = {k: v for k, v in (("lod_initial_resolution", lod_initial_resolution),
                                       ("lod_training_kimg", lod_training_kimg),
                                       ("lod_transition_kimg", lod_transition_kimg)) if v is not None}
        if minibatch is not None:
            overrides["minibatch_dict"] = tuple({**dict(named.schedule.minibatch_dict),
                                                 **dict(parse_minibatch(minibatch))}.items())
        sched = dataclasses.replace(named.schedule, **overrides)
        model_cfg = dataclasses.replace(model_cfg, progressive=True)
        batch = named.batch if batch is None else batch
        g_lr = named.g_lr if g_lr is None else g_lr
        d_lr = named.d_lr if d_lr is None else d_lr
    cfg = TrainConfig(
        data=data, out=str(out), kimg=kimg, batch=16 if batch is None else batch,
        g_lr=0.002 if g_lr is None else g_lr, d_lr=0.002 if d_lr is None else d_lr, r1_gamma=r1_gamma,
        r1_interval=r1_interval, mixing_prob=mixing, ema_kimg=ema_kimg, xflip=xflip, seed=seed,
        snapshot_kimg=snapshot_kimg, metrics_kimg=metrics_kimg, metric_images=metric_images,
        fid_model=str(fid_model) if fid_model else None, workers=workers,
        device=device, schedule=sched, cond=cond,
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
        elif e.kind == "note":
            bar.write(e.message)
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
