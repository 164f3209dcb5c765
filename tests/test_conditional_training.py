"""Class-conditional training (issue 15): labelled datasets, procedural classes, --cond runs that
save and resume exactly, and the per-class SWD that shows whether the classes were learned."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from stylegan_edge.training import procedural as P
from stylegan_edge.training.checkpoint import load_generator, read_checkpoint
from stylegan_edge.training.config import ConfigError, ModelConfig
from stylegan_edge.training.data import DatasetError, open_dataset
from stylegan_edge.training.loop import TrainConfig, Trainer, train
from stylegan_edge.training.loss import d_loss, r1_penalty
from stylegan_edge.training.metrics.conditional import ClassSWD, class_swd, measure_generator
from stylegan_edge.training.metrics.swd import SWDConfig, SWDInputError, SWDReference
from stylegan_edge.training.networks import Discriminator

MICRO = ModelConfig(resolution=16, z_dim=8, w_dim=8, fmap_base=32, fmap_max=8, mapping_layers=2, mapping_width=8)
SMALL_SWD = SWDConfig(nhoods_per_image=16, dirs_per_repeat=32, dir_repeats=2)


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)


def _labelled_folder(root: Path, labels: dict[str, int], extra: dict | None = None) -> Path:
    for i, name in enumerate(labels):
        _png(root / name, i)
    doc = {"labels": [[name, cls] for name, cls in labels.items()], **(extra or {})}
    (root / "dataset.json").write_text(json.dumps(doc))
    return root


# --- labelled datasets ------------------------------------------------------------------

def test_dataset_json_labels_items_as_the_official_tool_writes_them(tmp_path):
    labels = {"00000/img00000000.png": 2, "00000/img00000001.png": 0, "00000/img00000002.png": 5}
    ds = open_dataset(str(_labelled_folder(tmp_path / "d", labels)), 8, xflip=True)
    assert ds.has_labels and ds.label_size == 6 and ds.label_names == ()  # largest index + 1, as official
    assert [ds.label(i) for i in range(3)] == [2, 0, 5]
    assert ds.label(4) == 0  # a mirrored copy keeps its class
    assert ds.labels([5, 0]).tolist() == [5, 2]
    assert ds.all_labels().tolist() == [2, 0, 5, 2, 0, 5]


def test_dataset_json_in_a_zip_and_its_optional_names(tmp_path):
    labels = {"a.png": 1, "b.png": 0}
    folder = _labelled_folder(tmp_path / "d", labels, {"label_names": ["cat", "dog", "fox"]})
    archive = tmp_path / "d.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f.name)
    ds = open_dataset(str(archive), 8)
    assert ds.label_size == 3 and ds.label_names == ("cat", "dog", "fox")
    assert [ds.label(0), ds.label(1)] == [1, 0]


def test_null_labels_mean_an_unlabelled_dataset(tmp_path):
    for i in range(2):
        _png(tmp_path / "d" / f"{i:05d}" / "x.png", i)
    (tmp_path / "d" / "dataset.json").write_text('{"labels": null}')
    ds = open_dataset(str(tmp_path / "d"), 8)
    # Two first-level folders would be classes, but the dataset_tool's file says there are none.
    assert not ds.has_labels and ds.label_size == 0
    with pytest.raises(DatasetError, match="no class labels"):
        ds.label(0)


def test_one_folder_per_class_sorted_by_name(tmp_path):
    for cls, n in (("zebra", 2), ("ant", 1), ("moth", 2)):
        for i in range(n):
            _png(tmp_path / "d" / cls / f"{i}.png", i)
    ds = open_dataset(str(tmp_path / "d"), 8)
    assert ds.label_names == ("ant", "moth", "zebra") and ds.label_size == 3
    assert ds.labels(range(5)).tolist() == [0, 1, 1, 2, 2]  # names sorted: ant/0, moth/0, moth/1, zebra/...


def test_images_at_the_root_mean_no_folder_classes(tmp_path):
    _png(tmp_path / "d" / "a" / "0.png", 0)
    _png(tmp_path / "d" / "b" / "0.png", 1)
    _png(tmp_path / "d" / "loose.png", 2)
    assert not open_dataset(str(tmp_path / "d"), 8).has_labels


@pytest.mark.parametrize(("labels", "doc", "match"), [
    ({"a.png": 0, "b.png": 1}, {"labels": [["a.png", 0]]}, r"no label for b\.png"),
    ({"a.png": 0}, {"labels": [["a.png", 0], ["gone.png", 1]]}, r"labels gone\.png, which is not an image"),
    ({"a.png": 0}, {"labels": [["a.png", -1]]}, r"a\.png: class index -1 out of range"),
    ({"a.png": 0}, {"labels": [["a.png", 1.5]]}, r"a\.png: class index 1\.5 out of range"),
    ({"a.png": 0}, {"labels": [["a.png", 3]], "label_names": ["x", "y"]},
     r"a\.png: class index 3 out of range \[0, 2\)"),
    ({"a.png": 0}, {"labels": [["a.png", [0.5, 0.5]]]}, r"a\.png: label vectors are not supported"),
    ({"a.png": 0}, {"labels": [["a.png"]]}, r"each label must be a \[file name, class index\] pair"),
    ({"a.png": 0}, {"labels": {"a.png": 0}}, r'"labels" must be a list'),
    ({"a.png": 0}, {"classes": []}, r'expected an object with a "labels" list'),
])
def test_bad_labels_are_one_line_naming_the_file(tmp_path, labels, doc, match):
    root = _labelled_folder(tmp_path / "d", labels)
    (root / "dataset.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=match) as info:
        open_dataset(str(root), 8)
    assert "\n" not in str(info.value) and "dataset.json" in str(info.value)


def test_dataset_json_that_is_not_json(tmp_path):
    root = _labelled_folder(tmp_path / "d", {"a.png": 0})
    (root / "dataset.json").write_text("{labels: ")
    with pytest.raises(DatasetError, match="dataset.json: not valid JSON"):
        open_dataset(str(root), 8)


# --- procedural classes -----------------------------------------------------------------

def test_procedural_classes_are_deterministic_and_labelled_in_turn():
    ds = open_dataset("synthetic:faces-classes:8", 16, seed=3)
    assert ds.label_names == P.CLASS_NAMES and ds.label_size == len(P.HAIR_CLASSES) >= 3
    assert ds.labels(range(8)).tolist() == [i % ds.label_size for i in range(8)]
    a = ds.images([5])[0]
    np.testing.assert_array_equal(a, P.render_class_faces([5], 16, seed=3)[0])
    np.testing.assert_array_equal(a, open_dataset("synthetic:faces-classes:8", 16, seed=3)[5].permute(1, 2, 0).numpy())


def test_a_class_changes_only_the_hair():
    base, cls = P.face_params(11, seed=1), P.class_face_params(11, seed=1, label=2)
    changed = {f for f in P._FIELDS if getattr(base, f) != getattr(cls, f)}
    assert changed <= {"hair_color", "hair_length", "hair_volume", "hair_top"} and "hair_color" in changed


def test_procedural_classes_differ_where_the_hair_is():
    # The same faces in each class: the mean hair colour (from the part map) differs between
    # classes by far more than it varies inside one.
    hair = P.LABELS.index("hair")
    means = []
    for label in range(len(P.HAIR_CLASSES)):
        params = [P.class_face_params(i, seed=0, label=label) for i in range(12)]
        imgs = P.render_params(params, 32).astype(float)
        parts = P.render_labels(params, 32)
        means.append(np.stack([img[part == hair].mean(0) for img, part in zip(imgs, parts, strict=True)]))
    means = np.stack(means)  # [classes, faces, 3]
    centre = means.mean(1)
    spread = np.linalg.norm(means - centre[:, None], axis=2).max()
    gaps = [np.linalg.norm(centre[i] - centre[j]) for i in range(len(centre)) for j in range(i)]
    assert min(gaps) > 2 * spread


def test_class_cache_matches_plain_render(tmp_path):
    cached = open_dataset("synthetic:faces-classes:4", 16, seed=2, cache_dir=tmp_path)
    assert list(tmp_path.glob("faces-classes-*.npy"))
    plain = open_dataset("synthetic:faces-classes:4", 16, seed=2)
    np.testing.assert_array_equal(cached.images(range(4)), plain.images(range(4)))


# --- training ---------------------------------------------------------------------------

def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(data="synthetic:faces-classes:64", out=str(tmp_path), kimg=0.024, batch=4, workers=0,
                metrics_kimg=0, snapshot_kimg=1000, grid_size=4, r1_interval=2, device="cpu", cond=True)
    base.update(kw)
    return TrainConfig(**base)


def test_conditional_losses_score_every_image_with_its_label():
    torch.manual_seed(0)
    cfg = ModelConfig(**{**MICRO.__dict__, "label_size": 3})
    D = Discriminator(cfg)
    real, fake = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    c_real = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 1]), 3).float()
    c_fake = torch.nn.functional.one_hot(torch.tensor([2, 2, 0, 1]), 3).float()
    expected = (torch.nn.functional.softplus(D(fake, c_fake)).mean()
                + torch.nn.functional.softplus(-D(real, c_real)).mean())
    assert torch.isclose(d_loss(D, real, fake, c_real, c_fake), expected)
    assert not torch.isclose(d_loss(D, real, fake, c_real, c_real), expected)
    x = real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x, c_real).sum(), x)
    assert torch.isclose(r1_penalty(D, real, c_real), grad.square().sum((1, 2, 3)).mean(), rtol=1e-4)


def test_cond_run_takes_the_classes_from_the_dataset_and_saves_them(tmp_path):
    events = []
    model = train(_cfg(tmp_path, metrics_kimg=0.024, metric_images=16), MICRO, callback=events.append)
    G = load_generator(model)
    assert G.cfg.label_size == len(P.CLASS_NAMES) and G.cfg.label_names == P.CLASS_NAMES
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["swd_class"]) and np.isfinite(r["swd_class_control"]) for r in rows)
    # Different labels, same z: a conditional generator's outputs differ.
    z = torch.randn(1, MICRO.z_dim).repeat(2, 1)
    c = torch.eye(G.cfg.label_size)[:2]
    img = G(z, noise_mode="const", c=c)
    assert (img[0] - img[1]).abs().max() > 1e-4


def test_cond_run_resumes_bit_identically(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(_cfg(straight), MICRO)
    train(_cfg(split, kimg=0.012), MICRO)
    train(_cfg(split), resume=True)
    a, _ = read_checkpoint(straight / "checkpoint.safetensors")
    b, meta = read_checkpoint(split / "checkpoint.safetensors")
    assert json.loads(meta["config"])["label_size"] == len(P.CLASS_NAMES)
    a = {k: v for k, v in a.items() if not k.startswith("rng.")}
    assert a.keys() == {k for k in b if not k.startswith("rng.")}
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_fake_labels_follow_the_dataset_distribution(tmp_path):
    cfg = ModelConfig(**{**MICRO.__dict__, "label_size": 3})
    trainer = Trainer(_cfg(tmp_path), cfg)
    trainer.set_label_distribution(np.array([0] * 90 + [2] * 10))
    drawn = trainer.random_labels(2000).argmax(1)
    counts = torch.bincount(drawn, minlength=3).tolist()
    assert counts[1] == 0 and 1700 < counts[0] < 1900 and 100 < counts[2] < 300


def test_a_labelled_dataset_without_cond_trains_unconditionally_and_says_so(tmp_path):
    events = []
    model = train(_cfg(tmp_path, cond=False, kimg=0.008), MICRO, callback=events.append)
    assert load_generator(model).cfg.label_size == 0
    notes = [e.message for e in events if e.kind == "note"]
    assert len(notes) == 1 and "training unconditionally" in notes[0] and "4 classes" in notes[0]


def test_cond_on_an_unlabelled_dataset_is_one_line(tmp_path):
    with pytest.raises(DatasetError, match="--cond: synthetic:faces:64 has no class labels"):
        train(_cfg(tmp_path / "run", data="synthetic:faces:64"), MICRO)
    assert not (tmp_path / "run").exists()


def test_resume_on_a_dataset_with_other_classes_is_one_line(tmp_path):
    train(_cfg(tmp_path, kimg=0.008), MICRO)
    for i in range(4):
        _png(tmp_path / "other" / ("a" if i % 2 else "b") / f"{i}.png", i)
    with pytest.raises(DatasetError, match="has 2 classes, but the run was trained with 4 classes"):
        train(_cfg(tmp_path, data=str(tmp_path / "other")), resume=True)


def test_a_conditional_model_without_cond_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="label_size=3 needs cond=True"):
        Trainer(_cfg(tmp_path, cond=False), ModelConfig(**{**MICRO.__dict__, "label_size": 3}))


def test_cli_cond_flag_trains_a_conditional_model(tmp_path):
    from stylegan_edge.cli.main import app

    out = tmp_path / "run"
    args = ["train", "--data", "synthetic:faces-classes:32", "--out", str(out), "--kimg", "0.008", "--batch", "4",
            "--workers", "0", "--metrics-kimg", "0", "--device", "cpu", "--cond"]
    preset = ["--preset", "tiny"]
    result = CliRunner().invoke(app, args + preset)
    assert result.exit_code == 0, result.output
    assert load_generator(out / "model.safetensors").cfg.label_size == len(P.CLASS_NAMES)
    bad = CliRunner().invoke(app, ["train", "--data", "synthetic:faces:32", "--out", str(tmp_path / "x"), "--cond",
                                   "--kimg", "0.008", "--device", "cpu", *preset])
    assert bad.exit_code == 1 and bad.output.strip().startswith("error: --cond:")
    assert len(bad.output.strip().splitlines()) == 1


# --- the per-class metric ---------------------------------------------------------------

@pytest.fixture(scope="module")
def class_faces():
    ds = open_dataset("synthetic:faces-classes:192", 16, seed=5)
    idx = np.random.default_rng(0).permutation(192)
    return ds.images(idx), ds.labels(idx)


def test_real_classes_against_themselves_beat_the_shuffled_control(class_faces):
    images, labels = class_faces
    real, fake = slice(0, 96), slice(96, 192)  # two disjoint draws of the same classes
    r = class_swd(images[real], labels[real], images[fake], labels[fake], 4, seed=1, config=SMALL_SWD)
    assert r.matched < 0.7 * r.control and r.accuracy == 1.0
    shuffled = np.random.default_rng(2).permutation(labels[fake])
    s = class_swd(images[real], labels[real], images[fake], shuffled, 4, seed=1, config=SMALL_SWD)
    assert s.matched > 0.8 * s.control  # labels that carry nothing: matched is no better than control
    assert s.matched > r.matched


def test_class_matrix_equals_the_swd_of_each_pair(class_faces):
    images, labels = class_faces
    r = ClassSWD(images[:64], labels[:64], 4, seed=3, config=SMALL_SWD).compare(images[64:128], labels[64:128])
    for i, j in ((0, 0), (1, 3), (2, 1)):
        ref = SWDReference(images[:64][labels[:64] == i], seed=3, config=SMALL_SWD, max_cache_bytes=0)
        want = ref.distance(images[64:128][labels[64:128] == j])["swd_avg"]
        assert r.matrix[i, j] == pytest.approx(want, rel=1e-5)


def test_classes_missing_on_one_side_are_left_out(class_faces):
    images, labels = class_faces
    keep = labels[:64] != 3
    r = class_swd(images[:64][keep], labels[:64][keep], images[64:128], labels[64:128], 4, config=SMALL_SWD)
    assert np.isnan(r.matrix[3]).all() and r.classes.tolist() == [0, 1, 2]
    assert np.isfinite(r.matched) and json.dumps(r.to_json())
    with pytest.raises(SWDInputError, match=r"real_labels must be in \[0, 4\)"):
        class_swd(images[:4], np.array([0, 1, 2, 4]), images[:4], labels[:4], 4)


def test_measure_generator_checks_the_dataset_and_runs(tmp_path):
    train(_cfg(tmp_path, kimg=0.008), MICRO)
    G = load_generator(tmp_path / "model.safetensors")
    r = measure_generator(G, open_dataset("synthetic:faces-classes:64", 16), num_images=32, seed=0)
    assert r.real_counts.sum() == 32 and np.isfinite(r.matched)
    with pytest.raises(SWDInputError, match="has no class labels"):
        measure_generator(G, open_dataset("synthetic:faces:64", 16), num_images=8)
