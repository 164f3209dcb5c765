"""`stylegan bench`: every backend and precision this machine has, side by side in one run."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import typer

from .common import fail, is_bundle, one_line_errors
from .generate_cmd import float_option, int_option, list_option, seed_option


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


class _Contestant(NamedTuple):
    """One row of the table while it is being timed."""

    backend: str
    precision: str
    device: str
    setup_s: float | None
    notes: str
    call: Callable[[], Any]
    engine: Any = None  # closed after timing


def _torch_contestant(G: Any, names: list[str], feeds: dict, compiled: bool) -> tuple[Any, float | None, str]:
    """A call of PyTorch eager (or torch.compile) synthesis, its set-up seconds and a note."""
    import torch
    from stylegan_edge.export.inference_graph import ReferenceSynthesis

    module = ReferenceSynthesis(G.synthesis).eval()
    args = [torch.from_numpy(feeds[n].copy()) for n in names]
    setup = None
    fn = module
    if compiled:
        fn = torch.compile(module)
        t0 = time.perf_counter()
        with torch.inference_mode():
            fn(*args)
        setup = time.perf_counter() - t0

    def call() -> None:
        with torch.inference_mode():
            fn(*args)

    return call, setup, f"{torch.get_num_threads()} threads"


def _batch_list(param: typer.CallbackParam, value: str) -> str:
    items = _split(value)
    if not items or not all(t.isdigit() and 1 <= int(t) <= 4096 for t in items):
        raise fail(f"--batch takes a comma list of batch sizes in [1, 4096], got {value!r}")
    return value


@one_line_errors
def bench(
    model: Annotated[str, typer.Argument(help="A checkpoint, a preset name (random weights), or a bundle (with --checkpoint for the PyTorch rows).")],
    backends: Annotated[str, typer.Option(help="Comma list of torch, torch.compile, onnxruntime, tensorrt.",
                                          callback=list_option(("torch", "torch.compile", "onnxruntime", "tensorrt")))] = "torch,torch.compile,onnxruntime",
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
    from stylegan_edge.runtime.benchmark import (
        Report,
        finish,
        machine_info,
        make_row,
        markdown_table,
        numpy_matmul_gflops,
        runtime_overhead,
        synthesis_feeds,
        time_round_robin,
        tune_glibc_allocator,
    )
    from stylegan_edge.runtime.generator import Generator

    wanted, precs = _split(backends), _split(precisions)
    batches = [int(b) for b in _split(batch)]
    unknown = set(wanted) - {"torch", "torch.compile", "onnxruntime", "tensorrt"}
    if unknown:
        raise fail(f"unknown backend(s) {', '.join(sorted(unknown))}; choose torch, torch.compile, onnxruntime, tensorrt")
    settings: dict[str, Any] = {"allocator": tune_glibc_allocator() if tune_allocator else "unchanged"}
    torch_wanted = any(b.startswith("torch") for b in wanted)

    G = None
    tmp = None
    if is_bundle(model):
        bundle = Path(model)
        if torch_wanted:
            if checkpoint is None:
                raise fail("the PyTorch rows need the bundle's checkpoint: add --checkpoint FILE (or give the checkpoint as MODEL)")
            from stylegan_edge.training.checkpoint import load_generator

            G = load_generator(checkpoint)
    else:
        import torch
        from stylegan_edge.training.checkpoint import load_generator
        from stylegan_edge.training.config import get_preset
        from stylegan_edge.training.networks import Generator as TorchGenerator

        if Path(model).is_file():
            G = load_generator(model)
        else:
            torch.manual_seed(seed)
            G = TorchGenerator(get_preset(model)).eval().requires_grad_(False)
        if bundle is None or not (bundle / "meta.json").is_file():
            from stylegan_edge.export.onnx_export import export_bundle

            if bundle is None:
                tmp = tempfile.TemporaryDirectory(prefix="stylegan-bench-")
                bundle = Path(tmp.name) / "model.sgbundle"
            typer.echo(f"exporting {model} to {bundle} ...")
            export_bundle(G, bundle)

    reduced = [p for p in precs if p != "fp32"]
    if reduced and "onnxruntime" in wanted:
        from stylegan_edge.runtime.bundle import open_bundle

        missing = [p for p in reduced if p not in open_bundle(bundle).precisions()]
        if missing:
            from stylegan_edge.calibration.pipeline import prepare_precisions

            typer.echo(f"making {', '.join(missing)} ONNX (calibration) ...")
            prepare_precisions(bundle, missing, log=lambda m: typer.echo(f"  {m}"))

    g = Generator(bundle, backend="onnxruntime", device="cpu")
    gflop = float(g.meta.raw["gflop_per_image"]["synthesis"])
    matmul = numpy_matmul_gflops()
    settings["matmul"] = f"numpy {matmul:.0f} GFLOP/s"
    if torch_wanted:
        import torch
        from stylegan_edge.runtime.benchmark import matmul_gflops

        a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
        torch_mm = matmul_gflops(lambda: torch.mm(a, b), 2048)
        settings["matmul"] += f", torch {torch_mm:.0f} GFLOP/s"
        matmul = max(matmul, torch_mm)
        settings["torch_threads"] = torch.get_num_threads()
    report = Report(machine=machine_info(), matmul_gflops=matmul, settings=settings)
    report.machine["model"] = str(model)
    report.machine["resolution"] = g.resolution

    names = g.meta.synthesis_inputs
    for n in batches:
        feeds = synthesis_feeds(g, n)
        contestants: list[_Contestant] = []
        for backend in wanted:
            if backend in ("torch", "torch.compile"):
                typer.echo(f"preparing {backend} fp32 batch {n} ...")
                call, setup, notes = _torch_contestant(G, names, feeds, backend == "torch.compile")
                contestants.append(_Contestant(backend, "fp32", "cpu", setup, notes, call))
                continue
            for prec in precs:
                try:
                    t0 = time.perf_counter()
                    eng = Generator(bundle, backend=backend, precision=prec, device="cpu") \
                        if backend == "onnxruntime" else Generator(bundle, backend=backend, precision=prec)
                    setup = time.perf_counter() - t0
                except Exception as e:  # a missing engine or library skips its row, with the reason
                    typer.echo(f"skipping {backend} {prec}: {str(e).splitlines()[0]}")
                    continue
                desc = eng.synthesis.describe()
                contestants.append(_Contestant(backend, prec, desc.get("device", "?"), setup, desc.get("providers", ""),
                                               lambda e=eng, f=feeds: e.synthesis.run(f), eng))
        typer.echo(f"timing {len(contestants)} rows at batch {n}, in turns ...")
        all_times = time_round_robin([c.call for c in contestants], warmup, iters, min_seconds)
        for c, times in zip(contestants, all_times):
            report.rows.append(make_row(c.backend, c.precision, n, c.device, times, gflop, c.setup_s, c.notes))
            if c.engine is not None:
                c.engine.close()
    if overhead:
        report.overhead = runtime_overhead(g, batch=1, warmup=warmup, iters=iters, min_seconds=min_seconds)
    if ort_sweep:
        from stylegan_edge.runtime.benchmark import sweep_session_settings

        typer.echo("timing onnxruntime session settings ...")
        report.settings["ort_sweep"] = sweep_session_settings(g, "fp32", batches[0], warmup, iters, min_seconds)
        if max(batches) > 1:
            from stylegan_edge.runtime.benchmark import sweep_batch_chunks

            report.settings["ort_chunks"] = sweep_batch_chunks(g, "fp32", max(batches), warmup, iters, min_seconds)
    finish(report)
    typer.echo("")
    typer.echo(f"{report.machine['processor']}, {report.machine['cpu_count']} CPUs; {g.resolution} px; "
               f"synthesis {gflop:.2f} GFLOP/image; matmul {settings['matmul']}; allocator: {settings['allocator']}")
    typer.echo(markdown_table(report))
    chunk = g.synthesis.settings.max_batch if hasattr(g.synthesis, "settings") else None
    if chunk and "onnxruntime" in wanted and max(batches) > chunk:
        typer.echo(f"(onnxruntime on the CPU runs a batch as calls of at most {chunk} image(s): past that the "
                   "feature maps leave the cache; see --ort-sweep)")
    if report.overhead:
        o = report.overhead
        typer.echo(f"\nruntime overhead of generate() at batch 1: {100 * o['overhead_share']:.1f}% "
                   f"({o['overhead_ms']:.2f} ms of {o['generate_ms']:.1f} ms)")
    if "ort_sweep" in report.settings:
        from stylegan_edge.runtime.backends.onnxruntime import SessionSettings

        d = SessionSettings()
        typer.echo(f"\nonnxruntime session settings, fp32 batch {batches[0]} (default: threads "
                   f"{d.threads or 'one per core'}, {'sequential' if d.sequential else 'parallel'}, arena {d.arena}):")
        typer.echo("| threads | execution | arena | median ms |\n| --- | --- | --- | --- |")
        for r in sorted(report.settings["ort_sweep"], key=lambda r: r["median_ms"]):
            typer.echo(f"| {r['threads']} | {r['execution']} | {r['arena']} | {r['median_ms']:.1f} |")
    if "ort_chunks" in report.settings:
        rows = report.settings["ort_chunks"]
        typer.echo(f"\nonnxruntime CPU, fp32 batch {rows[0]['batch']} run as calls of N images (default N: {chunk}):")
        typer.echo("| images per call | median ms |\n| --- | --- |")
        for r in rows:
            typer.echo(f"| {r['max_batch']} | {r['median_ms']:.1f} |")
    if json_out:
        from stylegan_edge.runtime.images import write_text_output

        write_text_output(json_out, json.dumps(report.to_dict(), indent=2) + "\n")
        typer.echo(f"wrote {json_out}")
    if tmp is not None:
        tmp.cleanup()
