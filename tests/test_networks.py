"""The model: shapes, the paper's parameter count, and the official arithmetic."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from stylegan_edge.training.config import PRESETS, ConfigError, ModelConfig, get_preset
from stylegan_edge.training.networks import (
    Discriminator,
    Generator,
    UpConv2d,
    count_parameters,
    minibatch_stddev,
)

from .conftest import TINY, randomized_generator


def test_paper_generator_has_the_papers_26_2m_parameters():
    G = Generator(PRESETS["paper"])
    # The official 26,219,627 also counts the 8 ToRGB layers that progressive growing leaves
    # unused at full resolution (7,608 parameters); without them it is 26,212,019.
    assert count_parameters(G) == 26_212_019
    assert count_parameters(G.mapping) == 8 * (512 * 512 + 512)


def test_paper_has_18_style_layers_and_official_widths():
    cfg = PRESETS["paper"]
    assert cfg.num_layers == 18
    assert [cfg.layer_channels(i) for i in range(0, 18, 2)] == [512, 512, 512, 512, 256, 128, 64, 32, 16]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_a_consistent_generator(name):
    cfg = PRESETS[name]
    G = Generator(cfg)
    assert G.num_layers == cfg.num_layers
    assert G.synthesis.to_rgb.weight.shape[1] == cfg.layer_channels(cfg.num_layers - 1)


def test_unknown_preset_is_one_clear_error():
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        get_preset("nope")


def test_resolution_must_be_a_power_of_two():
    with pytest.raises(ConfigError, match="power of two"):
        ModelConfig(resolution=48)


def test_generator_output_shape_for_a_batch():
    G = Generator(TINY).eval()
    img = G(torch.randn(3, TINY.z_dim))
    assert img.shape == (3, 3, 32, 32)
    assert torch.isfinite(img).all()


def test_fused_upsampling_equals_nearest_upsampling_with_the_kernel_rotated():
    torch.manual_seed(1)
    fused, nearest = UpConv2d(5, 7, fused=True), UpConv2d(5, 7, fused=False)
    with torch.no_grad():
        nearest.weight.copy_(fused.weight.flip(2, 3))
    x = torch.randn(2, 5, 6, 6)
    assert (fused(x) - nearest(x)).abs().max() < 1e-5


def test_fused_upsampling_is_used_from_128_px(tiny_fused_cfg):
    G = Generator(tiny_fused_cfg)
    layers = G.synthesis.layers
    ups = {layer.epilogue.resolution: layer.conv.fused for layer in layers if isinstance(layer.conv, UpConv2d)}
    assert ups == {8: False, 16: False, 32: False, 64: False, 128: True}


def test_noise_strengths_start_at_zero_and_style_starts_near_identity():
    G = Generator(TINY)
    for layer in G.synthesis.layers:
        assert torch.all(layer.epilogue.noise_strength == 0)
        assert torch.all(layer.epilogue.style.bias == 0)  # scale enters as (s + 1)


def test_instance_norm_uses_epsilon_1e_8():
    # A constant feature map has zero variance: with epsilon 1e-8 the output is 0, and a map
    # with tiny variance (1e-6) is still normalised to unit variance, which a larger epsilon
    # (1e-5, torch's default) would not do.
    G = randomized_generator(TINY)
    ep = G.synthesis.layers[1].epilogue
    with torch.no_grad():
        ep.noise_strength.zero_()
        ep.bias.zero_()
    x = torch.randn(1, ep.bias.numel(), 4, 4) * 1e-3
    w = torch.randn(1, TINY.w_dim)
    style = ep.style(w).double()
    scale, shift = style[:, : ep.bias.numel()], style[:, ep.bias.numel():]
    y = ep(x, w, None).double()
    a = F.leaky_relu(x.double(), 0.2)

    def reference(eps: float) -> torch.Tensor:
        normed = (a - a.mean((2, 3), keepdim=True)) / torch.sqrt(a.var((2, 3), unbiased=False, keepdim=True) + eps)
        return normed * (scale[:, :, None, None] + 1) + shift[:, :, None, None]

    assert (y - reference(1e-8)).abs().max() < 1e-3
    assert (y - reference(1e-5)).abs().max() > 0.1


def test_truncation_psi_zero_gives_w_avg_and_psi_one_changes_nothing():
    G = randomized_generator(TINY)
    ws = G.broadcast(G.map(torch.randn(2, TINY.z_dim)))
    assert torch.equal(G.truncate(ws, 1.0), ws)
    assert torch.allclose(G.truncate(ws, 0.0), G.w_avg.expand_as(ws))


def test_truncation_cutoff_touches_only_the_first_layers():
    G = randomized_generator(TINY)
    ws = G.broadcast(G.map(torch.randn(2, TINY.z_dim)))
    out = G.truncate(ws, 0.5, cutoff=3)
    assert torch.allclose(out[:, :3], G.w_avg + 0.5 * (ws[:, :3] - G.w_avg))
    assert torch.allclose(out[:, 3:], ws[:, 3:], atol=1e-6, rtol=0)


def test_style_mixing_switches_latents_once_at_a_layer_within_range():
    G = Generator(TINY)
    b, n = 64, G.num_layers
    ws1, ws2 = torch.zeros(b, n, TINY.w_dim), torch.ones(b, n, TINY.w_dim)
    mixed = G.mixing_regularisation(ws1, ws2, prob=1.0, generator=torch.Generator().manual_seed(0))
    from_second = mixed[:, :, 0] == 1
    cuts = from_second.float().argmax(1)
    assert torch.all(cuts >= 1)  # the first layer always comes from the first latent
    for i in range(b):  # one switch: first-latent layers, then second-latent layers
        c = int(cuts[i])
        assert not from_second[i, :c].any() and from_second[i, c:].all()
    assert len(set(cuts.tolist())) > 1


def test_style_mixing_probability_is_the_share_of_mixed_samples():
    G = Generator(TINY)
    b, n = 4000, G.num_layers
    mixed = G.mixing_regularisation(torch.zeros(b, n, 1), torch.ones(b, n, 1), prob=0.9,
                                    generator=torch.Generator().manual_seed(0))
    share = (mixed[:, -1, 0] == 1).float().mean().item()
    assert 0.87 < share < 0.93


def test_w_avg_is_an_exponential_moving_average_with_beta_0_995():
    G = Generator(TINY)
    z = torch.randn(8, TINY.z_dim)
    w = G.map(z, update_w_avg=True)
    assert torch.allclose(G.w_avg, (1 - 0.995) * w.mean(0), atol=1e-7)


def test_const_noise_is_deterministic_random_varies_none_is_noise_free():
    G = randomized_generator(TINY)
    ws = G.broadcast(G.map(torch.randn(2, TINY.z_dim)))
    const_a, const_b = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
    rand_a, rand_b = G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random")
    zeros = [torch.zeros(2, 1, r, r) for r in (TINY.layer_resolution(i) for i in range(G.num_layers))]
    assert torch.equal(const_a, const_b)
    assert not torch.allclose(rand_a, rand_b)
    assert torch.allclose(G.synthesis(ws, noise_mode="none"), G.synthesis(ws, noise=zeros), atol=1e-6)


@pytest.mark.parametrize("switch", [{"use_mapping": False}, {"const_input": False}, {"use_noise": False}])
def test_ablation_switches_build_and_generate(switch):
    cfg = dataclasses.replace(TINY, **switch)
    G = Generator(cfg)
    img = G(torch.randn(2, cfg.z_dim), noise_mode="random")
    assert img.shape == (2, 3, 32, 32)
    if not cfg.use_mapping:
        assert len(G.mapping.layers) == 0
    if not cfg.const_input:
        assert not hasattr(G.synthesis, "const")


def test_minibatch_stddev_appends_the_group_standard_deviation():
    x = torch.randn(8, 6, 4, 4)
    y = minibatch_stddev(x, group_size=4, num_features=1)
    assert y.shape == (8, 7, 4, 4)
    # Sample i belongs to group member i // 2 of sub-batch i % 2 (groups are strided).
    group = x.view(4, 2, 6, 4, 4)[:, 0]
    expected = (group.var(0, unbiased=False) + 1e-8).sqrt().mean()
    assert torch.allclose(y[0, 6], expected.expand(4, 4), atol=1e-6)
    assert torch.allclose(y[2, 6], y[0, 6])


def test_minibatch_stddev_rejects_a_batch_not_divisible_by_the_group():
    with pytest.raises(ValueError, match="multiple"):
        minibatch_stddev(torch.randn(6, 4, 4, 4), group_size=4, num_features=1)


def test_discriminator_scores_each_image(tiny_fused_cfg):
    for cfg in (TINY, tiny_fused_cfg):
        D = Discriminator(cfg)
        assert D(torch.randn(4, 3, cfg.resolution, cfg.resolution)).shape == (4, 1)


def test_modules_explain_themselves_when_printed():
    text = repr(Generator(TINY))
    assert "fused=False" in text and "weight_gain=" in text
