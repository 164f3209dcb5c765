"""Checkpoints: safetensors + JSON, validated on load, written atomically."""

from __future__ import annotations

import json
import os

import pytest
import torch

from stylegan_edge.training.checkpoint import (
    CheckpointError,
    load_generator,
    read_checkpoint,
    save_checkpoint,
    save_model,
)
from stylegan_edge.training.networks import Generator

from .conftest import TINY, randomized_generator


def test_a_saved_generator_loads_back_identical(tmp_path):
    G = randomized_generator(TINY, seed=3)
    save_model(tmp_path / "m.safetensors", G)
    G2 = load_generator(tmp_path / "m.safetensors")
    for (k, a), (_, b) in zip(G.state_dict().items(), G2.state_dict().items()):
        assert torch.equal(a, b), k
    z = torch.randn(2, TINY.z_dim)
    assert torch.equal(G(z, noise_mode="const"), G2(z, noise_mode="const"))


def test_checkpoints_are_safetensors_with_json_metadata_not_pickles(tmp_path):
    save_model(tmp_path / "m.safetensors", Generator(TINY))
    data = (tmp_path / "m.safetensors").read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    assert header["__metadata__"]["format"] == "stylegan-edge"
    assert json.loads(header["__metadata__"]["config"])["resolution"] == 32
    assert b"\x80\x04" not in data[:2]  # no pickle protocol marker


def test_a_crash_while_writing_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_model(path, randomized_generator(TINY, seed=1))
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_model(path, randomized_generator(TINY, seed=2))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left behind


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda b: b[: len(b) // 2], "not a readable safetensors checkpoint"),
        (lambda b: b"\x00" * 64, "not a readable safetensors checkpoint"),
        (lambda b: b"PK\x03\x04 this is a zip, not a checkpoint", "not a readable safetensors checkpoint"),
    ],
)
def test_a_corrupt_file_is_one_line_naming_it(tmp_path, corrupt, message):
    path = tmp_path / "m.safetensors"
    save_model(path, Generator(TINY))
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(CheckpointError, match=message) as e:
        load_generator(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_generator(tmp_path / "absent.safetensors")


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="not a stylegan-edge checkpoint"):
        read_checkpoint(tmp_path / "other.safetensors")


def test_a_checkpoint_from_another_format_version_says_so(tmp_path):
    save_checkpoint(tmp_path / "m.safetensors", {"x": torch.zeros(1)}, {"kind": "model"})
    data = (tmp_path / "m.safetensors").read_bytes().replace(b'"format_version":"1"', b'"format_version":"9"')
    (tmp_path / "m.safetensors").write_bytes(data)
    with pytest.raises(CheckpointError, match="format 9; this version of stylegan-edge reads format 1"):
        read_checkpoint(tmp_path / "m.safetensors")


def test_weights_that_disagree_with_the_configuration_are_named(tmp_path):
    G = Generator(TINY)
    state = {f"G_ema.{k}": v for k, v in G.state_dict().items()}
    state["G_ema.synthesis.const"] = torch.zeros(1, 3, 4, 4)
    save_checkpoint(tmp_path / "m.safetensors", state, {"kind": "model", "config": TINY.to_json()})
    with pytest.raises(CheckpointError, match=r"synthesis.const has shape \[1, 3, 4, 4\]"):
        load_generator(tmp_path / "m.safetensors")


def test_a_checkpoint_without_a_generator_is_refused(tmp_path):
    save_checkpoint(tmp_path / "m.safetensors", {"D.x": torch.zeros(1)}, {"kind": "model", "config": TINY.to_json()})
    with pytest.raises(CheckpointError, match="holds no generator"):
        load_generator(tmp_path / "m.safetensors")
