"""The command line as a user runs it: outputs, files, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from stylegan_edge.cli.main import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for f in fragments:
        assert f in lines[0], lines[0]


def test_info_paper_reports_the_papers_parameter_count_as_json():
    result = run("info", "paper", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    p = data["parameters"]
    assert p["generator"] == 26_212_019 and round(p["generator"] / 1e6, 1) == 26.2
    assert p["mapping"] + p["synthesis"] == p["generator"]
    assert p["total"] == p["generator"] + p["discriminator"]
    assert data["config"]["resolution"] == 1024 and data["num_style_layers"] == 18


def test_info_reads_a_checkpoint(tiny_checkpoint):
    result = run("info", tiny_checkpoint, "--json")
    assert result.exit_code == 0 and json.loads(result.output)["config"]["resolution"] == 32


def test_info_on_an_unknown_preset_is_one_line():
    _one_line_error(run("info", "nope"), "unknown preset 'nope'")


def test_a_corrupt_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    _one_line_error(run("generate", bad, "--out", tmp_path / "o"), "not a readable safetensors checkpoint")
    _one_line_error(run("export", bad, "--out", tmp_path / "b.sgbundle"), "bad.safetensors")


def test_export_to_an_unwritable_folder_is_one_line(tiny_checkpoint, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    _one_line_error(run("export", tiny_checkpoint, "--out", blocker / "x.sgbundle"), "cannot write")


def test_generate_writes_one_png_per_seed_and_a_grid(tiny_bundle, tmp_path):
    result = run("generate", tiny_bundle, "--seeds", "0-2,7", "--out", tmp_path / "imgs", "--grid", tmp_path / "g.png")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "imgs").iterdir()) == [
        "seed0000.png", "seed0001.png", "seed0002.png", "seed0007.png"]
    assert Image.open(tmp_path / "g.png").size == (64, 64)
    assert "onnxruntime" in result.output


def test_bundle_and_checkpoint_give_the_same_images(tiny_bundle, tiny_checkpoint, tmp_path):
    for name, model in (("rt", tiny_bundle), ("pt", tiny_checkpoint)):
        assert run("generate", model, "--seeds", "3-5", "--psi", "0.6", "--out", tmp_path / name).exit_code == 0
    for seed in (3, 4, 5):
        a = np.asarray(Image.open(tmp_path / "rt" / f"seed{seed:04d}.png"), dtype=int)
        b = np.asarray(Image.open(tmp_path / "pt" / f"seed{seed:04d}.png"), dtype=int)
        assert np.abs(a - b).max() <= 1


def test_a_checkpoint_cannot_run_on_onnxruntime_and_says_how_to_export(tiny_checkpoint, tmp_path):
    _one_line_error(run("generate", tiny_checkpoint, "--backend", "onnxruntime", "--out", tmp_path), "stylegan-export")


@pytest.mark.parametrize(
    "args, size",
    [
        (("mix", "--rows", "1-2", "--cols", "3-5", "--styles", "middle"), (4 * 32, 3 * 32)),
        (("noise", "--seed", "1", "--draws", "4"), (5 * 32, 32)),
        (("truncation", "--seeds", "0-1", "--psi", "-1,0,1"), (3 * 32, 2 * 32)),
    ],
)
def test_figures_have_the_papers_layout(tiny_bundle, tmp_path, args, size):
    out = tmp_path / "fig.png"
    result = run(args[0], tiny_bundle, *args[1:], "--out", out)
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == size


def test_bad_seed_lists_are_one_line(tiny_bundle, tmp_path):
    _one_line_error(run("generate", tiny_bundle, "--seeds", "5-2", "--out", tmp_path), "bad seed range")


def test_bench_prints_a_table_with_the_torch_baseline(tiny_bundle, tiny_checkpoint, tmp_path):
    out = tmp_path / "bench.json"
    result = run("bench", tiny_bundle, "--checkpoint", tiny_checkpoint, "--backends", "torch,onnxruntime",
                 "--batch", "1,2", "--iters", "2", "--warmup", "1", "--min-seconds", "0", "--json", out)
    assert result.exit_code == 0, result.output
    assert "| torch | fp32 | 1 |" in result.output and "| onnxruntime | fp32 | 2 |" in result.output
    report = json.loads(out.read_text())
    rows = {(r["backend"], r["batch"]): r for r in report["rows"]}
    assert rows[("torch", 1)]["speedup"] == pytest.approx(1.0)
    assert rows[("onnxruntime", 2)]["gflops"] > 0 and rows[("onnxruntime", 2)]["share_of_matmul"] > 0
    assert 0 <= report["overhead"]["overhead_share"] < 1
    assert "mallopt" in report["settings"]["allocator"]


def test_export_fp16_without_tensorrt_writes_the_onnx_then_says_where_to_build(tiny_bundle, tmp_path):
    import shutil

    bundle = tmp_path / "b.sgbundle"
    shutil.copytree(tiny_bundle, bundle)
    result = run("export", bundle, "--fp16", "--calib-samples", "8")
    assert (bundle / "synthesis.fp16.onnx").is_file() and (bundle / "precision_plan.json").is_file()
    _one_line_error(result, "TensorRT is not installed", f"stylegan-export {bundle} --fp16")


def test_any_stage_error_is_one_line_through_the_one_base_class():
    """A stage's error class needs nothing but the base class to be shown as one line: no
    registry, no import for side effects."""
    import typer

    from stylegan_edge.cli.common import one_line_errors
    from stylegan_edge.runtime.errors import StyleganError

    class NewStageError(StyleganError, ValueError):
        pass

    toy = typer.Typer()

    @toy.command()
    @one_line_errors
    def broken() -> None:
        raise NewStageError("the new stage refuses this\nsecond line")

    @toy.command()
    @one_line_errors
    def buggy() -> None:
        raise ValueError("a bug")

    result = CliRunner().invoke(toy, ["broken"])
    assert result.exit_code == 1 and result.output.strip() == "error: the new stage refuses this"
    assert isinstance(CliRunner().invoke(toy, ["buggy"]).exception, ValueError)  # bugs keep their traceback


def test_every_error_class_of_the_package_that_the_cli_shows_is_a_stylegan_error():
    import importlib
    from pathlib import Path

    from stylegan_edge.runtime.errors import StyleganError

    names = ("CheckpointError", "ConfigError", "DatasetError", "ExportError", "BundleError", "BackendUnavailable",
             "SeedError", "CalibrationError", "PlanError", "TensorRTMissing", "BuildError", "DemoError",
             "OfficialPickleError", "TrainingError", "OutputWriteError", "VideoSpecError", "FIDError")
    root = Path(__file__).resolve().parents[1]
    found = {}
    for folder in ("training", "export", "calibration", "runtime"):
        for path in (root / folder).rglob("*.py"):
            module = ".".join(("stylegan_edge", *path.relative_to(root).with_suffix("").parts))
            m = importlib.import_module(module.removesuffix(".__init__"))
            for n in names:
                if isinstance(getattr(m, n, None), type):
                    found[n] = getattr(m, n)
    assert set(found) == set(names)
    assert all(issubclass(c, StyleganError) for c in found.values()), [n for n, c in found.items()
                                                                      if not issubclass(c, StyleganError)]
