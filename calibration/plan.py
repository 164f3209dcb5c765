"""`precision_plan.json`: which nodes stay FP32 in reduced precision, and the measured reason.

Written by the FP16 analysis, read by the FP16 ONNX conversion here and by the TensorRT build
(`export/trt_plan.py` reads `fp32_nodes`). The format is fixed by `PRECISION_PLAN_FORMAT` and
version 1; everything beyond `fp32_nodes` is for people and reports.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stylegan_edge.runtime.files import atomic_write_bytes

from .errors import CalibrationError

PLAN_FILE = "precision_plan.json"
PLAN_FORMAT = "stylegan-edge-precision-plan"
PLAN_VERSION = 1


@dataclass(frozen=True)
class LayerDecision:
    name: str  # "layers.5"
    resolution: int
    channels: int
    max_abs: float  # largest |value| the layer computes (activations on the calibration set, weights)
    norm_input_max_abs: float  # largest |input| of its InstanceNormalization
    norm_squares_overflow_fp16: bool  # that input squared passes 65504 (the norm is FP32 regardless)
    fp16_psnr_db: float | None  # PSNR of the image error this layer adds in FP16 alone (None: inf/NaN)
    keep_fp32: bool
    reason: str  # "range" | "error" | "ok"
    detail: str


@dataclass(frozen=True)
class PrecisionPlan:
    source_onnx: str
    source_sha256: str
    thresholds: dict[str, float]
    fp32_nodes: list[str]
    layers: list[LayerDecision]
    measured: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    always_fp32: dict[str, str] = field(default_factory=dict)

    @property
    def fp32_layers(self) -> list[str]:
        return [d.name for d in self.layers if d.keep_fp32]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "source_onnx": self.source_onnx,
            "source_sha256": self.source_sha256,
            "thresholds": self.thresholds,
            "always_fp32": self.always_fp32,
            "fp32_nodes": list(self.fp32_nodes),
            "layers": [asdict(d) for d in self.layers],
            "measured": self.measured,
            "calibration": self.calibration,
        }

    def write(self, bundle_dir: str | Path) -> Path:
        path = Path(bundle_dir) / PLAN_FILE
        try:
            atomic_write_bytes(path, (json.dumps(self.to_dict(), indent=2) + "\n").encode())
        except OSError as e:
            raise CalibrationError(f"{path}: cannot write the precision plan ({e.strerror or e})") from None
        return path

    @classmethod
    def read(cls, bundle_dir: str | Path) -> PrecisionPlan:
        path = Path(bundle_dir) / PLAN_FILE
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise CalibrationError(f"{path}: no precision plan (run `stylegan-export BUNDLE --fp16`)") from None
        except (OSError, json.JSONDecodeError) as e:
            raise CalibrationError(f"{path}: unreadable ({e})") from None
        if not isinstance(d, dict) or d.get("format") != PLAN_FORMAT or d.get("version") != PLAN_VERSION:
            raise CalibrationError(f"{path}: not a stylegan-edge precision plan of version {PLAN_VERSION}")
        try:
            return cls(
                source_onnx=d["source_onnx"], source_sha256=d["source_sha256"], thresholds=d["thresholds"],
                fp32_nodes=list(d["fp32_nodes"]), layers=[LayerDecision(**x) for x in d["layers"]],
                measured=d.get("measured", {}), calibration=d.get("calibration", {}),
                always_fp32=d.get("always_fp32", {}),
            )
        except (KeyError, TypeError) as e:
            raise CalibrationError(f"{path}: missing or malformed field {e}") from None
