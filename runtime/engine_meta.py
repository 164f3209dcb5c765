"""The sidecar JSON beside every TensorRT engine, and the check that an engine can run here.

A TensorRT plan runs only with the TensorRT build and the GPU model it was built for, and it is
only as current as the ONNX it came from; when any of those differs, deserialising fails tersely
or, worse, succeeds with a stale model. The builder writes `<engine>.json` beside the plan (never
into it: `trtexec` and `polygraphy` must load the plan as it is), and the runtime compares it with
what it finds before it deserialises anything, so a mismatch is one line that names the cause and
the command that rebuilds the engine. Pure code: no TensorRT, no CUDA, no torch.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .backends.base import BackendUnavailable
from .bundle import sidecar_filename
from .errors import StyleganError
from .files import atomic_write_bytes

SIDECAR_FORMAT = "stylegan-edge-engine"
SIDECAR_VERSION = 1
# The precision flag of `stylegan-export` that (re)builds an engine of each precision.
EXPORT_FLAGS = {"fp32": "--fp32", "fp16": "--fp16", "int8": "--int8"}


class EngineMetaError(StyleganError, ValueError):
    """A sidecar that cannot be read; the message is one line naming the file."""


class EngineMismatch(BackendUnavailable):
    """The engine was built for another GPU, another TensorRT, or from another ONNX.

    A BackendUnavailable, so `backend="auto"` falls back to onnxruntime, while an explicit
    `backend="tensorrt"` shows the user the one-line reason and the command that fixes it.
    """


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "8.7"

    @property
    def sm(self) -> str:
        return "sm_" + self.compute_capability.replace(".", "")

    def __str__(self) -> str:
        return f"{self.name} ({self.sm})"


@dataclass(frozen=True)
class EngineMeta:
    """What an engine was built from, for and how (the sidecar's content)."""

    model: str
    precision: str
    engine_file: str
    engine_sha256: str
    engine_bytes: int
    tensorrt_version: str
    gpu: GpuInfo
    onnx_file: str
    onnx_sha256: str
    # "strongly_typed" | "weak_typed" (export/trt_plan.py BuildSpec.mode). The sidecar's JSON key
    # stays "build_path", as version 1 sidecars already on devices spell it.
    build_mode: str
    network_flags: tuple[str, ...] = ()
    builder_flags: tuple[str, ...] = ()
    cleared_flags: tuple[str, ...] = ()
    parser_flags: tuple[str, ...] = ()
    fp32_layers: dict[str, Any] = field(default_factory=dict)  # {"source": ..., "count": n}
    batch: tuple[int, int, int] = (1, 1, 1)
    profile: dict[str, list[list[int]]] = field(default_factory=dict)  # input -> [min, opt, max]
    workspace_bytes: int | None = None
    timing_cache: str | None = None
    build_seconds: float = 0.0
    built_at: str = ""
    tool_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = {_JSON_KEYS.get(k, k): v for k, v in asdict(self).items()}
        return {"format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: Path) -> EngineMeta:
        if d.get("format") != SIDECAR_FORMAT:
            raise EngineMetaError(f"{path}: not a stylegan-edge engine sidecar (format is {d.get('format')!r})")
        if d.get("format_version") != SIDECAR_VERSION:
            raise EngineMetaError(f"{path}: sidecar version {d.get('format_version')}; this runtime reads "
                                  f"version {SIDECAR_VERSION} (rebuild the engine)")
        try:
            gpu = GpuInfo(str(d["gpu"]["name"]), str(d["gpu"]["compute_capability"]))
            return cls(
                model=str(d["model"]), precision=str(d["precision"]), engine_file=str(d["engine_file"]),
                engine_sha256=str(d["engine_sha256"]), engine_bytes=int(d["engine_bytes"]),
                tensorrt_version=str(d["tensorrt_version"]), gpu=gpu, onnx_file=str(d["onnx_file"]),
                onnx_sha256=str(d["onnx_sha256"]), build_mode=str(d["build_path"]),
                network_flags=tuple(d.get("network_flags", ())), builder_flags=tuple(d.get("builder_flags", ())),
                cleared_flags=tuple(d.get("cleared_flags", ())), parser_flags=tuple(d.get("parser_flags", ())),
                fp32_layers=dict(d.get("fp32_layers", {})), batch=tuple(int(b) for b in d["batch"]),
                profile={k: [list(map(int, s)) for s in v] for k, v in d.get("profile", {}).items()},
                workspace_bytes=None if d.get("workspace_bytes") is None else int(d["workspace_bytes"]),
                timing_cache=d.get("timing_cache"), build_seconds=float(d.get("build_seconds", 0.0)),
                built_at=str(d.get("built_at", "")), tool_version=str(d.get("tool_version", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise EngineMetaError(f"{path}: missing or malformed field {e}") from None


# Attribute -> JSON key where the sidecar format spells a field differently.
_JSON_KEYS = {"build_mode": "build_path"}


def sidecar_path(engine_path: str | Path) -> Path:
    """`synthesis.fp16.engine` -> `synthesis.fp16.engine.json`."""
    p = Path(engine_path)
    return p.with_name(sidecar_filename(p.name))


def write_sidecar(engine_path: str | Path, meta: EngineMeta) -> Path:
    """Write the sidecar beside the engine, atomically (a crash leaves the old one or none)."""
    path = sidecar_path(engine_path)
    atomic_write_bytes(path, (json.dumps(meta.to_dict(), indent=2) + "\n").encode())
    return path


def read_sidecar(engine_path: str | Path) -> EngineMeta | None:
    """The engine's sidecar, or None when there is none (an engine built by hand with trtexec)."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EngineMetaError(f"{path}: unreadable ({e})") from None
    if not isinstance(d, dict):
        raise EngineMetaError(f"{path}: not a JSON object")
    return EngineMeta.from_dict(d, path)


def build_command(bundle_path: str | Path, precision: str) -> str:
    """The command that (re)builds a bundle's engines of a precision, on the GPU that runs them."""
    flag = EXPORT_FLAGS.get(precision, "--fp16")
    return f"stylegan-export {shlex.quote(str(bundle_path))} {flag}"


def mismatches(
    meta: EngineMeta, *, tensorrt_version: str, gpu: GpuInfo, onnx_sha256: str | None = None,
    engine_sha256: str | None = None,
) -> list[str]:
    """Reasons the engine described by `meta` cannot run here; empty when it can.

    onnx_sha256 / engine_sha256: hashes of the bundle's source ONNX and of the engine file as
    found now; None skips that comparison (ONNX not shipped, hash not wanted).
    """
    reasons = []
    if meta.tensorrt_version != tensorrt_version:
        reasons.append(f"built with TensorRT {meta.tensorrt_version}, this is TensorRT {tensorrt_version}")
    if (meta.gpu.name, meta.gpu.compute_capability) != (gpu.name, gpu.compute_capability):
        reasons.append(f"built for {meta.gpu}, this GPU is {gpu}")
    if onnx_sha256 is not None and onnx_sha256 != meta.onnx_sha256:
        reasons.append(f"{meta.onnx_file} has changed since the build (SHA-256 differs)")
    if engine_sha256 is not None and engine_sha256 != meta.engine_sha256:
        reasons.append("the engine file is not the one its sidecar describes (SHA-256 differs)")
    return reasons


def check_engine(
    meta: EngineMeta, engine_path: str | Path, bundle_path: str | Path, *, tensorrt_version: str, gpu: GpuInfo,
    onnx_sha256: str | None = None, engine_sha256: str | None = None,
) -> None:
    """Raise EngineMismatch (one line: why, and the rebuild command) unless the engine fits here."""
    reasons = mismatches(meta, tensorrt_version=tensorrt_version, gpu=gpu, onnx_sha256=onnx_sha256,
                         engine_sha256=engine_sha256)
    if reasons:
        raise EngineMismatch(
            f"{engine_path}: cannot run here ({'; '.join(reasons)}): rebuild it on this device with "
            f"`{build_command(bundle_path, meta.precision)}`"
        )
