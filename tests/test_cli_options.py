"""Every numeric or enumerated option of the commands but train and export is checked by the CLI:
out of range, NaN, infinity, an unknown choice or a missing device is one `error:` line naming the
option and exit code 1, with no usage box and no traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

pytest.importorskip("onnxruntime", reason="the bundle commands run on onnxruntime")

from stylegan_edge.cli.main import app  # noqa: E402

MISSING = "no-such-model.sgbundle"  # option checks come before the model is opened


def _invoke(args: list[str]):
    return CliRunner().invoke(app, args)


def _assert_one_error(res, named: str) -> None:
    err = res.stderr.strip().splitlines()
    assert res.exit_code == 1, (res.exit_code, res.output)
    assert len(err) == 1 and err[0].startswith("error: "), res.output
    assert named in err[0], err[0]
    assert "Traceback" not in res.output and "Usage" not in res.output and "╭" not in res.output


CASES = [
    (["generate", MISSING, "--seeds", "4294967296"], "--seeds"),
    (["generate", MISSING, "--seeds", "0-99999999999"], "--seeds"),
    (["generate", MISSING, "--seeds", "0-1999999"], "--seeds"),  # two million images: a typo
    (["generate", MISSING, "--seeds", "x"], "--seeds"),
    (["generate", MISSING, "--batch", "0"], "--batch"),
    (["generate", MISSING, "--batch", "-3"], "--batch"),
    (["generate", MISSING, "--noise", "bogus"], "--noise"),
    (["generate", MISSING, "--psi", "nan"], "--psi"),
    (["generate", MISSING, "--psi", "inf"], "--psi"),
    (["generate", MISSING, "--cutoff", "-1"], "--cutoff"),
    (["generate", MISSING, "--device", "gpu"], "--device"),
    (["generate", MISSING, "--backend", "bogus"], "--backend"),
    (["generate", MISSING, "--precision", "fp8"], "--precision"),
    (["mix", MISSING, "--rows", "4294967296"], "--rows"),
    (["mix", MISSING, "--psi", "nan"], "--psi"),
    (["noise", MISSING, "--seed", "-1"], "--seed"),
    (["noise", MISSING, "--draws", "0"], "--draws"),
    (["truncation", MISSING, "--psi", "0,nan"], "--psi"),
    (["truncation", MISSING, "--seeds", "5-1"], "--seeds"),
    (["truncation", MISSING, "--cutoff", "-1"], "--cutoff"),
    (["bench", "tiny", "--iters", "0"], "--iters"),
    (["bench", "tiny", "--warmup", "-1"], "--warmup"),
    (["bench", "tiny", "--min-seconds", "nan"], "--min-seconds"),
    (["bench", "tiny", "--batch", "0"], "--batch"),
    (["bench", "tiny", "--batch", "1,x"], "--batch"),
    (["bench", "tiny", "--backends", "torch,bogus"], "--backends"),
    (["bench", "tiny", "--precisions", "fp8"], "--precisions"),
    (["bench", "tiny", "--seed", "4294967296"], "--seed"),
    (["calibrate", MISSING, "--samples", "0"], "--samples"),
    (["calibrate", MISSING, "--mixing", "1.5"], "--mixing"),
    (["calibrate", MISSING, "--mixing", "nan"], "--mixing"),
    (["calibrate", MISSING, "--noise", "bogus"], "--noise"),
    (["calibrate", MISSING, "--cutoff", "-2"], "--cutoff"),
    (["calibrate", MISSING, "--seed", "-1"], "--seed"),
    (["fidelity", MISSING, "--speed-batch", "0"], "--speed-batch"),
    (["fidelity", MISSING, "--speed-seconds", "inf"], "--speed-seconds"),
    (["fidelity", MISSING, "--grid-seeds", "0"], "--grid-seeds"),
    (["fidelity", MISSING, "--threads", "-1"], "--threads"),
    (["fidelity", MISSING, "--seeds", "4294967296"], "--seeds"),
    (["demo", MISSING, "--size", "0"], "--size"),
    (["demo", MISSING, "--fps", "0"], "--fps"),
    (["demo", MISSING, "--fps", "nan"], "--fps"),
    (["demo", MISSING, "--seconds-per-seed", "nan"], "--seconds-per-seed"),
    (["demo", MISSING, "--mode", "bogus"], "--mode"),
    (["demo", MISSING, "--detect-every", "0"], "--detect-every"),
    (["demo", MISSING, "--max-frames", "-5"], "--max-frames"),
    (["demo", MISSING, "--mix-seed", "4294967296"], "--mix-seed"),
]


@pytest.mark.parametrize(("args", "named"), CASES, ids=[" ".join(a[0:1] + a[2:]) for a, _ in CASES])
def test_bad_option_is_one_error_line(args, named):
    _assert_one_error(_invoke(args), named)


@pytest.mark.parametrize("command", ["generate", "truncation"])
def test_cutoff_above_the_models_layers_is_one_line(tiny_bundle, tmp_path, command):
    out = tmp_path / ("imgs" if command == "generate" else "t.png")
    res = _invoke([command, str(tiny_bundle), "--cutoff", "99", "--out", str(out)])
    _assert_one_error(res, "--cutoff must be in [0, 8]")
    assert not out.exists()


def test_cutoff_at_the_layer_count_is_accepted(tiny_bundle, tmp_path):
    res = _invoke(["generate", str(tiny_bundle), "--seeds", "0", "--cutoff", "8", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "seed0000.png").is_file()


def test_device_cuda_without_cuda_is_one_line(tiny_bundle, tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    res = _invoke(["generate", str(tiny_bundle), "--device", "cuda", "--out", str(tmp_path / "o")])
    _assert_one_error(res, "--device cuda")
    assert not (tmp_path / "o").exists()


def test_device_cuda_for_a_checkpoint_without_cuda_is_one_line(tiny_checkpoint, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    res = _invoke(["generate", str(tiny_checkpoint), "--device", "cuda", "--out", str(tmp_path / "o")])
    _assert_one_error(res, "--device cuda")
