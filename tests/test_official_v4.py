"""StyleGAN1 pickles as people have them: network state version 4 (NVlabs/stylegan2's dnnlib),
defaults and fused thresholds edited in the embedded source, snapshots taken during progressive
growing, class-conditional networks; and a source with an edited operation, which is refused.

The v4_* fixtures were made by NVlabs/stylegan2's unmodified code (scripts/make_official_fixtures.py;
manifest.json says with what). The edited ones carry the edited synthetic twin
(tests/data/official/twin_networks_stylegan.py) as their build source, so they are read against a
reference built from the twin; the networks themselves were built from NVIDIA's file with the same
edits, and the goldens are NVIDIA's `Gs.run(..., randomize_noise=False)` and `D.run`.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the converter needs PyTorch (pip install '.[train]')")

from stylegan_edge.runtime.images import to_uint8  # noqa: E402
from stylegan_edge.training.checkpoint import load_discriminator, load_generator, read_checkpoint  # noqa: E402
from stylegan_edge.training.official import (  # noqa: E402
    ImportedOfficial,
    OfficialPickleError,
    UnsupportedNetworkError,
    convert_official_pickle,
    import_official,
    load_official_pickle,
)

DATA = Path(__file__).parent / "data" / "official"
TWIN = DATA / "twin_networks_stylegan.py"
FLOAT_TOL = 1e-4  # images in [-1, 1], float32
U8_TOL = 1  # levels: ours rounds (x + 1) * 127.5, the official conversion truncates x * 127.5 + 128
EDITED = ("v4_edited_defaults", "v4_edited_op")  # their build source is the edited twin


def _manifest() -> dict[str, Any]:
    return json.loads((DATA / "manifest.json").read_text(encoding="utf-8"))


def need(name: str) -> Path:
    path = DATA / f"{name}.pkl"
    if not path.is_file() or name not in _manifest():
        pytest.skip(f"fixture {path.name} not made yet (scripts/make_official_fixtures.py with NVlabs/stylegan2)")
    return path


@functools.cache
def twin_reference() -> Any:
    from stylegan_edge.training.official_source import reference_from_source

    return reference_from_source(TWIN.read_text(encoding="utf-8"), "twin")


def reference_for(name: str) -> Any:
    return twin_reference() if name in EDITED else None


@functools.cache
def imported(name: str) -> ImportedOfficial:
    return import_official(need(name), reference_for(name))


def golden(name: str) -> dict[str, np.ndarray]:
    with np.load(DATA / f"{name}_golden.npz") as g:
        return dict(g)


def render(G: Any, z: np.ndarray, c: np.ndarray | None, psi: float, cutoff: int | None) -> np.ndarray:
    with torch.no_grad():
        w = G.map(torch.from_numpy(z), c=None if c is None else torch.from_numpy(c))
        return G.synthesis(G.truncate(G.broadcast(w), psi, cutoff), noise_mode="const").numpy()


def assert_images_match(img: np.ndarray, gold: dict[str, np.ndarray], setting: str, suffix: str = "") -> None:
    """Against the golden `img_{setting}{suffix}` (float) and `img_{setting}_u8{suffix}` (the
    official uint8 conversion, NHWC as ours)."""
    key = f"img_{setting}{suffix}"
    want = gold[key]
    assert img.shape == want.shape
    assert np.abs(img - want).max() <= FLOAT_TOL, key
    diff = np.abs(to_uint8(img).astype(int) - gold[f"img_{setting}_u8{suffix}"].astype(int))
    assert diff.max() <= U8_TOL, key


def settings(gold: dict[str, np.ndarray], setting: str) -> tuple[float, int | None]:
    return (1.0, None) if setting == "psi1" else (float(gold["trunc_psi"]), int(gold["trunc_cutoff"]))


def one_hot(k: int, n: int, label_size: int) -> np.ndarray:
    return np.eye(label_size, dtype=np.float32)[np.full(n, k)]


def d_inputs(gold: dict[str, np.ndarray]) -> np.ndarray:
    # The official training loop maps real images from [0, 255] to [-1, 1] this way.
    return gold["d_images_u8"].astype(np.float32) * np.float32(2 / 255) - np.float32(1)


# --- state version 4 ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["v4_cond", "v4_edited_defaults", "v4_midgrowth"])
def test_stylegan2_dnnlib_files_are_state_version_4_and_convert(name):
    recs = load_official_pickle(need(name))
    assert {r.version for r in recs.values()} == {4} == {_manifest()[name]["state_version"]}
    imp = imported(name)
    assert imp.state_version == 4 and "state v4" in imp.summary()


# --- class-conditional ---------------------------------------------------------------------------

@pytest.mark.parametrize("setting", ["psi1", "trunc"])
def test_conditional_generator_reproduces_official_images_for_every_label(setting):
    imp, gold = imported("v4_cond"), golden("v4_cond")
    k_labels = int(gold["label_size"])
    assert imp.config.label_size == k_labels == _manifest()["v4_cond"]["label_size"] == 3
    psi, cutoff = settings(gold, setting)
    z = gold["z"]
    images = []
    for k in range(k_labels):
        img = render(imp.G_ema, z, one_hot(k, len(z), k_labels), psi, cutoff)
        assert_images_match(img, gold, setting, f"_label{k}")
        images.append(img)
    assert_images_match(render(imp.G_ema, z, gold["c_mix"], psi, cutoff), gold, setting, "_mix")
    # The label must matter, or the comparison above cannot tell a conditional mapping from none.
    assert np.abs(images[0] - images[1]).max() > 0.05


def test_conditional_mapping_reproduces_official_dlatents():
    imp, gold = imported("v4_cond"), golden("v4_cond")
    z, k_labels = gold["z"], int(gold["label_size"])
    for k in range(k_labels):
        with torch.no_grad():
            w = imp.G_ema.broadcast(imp.G_ema.map(torch.from_numpy(z), c=torch.from_numpy(one_hot(k, len(z), 3))))
        want = gold[f"w_label{k}"]
        assert np.abs(w.numpy() - want).max() <= 1e-5 * max(1.0, np.abs(want).max())


def test_label_embedding_is_the_raw_label_concat_weight():
    recs = load_official_pickle(need("v4_cond"))
    want = recs["Gs"].all_variables()["G_mapping/LabelConcat/weight"]
    got = imported("v4_cond").G_ema.mapping.label_embed.detach().numpy()
    assert got.shape == want.shape == (3, imported("v4_cond").config.z_dim)
    assert np.array_equal(got, want)


def test_conditional_discriminator_reproduces_official_scores_and_label_switch():
    imp, gold = imported("v4_cond"), golden("v4_cond")
    images = torch.from_numpy(d_inputs(gold))
    tol = 1e-4 * max(1.0, np.abs(gold["d_scores_per_label"]).max())
    with torch.no_grad():
        scores = imp.D(images, c=torch.from_numpy(gold["d_labels"])).numpy()
        per_label = np.concatenate(
            [imp.D(images, c=torch.from_numpy(one_hot(k, len(images), 3))).numpy() for k in range(3)], axis=1
        )
    assert np.abs(scores - gold["d_scores"]).max() <= tol
    assert np.abs(per_label - gold["d_scores_per_label"]).max() <= tol


def test_conditional_checkpoint_reproduces_official_images(tmp_path):
    out = convert_official_pickle(need("v4_cond"), tmp_path / "cond.safetensors")
    G, gold = load_generator(out), golden("v4_cond")
    assert G.cfg.label_size == 3
    img = render(G, gold["z"], one_hot(2, len(gold["z"]), 3), 1.0, None)
    assert_images_match(img, gold, "psi1", "_label2")


@pytest.fixture(scope="module")
def conditional_bundle(tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="the bundle check runs on onnxruntime")
    from stylegan_edge.export.onnx_export import ExportError, export_bundle
    from stylegan_edge.runtime import Generator as BundleGenerator

    imp = imported("v4_cond")
    try:
        path = export_bundle(imp.G_ema, tmp_path_factory.mktemp("official") / "v4_cond.sgbundle")
    except ExportError as e:
        if re.search(r"label|condition", str(e), re.IGNORECASE):
            pytest.skip(f"export_bundle has no label support yet: {e}")
        raise
    return BundleGenerator(path, backend="onnxruntime")


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["psi1", "trunc"])
def test_conditional_bundle_reproduces_official_images_on_onnxruntime(conditional_bundle, setting):
    g, gold = conditional_bundle, golden("v4_cond")
    assert g.label_size == 3
    psi, cutoff = settings(gold, setting)
    for k in range(3):
        ws = g.truncate(g.broadcast(g.map(gold["z"], one_hot(k, len(gold["z"]), 3))), psi, cutoff)
        assert_images_match(g.synthesize_float(ws, noise="const"), gold, setting, f"_label{k}")
    ws = g.truncate(g.broadcast(g.map(gold["z"], gold["c_mix"])), psi, cutoff)
    assert_images_match(g.synthesize_float(ws, noise="const"), gold, setting, "_mix")


# --- defaults and thresholds edited in the embedded source --------------------------------------

def test_edited_defaults_and_thresholds_are_read_from_the_source():
    cfg = imported("v4_edited_defaults").config
    edits = _manifest()["v4_edited_defaults"]["source_edits"]
    mapping, style, syn = edits["defaults"]["G_mapping"], edits["defaults"]["G_style"], edits["defaults"]["G_synthesis"]
    assert (cfg.z_dim, cfg.w_dim) == (mapping["latent_size"], syn["dlatent_size"])
    assert (cfg.mapping_layers, cfg.mapping_width, cfg.mapping_lrmul) == (
        mapping["mapping_layers"], mapping["mapping_fmaps"], mapping["mapping_lrmul"])
    assert (cfg.fmap_base, cfg.fmap_max) == (syn["fmap_base"], syn["fmap_max"])
    assert (cfg.truncation_psi, cfg.truncation_cutoff) == (style["truncation_psi"], style["truncation_cutoff"])
    assert cfg.fused_up_min_res == edits["thresholds"]["upscale2d_conv2d"]
    assert cfg.d_fused_min_res == edits["thresholds"]["conv2d_downscale2d"]
    # Both kinds of resampling layer occur, so the thresholds are exercised.
    assert {s.fused for s in cfg.synthesis_layers() if s.conv == "up"} == {True, False}
    assert {b.fused for b in cfg.discriminator_blocks()} == {True, False}


def test_summary_names_what_the_source_edits():
    summary = imported("v4_edited_defaults").summary()
    assert "mapping_lrmul" in summary and "\n" not in summary


@pytest.mark.parametrize("setting", ["psi1", "trunc", "default"])
def test_edited_defaults_reproduce_official_images(setting):
    imp, gold = imported("v4_edited_defaults"), golden("v4_edited_defaults")
    if setting == "default":  # Gs.run without truncation arguments: the file's own defaults
        cfg = imp.config
        assert (cfg.truncation_psi, cfg.truncation_cutoff) == (
            pytest.approx(float(gold["default_trunc_psi"])), int(gold["default_trunc_cutoff"]))
        psi, cutoff = cfg.truncation_psi, cfg.truncation_cutoff
    else:
        psi, cutoff = settings(gold, setting)
    assert_images_match(render(imp.G_ema, gold["z"], None, psi, cutoff), gold, setting)


def test_edited_defaults_reproduce_official_dlatents_and_scores():
    imp, gold = imported("v4_edited_defaults"), golden("v4_edited_defaults")
    with torch.no_grad():
        w = imp.G_ema.broadcast(imp.G_ema.map(torch.from_numpy(gold["z"]))).numpy()
        scores = imp.D(torch.from_numpy(d_inputs(gold))).numpy()
    assert np.abs(w - gold["w"]).max() <= 1e-5 * max(1.0, np.abs(gold["w"]).max())
    assert np.abs(scores - gold["d_scores"]).max() <= 1e-4 * max(1.0, np.abs(gold["d_scores"]).max())


def test_stock_mapping_lrmul_would_miss_the_golden():
    """Guards the fixture: with the stock 0.01 in place of the file's 0.1, w is far off."""
    import dataclasses

    from stylegan_edge.training.networks import Generator

    imp, gold = imported("v4_edited_defaults"), golden("v4_edited_defaults")
    G = Generator(dataclasses.replace(imp.config, mapping_lrmul=0.01)).eval()
    G.load_state_dict(imp.G_ema.state_dict())
    with torch.no_grad():
        w = G.broadcast(G.map(torch.from_numpy(gold["z"]))).numpy()
    assert np.abs(w - gold["w"]).max() > 1e-2 * np.abs(gold["w"]).max()


def test_edited_source_against_nvidias_reference_is_refused_in_one_line():
    """Read against the packaged reference (NVIDIA's files), the twin's text is no official source."""
    with pytest.raises(OfficialPickleError) as e:
        import_official(need("v4_edited_defaults"))
    assert "\n" not in str(e.value) and "v4_edited_defaults.pkl" in str(e.value)


# --- an edited operation -------------------------------------------------------------------------

def test_edited_operation_is_refused_naming_function_and_line(tmp_path):
    path = need("v4_edited_op")
    expected = _manifest()["v4_edited_op"]["expected_refusal"]
    with pytest.raises(OfficialPickleError) as e:
        import_official(path, twin_reference())
    msg = str(e.value)
    assert "\n" not in msg and path.name in msg
    assert expected["function"] in msg and re.search(rf"\bline {expected['line']}\b", msg), msg


def test_cli_refuses_the_edited_operation_with_one_line(tmp_path):
    import typer
    from typer.testing import CliRunner

    from stylegan_edge.cli.convert_cmd import convert

    app = typer.Typer()
    app.command()(convert)
    out = tmp_path / "m.safetensors"
    res = CliRunner().invoke(app, [str(need("v4_edited_op")), "--out", str(out)])
    assert res.exit_code == 1 and not out.exists()
    assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("error: ")


# --- a snapshot taken during progressive growing ------------------------------------------------

def test_midgrowth_snapshot_converts_at_its_lod():
    imp = imported("v4_midgrowth")
    lod = float(np.float32(_manifest()["v4_midgrowth"]["lod"]))
    assert 0 < lod and lod != round(lod)
    assert imp.config.progressive and imp.lod == lod
    assert imp.G_ema.lod == imp.G.lod == imp.D.lod_value == lod
    assert imp.ignored == ()  # the lower ToRGB layers take part
    assert f"lod {lod:g}" in imp.summary()


@pytest.mark.parametrize("setting", ["psi1", "trunc"])
@pytest.mark.parametrize("structure", ["recursive", "linear"])
def test_midgrowth_snapshot_reproduces_official_images(setting, structure):
    imp, gold = imported("v4_midgrowth"), golden("v4_midgrowth")
    imp.G_ema.synthesis.structure = structure  # the official structures compute the same values
    try:
        img = render(imp.G_ema, gold["z"], None, *settings(gold, setting))
    finally:
        imp.G_ema.synthesis.structure = "recursive"
    assert_images_match(img, gold, setting)


def test_midgrowth_discriminator_reproduces_official_scores():
    imp, gold = imported("v4_midgrowth"), golden("v4_midgrowth")
    with torch.no_grad():
        scores = imp.D(torch.from_numpy(d_inputs(gold))).numpy()
    assert np.abs(scores - gold["d_scores"]).max() <= 1e-4 * max(1.0, np.abs(gold["d_scores"]).max())


def test_midgrowth_checkpoint_keeps_its_lod(tmp_path):
    out = convert_official_pickle(need("v4_midgrowth"), tmp_path / "mid.safetensors")
    gold, lod = golden("v4_midgrowth"), imported("v4_midgrowth").lod
    G, D = load_generator(out), load_discriminator(out)
    assert G.lod == D.lod_value == lod and read_checkpoint(out)[1]["lod"] == f"{lod:g}"
    assert_images_match(render(G, gold["z"], None, 1.0, None), gold, "psi1")


def test_midgrowth_snapshot_differs_from_the_finished_network():
    """Guards the fixture: at lod 0 the same weights draw another image."""
    imp, gold = imported("v4_midgrowth"), golden("v4_midgrowth")
    lod = imp.G_ema.lod
    imp.G_ema.set_lod(0.0)
    try:
        img = render(imp.G_ema, gold["z"], None, 1.0, None)
    finally:
        imp.G_ema.set_lod(lod)
    assert np.abs(img - gold["img_psi1"]).max() > 0.05


def test_midgrowth_export_is_refused_in_one_line(tmp_path):
    pytest.importorskip("onnx", reason="export needs onnx (pip install '.[export]')")
    from stylegan_edge.export.onnx_export import ExportError, export_bundle

    with pytest.raises(ExportError, match="mid-growth") as e:
        export_bundle(imported("v4_midgrowth").G_ema, tmp_path / "mid.sgbundle")
    assert "\n" not in str(e.value)


# --- versions other than 2, 3 and 4 -------------------------------------------------------------

def _repickled_version(tmp_path: Path, version: Any) -> Path:
    from .test_official_import import _Network, _state, write_official

    recs = load_official_pickle(DATA / "tiny32.pkl")
    nets = tuple(_Network(_state(recs[k], version=version)) for k in ("G", "D", "Gs"))
    return write_official(tmp_path / f"v{version}.pkl", nets)


@pytest.mark.parametrize("version", [1, 5, 4.0, "4"])
def test_other_state_versions_are_refused_in_one_line(tmp_path, version):
    path = _repickled_version(tmp_path, version)
    with pytest.raises(OfficialPickleError, match=re.escape(f"version {version!r} (official files have 2, 3, 4)")) as e:
        load_official_pickle(path)
    assert "\n" not in str(e.value)


def test_version_4_state_of_a_version_3_file_converts_the_same(tmp_path):
    path = _repickled_version(tmp_path, 4)
    imp = import_official(path)
    assert imp.state_version == 4
    with np.load(DATA / "tiny32_golden.npz") as g:
        img = render(imp.G_ema, g["z"], None, 1.0, None)
        assert np.abs(img - g["img_psi1"]).max() <= FLOAT_TOL


def test_unsupported_network_error_is_still_an_official_pickle_error():
    assert issubclass(UnsupportedNetworkError, OfficialPickleError)
