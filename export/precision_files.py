"""Are a bundle's reduced-precision ONNX files there, and made from its `synthesis.onnx`?

Answered without torch, onnx, onnxconverter-common or onnxruntime's quantiser, so a Jetson with
the runtime alone can decide to build engines from the files a workstation made. Each file made
by calibration records the SHA-256 of the FP32 graph it came from: `synthesis.fp16.onnx` and
`synthesis.int8.onnx` in their ONNX metadata entry `stylegan_edge.precision` (JSON,
`source_sha256`), `precision_plan.json` in its `source_sha256` field.

The ONNX metadata is read straight from the protobuf wire format (ModelProto field 14,
`metadata_props`, of StringStringEntryProto key = 1, value = 2; onnx/onnx.proto3): the graph
(field 7) is skipped by its length, so a 100 MB model costs a memory map and a few reads.
Measured on the tiny bundle's INT8 file: 0.08 ms, against 14 ms for an onnxruntime session's
`get_modelmeta()` with optimisations off (the session also builds the graph, which grows with the
model).
"""

from __future__ import annotations

import json
import mmap
import shlex
from dataclasses import dataclass
from pathlib import Path

from stylegan_edge.runtime.bundle import (
    FP16_FILE,
    INT8_FILE,
    INT8_FP16_FILE,
    PLAN_FILE,
    PRECISION_METADATA_KEY,
    BundleError,
    onnx_filename,
)
from stylegan_edge.runtime.files import sha256_file
from stylegan_edge.runtime.precision_plan import recorded_plan_source

SOURCE_ONNX = onnx_filename("synthesis")
REDUCED = ("fp16", "int8")

_METADATA_PROPS = 14  # ModelProto.metadata_props
_ENTRY_KEY, _ENTRY_VALUE = 1, 2  # StringStringEntryProto


class PrecisionFilesError(BundleError):
    """A reduced-precision file is missing or stale and cannot be made here; one line naming it."""


class OnnxMetadataError(ValueError):
    """The file is not a readable ONNX model (truncated or not protobuf)."""


# --- a minimal protobuf reader (only what ModelProto's top level needs) ---------------------
def _varint(buf: memoryview | bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise OnnxMetadataError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview | bytes, start: int = 0, end: int | None = None):  # -> Iterator[(field, wire, a, b)]
    """(field number, wire type, start, end) of each field; for varints start is the value."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield field, wire, value, pos
        elif wire == 1:
            pos += 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise OnnxMetadataError("length-delimited field runs past the end")
            yield field, wire, pos, pos + n
            pos += n
        elif wire == 5:
            pos += 4
        else:  # groups (3, 4) are not in ONNX's schema
            raise OnnxMetadataError(f"unexpected wire type {wire}")
    if pos != end:
        raise OnnxMetadataError("truncated field")


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The model's metadata_props as a dict (no onnx package needed)."""
    path = Path(path)
    with path.open("rb") as f:
        if path.stat().st_size == 0:
            raise OnnxMetadataError(f"{path}: empty file")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            buf = memoryview(mm)
            try:
                out: dict[str, str] = {}
                for field, wire, a, b in _fields(buf):
                    if field == _METADATA_PROPS and wire == 2:
                        key = value = ""
                        for f2, w2, a2, b2 in _fields(buf, a, b):
                            if w2 == 2 and f2 == _ENTRY_KEY:
                                key = bytes(buf[a2:b2]).decode("utf-8", "replace")
                            elif w2 == 2 and f2 == _ENTRY_VALUE:
                                value = bytes(buf[a2:b2]).decode("utf-8", "replace")
                        out[key] = value
                return out
            finally:
                buf.release()


# --- the bundle's reduced-precision files --------------------------------------------------
@dataclass(frozen=True)
class Problem:
    file: str  # "synthesis.fp16.onnx"
    reason: str  # "is missing" | "was made from another synthesis.onnx ..." | "has no ..."

    def __str__(self) -> str:
        return f"{self.file} {self.reason}"


def recorded_source(path: Path) -> str | None:
    """The source SHA-256 a reduced-precision ONNX or precision_plan.json records (None: none)."""
    if path.suffix == ".json":
        return recorded_plan_source(path)
    try:
        info = json.loads(onnx_metadata(path).get(PRECISION_METADATA_KEY, "null"))
    except (OSError, OnnxMetadataError, json.JSONDecodeError):
        return None
    return info.get("source_sha256") if isinstance(info, dict) else None


def files_for(precision: str) -> tuple[str, ...]:
    """What calibration writes for a precision (and the engine build reads)."""
    if precision == "fp16":
        return (FP16_FILE, PLAN_FILE)  # the plan pins FP32 layers on 8.6
    if precision == "int8":  # Q/DQ on FP32 (8.6, onnxruntime) and on the mixed FP16 graph (strongly typed)
        return (INT8_FILE, INT8_FP16_FILE)
    return ()


def problems(bundle_dir: str | Path, precisions: list[str] | tuple[str, ...]) -> list[Problem]:
    """Why the reduced-precision files of `precisions` cannot be used as they are; [] when current."""
    bundle_dir = Path(bundle_dir)
    wanted = [p for p in REDUCED if p in precisions]
    if not wanted:
        return []
    source_sha = sha256_file(bundle_dir / SOURCE_ONNX)
    found: list[Problem] = []
    for p in wanted:
        for name in files_for(p):
            path = bundle_dir / name
            if not path.is_file():
                found.append(Problem(name, "is missing"))
                continue
            recorded = recorded_source(path)
            if recorded is None:
                found.append(Problem(name, "records no source hash (unreadable, or not made by calibration)"))
            elif recorded != source_sha:
                found.append(Problem(name, f"is stale: made from another {SOURCE_ONNX} (its recorded SHA-256 "
                                           f"{recorded[:12]}... differs from {source_sha[:12]}...)"))
    return found


def how_to_make(bundle_dir: str | Path, precisions: list[str] | tuple[str, ...], problem: Problem) -> str:
    """One line: what is wrong, where and how to make the files, for a machine without the export extras."""
    flags = " ".join(f"--{p}" for p in REDUCED if p in precisions)
    return (f"{problem}: this install lacks the export extras; make it on a workstation with "
            f"`pip install '.[export]'` and `stylegan-export {shlex.quote(str(bundle_dir))} {flags} --no-engines`, "
            f"then copy the bundle here")
