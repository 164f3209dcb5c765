"""Arithmetic cost of a configuration, counted from its shapes (no network is built).

GFLOP per image counts a multiply-add as two operations, for the model as defined (nearest
upsampling + 3x3 convolution below 128 px, the transposed convolution from there up), so the
figure is the same whichever backend or graph form runs it; `stylegan bench` divides it by the
measured time to give the achieved GFLOP/s.
"""

from __future__ import annotations

from .config import ModelConfig


def synthesis_macs(cfg: ModelConfig) -> dict[str, int]:
    """Multiply-adds per image, by component (convolutions, styles, element-wise, toRGB)."""
    conv = style = elementwise = 0
    for i in range(cfg.num_layers):
        res, c_out = cfg.layer_resolution(i), cfg.layer_channels(i)
        c_in = cfg.layer_channels(i - 1) if i > 0 else c_out
        if i == 1 or (i >= 2 and i % 2 == 1):
            conv += 9 * c_in * c_out * res * res
        elif i >= 2:
            if res >= cfg.fused_up_min_res:
                conv += 16 * c_in * c_out * (res // 2) ** 2  # transposed conv, 4x4 kernel at stride 2
            else:
                conv += 9 * c_in * c_out * res * res  # 3x3 conv on the upsampled map
            elementwise += 9 * c_out * res * res  # blur
        style += 2 * c_out * cfg.w_dim
        # noise, bias, activation, normalisation (two passes) and the style's scale and shift
        elementwise += 6 * c_out * res * res
    to_rgb = cfg.layer_channels(cfg.num_layers - 1) * cfg.img_channels * cfg.resolution**2
    return {"conv": conv, "style": style, "elementwise": elementwise, "to_rgb": to_rgb}


def mapping_macs(cfg: ModelConfig) -> int:
    if not cfg.use_mapping:
        return 0
    dims = [cfg.z_dim] + [cfg.mapping_width] * (cfg.mapping_layers - 1) + [cfg.w_dim]
    return sum(a * b for a, b in zip(dims[:-1], dims[1:]))


def model_gflops(cfg: ModelConfig) -> dict[str, float]:
    """GFLOP per image: mapping, synthesis and their total (2 FLOP per multiply-add)."""
    syn = 2 * sum(synthesis_macs(cfg).values()) / 1e9
    mapping = 2 * mapping_macs(cfg) / 1e9
    return {"mapping": round(mapping, 6), "synthesis": round(syn, 6), "total": round(mapping + syn, 6)}
