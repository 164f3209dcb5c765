"""scripts/gpu_check.py kept from rotting: run in-process against the fake TensorRT and pycuda
on tiny bundles. The fake engines compute stand-in images, so the fidelity verdicts say FAIL
here; what is checked is that every row is there, measured, finite and written."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from .fake_tensorrt import install_fakes
from .test_device_export import workstation_bundle  # noqa: F401 - the module fixture, shared

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def gpu_check():
    return load_script()


@pytest.mark.slow
def test_report_has_every_row_with_finite_numbers(gpu_check, workstation_bundle, tmp_path, monkeypatch):  # noqa: F811
    install_fakes(monkeypatch, "10.3.0")
    bundles = []
    for name in ("a.sgbundle", "b.sgbundle"):
        shutil.copytree(workstation_bundle, tmp_path / name)
        bundles.append(tmp_path / name)
    lines: list[str] = []
    report = gpu_check.run_check(bundles, tmp_path / "out", seconds=0, min_iters=2, seed=5, log=lines.append)
    written = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert written == json.loads(json.dumps(report))
    assert gpu_check.finite(written)
    want_fidelity = {(b.name, p, n) for b in bundles for p in gpu_check.PRECISIONS for n in gpu_check.CHECK_BATCHES}
    assert {(r["bundle"], r["precision"], r["batch"]) for r in written["fidelity"]} == want_fidelity
    assert len(written["fidelity"]) == len(want_fidelity)
    want_speed = {(b.name, p, n, g) for b in bundles for p in gpu_check.PRECISIONS for n in gpu_check.SPEED_BATCHES
                  for g in (False, True)}
    assert {(r["bundle"], r["precision"], r["batch"], r["cuda_graph"]) for r in written["speed"]} == want_speed
    assert all(r["images_per_s"] > 0 and r["iters"] >= 2 for r in written["speed"])
    assert all(r["build"] == "strongly_typed" for r in written["fidelity"])
    env = written["environment"]
    assert env["tensorrt"] == "10.3.0" and env["gpu_name"] == "Orin" and isinstance(env["cpu"]["flags"], list)
    assert any(line.startswith("GPU Orin") and "TensorRT 10.3.0" in line for line in lines)
    assert all((b / "synthesis.int8.engine").is_file() for b in bundles)
    table = (tmp_path / "out" / "gpu_check.md").read_text()
    assert table.count("| a.sgbundle |") == len(want_fidelity) // 2 + len(want_speed) // 2
    # Stand-in images fail the thresholds, and the report says so.
    assert written["passed"] is False and all(r["failed"] for r in written["fidelity"])


def test_thresholds_pass_a_close_engine_and_fail_a_far_one(gpu_check):
    good = {"precision": "fp16", "psnr_db_min": 41.0, "max_abs_error": 0.05, "w_rel_max_error": 1e-6}
    assert gpu_check.failed_checks(good) == []
    assert gpu_check.failed_checks({**good, "psnr_db_min": 39.0}) == ["PSNR 39.0 dB < 40 dB"]
    fp32 = {**good, "precision": "fp32", "psnr_db_min": 80.0, "max_abs_error": 2e-3}
    assert gpu_check.failed_checks(fp32) == ["max error 0.002 > 0.001"]
    assert "mapping w" in gpu_check.failed_checks({**good, "w_rel_max_error": 0.01})[0]


def test_psnr_matches_the_calibration_metric_on_random_images(gpu_check):
    import numpy as np

    from stylegan_edge.calibration import metrics

    rng = np.random.default_rng()
    ref = rng.uniform(-1, 1, (3, 3, 8, 8)).astype(np.float32)
    noisy = ref + rng.normal(0, 0.05, ref.shape).astype(np.float32)
    noisy[0, 0, 0, 0] = np.nan
    np.testing.assert_allclose(gpu_check.psnr_db(noisy, ref), metrics.psnr(noisy, ref), rtol=1e-12)


def test_without_tensorrt_it_is_one_line(gpu_check, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    assert gpu_check.main([str(tmp_path / "x.sgbundle"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: TensorRT is not importable")
    assert not (tmp_path / "o").exists()
