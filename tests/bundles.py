"""Torch-free helpers for tests that edit a bundle's files."""

from __future__ import annotations

import json
from pathlib import Path

from stylegan_edge.runtime.bundle import BUNDLE_FORMAT_VERSION
from stylegan_edge.runtime.files import file_record

RECORDED = ("mapping.onnx", "synthesis.onnx", "noise_const.npz")


def seal(bundle: Path) -> Path:
    """Record the bundle's files as they are now in meta.json (what a re-export writes), for tests
    that rewrite a graph on purpose and must still get past the integrity check."""
    meta = json.loads((bundle / "meta.json").read_text())
    meta["format_version"] = BUNDLE_FORMAT_VERSION
    meta["files"] = {n: file_record(bundle / n) for n in RECORDED if (bundle / n).is_file()}
    (bundle / "meta.json").write_text(json.dumps(meta))
    return bundle
