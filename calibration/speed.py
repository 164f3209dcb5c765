"""Side-by-side speed of several ONNX files on the onnxruntime CPU provider.

The sessions run round robin on the same feeds (one call each per round), so load from other
processes hits every precision alike; the figure per file is the best round (as `timeit`
reports), which on a busy machine is the least disturbed one. One intra-op thread by default: on
a small machine shared with other work, more threads measured slower and far noisier.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from stylegan_edge.runtime.benchmark import time_round_robin

from .graph import op_counts, session


@dataclass(frozen=True)
class SpeedSettings:
    batch: int = 4
    rounds: int = 10  # at least this many rounds...
    seconds: float = 20.0  # ...and more while this budget lasts (small models get many rounds)
    max_rounds: int = 200
    warmup: int = 2
    threads: int | None = 1


def time_sessions(sessions: Mapping[str, ort.InferenceSession], feeds: Mapping[str, np.ndarray],
                  settings: SpeedSettings | None = None) -> dict[str, float]:
    """Best-round ms per image of each session on `feeds` (their batch is the image count)."""
    settings = settings or SpeedSettings()
    batch = int(next(iter(feeds.values())).shape[0])
    prepared = {k: {i.name: feeds[i.name] for i in s.get_inputs()} for k, s in sessions.items()}
    calls = [lambda s=s, f=prepared[k]: s.run(["image"], f) for k, s in sessions.items()]
    times = time_round_robin(calls, settings.warmup, settings.rounds, settings.seconds / len(calls), per_turn=1,
                             settle=0, max_calls=settings.max_rounds)
    return {k: 1000.0 * float(t.min()) / batch for k, t in zip(sessions, times)}


def time_models(models: Mapping[str, str | Path | onnx.ModelProto], feeds: Mapping[str, np.ndarray],
                settings: SpeedSettings | None = None) -> dict[str, float]:
    settings = settings or SpeedSettings()
    sessions = {k: session(m, threads=settings.threads) for k, m in models.items()}
    return time_sessions(sessions, feeds, settings)


def optimized_op_counts(model: str | Path | onnx.ModelProto, tmp_dir: str | Path) -> dict[str, int]:
    """Operator counts of the graph onnxruntime actually runs (after its CPU optimisations):
    shows whether Q/DQ pairs became integer kernels (QLinearConv)."""
    path = Path(tmp_dir) / "optimized.onnx"
    session(model, optimized_path=path)
    return op_counts(onnx.load(str(path)))


def op_profile(model: str | Path | onnx.ModelProto, feeds: Mapping[str, np.ndarray], tmp_dir: str | Path,
               settings: SpeedSettings | None = None, runs: int = 5) -> dict[str, float]:
    """ms per image spent in each operator type (onnxruntime's profiler, after its optimisations),
    largest first: where the time goes, and so what a faster convolution can and cannot save."""
    settings = settings or SpeedSettings()
    sess = session(model, threads=settings.threads, profile_prefix=str(Path(tmp_dir) / "profile"))
    prepared = {i.name: feeds[i.name] for i in sess.get_inputs()}
    batch = int(next(iter(prepared.values())).shape[0])
    for _ in range(settings.warmup + runs):
        sess.run(["image"], prepared)
    path = Path(sess.end_profiling())
    events = json.loads(path.read_text())
    path.unlink(missing_ok=True)
    per_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            per_op[op] = per_op.get(op, 0.0) + e["dur"] / 1000.0
    # The profile covers the warm-up runs too; scale to one run per image.
    scale = 1.0 / ((settings.warmup + runs) * batch)
    return {k: round(v * scale, 3) for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])}
