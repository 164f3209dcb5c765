"""Table 1 at small scale: the configurations as the paper and the official code define them, and
`stylegan table1` training them all (tiny budget), tabulating, plotting and not retraining."""

from __future__ import annotations

import json

import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from stylegan_edge.cli.table1_cmd import table1
from stylegan_edge.training.config import PRESETS
from stylegan_edge.training.networks import Generator
from stylegan_edge.training.table1 import ROWS, TABLE1, row_model

TINY = PRESETS["tiny"]


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(table1)
    return app


def test_each_row_adds_one_paper_change_to_the_row_above():
    models = {row.key: row_model(TINY, row) for row in TABLE1}
    assert [row.key for row in TABLE1] == list("ABCDEF")
    a, b, c, d, e, f = (models[k] for k in "ABCDEF")
    assert all(m.progressive for m in models.values())
    assert not a.use_blur and b.use_blur  # B: bilinear (blurred) up/down
    assert (not b.use_mapping and not b.use_styles and b.use_pixel_norm) and (c.use_mapping and c.use_styles)
    assert not c.const_input and d.const_input  # D: the learned constant replaces the traditional input
    assert not d.use_noise and e.use_noise
    assert ROWS["E"].mixing_prob == 0 and ROWS["F"].mixing_prob == 0.9 and e == f
    assert a.z_dim == a.w_dim  # without mapping, w is the normalised z


def test_no_styles_means_no_style_affine_and_w_only_at_the_input():
    cfg = row_model(TINY, ROWS["B"])
    torch.manual_seed(0)
    G = Generator(cfg).eval()
    assert not any(".style." in name for name, _ in G.named_parameters())
    G.synthesis.set_lod(0.0)
    ws = torch.randn(2, G.num_layers, cfg.w_dim)
    changed = ws.clone()
    changed[:, 1:] = torch.randn_like(changed[:, 1:])  # every style but the first one
    noise = G.synthesis.make_noise(2, "const")
    assert torch.equal(G.synthesis(ws, noise), G.synthesis(changed, noise))
    changed[:, 0] += 1  # the traditional input reads the first w
    assert not torch.equal(G.synthesis(ws, noise), G.synthesis(changed, noise))


def test_no_blur_removes_every_blur_and_keeps_the_parameters():
    on, off = Generator(row_model(TINY, ROWS["B"])), Generator(row_model(TINY, ROWS["A"]))
    assert [n for n, _ in on.named_parameters()] == [n for n, _ in off.named_parameters()]
    assert all(layer.blur is None for layer in off.synthesis.layers)
    assert any(layer.blur is not None for layer in on.synthesis.layers)


def test_table1_command_trains_every_configuration_once_and_writes_table_and_plot(tmp_path):
    out = tmp_path / "t1"
    args = ["--data", "synthetic:faces:64", "--res", "16", "--kimg", "0.016", "--batch", "4", "--metric-images", "16",
            "--metric-points", "1", "--out", str(out), "--device", "cpu", "--threads", "1"]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    table = (out / "table1.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| Config")]
    assert [r.split("|")[1].strip() for r in rows] == list("ABCDEF")
    summary = json.loads((out / "table1.json").read_text())
    for key in "ABCDEF":
        hist = summary["configs"][key]["history"]
        assert hist[0]["kimg"] == 0 and hist[-1]["kimg"] >= 0.016 and hist[-1]["swd_avg"] > 0
        assert f"| {hist[-1]['swd_avg']:.2f} |" in rows["ABCDEF".index(key)]
    with Image.open(out / "table1.png") as img:
        assert img.size[0] > 400 and img.getextrema() != ((255, 255), (255, 255), (255, 255))
    # Run again: every configuration finished, none is retrained.
    mtime = (out / "A" / "checkpoint.safetensors").stat().st_mtime_ns
    again = CliRunner().invoke(_app(), args)
    assert again.exit_code == 0 and again.output.count("not retrained") == 6
    assert (out / "A" / "checkpoint.safetensors").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("bad, needle", [(["--configs", "AXZ"], "--configs"), (["--preset", "huge"], "preset"),
                                         (["--res", "24"], "resolution")])
def test_table1_bad_options_are_one_line(tmp_path, bad, needle):
    result = CliRunner().invoke(_app(), ["--data", "synthetic:faces:64", "--out", str(tmp_path / "o"), *bad])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]
    assert not (tmp_path / "o").exists()
