"""The precision plan (`precision_plan.json`): which ONNX nodes stay FP32 in reduced precision,
and the measured reason. Its one writer and its one reader.

Calibration's FP16 analysis decides it and calibration writes it into the bundle; calibration
reads it again for the FP16 conversion, the TensorRT build for `fp32_nodes` (the layers a
weak-typed build pins to FP32, export/trt_plan.py) and the staleness check for `source_sha256`
(export/precision_files.py). The format is fixed by `PLAN_FORMAT` and `PLAN_VERSION`;
everything beyond `fp32_nodes` and `source_sha256` is for people and reports. No torch, no onnx:
a Jetson with the runtime alone reads it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .bundle import PLAN_FILE
from .errors import StyleganError
from .files import atomic_write_bytes

PLAN_FORMAT = "stylegan-edge-precision-plan"
PLAN_VERSION = 1


class PrecisionPlanError(StyleganError, ValueError):
    """A precision plan that cannot be read or written; the message is one line naming the file.
    Each stage re-raises it as its own error class."""


@dataclass(frozen=True)
class LayerDecision:
    name: str  # a style layer's node scope, "layers.5" (runtime/node_names.py)
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
        """Write the plan into a bundle (atomically); returns its path."""
        path = plan_path(bundle_dir)
        try:
            atomic_write_bytes(path, (json.dumps(self.to_dict(), indent=2) + "\n").encode())
        except OSError as e:
            raise PrecisionPlanError(f"{path}: cannot write the precision plan ({e.strerror or e})") from None
        return path

    @classmethod
    def read(cls, bundle_dir: str | Path) -> PrecisionPlan:
        """The bundle's plan, every field; PrecisionPlanError when it is missing or malformed."""
        path = plan_path(bundle_dir)
        d = load_plan_json(path)
        try:
            return cls(
                source_onnx=d["source_onnx"], source_sha256=d["source_sha256"], thresholds=d["thresholds"],
                fp32_nodes=list(d["fp32_nodes"]), layers=[LayerDecision(**x) for x in d["layers"]],
                measured=d.get("measured", {}), calibration=d.get("calibration", {}),
                always_fp32=d.get("always_fp32", {}),
            )
        except (KeyError, TypeError) as e:
            raise PrecisionPlanError(f"{path}: missing or malformed field {e}") from None


def plan_path(bundle_dir: str | Path) -> Path:
    return Path(bundle_dir) / PLAN_FILE


def load_plan_json(path: Path) -> dict[str, Any]:
    """The plan file's JSON object, its format and version checked."""
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise PrecisionPlanError(f"{path}: no precision plan (run `stylegan-export BUNDLE --fp16`)") from None
    except (OSError, ValueError) as e:  # ValueError: JSONDecodeError, and bytes that are not UTF-8
        raise PrecisionPlanError(f"{path}: unreadable ({e})") from None
    if not isinstance(d, dict) or d.get("format") != PLAN_FORMAT:
        raise PrecisionPlanError(f"{path}: not a stylegan-edge precision plan")
    if d.get("version") != PLAN_VERSION:
        raise PrecisionPlanError(f"{path}: precision plan version {d.get('version')}; this reader reads "
                                 f"version {PLAN_VERSION}")
    return d


def read_fp32_nodes(bundle_dir: str | Path) -> frozenset[str] | None:
    """The plan's fp32_nodes (ONNX node names), or None when the bundle has no plan. Only this
    field is checked: it is all an engine build needs."""
    path = plan_path(bundle_dir)
    if not path.is_file():
        return None
    nodes = load_plan_json(path).get("fp32_nodes")
    if not isinstance(nodes, list) or not all(isinstance(n, str) and n for n in nodes):
        raise PrecisionPlanError(f"{path}: fp32_nodes must be a list of ONNX node names")
    return frozenset(nodes)


def recorded_plan_source(path: Path) -> str | None:
    """The SHA-256 of the synthesis.onnx a plan file was made from; None when it records none
    (missing, unreadable, not a plan)."""
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return d.get("source_sha256") if isinstance(d, dict) else None
