"""The fidelity report (every precision against PyTorch) and the two commands."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from stylegan_edge.calibration.fidelity import FidelitySettings, fidelity_report
from stylegan_edge.calibration.pipeline import prepare_precisions
from stylegan_edge.calibration.speed import SpeedSettings

from .test_calibration_pipeline import FAST

SETTINGS = FidelitySettings(seeds=(3, 4, 5, 6, 7), grid_seeds=2,
                            speed=SpeedSettings(batch=2, rounds=2, seconds=0, warmup=1))


@pytest.fixture(scope="module")
def full_bundle(tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("fidelity") / "tiny.sgbundle"
    shutil.copytree(tiny_bundle, out)
    prepare_precisions(out, ["fp16", "int8"], samples=16, settings=FAST)
    return out


@pytest.fixture(scope="module")
def report(full_bundle, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return fidelity_report(full_bundle, out, SETTINGS, reference=tiny_checkpoint), out


@pytest.mark.slow
def test_fp32_onnx_matches_pytorch_beyond_60_db(report):
    r, _ = report
    assert r.reference_kind == "pytorch"
    fp32 = r.result("fp32").comparison
    assert fp32.psnr_db.min() > 60 and fp32.ssim.min() > 0.9999 and fp32.max_abs.max() < 1e-3


@pytest.mark.slow
def test_json_holds_every_precision_with_per_image_figures_summaries_and_speed(report):
    r, out = report
    d = json.loads((out / "fidelity.json").read_text())
    assert d["reference"]["kind"] == "pytorch" and d["seeds"] == [3, 4, 5, 6, 7]
    assert set(d["precisions"]) == {"fp32", "fp16", "fp16-ort-cpu", "int8"}
    for p in d["precisions"].values():
        assert {"psnr_db_mean", "psnr_db_worst", "ssim_mean", "ssim_worst", "max_abs_worst"} <= set(p["summary"])
        assert len(p["per_image"]["psnr_db"]) == len(p["per_image"]["ssim"]) == 5
        assert p["ms_per_image"] > 0
    fp16 = d["precisions"]["fp16"]["summary"]
    assert 40 < fp16["psnr_db_mean"] < d["precisions"]["fp32"]["summary"]["psnr_db_mean"]


@pytest.mark.slow
def test_grid_shows_reference_then_each_precision_and_its_difference(report):
    r, out = report
    grid = np.asarray(Image.open(out / "fidelity_grid.png"))
    columns = 1 + 2 * len(r.results)
    assert grid.shape == (2 * (32 + 2) + 2, columns * (32 + 2) + 2, 3)


@pytest.mark.slow
def test_without_reference_the_fp32_onnx_is_the_reference_and_the_report_says_so(full_bundle, tmp_path):
    r = fidelity_report(full_bundle, tmp_path, SETTINGS)
    assert r.reference_kind == "onnx-fp32" and any("FP32 ONNX" in n for n in r.notes)
    assert r.result("fp32").comparison.psnr_db.min() == 100.0


@pytest.mark.slow
def test_commands_print_a_table_and_write_their_files(full_bundle, tiny_checkpoint, tmp_path):
    from stylegan_edge.cli.calibrate_cmd import calibrate, fidelity

    app = typer.Typer()
    app.command()(calibrate)
    app.command()(fidelity)
    runner = CliRunner()
    res = runner.invoke(app, ["calibrate", str(full_bundle), "--samples", "4", "--out", str(tmp_path / "c.npz")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c.npz").is_file() and "4 samples" in res.output
    res = runner.invoke(app, ["fidelity", str(full_bundle), "--seeds", "0-2", "--out", str(tmp_path / "f"),
                              "--reference", str(tiny_checkpoint), "--speed-batch", "1", "--speed-seconds", "0"])
    assert res.exit_code == 0, res.output
    assert "PSNR mean" in res.output and "int8" in res.output
    assert (tmp_path / "f" / "fidelity.json").is_file()
    bad = runner.invoke(app, ["calibrate", str(full_bundle), "--mixing", "3"])
    assert bad.exit_code == 1 and "--mixing" in bad.output


def test_calibration_errors_are_one_line_in_a_fresh_process(tiny_bundle):
    import subprocess
    import sys

    code = "from stylegan_edge.cli.main import app; app()"
    res = subprocess.run([sys.executable, "-c", code, "calibrate", str(tiny_bundle), "--noise", "pink"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == ["error: --noise must be one of const, random, none, got 'pink'"]
