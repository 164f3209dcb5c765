"""The engine sidecar: written and read back, and the one-line verdict on a foreign engine."""

from __future__ import annotations

import hashlib
import json

import pytest

from stylegan_edge.runtime.backends.base import BackendUnavailable
from stylegan_edge.runtime.engine_meta import (
    EngineMeta,
    EngineMetaError,
    EngineMismatch,
    GpuInfo,
    build_command,
    check_engine,
    mismatches,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from stylegan_edge.runtime.files import sha256_file

ORIN = GpuInfo("Orin", "8.7")


def make_meta(**over) -> EngineMeta:
    base = dict(
        model="synthesis", precision="fp16", engine_file="synthesis.fp16.engine", engine_sha256="e" * 64,
        engine_bytes=1234, tensorrt_version="10.3.0", gpu=ORIN, onnx_file="synthesis.fp16.onnx",
        onnx_sha256="o" * 64, build_mode="strongly_typed", network_flags=("STRONGLY_TYPED",),
        parser_flags=("NATIVE_INSTANCENORM",), batch=(1, 1, 8), profile={"w_00": [[1, 8], [1, 8], [8, 8]]},
        workspace_bytes=1 << 30, timing_cache="timing.cache", build_seconds=12.5, built_at="2025-01-01T00:00:00+00:00",
        tool_version="0.1.0",
    )
    base.update(over)
    return EngineMeta(**base)


def test_sidecar_sits_beside_the_engine_with_json_suffix(tmp_path):
    assert sidecar_path(tmp_path / "synthesis.fp16.engine") == tmp_path / "synthesis.fp16.engine.json"


def test_sidecar_round_trips(tmp_path):
    meta = make_meta()
    path = write_sidecar(tmp_path / "synthesis.fp16.engine", meta)
    assert json.loads(path.read_text())["format"] == "stylegan-edge-engine"
    assert read_sidecar(tmp_path / "synthesis.fp16.engine") == meta


def test_missing_sidecar_reads_as_none(tmp_path):
    assert read_sidecar(tmp_path / "x.engine") is None


@pytest.mark.parametrize("content", [
    "{", '{"format": "other"}', '{"format": "stylegan-edge-engine", "format_version": 9}',
    '{"format": "stylegan-edge-engine", "format_version": 1}', "[]",
])
def test_malformed_sidecar_is_a_one_line_error_naming_the_file(tmp_path, content):
    (tmp_path / "x.engine.json").write_text(content)
    with pytest.raises(EngineMetaError) as e:
        read_sidecar(tmp_path / "x.engine")
    assert "x.engine.json" in str(e.value) and "\n" not in str(e.value)


def test_matching_engine_has_no_mismatch():
    meta = make_meta()
    assert mismatches(meta, tensorrt_version="10.3.0", gpu=ORIN, onnx_sha256="o" * 64, engine_sha256="e" * 64) == []


@pytest.mark.parametrize("here, words", [
    (dict(tensorrt_version="8.6.2"), ["TensorRT 10.3.0", "TensorRT 8.6.2"]),
    (dict(gpu=GpuInfo("NVIDIA GeForce RTX 4090", "8.9")), ["Orin (sm_87)", "RTX 4090 (sm_89)"]),
    (dict(gpu=GpuInfo("Orin", "8.9")), ["sm_87", "sm_89"]),
    (dict(onnx_sha256="x" * 64), ["synthesis.fp16.onnx has changed"]),
    (dict(engine_sha256="x" * 64), ["not the one its sidecar describes"]),
])
def test_each_mismatch_is_named_in_one_line_with_the_rebuild_command(tmp_path, here, words):
    args = dict(tensorrt_version="10.3.0", gpu=ORIN, onnx_sha256="o" * 64, engine_sha256="e" * 64)
    args.update(here)
    with pytest.raises(EngineMismatch) as e:
        check_engine(make_meta(), tmp_path / "synthesis.fp16.engine", tmp_path / "faces.sgbundle", **args)
    msg = str(e.value)
    assert "\n" not in msg
    assert all(w in msg for w in words)
    assert f"`stylegan-export {tmp_path / 'faces.sgbundle'} --fp16`" in msg


def test_unknown_hashes_are_not_compared():
    assert mismatches(make_meta(), tensorrt_version="10.3.0", gpu=ORIN) == []


def test_mismatch_is_a_backend_unavailable_so_auto_falls_back():
    assert issubclass(EngineMismatch, BackendUnavailable)


def test_build_command_names_the_precision_and_quotes_the_path():
    assert build_command("my models/faces.sgbundle", "int8") == "stylegan-export 'my models/faces.sgbundle' --int8"
    assert build_command("faces.sgbundle", "fp16") == "stylegan-export faces.sgbundle --fp16"


def test_sha256_file_matches_hashlib(tmp_path):
    data = bytes(range(256)) * 5000
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f", chunk=4096) == hashlib.sha256(data).hexdigest()


def test_gpu_info_prints_name_and_sm():
    assert str(GpuInfo("Orin", "8.7")) == "Orin (sm_87)"
    assert GpuInfo("Thor", "11.0").sm == "sm_110"
