"""Arithmetic cost of a configuration, counted from its layer structure (no network is built).

GFLOP per image counts a multiply-add as two operations, for the model as defined (nearest
upsampling + 3x3 convolution below `fused_up_min_res`, the transposed convolution from there up),
so the figure is the same whichever backend or graph form runs it; `stylegan bench` divides it by
the measured time to give the achieved GFLOP/s. The multiply-add terms (convolutions, blur, styles,
input, toRGB, mapping) are exactly those of the model exported as trained (`--graph reference`),
which a test counts node by node in the ONNX graph.
"""

from __future__ import annotations

from .config import ModelConfig


def synthesis_macs(cfg: ModelConfig) -> dict[str, int]:
    """Multiply-adds per image, by component: convolutions, blur, styles, the traditional input's
    dense layer, element-wise work and toRGB."""
    conv = blur = style = elementwise = 0
    for spec in cfg.synthesis_layers():
        res, c_in, c_out = spec.resolution, spec.in_channels, spec.out_channels
        if spec.conv == "conv":
            conv += 9 * c_in * c_out * res * res
        elif spec.conv == "up":
            if spec.fused:
                conv += 16 * c_in * c_out * (res // 2) ** 2  # transposed conv, 4x4 kernel at stride 2
            else:
                conv += 9 * c_in * c_out * res * res  # 3x3 conv on the upsampled map
        if spec.blur:
            blur += 9 * c_out * res * res
        if cfg.use_styles:
            style += 2 * c_out * cfg.w_dim
        # noise, bias, activation, normalisation (two passes) and the style's scale and shift
        elementwise += 6 * c_out * res * res
    last = cfg.synthesis_layers()[-1]
    macs = {"conv": conv, "blur": blur, "style": style, "elementwise": elementwise,
            "to_rgb": last.out_channels * cfg.img_channels * cfg.resolution**2}
    if not cfg.const_input:
        macs["input"] = cfg.w_dim * cfg.synthesis_layers()[0].out_channels * 16  # w -> the 4x4 features
    return macs


def mapping_macs(cfg: ModelConfig) -> int:
    """The mapping's dense layers (and a conditional model's label embedding)."""
    if not cfg.use_mapping:
        return 0
    z_in = 2 * cfg.z_dim if cfg.label_size else cfg.z_dim
    dims = [z_in] + [cfg.mapping_width] * (cfg.mapping_layers - 1) + [cfg.w_dim]
    return sum(a * b for a, b in zip(dims[:-1], dims[1:])) + cfg.label_size * cfg.z_dim


def model_gflops(cfg: ModelConfig) -> dict[str, float]:
    """GFLOP per image: mapping, synthesis and their total (2 FLOP per multiply-add)."""
    syn = 2 * sum(synthesis_macs(cfg).values()) / 1e9
    mapping = 2 * mapping_macs(cfg) / 1e9
    return {"mapping": round(mapping, 6), "synthesis": round(syn, 6), "total": round(mapping + syn, 6)}
