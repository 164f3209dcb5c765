"""Format checks of the version-4 official fixtures (scripts/make_official_fixtures.py, NVlabs/stylegan2).

These pin what the fixture files are, independently of the converter: they load with the safe
reader as version-4 states, carry what the manifest says (labels, lod, edited sources), hold no
NVIDIA source text, and their goldens have the keys and shapes the conversion tests read.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from stylegan_edge.training.official_pickle import NetworkRecord, read_official_pickle

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "official"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
V4 = sorted(n for n in MANIFEST if n.startswith("v4_"))
STOCK = [n for n in V4 if "source_edits" not in MANIFEST[n]]
EDITED = [n for n in V4 if "source_edits" in MANIFEST[n]]
WITH_GOLDEN = [n for n in V4 if "golden" in MANIFEST[n]]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    """The fixture script as a module (it imports only numpy at the top), for its edit function."""
    path = REPO / "scripts" / "make_official_fixtures.py"
    spec = importlib.util.spec_from_file_location("make_official_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


def _networks(record: NetworkRecord) -> list[NetworkRecord]:
    return [record, *(n for c in record.components.values() for n in _networks(c))]


def test_the_four_version4_fixtures_are_listed() -> None:
    assert set(V4) == {"v4_cond", "v4_edited_defaults", "v4_midgrowth", "v4_edited_op"}
    for name in V4:
        assert (DATA / MANIFEST[name]["pickle"]).is_file()
        assert MANIFEST[name]["official_repo"] == "NVlabs/stylegan2"
        assert re.fullmatch(r"[0-9a-f]{40}", MANIFEST[name]["official_commit"])


@pytest.mark.parametrize("name", V4)
def test_fixture_loads_safely_as_state_version_4(name: str) -> None:
    entry = MANIFEST[name]
    G, D, Gs = read_official_pickle(DATA / entry["pickle"])
    assert entry["state_version"] == 4
    for net in (G, D, Gs):
        assert {n.version for n in _networks(net)} == {4}
    assert (G.build_func_name, D.build_func_name, Gs.build_func_name) == ("G_style", "D_basic", "G_style")
    assert set(Gs.components) == {"mapping", "synthesis"}
    assert Gs.static_kwargs == entry["G_static_kwargs"]
    assert D.static_kwargs == entry["D_static_kwargs"]
    # G and Gs hold different values (a converter that reads G instead of Gs must fail the goldens).
    g, gs = G.all_variables(), Gs.all_variables()
    assert g.keys() == gs.keys()
    assert any(not np.array_equal(g[k], gs[k]) for k in g if g[k].size > 1)


@pytest.mark.parametrize("name", V4)
def test_lod_variables_match_the_manifest(name: str) -> None:
    entry = MANIFEST[name]
    G, D, Gs = read_official_pickle(DATA / entry["pickle"])
    lods = [Gs.variables["lod"], Gs.components["synthesis"].variables["lod"], G.variables["lod"], D.variables["lod"]]
    for lod in lods:
        assert lod.dtype == np.float32 and lod.shape == ()
        assert float(lod) == pytest.approx(entry["lod"], abs=0)


def test_midgrowth_fixture_sits_between_two_lods() -> None:
    lod = MANIFEST["v4_midgrowth"]["lod"]
    assert 1 < lod < 2 and lod == pytest.approx(1.4, abs=1e-6)


def test_conditional_fixture_has_the_label_embedding_and_label_switch() -> None:
    entry = MANIFEST["v4_cond"]
    G, D, Gs = read_official_pickle(DATA / entry["pickle"])
    labels, latent = entry["label_size"], entry["G_static_kwargs"]["latent_size"]
    assert labels == 3 == Gs.static_kwargs["label_size"] == D.static_kwargs["label_size"]
    embed = Gs.components["mapping"].variables["LabelConcat/weight"]
    assert embed.shape == (labels, latent)
    # The first dense layer reads z and the embedded label concatenated.
    assert Gs.components["mapping"].variables["Dense0/weight"].shape[0] == 2 * latent
    # D's output layer has one score per label (the official LabelSwitch picks one).
    outputs = [v for k, v in D.variables.items() if k.endswith("/bias") and v.shape == (labels,)]
    assert outputs, "no D layer with label_size outputs"


@pytest.mark.parametrize("name", STOCK)
def test_stock_fixture_carries_the_one_line_stand_in(name: str) -> None:
    _, _, Gs = read_official_pickle(DATA / MANIFEST[name]["pickle"])
    digest = MANIFEST[name]["official_sources_sha256"]["training/networks_stylegan.py"]
    assert Gs.build_module_src == (
        f"# NVlabs/stylegan2 training/networks_stylegan.py, sha256 {digest}: not included in this test fixture\n"
    )


@pytest.mark.parametrize("name", EDITED)
def test_edited_fixture_carries_the_current_twin_with_the_recorded_edits(name: str, script: ModuleType) -> None:
    entry = MANIFEST[name]
    twin = DATA / "twin_networks_stylegan.py"
    # A stale fixture (the twin changed since it was made) must be remade with the script.
    assert hashlib.sha256(twin.read_bytes()).hexdigest() == entry["twin_sha256"], "rerun make_official_fixtures.py"
    recorded = entry["source_edits"]
    edits = script.SourceEdits(
        defaults=recorded["defaults"], thresholds=recorded["thresholds"],
        ops=tuple((o["function"], o["old"], o["new"]) for o in recorded["ops"]),
    )
    expected, _ = script.apply_edits(twin.read_text(encoding="utf-8"), edits, twin.name)
    G, D, Gs = read_official_pickle(DATA / entry["pickle"])
    for net in (G, D, Gs):
        assert {n.build_module_src for n in _networks(net)} == {expected}


def _defaults(tree: ast.Module, func: str) -> dict[str, object]:
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == func)
    named = fn.args.args[len(fn.args.args) - len(fn.args.defaults):]
    return {a.arg: ast.literal_eval(d) for a, d in zip(named, fn.args.defaults)
            if not isinstance(d, ast.Call)}


def test_edited_defaults_fixture_source_has_the_edited_literals() -> None:
    entry = MANIFEST["v4_edited_defaults"]
    _, _, Gs = read_official_pickle(DATA / entry["pickle"])
    tree = ast.parse(Gs.build_module_src)
    for func, params in entry["source_edits"]["defaults"].items():
        got = _defaults(tree, func)
        for param, value in params.items():
            assert got[param] == value, (func, param)
    text = Gs.build_module_src
    up, down = entry["source_edits"]["thresholds"]["upscale2d_conv2d"], entry["source_edits"]["thresholds"][
        "conv2d_downscale2d"]
    assert f"min(x.shape[2:]) * 2 >= {up}\n" in text and f"min(x.shape[2:]) >= {down}\n" in text
    assert ">= 128" not in text
    # What static_kwargs carry is only what the dataset gives: the rest comes from the edited source.
    assert set(entry["G_static_kwargs"]) == {"num_channels", "resolution", "label_size"}


def test_edited_op_fixture_records_the_line_the_converter_must_name() -> None:
    entry = MANIFEST["v4_edited_op"]
    refusal = entry["expected_refusal"]
    _, _, Gs = read_official_pickle(DATA / entry["pickle"])
    lines = Gs.build_module_src.splitlines()
    op = entry["source_edits"]["ops"][0]
    assert op["new"] in lines[refusal["line"] - 1]
    fn = next(n for n in ast.parse(Gs.build_module_src).body
              if isinstance(n, ast.FunctionDef) and n.name == refusal["function"])
    assert fn.lineno <= refusal["line"] <= fn.end_lineno
    assert "golden" not in entry


@pytest.mark.parametrize("name", V4)
def test_no_nvidia_source_text_in_the_fixture(name: str) -> None:
    data = (DATA / MANIFEST[name]["pickle"]).read_bytes()
    # Lines every official networks_stylegan.py has and the twin has not.
    for marker in (b"Copyright (c) 2019, NVIDIA", b"def _blur2d(", b"lerp_clip"):
        assert marker not in data


@pytest.mark.parametrize("name", WITH_GOLDEN)
def test_golden_has_the_keys_and_shapes_the_conversion_tests_read(name: str) -> None:
    entry = MANIFEST[name]
    g = np.load(DATA / entry["golden"])
    n, res = len(g["z"]), entry["G_static_kwargs"]["resolution"]
    ch = entry["G_static_kwargs"]["num_channels"]
    suffixes = [""] if entry["label_size"] == 0 else [f"_label{k}" for k in range(entry["label_size"])] + ["_mix"]
    kinds = ["img_psi1", "img_trunc"] + (["img_default"] if "truncation_defaults" in entry else [])
    for s in suffixes:
        assert g["w" + s].shape[0] == n and g["w" + s].ndim == 3
        for kind in kinds:
            assert g[kind + s].shape == (n, ch, res, res) and g[kind + s].dtype == np.float32
            u8 = g[f"{kind}_u8{s}"]
            assert u8.shape == (n, res, res, ch) and u8.dtype == np.uint8
    assert float(g["trunc_psi"]) == pytest.approx(0.7) and int(g["trunc_cutoff"]) == 8
    assert g["d_scores"].shape == (len(g["d_images_u8"]), 1)


def test_conditional_golden_differs_by_label_and_mixture_rows_sum_to_one() -> None:
    g = np.load(DATA / MANIFEST["v4_cond"]["golden"])
    imgs = [g[f"img_psi1_label{k}"] for k in range(int(g["label_size"]))]
    assert all(not np.allclose(imgs[0], other, atol=1e-2) for other in imgs[1:])
    np.testing.assert_allclose(g["c_mix"].sum(axis=1), 1.0, rtol=1e-6)
    assert (g["c_mix"] > 0).all()
    # d_scores is the per-label score picked by each image's one-hot label.
    picked = g["d_scores_per_label"][np.arange(len(g["d_labels"])), g["d_labels"].argmax(axis=1)]
    np.testing.assert_array_equal(g["d_scores"][:, 0], picked)


def test_midgrowth_golden_is_an_upsampled_lower_resolution_image() -> None:
    # At lod 1.4 of a 32 px network the official graph's last step is a 2x nearest upsampling of
    # the blended 16 px / 8 px output, so every 2x2 block holds one value.
    g = np.load(DATA / MANIFEST["v4_midgrowth"]["golden"])
    for key in ("img_psi1", "img_trunc"):
        img = g[key]
        for dy in (0, 1):
            for dx in (0, 1):
                np.testing.assert_array_equal(img[..., dy::2, dx::2], img[..., ::2, ::2])
        assert not np.allclose(img[..., ::4, ::4], img[..., 2::4, ::4])  # but not 4x4: the 16 px part shows


def test_edited_defaults_golden_uses_the_files_own_truncation_defaults() -> None:
    entry = MANIFEST["v4_edited_defaults"]
    g = np.load(DATA / entry["golden"])
    assert float(g["default_trunc_psi"]) == entry["truncation_defaults"]["psi"] == 0.5
    assert int(g["default_trunc_cutoff"]) == entry["truncation_defaults"]["cutoff"] == 4
    assert g["w"].shape[1:] == (8, 10)  # 8 layers at 32 px, the edited dlatent_size
    assert g["z"].shape[1] == 12  # the edited latent_size
    assert not np.allclose(g["img_default"], g["img_trunc"], atol=1e-3)


def test_apply_edits_refuses_an_edit_that_does_not_hit_exactly_one_place(script: ModuleType) -> None:
    twin = (DATA / "twin_networks_stylegan.py").read_text(encoding="utf-8")
    with pytest.raises(script.EditError, match="style_mod"):
        script.apply_edits(twin, script.SourceEdits(ops=(("style_mod", "no such text", "x"),)), "twin")
    with pytest.raises(script.EditError, match="no_such_param"):
        script.apply_edits(twin, script.SourceEdits(defaults={"G_mapping": {"no_such_param": 1}}), "twin")
    with pytest.raises(script.EditError, match="no top-level function"):
        script.apply_edits(twin, script.SourceEdits(thresholds={"not_there": 8}), "twin")


def test_apply_edits_changes_only_the_named_default(script: ModuleType) -> None:
    twin = (DATA / "twin_networks_stylegan.py").read_text(encoding="utf-8")
    rng = np.random.default_rng()
    value = float(np.round(rng.uniform(0.02, 0.9), 3))
    out, _ = script.apply_edits(twin, script.SourceEdits(defaults={"G_mapping": {"mapping_lrmul": value}}), "twin")
    before, after = _defaults(ast.parse(twin), "G_mapping"), _defaults(ast.parse(out), "G_mapping")
    assert after.pop("mapping_lrmul") == value and before.pop("mapping_lrmul") == 0.01
    assert after == before
    assert len(out.splitlines()) == len(twin.splitlines())
