"""Class-conditional models in the command line, the figures, the video walk, the demo, calibration
and `stylegan info`: a tiny conditional model (3 named classes) exported once for this module."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from stylegan_edge.calibration.data import CalibrationSettings, balanced_classes, make_calibration_data
from stylegan_edge.calibration.fidelity import fidelity_labels
from stylegan_edge.cli.main import app
from stylegan_edge.runtime import Generator
from stylegan_edge.runtime.demo.app import apply_key
from stylegan_edge.runtime.video import Walk, walk_styles

from .conftest import TINY, randomized_generator

NAMES = ("round", "square", "long")
runner = CliRunner()


@pytest.fixture(scope="module")
def cond_G():
    return randomized_generator(dataclasses.replace(TINY, label_size=3, label_names=NAMES), seed=5)


@pytest.fixture(scope="module")
def cond_bundle(cond_G, tmp_path_factory) -> Path:
    from stylegan_edge.export.onnx_export import export_bundle

    return export_bundle(cond_G, tmp_path_factory.mktemp("cond") / "cond.sgbundle", source={"test": "conditional"})


@pytest.fixture(scope="module")
def cond_checkpoint(cond_G, tmp_path_factory) -> Path:
    from stylegan_edge.training.checkpoint import save_model

    path = tmp_path_factory.mktemp("condckpt") / "cond.safetensors"
    save_model(path, cond_G)
    return path


@pytest.fixture(scope="module")
def cond_gen(cond_bundle):
    with Generator(cond_bundle, backend="onnxruntime") as g:
        yield g


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def error_lines(result) -> list[str]:
    return [s for s in result.stderr.splitlines() if s.strip()]


# --- generate and the figures -------------------------------------------------------------------
def test_generate_class_by_index_matches_pytorch_and_by_name_is_the_same_class(cond_bundle, cond_checkpoint,
                                                                             tmp_path):
    args = ["--seeds", "3-4", "--psi", "0.7", "--noise", "const"]
    def run(model: Path, label: str, out: str):
        return runner.invoke(app, ["generate", str(model), *args, "--class", label, "--out", str(tmp_path / out)])

    r_idx, r_name = run(cond_bundle, "1", "i"), run(cond_bundle, "square", "n")
    r_ref, r_other = run(cond_checkpoint, "1", "t"), run(cond_bundle, "long", "o")
    for r in (r_idx, r_name, r_ref, r_other):
        assert r.exit_code == 0, r.output
    assert "class 1 square" in r_idx.stdout
    for seed in (3, 4):
        f = f"seed{seed:04d}.png"
        np.testing.assert_array_equal(png(tmp_path / "i" / f), png(tmp_path / "n" / f))
        # The bundle on onnxruntime against the checkpoint in PyTorch, both asked for class 1.
        assert np.abs(png(tmp_path / "i" / f) - png(tmp_path / "t" / f)).max() <= 1
        assert np.abs(png(tmp_path / "i" / f) - png(tmp_path / "o" / f)).mean() > 1.0


def test_generated_images_are_the_runtime_images_of_that_class(cond_bundle, cond_gen, tmp_path):
    r = runner.invoke(app, ["generate", str(cond_bundle), "--seeds", "7", "--class", "2", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    c = np.zeros((1, 3), np.float32)
    c[0, 2] = 1.0
    ws = cond_gen.truncate(cond_gen.broadcast(cond_gen.map(cond_gen.z_from_seeds([7]), c)))
    np.testing.assert_array_equal(png(tmp_path / "seed0007.png"), cond_gen.synthesize(ws)[0])


@pytest.mark.parametrize("command", [
    ["generate", "--seeds", "0"], ["mix", "--rows", "1", "--cols", "2"], ["noise", "--draws", "2"],
    ["truncation", "--seeds", "0", "--psi", "0,1"], ["edit", "--direction", "up"], ["video", "--seeds", "0,1"],
])
def test_a_conditional_model_without_class_is_one_line_listing_the_classes(cond_bundle, command, tmp_path):
    from stylegan_edge.runtime.directions import save_directions

    extra = []
    if command[0] == "edit":
        extra = ["--directions", str(save_directions(tmp_path / "d.npz", {"up": np.ones(TINY.w_dim)}))]
    out = tmp_path / ("x.avi" if command[0] == "video" else "x.png")
    r = runner.invoke(app, [command[0], str(cond_bundle), *command[1:], *extra, "--out", str(out)])
    lines = error_lines(r)
    assert r.exit_code == 1 and len(lines) == 1, r.output
    assert "class-conditional" in lines[0] and "--class" in lines[0]
    assert all(name in lines[0] for name in NAMES)
    assert not out.exists()


@pytest.mark.parametrize("value, words", [("3", ["outside 0..2"]), ("-1", ["outside"]), ("oval", ["'oval'"])])
def test_a_bad_class_is_one_line_naming_it_and_the_classes(cond_bundle, value, words, tmp_path):
    r = runner.invoke(app, ["generate", str(cond_bundle), "--seeds", "0", "--class", value, "--out", str(tmp_path)])
    lines = error_lines(r)
    assert r.exit_code == 1 and len(lines) == 1, r.output
    assert all(w in lines[0] for w in words) and "square" in lines[0]
    assert not list(tmp_path.glob("*.png"))


def test_a_class_for_an_unconditional_model_is_one_line(tiny_bundle, tmp_path):
    r = runner.invoke(app, ["generate", str(tiny_bundle), "--seeds", "0", "--class", "0", "--out", str(tmp_path)])
    lines = error_lines(r)
    assert r.exit_code == 1 and len(lines) == 1 and "not class-conditional" in lines[0], r.output


def test_figures_follow_the_class(cond_bundle, cond_gen, tmp_path):
    def run(*args: str) -> np.ndarray:
        out = tmp_path / f"{len(list(tmp_path.iterdir()))}.png"
        r = runner.invoke(app, [*args[:1], str(cond_bundle), *args[1:], "--out", str(out)])
        assert r.exit_code == 0, r.output
        return png(out)

    # psi 1 columns of the truncation sweep are the class's untruncated images, one per seed (row).
    sweep = run("truncation", "--seeds", "0-1", "--psi", "1", "--class", "round")
    res = cond_gen.resolution
    images = cond_gen.generate(seeds=[0, 1], psi=1.0, label=0)
    for row in range(2):
        top = sweep.shape[0] // 2 * row
        tile = sweep[top : top + sweep.shape[0] // 2][:res + 4]
        found = any(np.array_equal(tile[y : y + res, x : x + res], images[row])
                    for y in range(0, 5) for x in range(0, 5))
        assert found, f"row {row} of the sweep is not seed {row} of class round"
    for cmd in (["mix", "--rows", "1", "--cols", "2-3"], ["noise", "--seed", "2", "--draws", "2"]):
        a, b = run(*cmd, "--class", "0"), run(*cmd, "--class", "2")
        assert a.shape == b.shape and np.abs(a - b).mean() > 1.0


def test_edit_maps_the_seeds_with_the_class(cond_bundle, cond_gen, tmp_path):
    from stylegan_edge.runtime.directions import save_directions

    d = save_directions(tmp_path / "d.npz", {"up": np.random.default_rng(1).standard_normal(TINY.w_dim)})
    out = tmp_path / "edit.png"
    r = runner.invoke(app, ["edit", str(cond_bundle), "--direction", "up", "--directions", str(d), "--seed", "4",
                            "--strengths", "0", "--class", "long", "--out", str(out)])
    assert r.exit_code == 0, r.output
    expected = cond_gen.generate(seeds=[4], psi=1.0, label=2)[0]
    res = cond_gen.resolution
    strip = png(out)
    assert any(np.array_equal(strip[y : y + res, x : x + res], expected) for y in range(5) for x in range(5))


def test_the_video_walks_through_the_classs_keyframes(cond_gen, tmp_path):
    walk = Walk((0, 5), seconds_per_seed=1.0, fps=3.0, psi=1.0, label="square")
    ws = walk_styles(cond_gen, walk)
    keys = cond_gen.styles(seeds=[0, 5], psi=1.0, label=1)
    np.testing.assert_allclose(ws[[0, 3]], keys, rtol=1e-5, atol=1e-6)
    other = walk_styles(cond_gen, dataclasses.replace(walk, label=0))
    assert np.abs(other - ws).max() > 1e-3


def test_the_video_command_takes_a_class(cond_bundle, tmp_path):
    out = tmp_path / "walk.avi"
    r = runner.invoke(app, ["video", str(cond_bundle), "--seeds", "0,1", "--seconds-per-seed", "1", "--fps", "2",
                            "--class", "square", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.is_file() and out.stat().st_size > 0


# --- stylegan info ------------------------------------------------------------------------------
def test_info_shows_the_classes_of_a_bundle_and_of_a_checkpoint(cond_bundle, cond_checkpoint):
    for target in (cond_bundle, cond_checkpoint):
        r = runner.invoke(app, ["info", str(target)])
        assert r.exit_code == 0, r.output
        line = next(s for s in r.stdout.splitlines() if "class" in s)
        assert "3 classes" in line and all(n in line for n in NAMES)
        data = json.loads(runner.invoke(app, ["info", str(target), "--json"]).stdout)
        assert data["label_size"] == 3 and data["label_names"] == list(NAMES)


def test_info_of_an_unconditional_model_mentions_no_classes(tiny_bundle, tiny_checkpoint):
    for target in (tiny_bundle, tiny_checkpoint):
        r = runner.invoke(app, ["info", str(target)])
        assert r.exit_code == 0 and "class" not in r.stdout, r.output
        assert "label_size" not in json.loads(runner.invoke(app, ["info", str(target), "--json"]).stdout)


# --- calibration --------------------------------------------------------------------------------
@pytest.mark.parametrize("n, k", [(31, 3), (64, 3), (5, 7), (12, 4)])
def test_balanced_classes_give_every_class_an_equal_share_in_each_half(n, k):
    classes = balanced_classes(np.random.default_rng(n), n, k)
    for half in (classes[:n], classes[n:]):
        counts = np.bincount(half, minlength=k)
        assert counts.max() - counts.min() <= 1 and counts.sum() == n and half.min() >= 0 and half.max() < k
    assert balanced_classes(np.random.default_rng(0), n, 0) is None


def test_the_extra_samples_go_to_random_classes_not_always_the_first():
    firsts = {tuple(np.bincount(balanced_classes(np.random.default_rng(s), 4, 3)[:4], minlength=3)) for s in range(20)}
    assert len(firsts) > 1


def test_conditional_calibration_maps_each_sample_with_its_drawn_class(cond_bundle, cond_gen):
    n = 31
    data = make_calibration_data(cond_bundle, CalibrationSettings(samples=n, psi=1.0, mixing=0.0, seed=5))
    counts = data.settings["label_counts"]
    assert sum(counts) == n and max(counts) - min(counts) <= 1 and len(counts) == 3
    classes = balanced_classes(np.random.default_rng([5, 1]), n, 3)
    z = np.random.default_rng(5).standard_normal((2 * n, TINY.z_dim), dtype=np.float32)
    expected = cond_gen.map(z[:n], np.eye(3, dtype=np.float32)[classes[:n]])
    np.testing.assert_allclose(data.ws[:, 0], expected, rtol=1e-5, atol=1e-6)
    # Not one class for all: the same z under class 0 gives other styles for the other classes' samples.
    as_class0 = cond_gen.map(z[:n], np.eye(3, dtype=np.float32)[np.zeros(n, int)])
    assert np.abs(as_class0 - data.ws[:, 0]).max(axis=1)[classes[:n] != 0].min() > 1e-4


def test_conditional_calibration_is_deterministic_per_seed(cond_bundle):
    a = make_calibration_data(cond_bundle, CalibrationSettings(samples=6, seed=2))
    b = make_calibration_data(cond_bundle, CalibrationSettings(samples=6, seed=2))
    c = make_calibration_data(cond_bundle, CalibrationSettings(samples=6, seed=3))
    np.testing.assert_array_equal(a.ws, b.ws)
    assert np.abs(a.ws - c.ws).max() > 1e-3


def test_unconditional_calibration_draws_no_labels(tiny_bundle):
    data = make_calibration_data(tiny_bundle, CalibrationSettings(samples=4))
    assert "label_counts" not in data.settings


def test_fidelity_takes_the_classes_in_turn():
    assert fidelity_labels(7, 3) == [0, 1, 2, 0, 1, 2, 0]
    assert fidelity_labels(7, 0) is None


# --- the demo -----------------------------------------------------------------------------------
def test_the_class_key_cycles_the_classes_and_says_which():
    from stylegan_edge.runtime.demo.app import Settings

    s = Settings(psi=0.7, noise="const", label=0)
    seen = []
    for _ in range(4):
        s, action, message = apply_key(ord("c"), s, classes=NAMES)
        seen.append(s.label)
        assert action is None and NAMES[s.label] in message
    assert seen == [1, 2, 0, 1]
    s2, _, message = apply_key(ord("c"), Settings(psi=0.7, noise="const"))
    assert s2.label is None and "no classes" in message


class KeyWindow:
    """A window whose user presses the given keys, one per frame, and that keeps each frame."""

    def __init__(self, keys: str) -> None:
        self.keys = [ord(k) if k != "." else -1 for k in keys]
        self.frames: list[np.ndarray] = []

    def show(self, frame: np.ndarray) -> int:
        self.frames.append(frame.copy())
        return self.keys.pop(0) if self.keys else -1

    def close(self) -> None:
        pass


def test_the_demo_class_key_changes_the_generated_face(cond_gen):
    pytest.importorskip("cv2", reason="the demo needs opencv-python-headless 4.x (pip install '.[demo]')")
    from stylegan_edge.runtime.demo import DemoApp, DemoConfig, SyntheticSource

    config = DemoConfig(mode="pip", realtime=False, max_frames=3, label="square", pip_size=64)
    demo = DemoApp(cond_gen, SyntheticSource((160, 120)), config, window=KeyWindow("c.."))
    assert demo.settings.label == 1
    before = demo.styles_for(0.4, (0,))
    faces_before = cond_gen.synthesize(before)
    demo.run()
    assert demo.settings.label == 2
    after = demo.styles_for(0.4, (0,))
    assert np.abs(cond_gen.synthesize(after).astype(int) - faces_before.astype(int)).mean() > 1.0
    # At a keyframe the walk is that seed of the new class, truncated as the demo truncates.
    np.testing.assert_allclose(demo.styles_for(0.0, (0,)), cond_gen.styles(seeds=[0], label=2), rtol=1e-5,
                               atol=1e-5)


def test_the_demo_starts_at_the_first_class_and_refuses_a_class_it_lacks(cond_gen, tiny_bundle):
    pytest.importorskip("cv2", reason="the demo needs opencv-python-headless 4.x (pip install '.[demo]')")
    from stylegan_edge.runtime.demo import DemoApp, DemoConfig, DemoError, SyntheticSource

    assert DemoApp(cond_gen, SyntheticSource((160, 120)), DemoConfig()).settings.label == 0
    with pytest.raises(DemoError, match="not a class"):
        DemoApp(cond_gen, SyntheticSource((160, 120)), DemoConfig(label="oval"))
    with Generator(tiny_bundle, backend="onnxruntime") as g, pytest.raises(DemoError, match="not class-conditional"):
        DemoApp(g, SyntheticSource((160, 120)), DemoConfig(label=0))


def test_the_demo_command_takes_a_class(cond_bundle, tmp_path):
    pytest.importorskip("cv2", reason="the demo needs opencv-python-headless 4.x (pip install '.[demo]')")
    base = ["demo", str(cond_bundle), "--source", "synthetic", "--headless", "--max-frames", "3",
            "--camera-size", "160x120", "--size", "32", "--no-realtime"]
    ok = runner.invoke(app, [*base, "--class", "long", "--out", str(tmp_path / "a.avi")])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, [*base, "--class", "9", "--out", str(tmp_path / "b.avi")])
    lines = error_lines(bad)
    assert bad.exit_code == 1 and len(lines) == 1 and "not a class" in lines[0], bad.output
