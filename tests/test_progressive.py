"""Progressive growing: the lod schedule, the fade-in of G's ToRGB outputs and D's FromRGB inputs
against the official linear structure computed by hand, and a tiny run 4 -> 32 px that resumes
mid-fade bit-identically and exports once grown."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from stylegan_edge.export.onnx_export import ExportError, export_bundle
from stylegan_edge.training.checkpoint import load_generator, read_checkpoint
from stylegan_edge.training.config import PRESETS, ConfigError, ModelConfig
from stylegan_edge.training.loop import TrainConfig, train
from stylegan_edge.training.networks import Discriminator, Generator
from stylegan_edge.training.progressive import (
    ScheduleConfig,
    get_schedule,
    new_layers_enter,
    parse_minibatch,
    process_reals,
    schedule_at,
)

TINY = PRESETS["tiny"]
GROWING = dataclasses.replace(TINY, progressive=True)


@pytest.fixture
def one_thread():
    # Two threads on a shared 2-core machine are slower than one for networks this small.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _random_nets(seed: int) -> tuple[Generator, Discriminator]:
    """G and D whose zero-initialised biases are random too, so every term of a blend shows."""
    torch.manual_seed(seed)
    G, D = Generator(GROWING).eval(), Discriminator(GROWING)
    with torch.no_grad():
        for net in (G, D):
            for name, p in net.named_parameters():
                if name.endswith("bias") or "noise_strength" in name:
                    p.normal_(0.0, 0.3)
    return G, D


def _nearest_up(x: torch.Tensor, f: int) -> torch.Tensor:
    # By hand: every pixel copied into an f x f block (the official tile-based upscale2d).
    n, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(n, c, h, f, w, f).reshape(n, c, h * f, w * f)


def _box_down(x: torch.Tensor, f: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // f, f, w // f, f).mean(dim=(3, 5))


# --- the network at fractional lod ---------------------------------------------------------

def test_generator_fade_in_equals_the_official_linear_blend_computed_by_hand():
    G, _ = _random_nets(1)
    lod = 1.25  # 16 px, the 8 px image still weighing 0.25
    G.set_lod(lod)
    syn = G.synthesis
    ws = G.broadcast(G.map(torch.randn(3, TINY.z_dim)))
    noise = syn.make_noise(3, "random")
    out = syn(ws, noise)
    # By hand: run the layers up to 16 px, keeping the 8 px features; both ToRGBs; blend with the
    # fraction of lod; upscale to 32 px.
    x = syn.const.expand(3, -1, -1, -1)
    feats = {}
    for i in range(6):
        x = syn.layers[i](x, ws[:, i], noise[i])
        feats[syn.layers[i].epilogue.resolution] = x
    img16 = F.conv2d(feats[16], syn.to_rgb_low[2].conv.scaled_weight()) + syn.to_rgb_low[2].bias.view(1, -1, 1, 1)
    img8 = F.conv2d(feats[8], syn.to_rgb_low[1].conv.scaled_weight()) + syn.to_rgb_low[1].bias.view(1, -1, 1, 1)
    frac = lod - math.floor(lod)
    expected = _nearest_up(img16 * (1 - frac) + _nearest_up(img8, 2) * frac, 2)
    assert out.shape == (3, 3, 32, 32)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_discriminator_fade_in_equals_the_official_linear_blend_computed_by_hand():
    _, D = _random_nets(2)
    lod = 2.5  # 8 px, the 4 px FromRGB weighing 0.5 after the 8 px block
    D.set_lod(lod)
    img = torch.randn(4, 3, 32, 32)
    low = D.from_rgb_low
    x8 = F.leaky_relu(F.conv2d(_box_down(img, 4), low[1].conv.scaled_weight()) + low[1].bias.view(1, -1, 1, 1), 0.2)
    x4 = F.leaky_relu(F.conv2d(_box_down(img, 8), low[0].conv.scaled_weight()) + low[0].bias.view(1, -1, 1, 1), 0.2)
    x = D.blocks[2](x8)  # blocks run 32 -> 16, 16 -> 8, 8 -> 4
    x = x * 0.5 + x4 * 0.5
    expected = D._final(x)
    torch.testing.assert_close(D(img), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lod", [0.0, 0.37, 1.0, 1.81, 2.5, 3.0])
def test_linear_and_recursive_structures_compute_the_same(lod):
    G, D = _random_nets(3)
    G.set_lod(lod)
    D.set_lod(lod)
    ws = G.broadcast(G.map(torch.randn(4, TINY.z_dim)))
    noise = G.synthesis.make_noise(4, "random")
    img = torch.randn(4, 3, 32, 32)
    outs = {}
    for structure in ("linear", "recursive"):
        G.synthesis.structure = D.structure = structure
        outs[structure] = (G.synthesis(ws, noise), D(img))
    for a, b in zip(outs["linear"], outs["recursive"]):
        # Not bit-equal: linear computes lerp_clip(a, b, 1) = a + (b - a), recursive returns b.
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_whole_lods_show_one_resolution_upscaled():
    G, _ = _random_nets(4)
    G.set_lod(2.0)
    img = G(torch.randn(2, TINY.z_dim), noise_mode="const")
    assert torch.equal(img, _nearest_up(img[:, :, ::4, ::4], 4))


def test_the_default_network_is_unchanged_by_the_progressive_switch():
    torch.manual_seed(0)
    plain = Generator(TINY)
    torch.manual_seed(0)
    grown = Generator(GROWING)
    assert not any("to_rgb_low" in k or k.endswith(".lod") for k in plain.state_dict())
    extra = set(grown.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("synthesis.to_rgb_low.") or k == "synthesis.lod" for k in extra)
    # The same initial weights for the shared layers, and at lod 0 the same image.
    grown.load_state_dict({**grown.state_dict(), **plain.state_dict()})
    z = torch.randn(2, TINY.z_dim)
    assert torch.equal(plain(z, noise_mode="const"), grown(z, noise_mode="const"))
    assert "progressive" not in TINY.to_dict() and GROWING.to_dict()["progressive"] is True


def test_lod_is_recorded_in_the_state_and_restored_on_load():
    G, _ = _random_nets(5)
    G.set_lod(1.75)
    H = Generator(GROWING)
    H.load_state_dict(G.state_dict())
    assert H.lod == pytest.approx(1.75)
    with pytest.raises(ValueError, match="lod"):
        H.set_lod(3.5)  # 32 px grows from 4 px at most: lod 3


# --- the schedule ----------------------------------------------------------------------------

def test_schedule_lod_follows_the_official_formula_at_chosen_kimg():
    sched = ScheduleConfig()  # training_schedule's defaults: from 4 px, 600 + 600 kimg
    at = {kimg: schedule_at(int(kimg * 1000), 1024, sched, 16, 0.001, 0.001) for kimg in
          (0, 599, 600, 900, 1200, 1800, 2100, 9600, 20000)}
    # 1024 px from 4 px is lod 8; each phase: hold 600 kimg, then fade by 1 over 600 kimg.
    assert [at[k].lod for k in (0, 599, 600)] == [8.0, 8.0, 8.0]
    assert at[900].lod == pytest.approx(7.5) and at[900].resolution == 8
    assert at[1200].lod == 7.0 and at[1200].resolution == 8
    assert at[2100].lod == pytest.approx(6.5)
    assert at[9600].lod == 0.0 and at[20000].lod == 0.0 and at[20000].resolution == 1024


def test_named_paper_schedule_sets_minibatch_and_learning_rate_by_resolution():
    paper = get_schedule("paper-8gpu")
    s0 = schedule_at(0, 1024, paper.schedule, paper.batch, paper.g_lr, paper.d_lr)
    assert s0.lod == 7.0 and s0.resolution == 8 and s0.minibatch == 256 and s0.g_lr == 0.001
    # 128 px is what the fade of the fourth phase of 1200 kimg (8, 16, 32, 64 px) brings in.
    s128 = schedule_at(4 * 1_200_000 - 1, 1024, paper.schedule, paper.batch, paper.g_lr, paper.d_lr)
    assert s128.resolution == 128 and s128.minibatch == 32 and s128.g_lr == 0.0015 and s128.d_lr == 0.0015
    with pytest.raises(ConfigError, match="unknown schedule"):
        get_schedule("nope")


def test_adam_is_reset_when_floor_or_ceil_of_lod_changes():
    assert new_layers_enter(None, 3.0)
    assert not new_layers_enter(3.0, 3.0)
    assert new_layers_enter(3.0, 2.9)  # ceil stays 3, floor drops: the new layers enter
    assert not new_layers_enter(2.9, 2.5)
    assert new_layers_enter(2.1, 2.0)


def test_minibatch_option_parses_and_refuses_bad_tables():
    assert parse_minibatch("8:32, 4:64") == ((4, 64), (8, 32))
    for bad in ("4=64", "3:8", "4:0"):
        with pytest.raises(ConfigError, match="--minibatch"):
            parse_minibatch(bad)


def test_reals_fade_towards_their_box_mean_and_are_upscaled():
    reals = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(process_reals(reals, 0.0), reals.float() / 127.5 - 1.0)
    level16 = torch.round(_box_down(reals.float(), 2))  # the dataset's 16 px level, 8-bit
    x = level16 / 127.5 - 1.0
    expected = _nearest_up(x * 0.75 + _nearest_up(_box_down(x, 2), 2) * 0.25, 2)
    torch.testing.assert_close(process_reals(reals, 1.25), expected, rtol=0, atol=1e-6)


# --- a tiny progressive run ----------------------------------------------------------------------

# Phases of 24 images (8 held, 16 fading) with minibatches of 4, the schedule evaluated every two
# steps: every fade has two lod values, and the interrupted run stops between two evaluations.
SCHEDULE = ScheduleConfig(lod_training_kimg=0.008, lod_transition_kimg=0.016, minibatch_repeats=2)
GROWN_KIMG = 0.08  # lod 0 from 0.072


def _run_cfg(out, **kw) -> TrainConfig:
    base = dict(data="synthetic:faces:64", out=str(out), kimg=GROWN_KIMG, batch=4, workers=0, metrics_kimg=0,
                snapshot_kimg=1000, grid_size=4, r1_interval=2, device="cpu", schedule=SCHEDULE)
    base.update(kw)
    return TrainConfig(**base)


def test_a_progressive_run_grows_resumes_mid_fade_exactly_and_exports_when_grown(tmp_path, one_thread):
    lods: list[float] = []
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(_run_cfg(straight), GROWING, callback=lambda e: e.kind == "step" and lods.append(e.stats["lod"]))
    # 4 -> 32 px: lod falls from 3 to 0, never rising, passing through fractions in every fade.
    assert lods[0] == 3.0 and lods[-1] == 0.0 and lods == sorted(lods, reverse=True)
    for whole in (2, 1, 0):
        assert any(whole < lod < whole + 1 for lod in lods), whole

    # Interrupted mid-fade (its last step, at 0.040 kimg, trained at lod 1.5), then resumed: the
    # same state to the bit.
    train(_run_cfg(split, kimg=0.044), GROWING)
    _, meta = read_checkpoint(split / "checkpoint.safetensors")
    assert json.loads(meta["counters"])["lod"] == 1.5
    assert read_checkpoint(split / "model.safetensors")[1]["lod"] == "1.5"
    assert load_generator(split / "model.safetensors").lod == 1.5
    with pytest.raises(ExportError, match=r"mid-growth \(lod 1.5.*train to the end"):
        export_bundle(load_generator(split / "model.safetensors"), tmp_path / "mid.sgbundle")
    train(_run_cfg(split), resume=True)
    a, b = (read_checkpoint(p / "checkpoint.safetensors")[0] for p in (straight, split))
    assert a.keys() == b.keys()
    for k in a:
        if not k.startswith("rng."):
            assert torch.equal(a[k], b[k]), k

    # Grown: exports, and export_bundle's own check compares onnxruntime with PyTorch.
    G = load_generator(straight / "model.safetensors")
    assert G.lod == 0.0
    bundle = export_bundle(G, tmp_path / "grown.sgbundle")
    assert (bundle / "synthesis.onnx").is_file()


def test_a_schedule_needs_a_progressive_model(tmp_path):
    with pytest.raises(ConfigError, match="progressive=True"):
        train(_run_cfg(tmp_path / "run"), TINY)


def test_schedule_survives_the_training_config_round_trip():
    cfg = _run_cfg("out", schedule=ScheduleConfig(minibatch_dict={4: 8, 8: 4}))
    again = TrainConfig.from_json(cfg.to_json())
    assert again == cfg and again.schedule.minibatch_dict == ((4, 8), (8, 4))
    assert "schedule" not in TrainConfig.from_json(_run_cfg("out", schedule=None).to_json()).to_json()
    assert ModelConfig.from_dict(GROWING.to_dict()) == GROWING


def _train_app():
    import typer

    from stylegan_edge.cli.train_cmd import train as train_command

    app = typer.Typer()
    app.command()(train_command)
    return app


def test_train_command_grows_with_the_options_given(tmp_path, one_thread):
    from typer.testing import CliRunner

    out = tmp_path / "run"
    result = CliRunner().invoke(_train_app(), [
        "--data", "synthetic:faces:64", "--out", str(out), "--preset", "tiny", "--kimg", "0.056", "--batch", "8",
        "--progressive", "--lod-initial-resolution", "16", "--lod-training-kimg", "0.008",
        "--lod-transition-kimg", "0.016", "--minibatch", "16:4", "--metrics-kimg", "0", "--workers", "0",
        "--device", "cpu"])
    assert result.exit_code == 0, result.output
    stored = json.loads((out / "training_config.json").read_text())
    assert stored["model"]["progressive"] is True
    assert stored["train"]["schedule"]["lod_initial_resolution"] == 16
    assert stored["train"]["schedule"]["minibatch_dict"] == [[16, 4]]
    # The official schedule, evaluated every 4 steps: lod 1 (minibatch 4) at 0, 0.5 (minibatch 8) at
    # 0.016 kimg, 0 from 0.048.
    assert load_generator(out / "model.safetensors").lod == 0.0
    assert json.loads(read_checkpoint(out / "checkpoint.safetensors")[1]["counters"])["step"] == 4 + 4 + 1


@pytest.mark.parametrize("bad, needle", [(["--schedule", "nope"], "unknown schedule"),
                                         (["--minibatch", "4x8"], "--minibatch"),
                                         (["--lod-initial-resolution", "6"], "--lod-initial-resolution")])
def test_train_command_refuses_bad_schedule_options_in_one_line(tmp_path, bad, needle):
    from typer.testing import CliRunner

    result = CliRunner().invoke(_train_app(), ["--data", "synthetic:faces:64", "--out", str(tmp_path / "o"),
                                               "--progressive", "--device", "cpu", *bad])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.output
    assert not (tmp_path / "o").exists()
