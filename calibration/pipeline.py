"""The exporter's entry point: `prepare_precisions(bundle, ["fp16", "int8"])`.

For FP16: calibration data, the per-layer analysis, `precision_plan.json`, then the converter
writes `synthesis.fp16.onnx`. For INT8: calibration data, per-layer sensitivity and the
speed/fidelity trade-off, then `synthesis.int8.onnx` (Q/DQ on the FP32 graph: onnxruntime, TensorRT
8.6) and `synthesis.int8-fp16.onnx` (the same Q/DQ on the mixed FP16 graph of the precision plan:
strongly typed TensorRT); INT8 alone still needs the plan, and makes it when the bundle's is
missing or stale. Calibration data is drawn once and cached
in the bundle as `calib.npz` (reused while its settings and the mapping network are unchanged).
Each step is logged with its time; the final fidelity of each file is measured on samples the
calibration never saw. The reduced-precision files carry their own measurements in their ONNX
metadata (`stylegan_edge.precision`), so a bundle explains itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from stylegan_edge.runtime.bundle import (
    CALIB_FILE,
    FP16_FILE,
    INT8_FILE,
    INT8_FP16_FILE,
    PLAN_FILE,
    PRECISION_METADATA_KEY,
    onnx_filename,
    open_bundle,
)
from stylegan_edge.runtime.precision_plan import PrecisionPlan, PrecisionPlanError

from . import metrics
from .data import ORIGIN_CLI, CalibrationData, CalibrationSettings, make_calibration_data, sha256_file
from .errors import CalibrationError
from .fp16_analysis import Fp16Thresholds, analyse_fp16
from .fp16_convert import convert_fp16
from .fp16_emulation import emulate_fp16
from .graph import load_model, run_images, save_model, session
from .int8 import Int8Settings, check_int8_fp16_model, make_int8, qdq_on_mixed

REDUCED = ("fp16", "int8")
# The "form" of each reduced-precision file in its metadata: what its float compute is and who it is for.
FORM_FP16 = "mixed-fp16"
FORM_INT8_FP32 = "qdq-on-fp32"
FORM_INT8_FP16 = "qdq-on-mixed-fp16"


@dataclass(frozen=True)
class PipelineSettings:
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)
    fp16: Fp16Thresholds = field(default_factory=Fp16Thresholds)
    int8: Int8Settings = field(default_factory=Int8Settings)
    holdout_samples: int = 16  # fidelity of the written files, on latents calibration never drew
    cache: bool = True


def calibration_data(bundle_dir: Path, settings: CalibrationSettings, cache: bool = True,
                     log: Callable[[str], None] | None = None) -> CalibrationData:
    """The bundle's calib.npz when it was drawn from this mapping network, either by
    `stylegan calibrate` (the user's deployment settings win over the defaults) or with these
    settings; otherwise fresh data, cached there."""
    log = log or (lambda msg: None)
    path = bundle_dir / CALIB_FILE
    if cache and path.is_file():
        try:
            cached = CalibrationData.load(path)
        except CalibrationError:
            cached = None
        if cached is not None and _reusable(cached, bundle_dir, settings):
            log(f"calibration data: {len(cached)} samples from {path.name} ({_describe(cached)}, cached)")
            return cached
    t0 = time.perf_counter()
    data = make_calibration_data(bundle_dir, settings)
    log(f"calibration data: {len(data)} samples ({_describe(data)}) in {time.perf_counter() - t0:.1f}s")
    if cache:
        data.save(path)
    return data


def _reusable(cached: CalibrationData, bundle_dir: Path, settings: CalibrationSettings) -> bool:
    s = cached.settings
    if s.get("mapping_sha256") != sha256_file(bundle_dir / onnx_filename("mapping")):
        return False
    return s.get("origin") == ORIGIN_CLI or s.get("requested") == asdict(settings)


def _describe(data: CalibrationData) -> str:
    s = data.settings
    return f"psi {s['psi']}, cutoff {s['cutoff']}, mixing {s['mixing']}, noise {s['noise']}, seed {s['seed']}"


def prepare_precisions(
    bundle_path: str | Path, precisions: list[str], samples: int = 64, log: Callable[[str], None] | None = None,
    settings: PipelineSettings | None = None,
) -> list[Path]:
    """Write the reduced-precision ONNX files (and the precision plan) into a bundle."""
    log = log or (lambda msg: None)
    # The quantiser's pre-processing makes onnxruntime warn about each initializer it drops;
    # that is expected here and would bury the pipeline's own log.
    ort.set_default_logger_severity(3)
    unknown = [p for p in precisions if p not in REDUCED and p != "fp32"]
    if unknown:
        raise CalibrationError(f"unknown precision {unknown[0]!r}; calibration makes {', '.join(REDUCED)}")
    wanted = [p for p in REDUCED if p in precisions]
    settings = settings or PipelineSettings()
    settings = replace(settings, calibration=replace(settings.calibration, samples=samples))
    b = open_bundle(bundle_path)
    if not wanted:
        return []
    written: list[Path] = []
    data = calibration_data(b.path, settings.calibration, settings.cache, log)
    if settings.cache:
        written.append(b.path / CALIB_FILE)
    holdout = make_calibration_data(b, replace(settings.calibration, samples=settings.holdout_samples,
                                               seed=settings.calibration.seed + 1_000_003))
    src = b.onnx_path("synthesis")
    reference = run_images(session(src), holdout)

    source_sha = sha256_file(src)
    if "fp16" in wanted or not _current_plan(b.path, source_sha):
        t0 = time.perf_counter()
        plan = analyse_fp16(b, data, settings.fp16, log)
        written.append(_write_plan(plan, b.path))
        fp32_layers = plan.fp32_layers
        log(f"{PLAN_FILE}: {len(fp32_layers)} of {len(plan.layers)} layers FP32"
            f"{' (' + ', '.join(fp32_layers) + ')' if fp32_layers else ''}, {len(plan.fp32_nodes)} FP32 nodes "
            f"(the instance norms included), in {time.perf_counter() - t0:.1f}s")
    else:
        plan = _read_plan(b.path)
        log(f"{PLAN_FILE}: current ({len(plan.fp32_layers)} layers FP32), reused for the INT8 file's FP16 part")

    mixed = convert_fp16(load_model(src), plan.fp32_nodes)
    if "fp16" in wanted:
        t0 = time.perf_counter()
        model = mixed
        psnr = metrics.psnr(run_images(session(emulate_fp16(model)), holdout), reference)
        _check_runs(model, holdout, FP16_FILE)
        _annotate(model, {"precision": "fp16", "form": FORM_FP16, "converter": "onnxconverter-common float16",
                          "plan": PLAN_FILE, "source_sha256": plan.source_sha256, **_figures(psnr, len(holdout))})
        written.append(save_model(model, b.path / FP16_FILE))
        log(f"{FP16_FILE}: converted in {time.perf_counter() - t0:.1f}s; PSNR vs FP32 (emulated FP16, "
            f"{len(holdout)} held-out samples) {psnr.mean():.1f} dB mean, {psnr.min():.1f} dB worst")

    if "int8" in wanted:
        t0 = time.perf_counter()
        result = make_int8(b.path, data, settings.int8, log)
        model = load_model(result.path)
        psnr = metrics.psnr(run_images(session(model), holdout), reference)
        c = result.chosen
        quantizer = "onnxruntime quantize_static (QDQ, symmetric QInt8, per-channel weights)"
        _annotate(model, {"precision": "int8", "form": FORM_INT8_FP32, "quantizer": quantizer,
                          "for": "onnxruntime; TensorRT weakly typed builds (INT8 + FP16 flags)",
                          "fp32_layers": c.excluded, "source_sha256": source_sha,
                          "speedup_vs_fp32_ort_cpu": round(c.speedup, 3), "met_target": result.met_target,
                          "tradeoff": result.to_dict()["tradeoff"], **_figures(psnr, len(holdout))})
        written.append(save_model(model, result.path))
        verdict = "" if result.met_target else f" (target {settings.int8.target_psnr_db:g} dB not reached by any set)"
        log(f"{INT8_FILE}: {len(c.excluded)} layers kept FP32, {c.speedup:.2f}x FP32 speed on onnxruntime "
            f"CPU; PSNR vs FP32 ({len(holdout)} held-out samples) {psnr.mean():.1f} dB mean, {psnr.min():.1f} dB "
            f"worst{verdict}; {time.perf_counter() - t0:.1f}s")

        t0 = time.perf_counter()
        strong = qdq_on_mixed(model, mixed)
        check_int8_fp16_model(strong)
        psnr = metrics.psnr(run_images(session(emulate_fp16(strong)), holdout), reference)
        _check_runs(strong, holdout, INT8_FP16_FILE)
        _annotate(strong, {"precision": "int8", "form": FORM_INT8_FP16, "quantizer": quantizer,
                           "for": "TensorRT strongly typed builds (10.x, 11.x)", "plan": PLAN_FILE,
                           "not_int8_layers": c.excluded, "fp32_layers": plan.fp32_layers,
                           "source_sha256": source_sha, **_figures(psnr, len(holdout))})
        written.append(save_model(strong, b.path / INT8_FP16_FILE))
        log(f"{INT8_FP16_FILE}: the same Q/DQ on the mixed FP16 graph in {time.perf_counter() - t0:.1f}s; PSNR vs "
            f"FP32 (emulated FP16, {len(holdout)} held-out samples) {psnr.mean():.1f} dB mean, {psnr.min():.1f} dB "
            "worst")
    return written


def _figures(psnr: np.ndarray, n: int) -> dict[str, float | int]:
    return {"psnr_db_mean_vs_fp32": round(float(psnr.mean()), 2), "psnr_db_worst_vs_fp32": round(float(psnr.min()), 2),
            "holdout_samples": n}


def _annotate(model: onnx.ModelProto, info: dict) -> None:
    for prop in list(model.metadata_props):
        if prop.key == PRECISION_METADATA_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key = PRECISION_METADATA_KEY
    entry.value = json.dumps(info)


def _check_runs(model: onnx.ModelProto, data: CalibrationData, name: str) -> None:
    """The file as shipped must load and run on onnxruntime's CPU provider."""
    out = run_images(session(model), data, limit=1)
    if not np.isfinite(out).all():
        raise CalibrationError(f"{name} produces non-finite values on onnxruntime's CPU provider")


def _current_plan(bundle_dir: Path, source_sha: str) -> bool:
    """The bundle holds a readable precision plan made from this synthesis.onnx."""
    try:
        return PrecisionPlan.read(bundle_dir).source_sha256 == source_sha
    except PrecisionPlanError:
        return False


def _read_plan(bundle_dir: Path) -> PrecisionPlan:
    try:
        return PrecisionPlan.read(bundle_dir)
    except PrecisionPlanError as e:
        raise CalibrationError(str(e)) from None


def _write_plan(plan: PrecisionPlan, bundle_dir: Path) -> Path:
    try:
        return plan.write(bundle_dir)
    except PrecisionPlanError as e:
        raise CalibrationError(str(e)) from None
