"""`stylegan bench`: every backend and precision this machine has, side by side in one run.

The command parses its options, hands them to `runtime.benchmark.run_bench` and prints the
report; which backends exist is the registry's (runtime/backends/registry.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import fail, one_line_errors
from .generate_cmd import float_option, int_option, list_option, seed_option


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _backend_list(param: typer.CallbackParam, value: str) -> str:
    # The registry is read when the option is parsed, so a backend registered after this module
    # was imported (a plugin, a test) is a valid choice.
    from stylegan_edge.runtime.backends import backend_names

    return list_option(backend_names())(param, value)


def _batch_list(param: typer.CallbackParam, value: str) -> str:
    items = _split(value)
    if not items or not all(t.isdigit() and 1 <= int(t) <= 4096 for t in items):
        raise fail(f"--batch takes a comma list of batch sizes in [1, 4096], got {value!r}")
    return value


@one_line_errors
def bench(
    model: Annotated[str, typer.Argument(help="A checkpoint, a preset name (random weights), or a bundle (with --checkpoint for the PyTorch rows).")],
    backends: Annotated[str, typer.Option(help="Comma list of registered backends: torch, torch.compile, onnxruntime, tensorrt, ...",
                                          callback=_backend_list)] = "torch,torch.compile,onnxruntime",
    precisions: Annotated[str, typer.Option(help="Comma list of fp32, fp16, int8 (for onnxruntime and tensorrt).",
                                            callback=list_option(("fp32", "fp16", "int8")))] = "fp32",
    batch: Annotated[str, typer.Option(help="Comma list of batch sizes.", callback=_batch_list)] = "1,4",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the full report as JSON.")] = None,
    bundle: Annotated[Path | None, typer.Option(help="Bundle of MODEL to use (default: export one into a temporary folder).")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint of a bundle MODEL, for the PyTorch rows.")] = None,
    iters: Annotated[int, typer.Option(help="Timed calls per row (at least).", callback=int_option(1, 1_000_000))] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed calls before each row.", callback=int_option(0, 1_000_000))] = 3,
    min_seconds: Annotated[float, typer.Option(help="Keep timing a row until this many seconds have passed.",
                                               callback=float_option(0.0, 86400.0))] = 2.0,
    tune_allocator: Annotated[bool, typer.Option(help="glibc mallopt so PyTorch eager does not re-map large blocks.")] = True,
    overhead: Annotated[bool, typer.Option(help="Also measure the runtime's share of a generate() call.")] = True,
    ort_sweep: Annotated[bool, typer.Option(help="Also time onnxruntime session settings (threads, execution mode, arena, images per call).")] = False,
    seed: Annotated[int, typer.Option(help="Seed for a preset's random weights.", callback=seed_option)] = 0,
) -> None:
    """Latency (median, p95), images/s, GFLOP/s and its share of the measured matmul rate, per backend, precision and batch; PyTorch eager FP32 is the baseline."""
    from stylegan_edge.runtime.benchmark import BenchSettings, report_text, run_bench

    settings = BenchSettings(
        model=model, backends=tuple(_split(backends)), precisions=tuple(_split(precisions)),
        batches=tuple(int(b) for b in _split(batch)), bundle=bundle, checkpoint=checkpoint, iters=iters,
        warmup=warmup, min_seconds=min_seconds, tune_allocator=tune_allocator, overhead=overhead,
        ort_sweep=ort_sweep, seed=seed,
    )
    result = run_bench(settings, log=typer.echo)
    typer.echo("")
    typer.echo(report_text(result))
    if json_out:
        from stylegan_edge.runtime.images import write_text_output

        write_text_output(json_out, json.dumps(result.report.to_dict(), indent=2) + "\n")
        typer.echo(f"wrote {json_out}")
