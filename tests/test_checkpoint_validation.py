"""Checkpoints are validated before they are trusted: the stored configuration (types, ranges,
size) before any network is built, the tensors against the SHA-256 in the metadata, the weights
for NaN and infinity, and a training checkpoint's own metadata before a resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from typer.testing import CliRunner

from stylegan_edge.cli.main import app
from stylegan_edge.training import checkpoint as checkpoint_module
from stylegan_edge.training.checkpoint import (
    HASH_KEY,
    CheckpointError,
    load_generator,
    read_checkpoint,
    save_checkpoint,
    save_model,
    tensors_sha256,
)
from stylegan_edge.training.config import MAX_PARAMETERS, PRESETS, ConfigError, ModelConfig, parameter_count
from stylegan_edge.training.loop import TrainConfig, train
from stylegan_edge.training.networks import Discriminator, Generator

from .conftest import TINY, randomized_generator

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
MICRO = ModelConfig(resolution=16, z_dim=8, w_dim=8, fmap_base=32, fmap_max=8, mapping_layers=2, mapping_width=8)


def one_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def _with_config(path: Path, **changes) -> Path:
    """A model file whose stored configuration has `changes` (written past the dataclass's own
    checks, as a hostile file would be); its weights are the tiny generator's."""
    cfg = {**TINY.to_dict(), **changes}
    tensors = {f"G_ema.{k}": v for k, v in randomized_generator(TINY).state_dict().items()}
    save_checkpoint(path, tensors, {"kind": "model", "config": json.dumps(cfg)})
    return path


@pytest.mark.parametrize("field, value", [
    ("resolution", -4), ("resolution", 48), ("resolution", 1 << 20), ("resolution", "32"), ("resolution", 32.0),
    ("z_dim", 0), ("w_dim", -1), ("fmap_max", 10**9), ("fmap_base", 0), ("mapping_layers", 10**6),
    ("mapping_width", 1 << 30), ("img_channels", 0), ("mbstd_group_size", -1), ("fmap_decay", float("nan")),
    ("mapping_lrmul", 0.0), ("w_avg_beta", float("inf")), ("use_noise", "yes"), ("truncation_cutoff", 1000),
    ("mbstd_features", 3),
])
def test_a_hostile_configuration_is_one_line_before_any_network_is_built(tmp_path, monkeypatch, field, value):
    path = _with_config(tmp_path / "bad.safetensors", **{field: value})

    def must_not_build(*args, **kwargs):
        raise AssertionError("a network was built from an unchecked configuration")

    monkeypatch.setattr(checkpoint_module, "Generator", must_not_build)
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    message = str(info.value)
    assert str(path) in message and field in message and "\n" not in message


def test_a_configuration_too_large_to_build_is_refused_by_its_parameter_count(tmp_path):
    # Every field in range, the product not: 4096 px with 8192 channels everywhere.
    path = _with_config(tmp_path / "huge.safetensors", resolution=4096, fmap_base=1 << 20, fmap_max=8192)
    with pytest.raises(CheckpointError, match="parameters"):
        load_generator(path)


def test_the_cli_answers_a_hostile_configuration_in_one_line(tmp_path):
    path = _with_config(tmp_path / "bad.safetensors", fmap_max=-8)
    one_error(runner.invoke(app, ["info", str(path)]), str(path), "fmap_max")


@pytest.mark.parametrize("cfg", [
    PRESETS["tiny"], PRESETS["faces64"], MICRO,
    dataclasses.replace(PRESETS["tiny"], use_mapping=False, z_dim=32),
    dataclasses.replace(PRESETS["tiny"], const_input=False, use_noise=False, mbstd_group_size=0),
    dataclasses.replace(PRESETS["tiny"], fused_up_min_res=8, img_channels=1, mbstd_features=2),
])
def test_the_parameter_count_is_what_the_networks_allocate(cfg):
    G, D = Generator(cfg), Discriminator(cfg)
    built = sum(p.numel() for p in G.parameters()) + sum(p.numel() for p in D.parameters())
    built += sum(b.numel() for name, b in G.named_buffers() if name == "w_avg" or name.endswith("noise_const"))
    assert parameter_count(cfg) == built


def test_every_preset_is_within_the_bounds():
    for name, cfg in PRESETS.items():
        assert parameter_count(cfg) < MAX_PARAMETERS, name
    with pytest.raises(ConfigError, match="resolution"):
        ModelConfig(resolution=8192)


# --- integrity ---------------------------------------------------------------------------

def _flip_a_bit(path: Path, offset_from_end: int) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("offset_from_end", [1, 97, 1001])
def test_a_bit_flip_in_the_weights_is_one_line(tmp_path, offset_from_end):
    path = tmp_path / "m.safetensors"
    save_model(path, randomized_generator(TINY, seed=5))
    load_generator(path)  # intact: loads
    _flip_a_bit(path, offset_from_end)
    with pytest.raises(CheckpointError, match="SHA-256"):
        read_checkpoint(path)
    one_error(runner.invoke(app, ["info", str(path)]), str(path), "SHA-256")


def test_the_hash_is_recorded_and_matches_the_tensors(tmp_path):
    path = tmp_path / "m.safetensors"
    G = randomized_generator(TINY, seed=6)
    save_model(path, G)
    tensors, meta = read_checkpoint(path)
    assert meta[HASH_KEY] == tensors_sha256(tensors)
    expected = tensors_sha256({f"G_ema.{k}": v for k, v in G.state_dict().items()})
    assert meta[HASH_KEY] == expected


def test_a_checkpoint_without_a_hash_still_loads(tmp_path):
    path = tmp_path / "m.safetensors"
    G = randomized_generator(TINY, seed=7)
    save_model(path, G)
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + n])["__metadata__"]
    del meta[HASH_KEY]
    path.write_bytes(st_save(st_load(data), metadata=meta))  # as written before hashes existed
    G2 = load_generator(path)
    for (k, a), (_, b) in zip(G.state_dict().items(), G2.state_dict().items()):
        assert torch.equal(a, b), k


def test_the_shipped_model_has_no_hash_and_loads():
    path = REPO / "models" / "faces64.safetensors"
    if not path.is_file():
        pytest.skip("models/faces64.safetensors is not in this checkout")
    _, meta = read_checkpoint(path)
    assert HASH_KEY not in meta
    assert load_generator(path).cfg == PRESETS["faces64"]


# --- non-finite weights ------------------------------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_one_line_naming_the_tensor(tmp_path, bad):
    G = randomized_generator(TINY, seed=8)
    with torch.no_grad():
        G.synthesis.to_rgb.weight.view(-1)[3] = bad
    path = tmp_path / "m.safetensors"
    save_model(path, G)
    with pytest.raises(CheckpointError, match="G_ema.synthesis.to_rgb.weight"):
        load_generator(path)
    one_error(runner.invoke(app, ["info", str(path)]), str(path), "G_ema.synthesis.to_rgb.weight")


# --- training checkpoints ----------------------------------------------------------------

def _trained(out: Path) -> Path:
    train(TrainConfig(data="synthetic:faces:32", out=str(out), kimg=0.004, batch=4, workers=0, metrics_kimg=0,
                      snapshot_kimg=1000, grid_size=4, device="cpu"), MICRO)
    return out / "checkpoint.safetensors"


def _rewrite_meta(path: Path, **changes) -> None:
    tensors, meta = read_checkpoint(path)
    meta = {k: v for k, v in meta.items() if k not in ("format", "format_version", HASH_KEY)}
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    save_checkpoint(path, tensors, meta)


@pytest.mark.parametrize("changes, fragment", [
    (dict(train_config=None), "train_config"),
    (dict(counters=None), "counters"),
    (dict(opt_groups="[1, 2]"), "opt_groups"),
    (dict(counters=json.dumps({"cur_nimg": -5, "step": 0, "data_epoch": 0, "data_pos": 0, "elapsed": 0})),
     "cur_nimg"),
    (dict(train_config=json.dumps({"data": "x"})), "train_config"),
])
def test_a_training_checkpoint_with_broken_metadata_is_one_line_on_resume(tmp_path, changes, fragment):
    ckpt = _trained(tmp_path / "run")
    _rewrite_meta(ckpt, **changes)
    result = runner.invoke(app, ["train", "--data", "synthetic:faces:32", "--out", str(tmp_path / "run"),
                                 "--resume", "--kimg", "0.008", "--workers", "0", "--device", "cpu"])
    line = one_error(result, str(ckpt), fragment)
    assert "KeyError" not in line
