"""Inference-shaped forms of the trained networks, for export.

The training graph (training/networks.py) is written for clarity and gradients. For inference
the same arithmetic is rearranged so that onnxruntime and TensorRT run it fast:

- every 2x upsampling convolution (nearest + 3x3 below 128 px, the transposed convolution from
  128 px up) becomes a sub-pixel convolution: one plain 2x2 convolution over the low-resolution
  input with four times the output channels, then the pixel interleave and a one-pixel crop. It
  has the multiply-adds of the transposed convolution (4/9 of nearest + 3x3), runs at the speed
  of a plain convolution, and INT8 quantisers handle it (there is no quantised ConvTranspose);
- the interleave and the crop are one grouped, stride-2 ConvTranspose with a constant 0/1
  kernel (each output pixel copies one input value, so it is exact) whose pads do the crop:
  onnxruntime's CPU DepthToSpace is a generic 6-D transpose that measured 4x slower than this,
  and it needed a Slice after it;
- equalised-learning-rate gains are folded into the weights, the bias into the convolution
  (or, after an upsampling, into the blur), the learned constant's bias into the constant, and
  the style's `+ 1` into the style bias;
- the style affine map is two small matrix products (scale and shift) instead of one that is
  then split, which exports without reshapes and slices.

Equal to the training graph within float rounding (tests check 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stylegan_edge.training.networks import (
    INSTANCE_NORM_EPS,
    LRELU_SLOPE,
    PIXEL_NORM_EPS,
    EqualConv2d,
    MappingNetwork,
    SynthesisLayer,
    SynthesisNetwork,
    UpConv2d,
)

# Row/column taps of the 2x2 sub-pixel kernel, per output phase, as sums of the 3x3 kernel's
# taps (derived from nearest upsampling: phase 0 sees rows (i-1, i, i) and phase 1 (i, i, i+1)
# of the input, after the one-pixel shift that the crop undoes).
_PHASE_TAPS = torch.tensor(
    [
        [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]],  # phase 0: taps (k0 + k1, k2)
        [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]],  # phase 1: taps (k0, k1 + k2)
    ]
)


def subpixel_kernel(weight: torch.Tensor) -> torch.Tensor:
    """Nearest-upsample + 3x3 conv weight [O, I, 3, 3] -> sub-pixel weight [4*O, I, 2, 2],
    channels ordered for DepthToSpace in CRD mode (torch's pixel_shuffle)."""
    m = _PHASE_TAPS.to(weight)
    w = torch.einsum("aus,bvt,oist->oabiuv", m, m, weight)
    o, i = weight.shape[:2]
    return w.reshape(4 * o, i, 2, 2)


# The same taps placed in a 3x3 window centred on the input pixel (no shift, so no crop):
# phase 0 sees rows (i-1, i), phase 1 rows (i, i+1).
_PHASE_TAPS_3 = torch.tensor(
    [
        [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]],
        [[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    ]
)


def subpixel_kernel3(weight: torch.Tensor) -> torch.Tensor:
    """Nearest-upsample + 3x3 conv weight [O, I, 3, 3] -> sub-pixel weight [4*O, I, 3, 3] that
    needs no crop (5 of each phase's 9 taps are zero)."""
    m = _PHASE_TAPS_3.to(weight)
    w = torch.einsum("aus,bvt,oist->oabiuv", m, m, weight)
    o, i = weight.shape[:2]
    return w.reshape(4 * o, i, 3, 3)


def upconv_as_nearest_kernel(conv: UpConv2d) -> torch.Tensor:
    """The nearest-upsample 3x3 kernel equal to an UpConv2d: the fused transposed convolution
    equals nearest upsampling + 3x3 convolution with the kernel rotated by 180 degrees."""
    w = conv.scaled_weight().detach()
    return w.flip(2, 3) if conv.fused else w


UPSAMPLE_FORMS = ("subpixel", "subpixel3", "nearest")
INTERLEAVE_FORMS = ("convtranspose", "depthtospace")
NOISE_FORMS = ("mul", "conv")


def interleave_kernel(channels: int) -> torch.Tensor:
    """Kernel [4*C, 1, 2, 2] of a grouped (groups=C), stride-2 ConvTranspose that equals
    DepthToSpace in CRD mode (torch's pixel_shuffle): input channel 4c + 2i + j lands at row
    phase i, column phase j of output channel c."""
    k = torch.zeros(channels, 2, 2, 2, 2)
    for i in range(2):
        for j in range(2):
            k[:, i, j, i, j] = 1.0
    return k.reshape(4 * channels, 1, 2, 2)


@dataclass(frozen=True)
class GraphOptions:
    """How the inference graph spells the operations whose fastest form depends on the engine.

    upsample: 'subpixel' (2x2 convolution to 4x channels, interleave, crop), 'subpixel3'
    (3x3 phases, no crop, 2.25x the multiply-adds) or 'nearest' (Resize + 3x3 convolution).
    interleave: how the sub-pixel phases become pixels, 'convtranspose' (a grouped 0/1
    ConvTranspose that also crops) or 'depthtospace' (DepthToSpace, then a Slice for the crop).
    noise: 'mul' (noise * strength, added) or 'conv' (a 1x1 convolution of the noise image,
    added), which lets onnxruntime fuse the sum and the activation into the convolution.
    """

    upsample: str = "subpixel"
    noise: str = "conv"
    interleave: str = "convtranspose"

    def __post_init__(self) -> None:
        if (self.upsample not in UPSAMPLE_FORMS or self.noise not in NOISE_FORMS
                or self.interleave not in INTERLEAVE_FORMS):
            raise ValueError(f"graph options: upsample in {UPSAMPLE_FORMS}, noise in {NOISE_FORMS}, "
                             f"interleave in {INTERLEAVE_FORMS}; got {self}")


class InferenceLayer(nn.Module):
    """One style layer with folded constants; see the module docstring."""

    def __init__(self, layer: SynthesisLayer, options: GraphOptions = GraphOptions()) -> None:
        super().__init__()
        ep = layer.epilogue
        c = ep.bias.shape[0]
        self.options = options
        self.kind = "const" if layer.conv is None else ("up" if isinstance(layer.conv, UpConv2d) else "conv")
        bias = ep.bias.detach().clone()
        if self.kind == "up":
            nearest = upconv_as_nearest_kernel(layer.conv)
            weight = {"subpixel": subpixel_kernel, "subpixel3": subpixel_kernel3, "nearest": lambda k: k}
            self.register_buffer("weight", weight[options.upsample](nearest).contiguous())
            self.register_buffer("blur", layer.blur.kernel.detach().clone())
            if options.upsample != "nearest" and options.interleave == "convtranspose":
                self.register_buffer("interleave", interleave_kernel(c))
            self.register_buffer("bias", bias)
        elif self.kind == "conv":
            assert isinstance(layer.conv, EqualConv2d) and layer.blur is None
            self.register_buffer("weight", layer.conv.scaled_weight().detach().clone())
            self.register_buffer("bias", bias)
        self.use_noise = ep.use_noise
        if ep.use_noise:
            shape = (c, 1, 1, 1) if options.noise == "conv" else (1, c, 1, 1)
            self.register_buffer("noise_strength", ep.noise_strength.detach().view(shape).clone())
        style_w = ep.style.weight.detach() * ep.style.weight_gain
        style_b = ep.style.bias.detach() * ep.style.bias_gain
        self.register_buffer("scale_w", style_w[:c].clone())
        self.register_buffer("scale_b", style_b[:c] + 1.0)
        self.register_buffer("shift_w", style_w[c:].clone())
        self.register_buffer("shift_b", style_b[c:].clone())

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "conv":
            x = F.conv2d(x, self.weight, self.bias, padding=1)
        elif self.kind == "up":
            form = self.options.upsample
            if form in ("subpixel", "subpixel3"):
                crop = 1 if form == "subpixel" else 0
                x = F.conv2d(x, self.weight, padding=1)
                if self.options.interleave == "convtranspose":
                    x = F.conv_transpose2d(x, self.interleave, stride=2, padding=crop, groups=x.shape[1] // 4)
                else:
                    x = F.pixel_shuffle(x, 2)
                    x = x[:, :, 1:-1, 1:-1] if crop else x
            else:
                x = F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), self.weight, padding=1)
            x = F.conv2d(x, self.blur, self.bias, padding=1, groups=x.shape[1])
        if self.use_noise and noise is not None:
            if self.options.noise == "conv":
                x = x + F.conv2d(noise, self.noise_strength)
            else:
                x = x + noise * self.noise_strength
        x = F.instance_norm(F.leaky_relu(x, LRELU_SLOPE), eps=INSTANCE_NORM_EPS)
        # A reshape to [B, C, 1, 1], not a two-axis Unsqueeze, which OpenCV's importer refuses.
        c = self.scale_b.shape[0]
        scale = F.linear(w, self.scale_w, self.scale_b).view(-1, c, 1, 1)
        shift = F.linear(w, self.shift_w, self.shift_b).view(-1, c, 1, 1)
        return x * scale + shift


class InferenceSynthesis(nn.Module):
    """Synthesis with one input per style layer and per noise image: `forward(*w, *noise)`."""

    def __init__(self, syn: SynthesisNetwork, options: GraphOptions = GraphOptions()) -> None:
        super().__init__()
        cfg = syn.cfg
        self.num_layers = syn.num_layers
        self.use_noise = cfg.use_noise
        self.const_input = cfg.const_input
        first_bias = syn.layers[0].epilogue.bias.detach().view(1, -1, 1, 1)
        if cfg.const_input:
            self.register_buffer("const", syn.const.detach() + first_bias)
        else:
            self.input_dense = syn.input_dense
            self.register_buffer("first_bias", first_bias.clone())
        # These two attribute names become the ONNX node-name scopes that calibration and the
        # TensorRT build parse (runtime/node_names.py LAYER_SCOPE, TO_RGB_SCOPE): `layers.N/...` for
        # the style layers and, a module of its own, `to_rgb/Conv`.
        self.layers = nn.ModuleList(InferenceLayer(layer, options) for layer in syn.layers)
        self.to_rgb = nn.Conv2d(syn.to_rgb.weight.shape[1], cfg.img_channels, 1).requires_grad_(False)
        self.to_rgb.weight.copy_(syn.to_rgb.scaled_weight().detach())
        self.to_rgb.bias.copy_(syn.rgb_bias.detach())

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        n = self.num_layers
        ws, noise = inputs[:n], (inputs[n:] if self.use_noise else [None] * n)
        if self.const_input:
            # [1, C, 4, 4]: the first noise sum or style product broadcasts it to the batch. An
            # explicit expand exports as Shape(start, end), which TensorRT 8.6's parser and
            # OpenCV's importer misread (both ignore start/end).
            x = self.const
        else:
            x = self.input_dense(ws[0]).view(-1, self.first_bias.shape[1], 4, 4) + self.first_bias
        for layer, w, nz in zip(self.layers, ws, noise):
            x = layer(x, w, nz)
        return self.to_rgb(x)


class ReferenceSynthesis(nn.Module):
    """The training graph as it is, with the exported input signature (for comparison)."""

    fold_all_constants = True  # its weights are computed from parameters; export folds them

    def __init__(self, syn: SynthesisNetwork) -> None:
        super().__init__()
        self.syn = syn

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        n = self.syn.num_layers
        noise = list(inputs[n:]) if self.syn.cfg.use_noise else [None] * n
        return self.syn.run_layers(list(inputs[:n]), noise)


class InferenceMapping(nn.Module):
    """z (and labels c) -> w with the equalised-learning-rate gains folded into plain weights.

    A conditional mapping embeds c [B, label_size] as a plain matrix product with the raw
    embedding (`c @ E`, official LabelConcat: one-hot or any mixture), concatenates it after z and
    normalises the concatenation (n = 2 * z_dim), as `MappingNetwork.forward` does.

    The pixel norm `x * rsqrt(mean(x^2) + eps)` is written as `x * sqrt(n) * rsqrt(sum(x^2) + n * eps)`
    with the sum as a matrix product by ones:
    - no ReduceMean: from opset 18 its axes are an input, which TensorRT 8.6's parser ignores
      (it then averages over the batch too);
    - the epsilon survives export: the exporter's optimiser treats an added constant within 1e-8
      of zero as `+ 0` and drops it (onnxscript's pattern constants, abs_tol=1e-8), which made
      z = 0 map to NaN. `n * eps` is above that tolerance for every n > 1, and export checks that
      every normalisation in the graph kept a positive epsilon.
    """

    def __init__(self, mapping: MappingNetwork, eps: float = PIXEL_NORM_EPS) -> None:
        super().__init__()
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for layer in mapping.layers:
            self.weights.append(nn.Parameter(layer.weight.detach() * layer.weight_gain, requires_grad=False))
            self.biases.append(nn.Parameter(layer.bias.detach() * layer.bias_gain, requires_grad=False))
        self.conditional = mapping.label_embed is not None
        if self.conditional:
            # Used raw, as trained: no gain to fold.
            self.register_buffer("label_embed", mapping.label_embed.detach().clone())
        n = mapping.layers[0].weight.shape[1]  # z_dim, or 2 * z_dim with the label's embedding
        self.register_buffer("ones", torch.ones(n, 1))
        self.sum_eps = n * eps
        self.sqrt_n = float(n) ** 0.5

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = z
        if self.conditional:
            if c is None:
                raise ValueError("this mapping is class-conditional: it needs the labels c")
            x = torch.cat([z, torch.matmul(c, self.label_embed)], dim=1)
        x = x * (torch.rsqrt(torch.matmul(x * x, self.ones) + self.sum_eps) * self.sqrt_n)
        for w, b in zip(self.weights, self.biases):
            x = F.leaky_relu(F.linear(x, w, b), LRELU_SLOPE)
        return x


GRAPH_FORMS = ("inference", "reference")


def synthesis_module(syn: SynthesisNetwork, form: str = "inference", options: GraphOptions = GraphOptions(),
                     ) -> nn.Module:
    if form == "inference":
        return InferenceSynthesis(syn, options).eval()
    if form == "reference":
        return ReferenceSynthesis(syn).eval()
    raise ValueError(f"graph form must be one of {GRAPH_FORMS}, got {form!r}")
