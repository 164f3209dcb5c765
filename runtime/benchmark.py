"""`stylegan bench` without its command line: which rows to time (`run_bench`), the timing
harness (latency statistics, throughput, achieved GFLOP/s against the machine's measured
matrix-multiply rate, the runtime's own overhead) and the report's text.

Torch-free at import (a Jetson benchmarks its TensorRT and onnxruntime rows without PyTorch); the
PyTorch rows come from the registry's checkpoint backends through the same `Backend` protocol,
and the export and calibration a bench may need are imported only then.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backends import BackendSpec, backend_spec
from .backends.base import Backend
from .bundle import open_bundle
from .generator import ArgumentError, Generator


@dataclass
class Row:
    backend: str
    precision: str
    batch: int
    device: str
    median_ms: float | None  # None (like the other measurements) on a row that failed: see `error`
    p95_ms: float | None
    images_per_s: float | None
    gflop_per_image: float
    gflops: float | None
    share_of_matmul: float | None = None
    speedup: float | None = None
    setup_s: float | None = None  # compile/build/session time, reported apart from run time
    notes: str = ""
    error: str | None = None  # one line: why this row could not be opened or run

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.error is None:  # a measured row's JSON stays as it always was
            del d["error"]
        return d


@dataclass
class Report:
    machine: dict[str, Any]
    matmul_gflops: float | None
    rows: list[Row] = field(default_factory=list)
    overhead: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "matmul_gflops": self.matmul_gflops, "rows": [r.to_dict() for r in self.rows],
                "overhead": self.overhead, "settings": self.settings}


def time_calls(fn: Callable[[], Any], warmup: int, iters: int, min_seconds: float = 0.0) -> np.ndarray:
    """Wall-clock seconds of `iters` calls after `warmup` untimed ones (more calls if they all
    finish before `min_seconds`, so fast rows get stable statistics)."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < iters or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 10 * iters:
            break
    return np.asarray(times)


def time_round_robin(
    fns: list[Callable[[], Any]], warmup: int, iters: int, min_seconds: float = 0.0, per_turn: int = 2,
    settle: int = 1, max_calls: int | None = None,
) -> list[np.ndarray]:
    """Wall-clock seconds of calls to each of `fns`, taken in turns: after `warmup` untimed
    rounds, every round gives each function `settle` untimed calls (other engines' spinning
    threads and caches settle) and `per_turn` timed ones, until each has `iters` timed calls and
    `min_seconds` per function have passed (at most `max_calls` timed calls, default 10 x
    `iters`). A shared machine whose speed drifts then slows every row alike, so the ratios
    between rows hold; timing rows one after another would not."""
    max_calls = max_calls or 10 * iters
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    calls = 0
    while True:
        for fn, out in zip(fns, times):
            for _ in range(settle):
                fn()
            for _ in range(per_turn):
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
        calls += per_turn
        enough = calls >= iters and time.perf_counter() - start >= min_seconds * len(fns)
        if enough or calls >= max_calls:
            break
    return [np.asarray(t) for t in times]


def synthesis_feeds(g: Generator, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Fresh random styles and noise for a synthesis call (never zeros), by input name."""
    rng = np.random.default_rng(seed)
    # A conditional model draws a class per image, as users would.
    labels = rng.integers(0, g.label_size, batch).tolist() if g.label_size else None
    ws = g.styles(z=rng.standard_normal((batch, g.z_dim), dtype=np.float32), psi=0.7, labels=labels)
    feeds = {name: np.ascontiguousarray(ws[:, i]) for i, name in enumerate(g.meta.w_inputs)}
    return {**feeds, **g.noise(batch, "random", rng)}


def make_row(
    backend: str, precision: str, batch: int, device: str, times: np.ndarray, gflop: float,
    setup_s: float | None = None, notes: str = "",
) -> Row:
    med = float(np.median(times))
    return Row(
        backend=backend, precision=precision, batch=batch, device=device, median_ms=med * 1e3,
        p95_ms=float(np.percentile(times, 95)) * 1e3, images_per_s=batch / med, gflop_per_image=gflop,
        gflops=gflop * batch / med, setup_s=setup_s, notes=notes,
    )


def failed_row(backend: str, precision: str, batch: int, gflop: float, error: BaseException | str) -> Row:
    """A row that could not be opened or timed, carrying its reason instead of measurements."""
    return Row(backend=backend, precision=precision, batch=batch, device="-", median_ms=None, p95_ms=None,
               images_per_s=None, gflop_per_image=gflop, gflops=None, error=_one_line(error))


def _one_line(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class _EngineClock:
    """Wraps a backend and adds up the time spent inside it, so that the runtime's own share of
    a call is measured within the same call rather than as a difference of noisy medians."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.seconds = 0.0

    def run(self, feeds: Any) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        try:
            return self.backend.run(feeds)
        finally:
            self.seconds += time.perf_counter() - t0

    def run_with_noise(self, feeds: Any, noise: Any) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        try:
            return self.backend.run_with_noise(feeds, noise)
        finally:
            self.seconds += time.perf_counter() - t0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)


def runtime_overhead(g: Generator, batch: int, warmup: int, iters: int, min_seconds: float = 0.0) -> dict[str, float]:
    """Share of a `generate()` call spent outside the engines (seeds, truncation, mixing' inputs,
    noise, uint8 conversion): each call's engine time is clocked inside that call."""
    seeds = list(range(batch))
    mapping, synthesis = g.mapping, g.synthesis
    g.mapping, g.synthesis = _EngineClock(mapping), _EngineClock(synthesis)  # type: ignore[assignment]
    totals, engines = [], []
    try:
        def call() -> None:
            g.mapping.seconds = g.synthesis.seconds = 0.0  # type: ignore[attr-defined]
            t0 = time.perf_counter()
            g.generate(seeds=seeds, psi=0.7, noise="const", batch_size=batch, label=0 if g.label_size else None)
            totals.append(time.perf_counter() - t0)
            engines.append(g.mapping.seconds + g.synthesis.seconds)  # type: ignore[attr-defined]

        time_calls(call, warmup, iters, min_seconds)
    finally:
        g.mapping, g.synthesis = mapping, synthesis
    total, engine = np.asarray(totals[warmup:]), np.asarray(engines[warmup:])
    share = (total - engine) / total
    return {"batch": batch, "generate_ms": float(np.median(total)) * 1e3, "engines_ms": float(np.median(engine)) * 1e3,
            "overhead_ms": float(np.median(total - engine)) * 1e3, "overhead_share": float(np.median(share))}


def sweep_session_settings(
    g: Generator, precision: str, batch: int, warmup: int, iters: int, min_seconds: float,
) -> list[dict[str, Any]]:
    """onnxruntime CPU session settings (threads, execution mode, memory arena) for the bundle
    of `g`, each timed on the same inputs; the fastest is what `SessionSettings()` should
    default to."""
    import itertools

    from .backends.onnxruntime import OnnxRuntimeBackend, SessionSettings

    feeds = synthesis_feeds(g, batch)
    cores = os.cpu_count() or 1
    path = open_bundle(g.source).onnx_path("synthesis", precision)
    rows = []
    # One session at a time, not in turns: a parallel-execution session's inter-op threads keep
    # spinning after its call and would slow whichever session runs next.
    for threads, sequential, arena in itertools.product(sorted({1, cores}), (True, False), (True, False)):
        s = SessionSettings(threads=threads, sequential=sequential, arena=arena, cache_optimized=False)
        backend = OnnxRuntimeBackend(path, precision, "cpu", settings=s)
        times = time_calls(lambda b=backend: b.run(feeds), warmup, iters, min_seconds)
        backend.close()
        rows.append({"threads": threads, "execution": "sequential" if sequential else "parallel",
                     "arena": arena, "median_ms": float(np.median(times)) * 1e3})
    return rows


def sweep_batch_chunks(
    g: Generator, precision: str, batch: int, warmup: int, iters: int, min_seconds: float,
) -> list[dict[str, Any]]:
    """A batch of `batch` images on onnxruntime's CPU provider run as calls of 1, 2, 4, ...
    images: where the default `max_batch` (from the feature-map footprint) comes from."""
    from .backends.onnxruntime import OnnxRuntimeBackend, SessionSettings

    feeds = synthesis_feeds(g, batch)
    path = open_bundle(g.source).onnx_path("synthesis", precision)
    chunks = sorted({min(2**k, batch) for k in range(batch.bit_length() + 1)})
    backends = [OnnxRuntimeBackend(path, precision, "cpu", settings=SessionSettings(max_batch=c)) for c in chunks]
    all_times = time_round_robin([lambda b=b: b.run(feeds) for b in backends], warmup, iters, min_seconds)
    return [{"batch": batch, "max_batch": c, "median_ms": float(np.median(t)) * 1e3} for c, t in zip(chunks, all_times)]


def matmul_gflops(matmul: Callable[[], Any], n: int, seconds: float = 2.0) -> float:
    """FP32 rate of `matmul`, a product of two n x n matrices, from its best call: the rate is
    a ceiling, and a shared machine only ever slows a call down."""
    times = time_calls(matmul, warmup=1, iters=5, min_seconds=seconds)
    return 2 * n**3 / float(np.min(times)) / 1e9


def numpy_matmul_gflops(n: int = 2048, seconds: float = 2.0) -> float:
    """FP32 GEMM rate of this machine through numpy's BLAS, all cores."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    return matmul_gflops(lambda: a @ b, n, seconds)


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpu_count": os.cpu_count(), "processor": _cpu_name(), "cpu_flags": cpu_vector_flags()}
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
    except ImportError:
        pass
    return info


# The instruction sets that decide which kernels onnxruntime, MLAS and oneDNN pick: figures from
# machines that differ here are not comparable.
VECTOR_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "sve")


def cpu_vector_flags() -> list[str]:
    """The CPU's vector-instruction flags (from /proc/cpuinfo), in VECTOR_FLAGS order."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((ln for ln in f if ln.startswith(("flags", "Features"))), "")
    except OSError:
        return []
    have = set(line.split(":", 1)[-1].split())
    return [flag for flag in VECTOR_FLAGS if flag in have]


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def tune_glibc_allocator() -> str:
    """Stop glibc from returning and re-mapping large blocks between calls (mallopt), which
    otherwise costs PyTorch eager about half its time at 1024 px. Returns what was set."""
    name = ctypes.util.find_library("c")
    if not name or platform.system() != "Linux":
        return "unchanged (not glibc)"
    libc = ctypes.CDLL(name)
    m_trim_threshold, m_mmap_max = -1, -4
    ok = libc.mallopt(m_mmap_max, 0) == 1 and libc.mallopt(m_trim_threshold, 1 << 30) == 1
    return "mallopt M_MMAP_MAX=0, M_TRIM_THRESHOLD=1GiB" if ok else "mallopt failed; unchanged"


def markdown_table(report: Report) -> str:
    head = ("| backend | precision | batch | median ms | p95 ms | img/s | GFLOP/img | GFLOP/s | % of matmul | "
            "speed-up vs torch | setup s |")
    lines = [head, "|" + " --- |" * 11]
    for r in report.rows:
        if r.error is not None:
            message = r.error.replace("|", "\\|")  # a pipe would split the markdown cell
            lines.append(f"| {r.backend} | {r.precision} | {r.batch} | - | - | - | {r.gflop_per_image:.2f} | - | - | "
                         f"- | error: {message} |")
            continue
        share = f"{100 * r.share_of_matmul:.0f}%" if r.share_of_matmul is not None else "-"
        speed = f"{r.speedup:.2f}x" if r.speedup is not None else "-"
        setup = f"{r.setup_s:.1f}" if r.setup_s is not None else "-"
        lines.append(
            f"| {r.backend} | {r.precision} | {r.batch} | {r.median_ms:.1f} | {r.p95_ms:.1f} | {r.images_per_s:.1f} | "
            f"{r.gflop_per_image:.2f} | {r.gflops:.0f} | {share} | {speed} | {setup} |"
        )
    return "\n".join(lines)


def finish(report: Report) -> Report:
    """Fill in speed-ups against PyTorch eager FP32 at the same batch, and matmul shares."""
    measured = [r for r in report.rows if r.error is None]
    base = {r.batch: r.median_ms / r.batch for r in measured if r.backend == "torch" and r.precision == "fp32"}
    for r in measured:
        if r.batch in base:
            r.speedup = base[r.batch] / (r.median_ms / r.batch)
        if report.matmul_gflops and r.device == "cpu":
            r.share_of_matmul = r.gflops / report.matmul_gflops
    return report


# --- the whole bench ------------------------------------------------------------------------------
# Options the bench opens a bundle backend with: onnxruntime's rows are its CPU provider, the
# rows PyTorch on the CPU and the matmul share are measured against.
BENCH_OPTIONS: dict[str, dict[str, Any]] = {"onnxruntime": {"device": "cpu"}}
# The backend that runs the reference generator (inputs, overhead, session sweeps): always here.
REFERENCE_BACKEND = "onnxruntime"


@dataclass(frozen=True)
class BenchSettings:
    """What `run_bench` times. model: a checkpoint, a preset name (random weights from `seed`)
    or a bundle; bundle: where a non-bundle MODEL is exported (None: a temporary folder, removed
    afterwards); checkpoint: the checkpoint of a bundle MODEL, for the checkpoint backends' rows."""

    model: str
    backends: tuple[str, ...] = ("torch", "torch.compile", "onnxruntime")
    precisions: tuple[str, ...] = ("fp32",)
    batches: tuple[int, ...] = (1, 4)
    bundle: Path | None = None
    checkpoint: Path | None = None
    iters: int = 10
    warmup: int = 3
    min_seconds: float = 2.0
    tune_allocator: bool = True
    overhead: bool = True
    ort_sweep: bool = False
    seed: int = 0


@dataclass
class BenchResult:
    report: Report
    settings: BenchSettings
    gflop_per_image: float
    resolution: int
    ort_max_batch: int | None  # images per onnxruntime CPU call of the reference session


@dataclass
class _Contestant:
    """One row while it is being timed: a call, or the reason there is none."""

    backend: str
    precision: str
    device: str = "-"
    setup_s: float | None = None
    notes: str = ""
    call: Callable[[], Any] | None = None
    error: str | None = None

    def guarded(self) -> Callable[[], None]:
        """The call, turning its first failure into this row's error (later calls do nothing),
        so one broken backend does not stop the others' timing."""
        call = self.call

        def run() -> None:
            if self.error is None:
                try:
                    call()
                except Exception as e:  # any failure of a backend's call is its row's result
                    self.error = _one_line(e)

        return run


def _notes(desc: dict[str, str]) -> str:
    if desc.get("providers"):
        return desc["providers"]
    return f"{desc['threads']} threads" if "threads" in desc else ""


def _prepared_call(backend: Backend, feeds: dict[str, np.ndarray]) -> tuple[Callable[[], Any], float | None]:
    """A backend with `prepare(feeds)` times its own call (inputs converted once) and reports its
    own set-up (a compilation); otherwise the call is `run(feeds)`."""
    prepare = getattr(backend, "prepare", None)
    if prepare is not None:
        return prepare(feeds)
    return (lambda: backend.run(feeds)), None


def _checkpoint_contestant(name: str, spec: BackendSpec, G: Any, feeds: dict[str, np.ndarray],
                           stack: contextlib.ExitStack) -> _Contestant:
    try:
        g = stack.enter_context(spec.open_checkpoint(G, "cpu"))
        call, setup = _prepared_call(g.synthesis, feeds)
    except Exception as e:  # a broken or missing backend is a row with its reason
        return _Contestant(name, "fp32", error=_one_line(e))
    desc = g.synthesis.describe()
    return _Contestant(name, "fp32", desc.get("device", "?"), setup, _notes(desc), call)


def _bundle_contestant(name: str, bundle: Path, precision: str, feeds: dict[str, np.ndarray],
                       stack: contextlib.ExitStack) -> _Contestant:
    try:
        t0 = time.perf_counter()
        g = stack.enter_context(Generator(bundle, backend=name, precision=precision, **BENCH_OPTIONS.get(name, {})))
        setup = time.perf_counter() - t0
    except Exception as e:  # a missing engine or library is a row with its reason
        return _Contestant(name, precision, error=_one_line(e))
    desc = g.synthesis.describe()
    return _Contestant(name, precision, desc.get("device", "?"), setup, _notes(desc),
                       lambda: g.synthesis.run(feeds))


def _model_and_bundle(s: BenchSettings, need_torch: bool, stack: contextlib.ExitStack,
                      log: Callable[[str], None]) -> tuple[Any, Path]:
    """The training model (None when no row needs it) and the bundle to time, exported when
    MODEL is not one."""
    from .backends.torch import load_torch_model

    if Path(s.model).is_dir():
        if not need_torch:
            return None, Path(s.model)
        if s.checkpoint is None:
            raise ArgumentError("the PyTorch rows need the bundle's checkpoint: add --checkpoint FILE "
                                "(or give the checkpoint as MODEL)")
        return load_torch_model(s.checkpoint, presets=False), Path(s.model)
    G = load_torch_model(s.model, s.seed)
    bundle = s.bundle
    if bundle is None or not (bundle / "meta.json").is_file():
        from stylegan_edge.export.onnx_export import export_bundle

        if bundle is None:
            bundle = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stylegan-bench-"))) / "model.sgbundle"
        log(f"exporting {s.model} to {bundle} ...")
        export_bundle(G, bundle)
    return G, bundle


def run_bench(s: BenchSettings, log: Callable[[str], None] = lambda message: None) -> BenchResult:
    """Time every requested backend, precision and batch side by side; progress goes to `log`.
    A row that cannot be opened or run is a row carrying its error. Every backend opened here is
    closed, and a temporary bundle removed, on return and on failure alike."""
    specs = {name: backend_spec(name) for name in s.backends}  # an unknown name is one line
    need_torch = any(spec.open_checkpoint is not None for spec in specs.values())
    settings: dict[str, Any] = {"allocator": tune_glibc_allocator() if s.tune_allocator else "unchanged"}
    with contextlib.ExitStack() as stack:
        G, bundle = _model_and_bundle(s, need_torch, stack, log)
        reduced = [p for p in s.precisions if p != "fp32"]
        if reduced and REFERENCE_BACKEND in s.backends:
            missing = [p for p in reduced if p not in open_bundle(bundle).precisions()]
            if missing:
                from stylegan_edge.calibration.pipeline import prepare_precisions

                log(f"making {', '.join(missing)} ONNX (calibration) ...")
                prepare_precisions(bundle, missing, log=lambda m: log(f"  {m}"))

        g = stack.enter_context(Generator(bundle, backend=REFERENCE_BACKEND, **BENCH_OPTIONS[REFERENCE_BACKEND]))
        gflop = float(g.meta.raw["gflop_per_image"]["synthesis"])
        matmul = numpy_matmul_gflops()
        settings["matmul"] = f"numpy {matmul:.0f} GFLOP/s"
        if need_torch:
            from .backends.torch import matmul_call

            call, threads = matmul_call(2048)
            torch_mm = matmul_gflops(call, 2048)
            settings["matmul"] += f", torch {torch_mm:.0f} GFLOP/s"
            matmul = max(matmul, torch_mm)
            settings["torch_threads"] = threads
        report = Report(machine=machine_info(), matmul_gflops=matmul, settings=settings)
        report.machine["model"] = str(s.model)
        report.machine["resolution"] = g.resolution

        for n in s.batches:
            report.rows += _time_batch(s, specs, G, bundle, synthesis_feeds(g, n), n, gflop, log)
        if s.overhead:
            report.overhead = runtime_overhead(g, batch=1, warmup=s.warmup, iters=s.iters, min_seconds=s.min_seconds)
        if s.ort_sweep:
            log("timing onnxruntime session settings ...")
            report.settings["ort_sweep"] = sweep_session_settings(g, "fp32", s.batches[0], s.warmup, s.iters,
                                                                  s.min_seconds)
            if max(s.batches) > 1:
                report.settings["ort_chunks"] = sweep_batch_chunks(g, "fp32", max(s.batches), s.warmup, s.iters,
                                                                   s.min_seconds)
        finish(report)
        chunk = g.synthesis.settings.max_batch if hasattr(g.synthesis, "settings") else None
        return BenchResult(report, s, gflop, g.resolution, chunk)


def _time_batch(s: BenchSettings, specs: dict[str, BackendSpec], G: Any, bundle: Path, feeds: dict[str, np.ndarray],
                n: int, gflop: float, log: Callable[[str], None]) -> list[Row]:
    """The rows of one batch size, timed in turns; every backend opened for them is closed after."""
    with contextlib.ExitStack() as stack:
        contestants: list[_Contestant] = []
        for name, spec in specs.items():
            if spec.open_checkpoint is not None:
                log(f"preparing {name} fp32 batch {n} ...")
                contestants.append(_checkpoint_contestant(name, spec, G, feeds, stack))
            else:
                contestants += [_bundle_contestant(name, bundle, p, feeds, stack) for p in s.precisions]
        timed = [c for c in contestants if c.error is None]
        log(f"timing {len(timed)} rows at batch {n}, in turns ...")
        all_times = time_round_robin([c.guarded() for c in timed], s.warmup, s.iters, s.min_seconds) if timed else []
        times = dict(zip(map(id, timed), all_times))
        return [failed_row(c.backend, c.precision, n, gflop, c.error) if c.error is not None else
                make_row(c.backend, c.precision, n, c.device, times[id(c)], gflop, c.setup_s, c.notes)
                for c in contestants]


def report_text(result: BenchResult) -> str:
    """The report as `stylegan bench` prints it: a summary line, the table, then the extras."""
    report, s = result.report, result.settings
    settings, chunk = report.settings, result.ort_max_batch
    flags = " ".join(report.machine.get("cpu_flags", [])) or "unknown"
    lines = [f"{report.machine['processor']}, {report.machine['cpu_count']} CPUs ({flags}); {result.resolution} px; "
             f"synthesis {result.gflop_per_image:.2f} GFLOP/image; matmul {settings['matmul']}; "
             f"allocator: {settings['allocator']}", markdown_table(report)]
    if chunk and REFERENCE_BACKEND in s.backends and max(s.batches) > chunk:
        lines.append(f"(onnxruntime on the CPU runs a batch as calls of at most {chunk} image(s): past that the "
                     "feature maps leave the cache; see --ort-sweep)")
    if report.overhead:
        o = report.overhead
        lines.append(f"\nruntime overhead of generate() at batch 1: {100 * o['overhead_share']:.1f}% "
                     f"({o['overhead_ms']:.2f} ms of {o['generate_ms']:.1f} ms)")
    if "ort_sweep" in settings:
        from .backends.onnxruntime import SessionSettings

        d = SessionSettings()
        mode = "sequential" if d.sequential else "parallel"
        lines.append(f"\nonnxruntime session settings, fp32 batch {s.batches[0]} (default: threads "
                     f"{d.threads or 'one per core'}, {mode}, arena {d.arena}):")
        lines.append("| threads | execution | arena | median ms |\n| --- | --- | --- | --- |")
        for r in sorted(settings["ort_sweep"], key=lambda r: r["median_ms"]):
            lines.append(f"| {r['threads']} | {r['execution']} | {r['arena']} | {r['median_ms']:.1f} |")
    if "ort_chunks" in settings:
        rows = settings["ort_chunks"]
        lines.append(f"\nonnxruntime CPU, fp32 batch {rows[0]['batch']} run as calls of N images (default N: {chunk}):")
        lines.append("| images per call | median ms |\n| --- | --- |")
        lines += [f"| {r['max_batch']} | {r['median_ms']:.1f} |" for r in rows]
    return "\n".join(lines)
