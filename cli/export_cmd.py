"""`stylegan-export` (and `stylegan export`): checkpoint -> ONNX bundle -> reduced-precision
ONNX -> TensorRT engines, each step logged with its time and size."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from .common import fail, is_bundle, one_line_errors

# The opsets the exporter writes (export/onnx_export.py SUPPORTED_OPSETS, not imported here: that
# module brings torch, and this command must start on a Jetson without it).
SUPPORTED_OPSETS = (17, 18)
# Modules calibration imports that a runtime-only install lacks (the `export` extra).
EXPORT_EXTRA_MODULES = ("onnx", "onnxscript", "onnxconverter_common", "onnxruntime.quantization")


def _log(msg: str) -> None:
    typer.echo(f"  {msg}")


def _size(path: Path) -> str:
    n = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    return f"{n / 1e6:.1f} MB"


def export_checkpoint(source: str, out: Path | None, graph: str, opset: int | None, seed: int,
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
    config = ExportConfig(graph=graph, options=GraphOptions(interleave=interleave))
    if opset is not None:
        config = replace(config, opset=opset)
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
    calib_samples: Annotated[int, typer.Option(min=1, help="Calibration samples for the precision plan and INT8.")] = 64,
    recalibrate: Annotated[bool, typer.Option(
        "--recalibrate", help="Redo calibration even when the bundle's reduced-precision ONNX is current.",
    )] = False,
    graph: Annotated[str, typer.Option(help="inference (sub-pixel upsampling, folded) or reference (as trained).")] = "inference",
    interleave: Annotated[str, typer.Option(
        help="How sub-pixel phases become pixels: convtranspose (fastest on onnxruntime's CPU) or depthtospace.",
    )] = "convtranspose",
    opset: Annotated[int | None, typer.Option(
        help=f"ONNX opset of a new bundle: {' or '.join(map(str, SUPPORTED_OPSETS))} (default: the exporter's, 17).",
    )] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed for a preset's random weights.")] = 0,
) -> None:
    """Export a checkpoint to an ONNX bundle; with --fp16/--int8, add reduced-precision ONNX and TensorRT engines.

    On a bundle whose reduced-precision ONNX is current (made from its synthesis.onnx), the engines are
    built from those files as they are: no calibration, no PyTorch or onnx needed (a Jetson).
    """
    if opset is not None and opset not in SUPPORTED_OPSETS:
        raise fail(f"--opset {opset} is not one the exporter writes; choose {' or '.join(map(str, SUPPORTED_OPSETS))}")
    if interleave not in ("convtranspose", "depthtospace"):
        raise fail(f"--interleave must be convtranspose or depthtospace, got {interleave}")
    try:
        batch_profile = tuple(int(v) for v in batch.split(","))
    except ValueError:
        batch_profile = ()
    if len(batch_profile) != 3 or not 1 <= batch_profile[0] <= batch_profile[1] <= batch_profile[2]:
        raise fail(f"--batch must be MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, got {batch}")
    bundle = Path(model) if is_bundle(model) else export_checkpoint(model, out, graph, opset, seed, interleave)
    precisions = [p for p, on in (("fp32", fp32), ("fp16", fp16), ("int8", int8)) if on]
    if not precisions:
        return
    reduced = [p for p in precisions if p != "fp32"]
    if reduced:
        ensure_reduced_precision(bundle, reduced, recalibrate=recalibrate, samples=calib_samples)
    if not engines:
        return
    from stylegan_edge.export.tensorrt_build import build_engines

    typer.echo(f"TensorRT engines for {bundle}: {', '.join(precisions)}")
    paths = build_engines(bundle, precisions=tuple(precisions), batch=batch_profile, workspace_gb=workspace,
                          timing_cache=timing_cache, log=_log, force=force)
    typer.echo(f"built {len(paths)} engines in {bundle}")


def ensure_reduced_precision(bundle: Path, reduced: list[str], *, recalibrate: bool, samples: int) -> None:
    """Keep the bundle's reduced-precision ONNX when it is current; calibrate only when asked or
    when it is missing or stale, and where calibration cannot run, say where to make it."""
    from stylegan_edge.export.precision_files import PrecisionFilesError, files_for, how_to_make, problems
    from stylegan_edge.runtime.bundle import open_bundle

    open_bundle(bundle)  # a bad bundle is named before anything else
    found = problems(bundle, reduced)
    if not found and not recalibrate:
        names = sorted({n for p in reduced for n in files_for(p)})
        typer.echo(f"reduced precision for {bundle}: using {', '.join(names)} (made from this synthesis.onnx; "
                   "--recalibrate redoes them)")
        return
    try:
        from stylegan_edge.calibration.pipeline import prepare_precisions
    except ImportError as e:
        if e.name is None or not any(e.name == m or e.name.startswith(m + ".") or m.startswith(e.name + ".")
                                     for m in EXPORT_EXTRA_MODULES):
            raise
        first = found[0] if found else None
        if first is None:  # --recalibrate asked for on a machine that cannot calibrate
            raise PrecisionFilesError(
                f"--recalibrate needs the export extras ({e.name} is not installed here): recalibrate on a "
                f"workstation with `pip install '.[export]'`, or drop --recalibrate to use the bundle's files"
            ) from None
        raise PrecisionFilesError(how_to_make(bundle, reduced, first)) from None
    why = "asked for (--recalibrate)" if not found else "; ".join(str(p) for p in found)
    typer.echo(f"reduced precision for {bundle}: {', '.join(reduced)} ({why})")
    prepare_precisions(bundle, reduced, samples=samples, log=_log)


def main() -> None:
    """Console script `stylegan-export`."""
    app = typer.Typer(add_completion=False)
    app.command()(export)
    app()


if __name__ == "__main__":  # `python -m stylegan_edge.cli.export_cmd BUNDLE --fp16`
    main()
