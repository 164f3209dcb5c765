"""`stylegan table1`: the paper's Table 1 (configurations A to F) trained progressively at small
scale, measured with SWD (and FID with a local feature extractor), written as a Markdown table and
a PNG plot. A configuration that finished is not trained again; one that was cut short resumes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import one_line_errors


@one_line_errors
def table1(
    data: Annotated[str, typer.Option(help="Image folder, .zip of images, or synthetic:faces (built in).")],
    out: Annotated[Path, typer.Option(help="Folder for the runs (one per configuration), table1.md and table1.png.")],
    res: Annotated[int, typer.Option(help="Final resolution; every configuration grows to it from 4 px.")] = 32,
    kimg: Annotated[float, typer.Option(help="Thousands of real images per configuration.")] = 20.0,
    preset: Annotated[str, typer.Option(help="Model preset whose widths are used (its resolution is replaced by --res).")] = "tiny",
    batch: Annotated[int, typer.Option(help="Minibatch at every resolution.")] = 16,
    configs: Annotated[str, typer.Option(help="Which rows of Table 1 to run, e.g. ABCDEF or AF.")] = "ABCDEF",
    metric_images: Annotated[int, typer.Option(help="Generated (and real) images per SWD evaluation.")] = 1024,
    metric_points: Annotated[int, typer.Option(help="SWD evaluations per configuration (besides the one at the start).")] = 8,
    fid_model: Annotated[Path | None, typer.Option(help="Also measure FID with this local ONNX Inception feature extractor.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed, the same for every configuration.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda.")] = "auto",
    workers: Annotated[int, typer.Option(help="Data-loading worker processes.")] = 0,
    threads: Annotated[int, typer.Option(help="PyTorch CPU threads (0: PyTorch's choice; 1 is fastest on a busy machine).")] = 0,
) -> None:
    """Train Table 1's configurations A-F progressively and tabulate and plot their SWD."""
    from tqdm.auto import tqdm

    from stylegan_edge.training.config import ConfigError
    from stylegan_edge.training.loop import TrainEvent
    from stylegan_edge.training.table1 import ROWS, Table1Settings, run_table1

    if threads < 0:
        raise ConfigError(f"--threads must be >= 0, got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)
    settings = Table1Settings(
        data=data, out=str(out), res=res, kimg=kimg, preset=preset, batch=batch, configs=configs.upper(),
        metric_images=metric_images, metric_points=metric_points, fid_model=str(fid_model) if fid_model else None,
        seed=seed, device=device, workers=workers,
    )
    settings.model_base()  # an unknown preset or a bad resolution: one line before anything is written
    bars: dict[str, tqdm] = {}

    def on_event(key: str, e: TrainEvent | str) -> None:
        if e == "skipped":
            typer.echo(f"{key}: {ROWS[key].label}: finished before, not retrained")
            return
        assert isinstance(e, TrainEvent)
        if key not in bars:
            for bar in bars.values():
                bar.close()
            bars[key] = tqdm(total=round(kimg * 1000), unit="img", unit_scale=True, dynamic_ncols=True,
                             desc=f"{key} {ROWS[key].label[:24]}")
        bar = bars[key]
        bar.n = min(round(e.kimg * 1000), bar.total)
        if e.kind == "step":
            bar.set_postfix({k: f"{v:.2f}" for k, v in e.stats.items() if k == "lod"}, refresh=False)
            bar.refresh()
        elif e.kind == "metrics":
            bar.write(f"{key} kimg {e.kimg:7.2f}  " + "  ".join(f"{k} {v:.2f}" for k, v in e.stats.items()
                                                                if k in ("swd_avg", "fid")))

    try:
        run_table1(settings, on_event)
    finally:
        for bar in bars.values():
            bar.close()
    typer.echo((out / "table1.md").read_text(), nl=False)
    typer.echo(f"table: {out / 'table1.md'}  plot: {out / 'table1.png'}")
