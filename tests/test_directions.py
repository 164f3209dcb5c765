"""Attribute directions: the file, `edit` on style layers, no torch in the runtime, and the
`edit` and `metrics` commands (registered on a test app; cli/main.py registers them for users)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from stylegan_edge.runtime.directions import DirectionsError, edit, load_directions, save_directions
from stylegan_edge.runtime.generator import ArgumentError, style_layers

RES = (4, 4, 8, 8, 16, 16, 32, 32)


def test_directions_round_trip_unit_length_with_their_description(tmp_path) -> None:
    rng = np.random.default_rng(0)
    vecs = {"hair_dark": rng.standard_normal(12) * 3, "yaw_positive": rng.standard_normal(12)}
    meta = {"hair_dark": {"attribute": "luma < 0.32", "space": "w", "accuracy": 0.9}}
    (tmp_path / "b.sgbundle").mkdir()
    written = save_directions(tmp_path / "b.sgbundle", vecs, meta)
    assert written.name == "directions.npz"
    d = load_directions(tmp_path / "b.sgbundle")
    assert d.names == ["hair_dark", "yaw_positive"] and d.meta == meta
    for name, v in vecs.items():
        np.testing.assert_allclose(d[name], v / np.linalg.norm(v), rtol=1e-6)
        assert d[name].dtype == np.float32


def test_bad_directions_are_one_line_errors(tmp_path) -> None:
    (tmp_path / "empty.sgbundle").mkdir()
    with pytest.raises(DirectionsError, match="has no directions.npz"):
        load_directions(tmp_path / "empty.sgbundle")
    with pytest.raises(FileNotFoundError):
        load_directions(tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(DirectionsError, match="cannot read directions"):
        load_directions(bad)
    save_directions(tmp_path / "d.npz", {"a": np.ones(4)})
    with pytest.raises(DirectionsError, match="no direction 'b'.*there are: a"):
        load_directions(tmp_path / "d.npz")["b"]
    with pytest.raises(DirectionsError, match="zero"):
        save_directions(tmp_path / "z.npz", {"a": np.zeros(4)})


@pytest.mark.parametrize("layers", ["coarse", "middle", "2-5", [0, 7]])
def test_edit_moves_only_the_chosen_layers_by_strength_times_direction(layers) -> None:
    rng = np.random.default_rng(1)
    ws = rng.standard_normal((3, len(RES), 12)).astype(np.float32)
    d = rng.standard_normal(12).astype(np.float32)
    strength = float(rng.uniform(-3, 3))
    out = edit(ws, d, strength, layers, RES)
    chosen = style_layers(layers, RES)
    want = ws.copy()
    want[:, chosen] += strength * d
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
    others = [i for i in range(len(RES)) if i not in chosen]
    np.testing.assert_array_equal(out[:, others], ws[:, others])
    assert not np.shares_memory(out, ws)


def test_edit_refuses_mismatched_shapes_and_bad_strengths() -> None:
    ws = np.zeros((1, len(RES), 12), np.float32)
    with pytest.raises(ArgumentError, match="12-d"):
        edit(ws, np.ones(5), 1.0, "coarse", RES)
    with pytest.raises(ArgumentError, match="ws must be"):
        edit(ws[:, :3], np.ones(12), 1.0, "coarse", RES)
    with pytest.raises(ArgumentError, match="strength"):
        edit(ws, np.ones(12), float("nan"), "coarse", RES)


def test_runtime_directions_do_not_import_torch() -> None:
    code = ("import sys; sys.modules['torch'] = None; import stylegan_edge.runtime.directions; "
            "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]")
    subprocess.run([sys.executable, "-c", code], check=True)


def _app():
    from stylegan_edge.cli.edit_cmd import edit as edit_cmd
    from stylegan_edge.cli.metrics_cmd import metrics

    app = typer.Typer()
    app.command()(edit_cmd)
    app.command()(metrics)
    return app


def test_edit_command_writes_a_strip_whose_zero_column_is_the_unedited_face(tiny_bundle, tmp_path) -> None:
    from PIL import Image

    from stylegan_edge.runtime.generator import Generator

    g = Generator(tiny_bundle, backend="onnxruntime")
    rng = np.random.default_rng(2)
    save_directions(tmp_path / "d.npz", {"hair_dark": rng.standard_normal(g.meta.w_dim)})
    out = tmp_path / "strip.png"
    res = CliRunner().invoke(_app(), ["edit", str(tiny_bundle), "--direction", "hair_dark", "--seed", "3-4",
                                      "--strengths", "-3,0,3", "--directions", str(tmp_path / "d.npz"),
                                      "--out", str(out)])
    assert res.exit_code == 0, res.output
    strip = np.asarray(Image.open(out))
    r = g.resolution
    assert strip.shape == (2 * r, 3 * r, 3)
    plain = g.generate(seeds=[3, 4], psi=1.0)
    np.testing.assert_array_equal(strip[:r, r : 2 * r], plain[0])
    np.testing.assert_array_equal(strip[r:, r : 2 * r], plain[1])
    assert not np.array_equal(strip[:r, :r], plain[0])  # the -3 column moved
    g.close()


def test_edit_command_errors_are_one_line(tiny_checkpoint, tmp_path) -> None:
    res = CliRunner().invoke(_app(), ["edit", str(tiny_checkpoint), "--direction", "x", "--out",
                                      str(tmp_path / "e.png")])
    assert res.exit_code == 1 and "give --directions" in res.output and "Traceback" not in res.output
    save_directions(tmp_path / "d.npz", {"a": np.ones(3)})
    res = CliRunner().invoke(_app(), ["edit", str(tiny_checkpoint), "--direction", "a", "--directions",
                                      str(tmp_path / "d.npz"), "--out", str(tmp_path / "e.png")])
    assert res.exit_code == 1 and "3-d" in res.output


def test_metrics_command_names_the_pixel_fallback_and_refuses_bad_options(tiny_checkpoint, tiny_bundle,
                                                                          tmp_path) -> None:
    import json

    res = CliRunner().invoke(_app(), ["metrics", str(tiny_checkpoint), "--ppl", "--samples", "8", "--batch", "4",
                                      "--sampling", "end", "--json", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    assert "pixel-path-length (not PPL: no perceptual model given) end: Z" in res.output
    report = json.loads((tmp_path / "m.json").read_text())
    assert [r["space"] for r in report["path_length"]] == ["z", "w"]
    assert all("not PPL" in r["metric"] for r in report["path_length"])
    for args, msg in ((["--samples", "8"], "choose a metric"), (["--ppl", "--space", "q"], "--space"),
                      (["--ppl", "--directions-out", "x.npz"], "needs --ls")):
        res = CliRunner().invoke(_app(), ["metrics", str(tiny_checkpoint), *args])
        assert res.exit_code == 1 and msg in res.output, res.output
    res = CliRunner().invoke(_app(), ["metrics", str(tiny_bundle), "--ppl"])
    assert res.exit_code == 1 and "checkpoint" in res.output


def test_generator_edit_reads_the_bundles_directions_by_name(tiny_bundle, tmp_path) -> None:
    import shutil

    from stylegan_edge.runtime import Generator

    bundle = tmp_path / "b.sgbundle"
    shutil.copytree(tiny_bundle, bundle)
    rng = np.random.default_rng(5)
    with Generator(bundle, backend="onnxruntime") as g:
        d = rng.standard_normal(g.meta.w_dim).astype(np.float32)
        save_directions(bundle, {"hair_dark": d})
        ws = g.styles(seeds=[1, 2])
        edited = g.edit(ws, "hair_dark", 2.5, layers="middle")
        expected = edit(ws, d / np.linalg.norm(d), 2.5, "middle", g.meta.layer_resolutions)
        np.testing.assert_allclose(edited, expected, atol=1e-6)
        with pytest.raises(DirectionsError, match="no direction 'smile'"):
            g.edit(ws, "smile", 1.0)
