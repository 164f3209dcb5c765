"""Timing harness for `stylegan bench`: latency statistics, throughput, achieved GFLOP/s against
the machine's measured matrix-multiply rate, and the runtime's own overhead.

Torch-free (a Jetson benchmarks its TensorRT and onnxruntime rows without PyTorch); the PyTorch
rows plug in through the same `Backend` protocol.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .backends.base import Backend
from .bundle import open_bundle
from .generator import Generator


@dataclass
class Row:
    backend: str
    precision: str
    batch: int
    device: str
    median_ms: float
    p95_ms: float
    images_per_s: float
    gflop_per_image: float
    gflops: float
    share_of_matmul: float | None = None
    speedup: float | None = None
    setup_s: float | None = None  # compile/build/session time, reported apart from run time
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    ws = g.styles(z=rng.standard_normal((batch, g.z_dim), dtype=np.float32), psi=0.7)
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
            g.generate(seeds=seeds, psi=0.7, noise="const", batch_size=batch)
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
                            "cpu_count": os.cpu_count(), "processor": _cpu_name()}
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
    except ImportError:
        pass
    return info


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
    base = {r.batch: r.median_ms / r.batch for r in report.rows if r.backend == "torch" and r.precision == "fp32"}
    for r in report.rows:
        if r.batch in base:
            r.speedup = base[r.batch] / (r.median_ms / r.batch)
        if report.matmul_gflops and r.device == "cpu":
            r.share_of_matmul = r.gflops / report.matmul_gflops
    return report
