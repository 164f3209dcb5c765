"""`stylegan-export` (and `stylegan export`): checkpoint -> ONNX bundle -> reduced-precision
ONNX -> TensorRT engines, each step logged with its time and size."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from .common import fail, is_bundle, one_line_errors


def _log(msg: str) -> None:
    typer.echo(f"  {msg}")


def _size(path: Path) -> str:
    n = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    return f"{n / 1e6:.1f} MB"


def export_checkpoint(source: str, out: Path | None, graph: str, opset: int, seed: int,
                      interleave: str = "convtranspose") -> Path:
    """Write the FP32 bundle for a checkpoint file or a preset name (random weights)."""
    import torch
    from stylegan_edge.export.inference_graph import GraphOptions
    from stylegan_edge.export.onnx_export import ExportConfig, export_bundle
    from stylegan_edge.runtime.files import sha256_file
    from stylegan_edge.training.checkpoint import load_generator
    from stylegan_edge.training.config import get_preset
    from stylegan_edge.training.networks import Generator

    path = Path(source)
    if path.is_file():
        G = load_generator(path)
        meta = {"checkpoint": path.name, "sha256": sha256_file(path)}
    elif path.exists():
        raise FileNotFoundError(2, "not a checkpoint file, bundle or preset", source)
    else:
        torch.manual_seed(seed)
        G = Generator(get_preset(source))  # a preset with random weights, for benchmarks
        meta = {"preset": source, "random_weights": True, "seed": seed}
    out = out or Path(f"{path.stem if path.is_file() else source}.sgbundle")
    typer.echo(f"exporting {source} -> {out}")
    t0 = time.perf_counter()
    config = ExportConfig(opset=opset, graph=graph, options=GraphOptions(interleave=interleave))
    export_bundle(G, out, config, source=meta, log=_log)
    typer.echo(f"  bundle written in {time.perf_counter() - t0:.1f}s, {_size(out)}")
    return out


@one_line_errors
def export(
    model: Annotated[str, typer.Argument(help="A checkpoint (.safetensors), a bundle directory, or a preset name (random weights).")],
    out: Annotated[Path | None, typer.Option(help="Bundle directory to write (default: NAME.sgbundle here).")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Mixed-precision FP16 ONNX, then FP16 TensorRT engines.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Explicit INT8 (Q/DQ) ONNX from calibration, then INT8 engines.")] = False,
    fp32: Annotated[bool, typer.Option("--fp32", help="FP32 TensorRT engines (no reduced-precision ONNX needed).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Rebuild engines even when their sidecar says they are current.")] = False,
    batch: Annotated[str, typer.Option(help="TensorRT profile on the batch axis: MIN,OPT,MAX.")] = "1,1,8",
    workspace: Annotated[float | None, typer.Option(help="TensorRT workspace limit in GB.")] = None,
    timing_cache: Annotated[Path | None, typer.Option(help="TensorRT timing cache file (reused across builds).")] = None,
    engines: Annotated[bool, typer.Option(help="Build TensorRT engines after writing the reduced-precision ONNX.")] = True,
    calib_samples: Annotated[int, typer.Option(help="Calibration samples for the precision plan and INT8.")] = 64,
    graph: Annotated[str, typer.Option(help="inference (sub-pixel upsampling, folded) or reference (as trained).")] = "inference",
    interleave: Annotated[str, typer.Option(
        help="How sub-pixel phases become pixels: convtranspose (fastest on onnxruntime's CPU) or depthtospace.",
    )] = "convtranspose",
    opset: Annotated[int, typer.Option(help="ONNX opset (17 or newer).")] = 18,
    seed: Annotated[int, typer.Option(help="Seed for a preset's random weights.")] = 0,
) -> None:
    """Export a checkpoint to an ONNX bundle; with --fp16/--int8, add reduced-precision ONNX and TensorRT engines."""
    if opset < 17:
        raise fail("--opset must be 17 or newer")
    if interleave not in ("convtranspose", "depthtospace"):
        raise fail(f"--interleave must be convtranspose or depthtospace, got {interleave}")
    bundle = Path(model) if is_bundle(model) else export_checkpoint(model, out, graph, opset, seed, interleave)
    precisions = [p for p, on in (("fp32", fp32), ("fp16", fp16), ("int8", int8)) if on]
    if not precisions:
        return
    try:
        batch_profile = tuple(int(v) for v in batch.split(","))
    except ValueError:
        batch_profile = ()
    if len(batch_profile) != 3 or not 1 <= batch_profile[0] <= batch_profile[1] <= batch_profile[2]:
        raise fail(f"--batch must be MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, got {batch}")
    reduced = [p for p in precisions if p != "fp32"]
    if reduced:
        from stylegan_edge.calibration.pipeline import prepare_precisions

        typer.echo(f"reduced precision for {bundle}: {', '.join(reduced)}")
        prepare_precisions(bundle, reduced, samples=calib_samples, log=_log)
    if not engines:
        return
    from stylegan_edge.export.tensorrt_build import build_engines

    typer.echo(f"TensorRT engines for {bundle}: {', '.join(precisions)}")
    paths = build_engines(bundle, precisions=tuple(precisions), batch=batch_profile, workspace_gb=workspace,
                          timing_cache=timing_cache, log=_log, force=force)
    typer.echo(f"built {len(paths)} engines in {bundle}")


def main() -> None:
    """Console script `stylegan-export`."""
    app = typer.Typer(add_completion=False)
    app.command()(export)
    app()
