"""The runtime and the ONNX -> TensorRT export run where Jetsons are: Python 3.10, no PyTorch."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCH_FREE_MODULES = [
    "stylegan_edge.export.tensorrt_build",
    "stylegan_edge.export.trt_plan",
    "stylegan_edge.runtime.backends.tensorrt",
    "stylegan_edge.runtime.engine_meta",
    "stylegan_edge.export.precision_files",
    "stylegan_edge.runtime.video",
]


def _vermin() -> list[str]:
    exe = shutil.which("vermin") or str(Path(sys.executable).with_name("vermin"))
    if not Path(exe).is_file():
        pytest.skip("needs vermin (pip install vermin)")
    return [exe]


def test_runtime_and_export_need_at_most_python_310():
    # --violations with a target: exit code 1 and a listing when any rule needs a newer Python.
    cmd = [*_vermin(), "--no-tips", "--target=3.10-", "--violations", "--eval-annotations", "--no-parse-comments",
           str(ROOT / "runtime"), str(ROOT / "export")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_vermin_reports_a_minimum_version_not_above_310():
    cmd = [*_vermin(), "--no-tips", "--eval-annotations", str(ROOT / "runtime"), str(ROOT / "export")]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"Minimum required versions: (?:~?2\.\d+, )?~?3\.(\d+)", out)
    assert m, out
    assert int(m.group(1)) <= 10, out


def test_tensorrt_modules_import_without_torch():
    code = (
        "import sys, importlib\n"
        f"for m in {TORCH_FREE_MODULES!r}: importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k == 'torch' or k.startswith('torch.'))\n"
        "assert not bad, bad\n"
        "assert 'tensorrt' not in sys.modules and 'pycuda' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
