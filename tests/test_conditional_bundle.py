"""Class-conditional bundles end to end: export (mapping.onnx takes labels c beside z, meta.json
records the classes), the runtime Generator's label arguments, the PyTorch and TensorRT backends'
mapping feeds, and the TensorRT build profile of c. A tiny conditional model (the tiny preset with
three named classes), exported once per module.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from stylegan_edge.runtime import ArgumentError, BundleError, Generator
from stylegan_edge.runtime.bundle import LABEL_INPUT, LATENT_INPUT, Bundle, BundleMeta
from stylegan_edge.runtime.images import to_uint8

from .conftest import TINY, randomized_generator

NAMES = ("round", "long", "square")
COND = dataclasses.replace(TINY, label_size=3, label_names=NAMES)


@pytest.fixture(scope="module")
def cond_G():
    G = randomized_generator(COND, seed=3)
    with torch.no_grad():  # an embedding far from the initial N(0, 1) draw, so a wrong fold shows
        G.mapping.label_embed.mul_(2.0).add_(0.5)
    return G


@pytest.fixture(scope="module")
def cond_bundle(cond_G, tmp_path_factory) -> Path:
    from stylegan_edge.export.onnx_export import export_bundle

    return export_bundle(cond_G, tmp_path_factory.mktemp("cond") / "cond.sgbundle")


@pytest.fixture(scope="module")
def g(cond_bundle):
    with Generator(cond_bundle, backend="onnxruntime", device="cpu") as gen:
        yield gen


def _one_hot(classes, k: int = 3) -> np.ndarray:
    return np.eye(k, dtype=np.float32)[list(classes)]


def _mixtures(rng: np.random.Generator, batch: int, k: int = 3) -> np.ndarray:
    m = rng.random((batch, k)).astype(np.float32)
    return m / m.sum(axis=1, keepdims=True)


def _torch_images(G, z: np.ndarray, c: np.ndarray, psi: float, cutoff: int | None) -> np.ndarray:
    with torch.no_grad():
        img = G(torch.from_numpy(z), psi=psi, cutoff=cutoff, noise_mode="const", c=torch.from_numpy(c))
    return to_uint8(img.numpy())


# --- export ----------------------------------------------------------------------------------------------
def test_meta_records_the_classes_and_mapping_takes_c(cond_bundle):
    meta = json.loads((cond_bundle / "meta.json").read_text())
    assert meta["label_size"] == 3 and meta["label_names"] == list(NAMES)
    bm = Bundle(cond_bundle).meta
    assert bm.label_size == 3 and bm.label_names == NAMES and bm.mapping_inputs == [LATENT_INPUT, LABEL_INPUT]
    model = onnx.load(str(cond_bundle / "mapping.onnx"))
    shapes = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert shapes == {"z": ["batch", COND.z_dim], "c": ["batch", 3]}
    # The embedding is one plain matrix product by the label input, then the concatenation.
    consumers = [n.op_type for n in model.graph.node if LABEL_INPUT in n.input]
    assert consumers == ["MatMul"] and "Concat" in meta["operators"]["mapping.onnx"]


def test_unconditional_meta_and_mapping_have_no_labels(tiny_bundle):
    meta = json.loads((tiny_bundle / "meta.json").read_text())
    assert "label_size" not in meta and "label_names" not in meta
    bm = Bundle(tiny_bundle).meta
    assert bm.label_size == 0 and bm.label_names == () and bm.mapping_inputs == [LATENT_INPUT]
    model = onnx.load(str(tiny_bundle / "mapping.onnx"))
    assert [i.name for i in model.graph.input] == ["z"]


def test_onnxruntime_mapping_equals_pytorch_for_one_hot_and_mixed_labels(cond_bundle, cond_G):
    from stylegan_edge.runtime.backends.onnxruntime import open_session

    rng = np.random.default_rng()
    z = rng.standard_normal((8, COND.z_dim)).astype(np.float32)
    c = np.concatenate([_one_hot(rng.integers(0, 3, 4)), _mixtures(rng, 4)])
    w = open_session(cond_bundle / "mapping.onnx").run(None, {"z": z, "c": c})[0]
    with torch.no_grad():
        ref = cond_G.mapping(torch.from_numpy(z), torch.from_numpy(c)).numpy()
    assert np.abs(w - ref).max() <= 1e-5 * max(1.0, float(np.abs(ref).max()))
    # The label matters: another class gives another w.
    w_other = open_session(cond_bundle / "mapping.onnx").run(None, {"z": z[:1], "c": _one_hot([(0)])})[0]
    w_same = open_session(cond_bundle / "mapping.onnx").run(None, {"z": z[:1], "c": _one_hot([1])})[0]
    assert np.abs(w_other - w_same).max() > 1e-3


def test_a_model_cannot_name_a_class_twice():
    from stylegan_edge.training.config import ConfigError

    with pytest.raises(ConfigError, match="'a' twice") as e:
        dataclasses.replace(TINY, label_size=2, label_names=("a", "a"))
    assert "\n" not in str(e.value)


def test_verify_bundle_runs_a_conditional_bundle(cond_bundle):
    from stylegan_edge.runtime.bundle import verify_bundle

    lines: list[str] = []
    verify_bundle(cond_bundle, log=lines.append)
    assert any("finite image" in line for line in lines)


# --- meta.json validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("edit, words", [
    ({"label_size": 0}, "'label_size' is 0"),
    ({"label_size": "3"}, "'label_size' must be an integer"),
    ({"label_size": True}, "'label_size' must be an integer"),
    ({"label_names": ["a", "b"]}, "list of label_size=3 names, got 2 entries"),
    ({"label_names": "abc"}, "list of label_size=3 names"),
    ({"label_names": ["a", "", "c"]}, "label_names[1] must be a name"),
    ({"label_names": ["a", 7, "c"]}, "label_names[1] must be a name"),
    ({"label_names": ["a", "b", "a"]}, "twice"),
])
def test_bad_label_fields_are_one_line(cond_bundle, edit, words):
    raw = json.loads((cond_bundle / "meta.json").read_text())
    raw.update(edit)
    with pytest.raises(BundleError) as e:
        BundleMeta.from_dict(raw, Path("m.json"))
    assert words in str(e.value) and "\n" not in str(e.value)


def test_label_names_without_label_size_is_refused_and_names_default_to_indices(cond_bundle):
    raw = json.loads((cond_bundle / "meta.json").read_text())
    names_only = {k: v for k, v in copy.deepcopy(raw).items() if k != "label_size"}
    with pytest.raises(BundleError, match="'label_names' without 'label_size'"):
        BundleMeta.from_dict(names_only, Path("m.json"))
    size_only = {k: v for k, v in raw.items() if k != "label_names"}
    assert BundleMeta.from_dict(size_only, Path("m.json")).label_names == ("0", "1", "2")


# --- the runtime Generator -----------------------------------------------------------------------------------
@pytest.mark.parametrize("label", [1, "long"])
def test_generate_with_a_label_equals_pytorch(g, cond_G, label):
    images = g.generate(seeds=[1, 2], psi=0.7, cutoff=4, label=label)
    ref = _torch_images(cond_G, g.z_from_seeds([1, 2]), _one_hot([1, 1]), 0.7, 4)
    assert images.shape == ref.shape
    assert np.abs(images.astype(int) - ref.astype(int)).max() <= 1


def test_labels_per_sample_equal_one_label_at_a_time(g, cond_G):
    both = g.generate(seeds=[5, 6], psi=1.0, labels=[0, "square"])
    assert np.array_equal(both[:1], g.generate(seeds=[5], psi=1.0, label=0))
    assert np.array_equal(both[1:], g.generate(seeds=[6], psi=1.0, label=2))
    ref = _torch_images(cond_G, g.z_from_seeds([5, 6]), _one_hot([0, 2]), 1.0, None)
    assert np.abs(both.astype(int) - ref.astype(int)).max() <= 1
    assert not np.array_equal(both[:1], g.generate(seeds=[5], psi=1.0, label=1))


def test_mixed_labels_through_map_and_generate_equal_pytorch(g, cond_G):
    rng = np.random.default_rng()
    z = rng.standard_normal((3, COND.z_dim)).astype(np.float32)
    c = _mixtures(rng, 3)
    with torch.no_grad():
        ref_w = cond_G.mapping(torch.from_numpy(z), torch.from_numpy(c)).numpy()
    assert np.abs(g.map(z, c) - ref_w).max() <= 1e-5 * max(1.0, float(np.abs(ref_w).max()))
    images = g.generate(z=z, psi=1.0, c=c)
    ref = _torch_images(cond_G, z, c, 1.0, None)
    assert np.abs(images.astype(int) - ref.astype(int)).max() <= 1
    # One row of c is the whole batch's label.
    assert np.array_equal(g.generate(z=z, psi=1.0, c=c[0]), g.generate(z=z, psi=1.0, c=np.repeat(c[:1], 3, 0)))


def test_labels_to_c_makes_one_hot_rows(g):
    assert np.array_equal(g.labels_to_c(2, label="square"), _one_hot([2, 2]))
    assert np.array_equal(g.labels_to_c(3, labels=[2, 0, "long"]), _one_hot([2, 0, 1]))
    assert g.label_size == 3 and g.label_names == NAMES


def test_the_torch_backend_feeds_labels_to_the_mapping(g, cond_G):
    from stylegan_edge.runtime.backends.torch import torch_generator

    with torch_generator(cond_G) as tg:
        assert tg.label_names == NAMES
        ref = tg.generate(seeds=[3, 4], psi=0.7, labels=[2, 1])
    images = g.generate(seeds=[3, 4], psi=0.7, labels=[2, 1])
    assert np.abs(images.astype(int) - ref.astype(int)).max() <= 1


@pytest.mark.parametrize("kwargs, words", [
    ({}, "class-conditional (3 classes: round, long, square)"),
    ({"label": 3}, "label 3 is outside 0..2"),
    ({"label": -1}, "label -1 is outside 0..2"),
    ({"label": "oval"}, "label 'oval' is not a class"),
    ({"label": 1.0}, "label must be a class index or name"),
    ({"label": True}, "label must be a class index or name"),
    ({"labels": [0]}, "labels has 1 entries for 2 samples"),
    ({"labels": "ab"}, "labels must be a list"),
    ({"labels": [0, 9]}, "labels[1] 9 is outside 0..2"),
    ({"c": np.ones((2, 4), np.float32)}, "c must be [2, 3]"),
    ({"c": np.ones((3, 3), np.float32)}, "c must be [2, 3]"),
    ({"c": np.full((2, 3), np.nan, np.float32)}, "c holds NaN"),
    ({"label": 0, "c": np.eye(3, dtype=np.float32)[:2]}, "give one of label=, labels= or c=, not label= and c="),
])
def test_bad_labels_are_one_line_errors(g, kwargs, words):
    with pytest.raises(ArgumentError) as e:
        g.generate(seeds=[1, 2], **kwargs)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_map_without_labels_names_the_classes(g):
    with pytest.raises(ArgumentError, match="3 classes: round, long, square") as e:
        g.map(g.z_from_seeds([0]))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kwargs", [{"label": 0}, {"labels": [0]}, {"c": np.ones((1, 3), np.float32)}])
def test_labels_for_an_unconditional_bundle_are_one_line_errors(tiny_bundle, kwargs):
    with Generator(tiny_bundle, backend="onnxruntime", device="cpu") as g:
        with pytest.raises(ArgumentError, match="not class-conditional") as e:
            g.generate(seeds=[1], **kwargs)
        assert "\n" not in str(e.value)
        assert g.labels_to_c(1) is None and g.generate(seeds=[1]).shape[0] == 1


# --- TensorRT ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("release", ["8.6.1", "10.3.0", "10.13.3.9", "11.4.0.106"])
def test_the_trt_plan_gives_c_a_profile_like_z(cond_bundle, release):
    from stylegan_edge.export.trt_plan import plan_build

    from .fake_tensorrt import make_fake_tensorrt

    plan = plan_build(make_fake_tensorrt(release), cond_bundle, "fp32", model="mapping", batch=(1, 2, 8))
    assert {p.input: (p.min, p.opt, p.max) for p in plan.profile} == {
        "z": ((1, COND.z_dim), (2, COND.z_dim), (8, COND.z_dim)), "c": ((1, 3), (2, 3), (8, 3))}


@pytest.mark.parametrize("release", ["8.6.1", "10.3.0", "10.13.3.9", "11.4.0.106"])
def test_every_parser_reads_the_conditional_mapping_as_onnx_means_it(cond_bundle, release):
    from .fake_tensorrt import check_onnx_model

    problems = check_onnx_model(onnx.load(str(cond_bundle / "mapping.onnx")), release)
    assert not problems, "; ".join(map(str, problems[:5]))


@pytest.mark.parametrize("release", ["8.6.1", "11.4.0.106"])
def test_the_tensorrt_mapping_engine_is_built_and_fed_with_c(cond_bundle, release, monkeypatch, tmp_path):
    import shutil

    from stylegan_edge.export.tensorrt_build import build_engine
    from stylegan_edge.export.trt_plan import plan_build
    from stylegan_edge.runtime.backends import open_backend
    from stylegan_edge.runtime.engine_meta import GpuInfo

    from .fake_tensorrt import install_fakes, reference_outputs

    bundle = Bundle(shutil.copytree(cond_bundle, tmp_path / "b.sgbundle"))
    trt, _cuda = install_fakes(monkeypatch, release)
    build_engine(trt, plan_build(trt, bundle, "fp32", model="mapping", batch=(1, 2, 4)), gpu=GpuInfo("Orin", "8.7"))
    rng = np.random.default_rng()
    z = rng.standard_normal((3, COND.z_dim)).astype(np.float32)
    c = _mixtures(rng, 3)
    with open_backend("tensorrt", bundle, "mapping", "fp32") as be:
        assert sorted(be.input_names) == ["c", "z"]
        g = Generator.from_backends(bundle.meta, be, be, {})
        w = g.map(z, c)
    # The fake engine's output depends on every input in order: c reached the engine as c.
    expected = reference_outputs({"z": z, "c": c}, {"w": (3, COND.w_dim)})["w"]
    assert np.allclose(w, expected, atol=1e-6)
