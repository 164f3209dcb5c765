"""GPU acceptance check: TensorRT engines against onnxruntime FP32, and their speed, in one run.

    python scripts/gpu_check.py                      # exports faces64 (shipped) and edge256 (random weights)
    python scripts/gpu_check.py A.sgbundle B.sgbundle  # bundles made elsewhere (a CPU box), no PyTorch needed

On a machine with an NVIDIA GPU, TensorRT and pycuda, for each bundle: make the reduced-precision
ONNX where it is missing or stale (needs the export extras), build the FP32, FP16 and INT8 engines
with the project's `build_engines`, compare each engine with onnxruntime FP32 on the CPU at batch
1 and 3 (the mapping's w, and the images from the same styles and constant noise: PSNR and max
error), time images per second at batch 1 and 8 with and without CUDA graphs, and write
`gpu_check.json` and `gpu_check.md` in --out. Prints the GPU, the TensorRT version and the CPU's
flags beside the figures. Exit code 0 when every check passes, 3 when one fails, 1 when the check
cannot run (no TensorRT, no GPU: one line). The thresholds are in THRESHOLDS and docs/jetson.md.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "faces64.safetensors"
PRECISIONS = ("fp32", "fp16", "int8")
CHECK_BATCHES = (1, 3)  # 3: a batch above 1 that is not a power of two (catches batch-mixing reductions)
SPEED_BATCHES = (1, 8)
# What a good engine looks like against onnxruntime FP32 (images in [-1, 1], data range 2).
# FP32: TF32 is off in FP32 builds, so only the order of summation differs.
THRESHOLDS: dict[str, dict[str, float]] = {
    "fp32": {"max_abs_error": 1e-3, "psnr_db_min": 60.0},
    "fp16": {"psnr_db_min": 40.0},
    "int8": {"psnr_db_min": 30.0},
    "mapping": {"w_rel_max_error": 1e-3},  # max |w_trt - w_ort| / max |w_ort|, FP32 engine
}
# CPU features that decide onnxruntime's and numpy's kernels (x86 and Arm names).
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
             "asimd", "asimdhp", "asimddp", "sve", "sve2", "i8mm", "bf16")

Log = Callable[[str], None]


class CheckError(RuntimeError):
    """The check cannot run here; one line saying why."""


# --- the machine ---------------------------------------------------------------------------------------------
def cpu_description() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware") and value.strip():
                model = value.strip()
            elif key in ("flags", "features"):
                flags |= set(value.split())
    except OSError:
        pass
    return {"model": model, "machine": platform.machine(), "flags": [f for f in CPU_FLAGS if f in flags]}


def environment() -> dict[str, Any]:
    """TensorRT, the GPU and the CPU; CheckError (one line) when TensorRT or the GPU is missing."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise CheckError(f"TensorRT is not importable ({e}): this check needs an NVIDIA GPU with TensorRT and "
                         "pycuda (`pip install '.[trt]'`; on a Jetson TensorRT comes with JetPack)") from None
    from stylegan_edge.runtime.backends.cuda import CudaUnavailable, gpu_identity

    try:
        gpu = gpu_identity(0)
    except CudaUnavailable as e:
        raise CheckError(f"no usable NVIDIA GPU: {e}") from None
    import onnxruntime as ort

    return {"gpu": str(gpu), "gpu_name": gpu.name, "compute_capability": gpu.compute_capability,
            "tensorrt": str(trt.__version__), "onnxruntime": ort.__version__, "python": platform.python_version(),
            "cpu": cpu_description()}


# --- bundles ---------------------------------------------------------------------------------------------------
def default_bundles(out: Path, log: Log) -> list[Path]:
    """The shipped model and an edge256 bundle with random weights, exported here (needs PyTorch)."""
    try:
        import torch  # noqa: F401 - the exporter's dependency, checked before minutes of work

        from stylegan_edge.cli.export_cmd import export_checkpoint
    except ImportError as e:
        raise CheckError(f"exporting needs the train and export extras ({e.name} is missing): pip install "
                         "'.[train,export]', or pass bundles made elsewhere: gpu_check.py A.sgbundle ...") from None
    bundles = []
    for source, name in ((str(SHIPPED), "faces64.sgbundle"), ("edge256", "edge256.sgbundle")):
        path = out / name
        if not (path / "meta.json").is_file():
            log(f"exporting {source} -> {path}")
            export_checkpoint(source, path, "inference", None, 0)
        bundles.append(path)
    return bundles


def ensure_reduced_precision(bundle: Path, samples: int, log: Log) -> None:
    from stylegan_edge.export.precision_files import problems

    found = problems(bundle, ["fp16", "int8"])
    if not found:
        return
    log(f"{bundle.name}: {'; '.join(map(str, found))}: calibrating")
    try:
        from stylegan_edge.calibration.pipeline import prepare_precisions
    except ImportError as e:
        raise CheckError(f"{bundle}: {found[0]}, and calibration needs the export extras ({e.name} is missing): "
                         f"`pip install '.[export]'`, or make the bundle with `stylegan-export {bundle} --fp16 "
                         "--int8 --no-engines` elsewhere") from None
    prepare_precisions(bundle, ["fp16", "int8"], samples=samples, log=lambda m: log(f"  {m}"))


# --- fidelity ----------------------------------------------------------------------------------------------------
def psnr_db(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per image, in dB, images clipped to [-1, 1] (data range 2); non-finite pixels count as
    maximally wrong; identical images report 100 dB (JSON has no infinity)."""
    x = np.asarray(images, np.float64)
    ref = np.clip(np.asarray(reference, np.float64), -1, 1)
    bad = ~np.isfinite(x)
    x = np.where(bad, np.where(ref >= 0, -1.0, 1.0), np.clip(np.nan_to_num(x), -1, 1))
    mse = ((x - ref) ** 2).reshape(len(x), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return np.minimum(10 * np.log10(4.0 / mse), 100.0)


def max_error(a: np.ndarray, b: np.ndarray) -> float:
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float(d.max()) if np.isfinite(d).all() else 1e30  # JSON-safe "broken"


def check_labels(rng: np.random.Generator, batch: int, label_size: int) -> np.ndarray | None:
    """A class-conditional bundle's labels c for the mapping check: random one-hot rows, and
    random mixtures in every other row (the engine must read c as a linear input, not an index);
    None for an unconditional bundle."""
    if not label_size:
        return None
    c = np.eye(label_size, dtype=np.float32)[rng.integers(0, label_size, batch)]
    mix = rng.random((batch, label_size)).astype(np.float32)
    c[1::2] = (mix / mix.sum(axis=1, keepdims=True))[1::2]
    return c


def fidelity_rows(bundle: Path, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Each engine against onnxruntime FP32 on the CPU, on fresh latents, at every CHECK_BATCHES size."""
    from stylegan_edge.runtime import Generator

    rows = []
    reference = Generator(bundle, backend="onnxruntime", device="cpu")
    try:
        cases = []
        for batch in CHECK_BATCHES:
            z = rng.standard_normal((batch, reference.z_dim)).astype(np.float32)
            c = check_labels(rng, batch, reference.label_size)
            w = reference.map(z, c)
            ws = reference.broadcast(w)
            cases.append((batch, z, c, w, ws, reference.synthesize_float(ws, noise="const")))
    finally:
        reference.close()
    for precision in PRECISIONS:
        g = Generator(bundle, backend="tensorrt", precision=precision)
        try:
            for batch, z, c, w, ws, images in cases:
                w_trt = g.map(z, c)
                out = g.synthesize_float(ws, noise="const")  # the reference's styles: synthesis alone
                p = psnr_db(out, images)
                row = {"bundle": bundle.name, "precision": precision, "batch": batch,
                       "psnr_db_mean": round(float(p.mean()), 2), "psnr_db_min": round(float(p.min()), 2),
                       "max_abs_error": max_error(out, images),
                       "w_rel_max_error": max_error(w_trt, w) / max(float(np.abs(w).max()), 1e-12),
                       "build": g.describe().get("build", "?")}
                row["failed"] = failed_checks(row)
                rows.append(row)
        finally:
            g.close()
    return rows


def failed_checks(row: dict[str, Any]) -> list[str]:
    """The THRESHOLDS a fidelity row misses, as readable strings; [] when it passes."""
    failed = []
    limits = THRESHOLDS[row["precision"]]
    if "max_abs_error" in limits and not row["max_abs_error"] <= limits["max_abs_error"]:
        failed.append(f"max error {row['max_abs_error']:.2g} > {limits['max_abs_error']:g}")
    if not row["psnr_db_min"] >= limits["psnr_db_min"]:
        failed.append(f"PSNR {row['psnr_db_min']:.1f} dB < {limits['psnr_db_min']:g} dB")
    w_limit = THRESHOLDS["mapping"]["w_rel_max_error"]
    if not row["w_rel_max_error"] <= w_limit:
        failed.append(f"mapping w relative error {row['w_rel_max_error']:.2g} > {w_limit:g}")
    return failed


# --- speed -------------------------------------------------------------------------------------------------------
def speed_rows(bundle: Path, rng: np.random.Generator, seconds: float, min_iters: int) -> list[dict[str, Any]]:
    """Images per second of synthesis (styles in, images back on the host, constant noise on the
    device) at each SPEED_BATCHES size, with and without CUDA graphs."""
    from stylegan_edge.runtime import Generator

    rows = []
    for precision in PRECISIONS:
        for graphs in (False, True):
            g = Generator(bundle, backend="tensorrt", precision=precision, cuda_graph=graphs)
            try:
                for batch in SPEED_BATCHES:
                    ws = g.broadcast(rng.standard_normal((batch, g.meta.w_dim)).astype(np.float32))
                    for _ in range(3):  # warm-up: buffers, and the capture when graphs are on
                        g.synthesize_float(ws, noise="const")
                    iters, t0 = 0, time.perf_counter()
                    while iters < min_iters or time.perf_counter() - t0 < seconds:
                        g.synthesize_float(ws, noise="const")
                        iters += 1
                    elapsed = time.perf_counter() - t0
                    rows.append({"bundle": bundle.name, "precision": precision, "batch": batch, "cuda_graph": graphs,
                                 "graph_state": g.describe().get("cuda_graph", "?"), "iters": iters,
                                 "ms_per_call": round(1000 * elapsed / iters, 4),
                                 "images_per_s": round(batch * iters / elapsed, 2)})
            finally:
                g.close()
    return rows


# --- the report --------------------------------------------------------------------------------------------------
def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [f"GPU {env['gpu']}, TensorRT {env['tensorrt']}, onnxruntime {env['onnxruntime']}, CPU "
             f"{env['cpu']['model']} ({', '.join(env['cpu']['flags']) or 'no listed flags'})", "",
             "| bundle | precision | batch | PSNR mean dB | PSNR min dB | max error | w rel. error | build | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["fidelity"]:
        verdict = "ok" if not r["failed"] else "FAIL: " + "; ".join(r["failed"])
        lines.append(f"| {r['bundle']} | {r['precision']} | {r['batch']} | {r['psnr_db_mean']:.1f} | "
                     f"{r['psnr_db_min']:.1f} | {r['max_abs_error']:.2g} | {r['w_rel_max_error']:.2g} | {r['build']} | "
                     f"{verdict} |")
    lines += ["", "| bundle | precision | batch | CUDA graph | graph state | ms / call | images / s |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["speed"]:
        lines.append(f"| {r['bundle']} | {r['precision']} | {r['batch']} | {'on' if r['cuda_graph'] else 'off'} | "
                     f"{r['graph_state']} | {r['ms_per_call']:.3f} | {r['images_per_s']:.1f} |")
    lines += ["", f"{'PASS' if report['passed'] else 'FAIL'} in {report['seconds']:.0f} s"]
    return "\n".join(lines) + "\n"


def run_check(bundles: Sequence[Path], out: Path, *, seconds: float = 1.0, min_iters: int = 5,
              calib_samples: int = 64, seed: int | None = None, log: Log = print) -> dict[str, Any]:
    """The whole check; writes out/gpu_check.json and out/gpu_check.md and returns the report."""
    from stylegan_edge.export.tensorrt_build import build_engines

    t0 = time.perf_counter()
    env = environment()
    log(f"GPU {env['gpu']}; TensorRT {env['tensorrt']}; CPU {env['cpu']['model']} "
        f"[{' '.join(env['cpu']['flags'])}]")
    out.mkdir(parents=True, exist_ok=True)
    bundles = list(bundles) or default_bundles(out, log)
    seed = int(np.random.SeedSequence().entropy % (1 << 31)) if seed is None else seed
    rng = np.random.default_rng(seed)
    fidelity, speed, builds = [], [], {}
    for bundle in bundles:
        bundle = Path(bundle)
        ensure_reduced_precision(bundle, calib_samples, log)
        t = time.perf_counter()
        build_engines(bundle, precisions=PRECISIONS, batch=(1, 1, max(SPEED_BATCHES)), log=lambda m: log(f"  {m}"))
        builds[bundle.name] = round(time.perf_counter() - t, 2)
        fidelity += fidelity_rows(bundle, rng)
        speed += speed_rows(bundle, rng, seconds, min_iters)
    report = {"environment": env, "thresholds": THRESHOLDS, "seed": seed, "build_seconds": builds,
              "fidelity": fidelity, "speed": speed, "passed": not any(r["failed"] for r in fidelity),
              "seconds": round(time.perf_counter() - t0, 1)}
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="*", type=Path, help="bundles to check (default: export faces64 and edge256)")
    parser.add_argument("--out", type=Path, default=Path("out/gpu-check"), help="where the bundles and reports go")
    parser.add_argument("--seconds", type=float, default=1.0, help="timing per row, after warm-up")
    parser.add_argument("--min-iters", type=int, default=5, help="timed calls per row at least")
    parser.add_argument("--calib-samples", type=int, default=64, help="calibration samples where files are made")
    parser.add_argument("--seed", type=int, default=None, help="latents (default: fresh, recorded in the JSON)")
    args = parser.parse_args(argv)
    if args.seconds < 0 or args.min_iters < 1 or args.calib_samples < 1:
        parser.error("--seconds must be >= 0, --min-iters and --calib-samples >= 1")
    from stylegan_edge.runtime.bundle import BundleError

    try:
        report = run_check(args.bundles, args.out, seconds=args.seconds, min_iters=args.min_iters,
                           calib_samples=args.calib_samples, seed=args.seed)
    except (CheckError, BundleError, FileNotFoundError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1
    print(markdown(report), end="")
    print(f"wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'}")
    return 0 if report["passed"] else 3


def finite(report: dict[str, Any]) -> bool:
    """Every number in the report is finite (for tests and for readers of the JSON)."""
    def walk(x: Any) -> bool:
        if isinstance(x, float):
            return math.isfinite(x)
        if isinstance(x, dict):
            return all(walk(v) for v in x.values())
        if isinstance(x, list):
            return all(walk(v) for v in x)
        return True
    return walk(report)


if __name__ == "__main__":
    sys.exit(main())
