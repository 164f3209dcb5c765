"""StyleGAN (Karras, Laine, Aila, CVPR 2019): mapping, synthesis, generator and discriminator.

The one definition of the model; export, calibration and the official-pickle converter import it.
Every piece of arithmetic follows the official TensorFlow code (NVlabs/stylegan), which is what
released networks were trained with: equalised learning rate with the scale applied at run time,
blur after the upsampling convolution, noise before the bias, instance norm with epsilon 1e-8,
style `x * (scale + 1) + bias`. Only standard operators are used, so the graph exports to ONNX.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stylegan_edge.runtime.backends.base import NOISE_MODES

from .config import ModelConfig, SynthesisLayerSpec

LRELU_SLOPE = 0.2
GAIN = math.sqrt(2.0)  # He gain for leaky ReLU, as the official code uses
PIXEL_NORM_EPS = 1e-8
INSTANCE_NORM_EPS = 1e-8


def pixel_norm(x: torch.Tensor, eps: float = PIXEL_NORM_EPS) -> torch.Tensor:
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


def pixel_norm_exportable(x: torch.Tensor, eps: float = PIXEL_NORM_EPS) -> torch.Tensor:
    """`pixel_norm` as `x * sqrt(n) * rsqrt(sum(x^2) + n * eps)`: the same value, written so that
    the ONNX exporter's optimiser keeps the epsilon (it drops an added constant within 1e-8 of
    zero, see export/inference_graph.py InferenceMapping). Used where the graph as trained is
    exported: the pixel norm over feature maps [B, C, H, W] of Table 1's baselines. The channel
    sum is a 1x1 convolution with ones, not a reduction (the bundle's graphs hold none: TensorRT
    8.6's parser misreads opset-18 reductions)."""
    n = x.shape[1]
    sum_sq = F.conv2d(x.square(), x.new_ones(1, n, 1, 1))
    return x * (torch.rsqrt(sum_sq + n * eps) * math.sqrt(n))


class EqualLinear(nn.Module):
    """Dense layer with equalised learning rate.

    Weights are stored with std 1/lrmul and scaled at run time by gain/sqrt(fan_in)*lrmul, so
    Adam's per-parameter step is the same for every layer (and 100x smaller in the mapping).
    """

    def __init__(
        self, in_features: int, out_features: int, gain: float = GAIN, lrmul: float = 1.0,
        bias: bool = True, bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lrmul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = gain / math.sqrt(in_features) * lrmul
        self.bias_gain = lrmul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias * self.bias_gain if self.bias is not None else None
        return F.linear(x, w, b)

    def extra_repr(self) -> str:
        out_f, in_f = self.weight.shape
        return f"{in_f} -> {out_f}, weight_gain={self.weight_gain:.4g}, bias_gain={self.bias_gain:g}"


class EqualConv2d(nn.Module):
    """Square convolution with equalised learning rate and 'same' zero padding; no bias
    (StyleGAN adds the bias after the noise, in the layer epilogue)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, gain: float = GAIN) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.weight_gain = gain / math.sqrt(in_channels * kernel * kernel)
        self.padding = kernel // 2

    def scaled_weight(self) -> torch.Tensor:
        return self.weight * self.weight_gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.scaled_weight(), padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i} -> {o}, kernel={k}, weight_gain={self.weight_gain:.4g}"


def shifted_sum_4x4(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 kernel padded to 5x5 and summed over its four 1-pixel shifts: the 4x4 kernel that
    folds a 2x nearest resampling into the convolution (the official fused up/downscale)."""
    w = F.pad(weight, (1, 1, 1, 1))
    return w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]


def fused_upsample_kernel(weight: torch.Tensor) -> torch.Tensor:
    """The official fused-upscale kernel for a 3x3 conv weight [out, in, 3, 3], as a
    `conv_transpose2d` weight [in, out, 4, 4]."""
    return shifted_sum_4x4(weight).transpose(0, 1)


class UpConv2d(EqualConv2d):
    """2x upsampling followed by a 3x3 convolution.

    Below `fused_up_min_res` (output) the official code upsamples by nearest neighbour and
    convolves; from there up it runs one transposed convolution with the fused kernel, which is
    the same operation with the kernel rotated by 180 degrees. Both are kept, as the official
    code has them, so that converted networks reproduce it exactly.
    """

    def __init__(self, in_channels: int, out_channels: int, fused: bool) -> None:
        super().__init__(in_channels, out_channels, 3)
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.scaled_weight()
        if self.fused:
            return F.conv_transpose2d(x, fused_upsample_kernel(w), stride=2, padding=1)
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.conv2d(x, w, padding=1)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", up=2, fused={self.fused}"


class Blur(nn.Module):
    """The paper's [1, 2, 1] low-pass filter (outer product, normalised), per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        f = torch.tensor([1.0, 2.0, 1.0])
        k = f[:, None] * f[None, :]
        self.register_buffer("kernel", (k / k.sum()).expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, padding=1, groups=x.shape[1])


class StyleEpilogue(nn.Module):
    """What follows every synthesis convolution: per-channel-scaled noise, bias, leaky ReLU,
    instance norm, and the style (AdaIN's scale and bias from a learned affine map of w).

    Table 1's baselines switch the style off (no affine map at all, official `use_styles=False`)
    and normalise by pixel norm instead of instance norm (official layer_epilogue order: pixel
    norm, then instance norm, then style)."""

    def __init__(
        self, channels: int, w_dim: int, resolution: int, use_noise: bool, use_styles: bool = True,
        use_pixel_norm: bool = False, use_instance_norm: bool = True,
    ) -> None:
        super().__init__()
        self.use_noise = use_noise
        self.use_pixel_norm = use_pixel_norm
        self.use_instance_norm = use_instance_norm
        self.resolution = resolution
        if use_noise:
            # Learned per-channel noise strength starts at zero, as in the official code.
            self.noise_strength = nn.Parameter(torch.zeros(channels))
            # Official `noise_mode='const'`: a fixed per-layer noise image saved with the model.
            self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))
        self.bias = nn.Parameter(torch.zeros(channels))
        # The style map is a dense layer with gain 1; its output is (scale, bias) and the scale
        # enters as (scale + 1), so at initialisation the style is close to the identity.
        self.style = EqualLinear(w_dim, 2 * channels, gain=1.0) if use_styles else None

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if self.use_noise and noise is not None:
            x = x + noise * self.noise_strength.view(1, -1, 1, 1)
        x = x + self.bias.view(1, -1, 1, 1)
        x = F.leaky_relu(x, LRELU_SLOPE)
        if self.use_pixel_norm:
            x = pixel_norm_exportable(x)
        if self.use_instance_norm:
            # Statistics in FP32: a sum of squares overflows FP16 once |x| passes ~256.
            x = F.instance_norm(x.float(), eps=INSTANCE_NORM_EPS).to(x.dtype)
        if self.style is None:
            return x
        style = self.style(w).to(x.dtype)
        scale, bias = style.unflatten(1, (2, -1)).unbind(1)
        return x * (scale[:, :, None, None] + 1) + bias[:, :, None, None]


class SynthesisLayer(nn.Module):
    """One style layer: an optional convolution (none for the constant's own layer), an optional
    blur (after upsampling convolutions), and the epilogue."""

    def __init__(
        self, conv: nn.Module | None, channels: int, w_dim: int, resolution: int, use_noise: bool,
        blur: bool, cfg: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        self.conv = conv
        self.blur = Blur(channels) if blur else None
        switches = {}
        if cfg is not None:
            switches = dict(use_styles=cfg.use_styles, use_pixel_norm=cfg.use_pixel_norm,
                            use_instance_norm=cfg.use_instance_norm)
        self.epilogue = StyleEpilogue(channels, w_dim, resolution, use_noise, **switches)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        if self.blur is not None:
            x = self.blur(x)
        return self.epilogue(x, w, noise)


class MappingNetwork(nn.Module):
    """z (and a class label c) -> w: pixel norm, then `mapping_layers` dense layers with leaky
    ReLU (after the last one too, as in the official code) at a 0.01 learning-rate multiplier.

    A conditional mapping (label_size > 0) embeds c [B, label_size] (one-hot, or any mixture) by
    a raw matrix product with `label_embed` [label_size, z_dim] (official `LabelConcat/weight`: no
    equalised-learning-rate scale, no lrmul), concatenates it to z and normalises the
    concatenation, so the first dense layer reads 2 * z_dim values.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.label_embed = nn.Parameter(torch.randn(cfg.label_size, cfg.z_dim)) if cfg.label_size else None
        layers: list[nn.Module] = []
        if cfg.use_mapping:
            z_in = 2 * cfg.z_dim if cfg.label_size else cfg.z_dim
            dims = [z_in] + [cfg.mapping_width] * (cfg.mapping_layers - 1) + [cfg.w_dim]
            for d_in, d_out in zip(dims[:-1], dims[1:]):
                layers.append(EqualLinear(d_in, d_out, lrmul=cfg.mapping_lrmul))
        self.layers = nn.ModuleList(layers)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = z
        if self.label_embed is not None:
            x = torch.cat([z, check_labels(c, z.shape[0], self.cfg.label_size) @ self.label_embed], dim=1)
        x = pixel_norm(x)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), LRELU_SLOPE)
        return x


def check_labels(c: torch.Tensor | None, batch: int, label_size: int) -> torch.Tensor:
    """The labels a conditional network needs, [batch, label_size]; one line when they are missing."""
    if c is None or c.ndim != 2 or c.shape[0] != batch or c.shape[1] != label_size:
        got = "none" if c is None else list(c.shape)
        raise ValueError(f"this network is class-conditional: labels c must be [{batch}, {label_size}], got {got}")
    return c


def upscale2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling by an integer factor (official `upscale2d`, a tile)."""
    if factor == 1:
        return x
    return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def downscale2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Box-filter downsampling by an integer factor (official `downscale2d`: the mean of each
    factor x factor block)."""
    if factor == 1:
        return x
    return F.avg_pool2d(x, factor)


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Official `tflib.lerp`: a + (b - a) * t, written the same way so the rounding is the same."""
    return a + (b - a) * t


def lerp_clip(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Official `tflib.lerp_clip`: lerp with t clipped to [0, 1]."""
    return a + (b - a) * min(max(t, 0.0), 1.0)


STRUCTURES = ("recursive", "linear")


class _LodMixin:
    """A level of detail for progressive growing (official `lod` variable of G and D): 0 is the
    full resolution, k runs the network at resolution / 2**k, fractional values fade the next
    resolution in. Kept as a buffer (so checkpoints record it) and mirrored as a Python float,
    which drives the control flow without reading a tensor (graph export cannot)."""

    lod_value: float = 0.0

    def _init_lod(self, cfg: ModelConfig) -> None:
        self.max_lod = cfg.log2_res - 2
        assert isinstance(self, nn.Module)
        self.register_buffer("lod", torch.zeros([]))
        self.lod_value = 0.0
        self.register_load_state_dict_post_hook(lambda module, _keys: module._sync_lod())
        # One of the two official structures: the same values, 'linear' runs every layer.
        self.structure = "recursive"

    def _sync_lod(self) -> None:
        self.lod_value = float(self.lod)

    def set_lod(self, lod: float) -> None:
        if not 0.0 <= lod <= self.max_lod:
            raise ValueError(f"lod must be in [0, {self.max_lod}], got {lod}")
        with torch.no_grad():
            self.lod.fill_(lod)
        # The float32 value, so that the network computes what a reloaded checkpoint computes.
        self._sync_lod()


class ToRGB(nn.Module):
    """1x1 convolution to image channels with its bias: one per lower resolution when growing."""

    def __init__(self, channels: int, img_channels: int) -> None:
        super().__init__()
        self.conv = EqualConv2d(channels, img_channels, 1, gain=1.0)
        self.bias = nn.Parameter(torch.zeros(img_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.bias.view(1, -1, 1, 1)


class FromRGB(nn.Module):
    """1x1 convolution from image channels, bias, leaky ReLU: one per lower resolution."""

    def __init__(self, img_channels: int, channels: int) -> None:
        super().__init__()
        self.conv = EqualConv2d(img_channels, channels, 1)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv(x) + self.bias.view(1, -1, 1, 1), LRELU_SLOPE)


def _layer_conv(spec: SynthesisLayerSpec) -> nn.Module | None:
    if spec.conv == "up":
        return UpConv2d(spec.in_channels, spec.out_channels, fused=spec.fused)
    if spec.conv == "conv":
        return EqualConv2d(spec.in_channels, spec.out_channels, 3)
    return None


class SynthesisNetwork(_LodMixin, nn.Module):
    """W+ styles [B, L, w_dim] (and one noise image per layer) -> image [B, C, R, R] in ~[-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c4 = cfg.channels(1)
        if cfg.const_input:
            self.const = nn.Parameter(torch.ones(1, c4, 4, 4))
        else:
            # The paper's "traditional input": a dense layer from the first style's w.
            # No bias of its own: as officially, the bias comes after the noise, in the epilogue.
            self.input_dense = EqualLinear(cfg.w_dim, c4 * 16, gain=GAIN / 4, bias=False)
        layers = [SynthesisLayer(_layer_conv(spec), spec.out_channels, cfg.w_dim, spec.resolution, cfg.use_noise,
                                 blur=spec.blur, cfg=cfg) for spec in cfg.synthesis_layers()]
        self.layers = nn.ModuleList(layers)
        self.to_rgb = EqualConv2d(cfg.channels(cfg.log2_res - 1), cfg.img_channels, 1, gain=1.0)
        self.rgb_bias = nn.Parameter(torch.zeros(cfg.img_channels))
        if cfg.progressive:
            # ToRGB of every lower resolution, index 0 = 4x4 (official ToRGB_lod<k>, k = log2_res - 2 - index);
            # the full resolution keeps `to_rgb`/`rgb_bias`, so a grown model exports as a fixed one.
            self.to_rgb_low = nn.ModuleList(
                ToRGB(cfg.channels(log2 - 1), cfg.img_channels) for log2 in range(2, cfg.log2_res)
            )
            self._init_lod(cfg)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def make_noise(
        self, batch: int, mode: str, generator: torch.Generator | None = None,
    ) -> list[torch.Tensor | None]:
        """Per-layer noise images for a noise mode: the stored buffers, fresh draws, or none."""
        if mode not in NOISE_MODES:
            raise ValueError(f"noise mode must be one of {NOISE_MODES}, got {mode!r}")
        if not self.cfg.use_noise or mode == "none":
            return [None] * self.num_layers
        if mode == "const":
            return [layer.epilogue.noise_const for layer in self.layers]
        dev = self.layers[0].epilogue.bias.device
        return [
            torch.randn(batch, 1, r, r, device=dev, generator=generator)
            for r in (layer.epilogue.resolution for layer in self.layers)
        ]

    def forward(
        self, ws: torch.Tensor, noise: list[torch.Tensor | None] | None = None,
        noise_mode: str = "random",
    ) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1] != self.num_layers:
            raise ValueError(f"ws must be [B, {self.num_layers}, w_dim], got {list(ws.shape)}")
        if noise is None:
            noise = self.make_noise(ws.shape[0], noise_mode)
        return self.run_layers(list(ws.unbind(1)), noise)

    def run_layers(self, w: list[torch.Tensor], noise: list[torch.Tensor | None]) -> torch.Tensor:
        """The network on one w [B, w_dim] and one noise image per layer (the exported form)."""
        if self.cfg.progressive and self.lod_value > 0:
            return self._run_growing(w, noise)
        x = self._input(w[0])
        for layer, w_i, noise_i in zip(self.layers, w, noise):
            x = layer(x, w_i, noise_i)
        return self.to_rgb(x) + self.rgb_bias.view(1, -1, 1, 1)

    def _input(self, w0: torch.Tensor) -> torch.Tensor:
        batch = w0.shape[0]
        if self.cfg.const_input:
            return self.const.expand(batch, -1, -1, -1)
        return self.input_dense(w0).view(batch, -1, 4, 4)

    def rgb_at(self, log2: int, x: torch.Tensor) -> torch.Tensor:
        """The ToRGB of resolution 2**log2 applied to that resolution's features."""
        if log2 == self.cfg.log2_res:
            return self.to_rgb(x) + self.rgb_bias.view(1, -1, 1, 1)
        return self.to_rgb_low[log2 - 2](x)

    def active_layers(self) -> int:
        """Style layers the current lod runs (official G_style `cur_layers`: all minus 2 per whole lod)."""
        if not self.cfg.progressive:
            return self.num_layers
        return self.num_layers - 2 * math.floor(self.lod_value)

    def _run_growing(self, w: list[torch.Tensor], noise: list[torch.Tensor | None]) -> torch.Tensor:
        """At lod > 0: the image of resolution R / 2**floor(lod), with the next resolution's
        ToRGB output blended in by the fraction of lod, upscaled (nearest) to R x R, as the
        official G_synthesis computes it (NVlabs/stylegan training/networks_stylegan.py)."""
        lod, log2_res = self.lod_value, self.cfg.log2_res
        if self.structure == "linear":
            # Every layer runs; each resolution's image replaces the upscaled lower one by
            # lerp_clip(img, lower, lod - its own lod).
            x = self._input(w[0])
            x = self.layers[1](self.layers[0](x, w[0], noise[0]), w[1], noise[1])
            images = self.rgb_at(2, x)
            for log2 in range(3, log2_res + 1):
                i = 2 * log2 - 4
                x = self.layers[i + 1](self.layers[i](x, w[i], noise[i]), w[i + 1], noise[i + 1])
                images = lerp_clip(self.rgb_at(log2, x), upscale2d(images), lod - (log2_res - log2))
            return images
        # Recursive: only the layers up to the current top resolution, the same values.
        k = math.floor(lod)
        frac = lod - k
        top = log2_res - k
        x = self._input(w[0])
        lower = x
        for i in range(2 * top - 2):
            if i == 2 * top - 4:
                lower = x  # the features entering the top resolution's block
            x = self.layers[i](x, w[i], noise[i])
        img = self.rgb_at(top, x)
        if frac > 0:
            img = lerp(img, upscale2d(self.rgb_at(top - 1, lower)), frac)
        return upscale2d(img, 2**k)


class Generator(nn.Module):
    """Mapping + synthesis, with the tracked average w for truncation and style mixing."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    @property
    def num_layers(self) -> int:
        return self.synthesis.num_layers

    def map(self, z: torch.Tensor, update_w_avg: bool = False, c: torch.Tensor | None = None) -> torch.Tensor:
        """z [B, z_dim] (and labels c [B, label_size] when conditional) -> w [B, w_dim]; in
        training, folds the batch into the w_avg EMA."""
        w = self.mapping(z, c)
        if update_w_avg:
            with torch.no_grad():
                batch_avg = w.detach().float().mean(0)
                self.w_avg.copy_(batch_avg.lerp(self.w_avg, self.cfg.w_avg_beta))
        return w

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        return w.unsqueeze(1).expand(-1, self.num_layers, -1)

    def truncate(self, ws: torch.Tensor, psi: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
        """The truncation trick in W: w_avg + psi (w - w_avg) on the first `cutoff` layers."""
        if psi == 1.0:
            return ws
        n = self.num_layers if cutoff is None else cutoff
        coefs = torch.ones(self.num_layers, 1, device=ws.device, dtype=ws.dtype)
        coefs[:n] = psi
        return self.w_avg + coefs * (ws - self.w_avg)

    def mixing_regularisation(
        self, ws: torch.Tensor, ws2: torch.Tensor, prob: float, generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Style-mixing regularisation: with probability `prob` per sample, the styles switch
        from the first latent's to the second's at a random layer in [1, L) (L: the layers the
        current lod runs, as the official G_style's `cur_layers`)."""
        if prob <= 0:
            return ws
        b, n = ws.shape[0], self.synthesis.active_layers()
        if n < 2:
            return ws
        dev = ws.device
        cut = torch.randint(1, n, (b,), device=dev, generator=generator)
        keep = torch.rand(b, device=dev, generator=generator) >= prob
        cut = torch.where(keep, torch.full_like(cut, n), cut)
        use_first = torch.arange(self.num_layers, device=dev)[None, :] < cut[:, None]
        return torch.where(use_first[:, :, None], ws, ws2)

    def forward(
        self, z: torch.Tensor, psi: float = 1.0, cutoff: int | None = None, noise_mode: str = "random",
        c: torch.Tensor | None = None,
    ) -> torch.Tensor:
        ws = self.truncate(self.broadcast(self.map(z, c=c)), psi, cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)

    @property
    def lod(self) -> float:
        """The level of detail (0 for a fixed network or a fully grown one)."""
        return self.synthesis.lod_value if self.cfg.progressive else 0.0

    def set_lod(self, lod: float) -> None:
        if not self.cfg.progressive:
            raise ValueError("set_lod needs a network built with progressive=True")
        self.synthesis.set_lod(lod)


def minibatch_stddev(x: torch.Tensor, group_size: int, num_features: int) -> torch.Tensor:
    """Append the standard deviation over groups of samples as extra feature maps, so that the
    discriminator can see the variety of a batch (Karras et al. 2018)."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g:
        raise ValueError(f"batch {n} must be a multiple of the minibatch-stddev group {g}")
    y = x.float().reshape(g, -1, num_features, c // num_features, h, w)
    y = y - y.mean(dim=0)
    y = (y.square().mean(dim=0) + 1e-8).sqrt()
    y = y.mean(dim=(2, 3, 4))  # [n/g, F]
    y = y.reshape(-1, num_features, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y.to(x.dtype)], dim=1)


class DownConv2d(EqualConv2d):
    """3x3 convolution then 2x downsampling: fused into one strided 4x4 convolution from
    `ModelConfig.d_fused_min_res` (input resolution) up, a convolution and 2x2 average pooling below, as officially."""

    def __init__(self, in_channels: int, out_channels: int, fused: bool) -> None:
        super().__init__(in_channels, out_channels, 3)
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.scaled_weight()
        if self.fused:
            return F.conv2d(x, shifted_sum_4x4(w) * 0.25, stride=2, padding=1)
        return F.avg_pool2d(F.conv2d(x, w, padding=1), 2)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", down=2, fused={self.fused}"


class DiscriminatorBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, fused: bool, blur: bool = True) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(c_in, c_in, 3)
        self.bias0 = nn.Parameter(torch.zeros(c_in))
        self.blur = Blur(c_in) if blur else nn.Identity()
        self.conv1 = DownConv2d(c_in, c_out, fused)
        self.bias1 = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv0(x) + self.bias0.view(1, -1, 1, 1), LRELU_SLOPE)
        x = self.conv1(self.blur(x))
        return F.leaky_relu(x + self.bias1.view(1, -1, 1, 1), LRELU_SLOPE)


class Discriminator(_LodMixin, nn.Module):
    """The official D_basic: fromRGB, blocks down to 4x4, minibatch stddev, conv and two dense."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.from_rgb = EqualConv2d(cfg.img_channels, cfg.channels(cfg.log2_res - 1), 1)
        self.from_rgb_bias = nn.Parameter(torch.zeros(cfg.channels(cfg.log2_res - 1)))
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(b.in_channels, b.out_channels, fused=b.fused, blur=b.blur)
            for b in cfg.discriminator_blocks()
        )
        c4 = cfg.channels(1)
        mbstd = cfg.mbstd_features if cfg.mbstd_group_size > 1 else 0
        self.conv = EqualConv2d(c4 + mbstd, c4, 3)
        self.conv_bias = nn.Parameter(torch.zeros(c4))
        self.dense0 = EqualLinear(c4 * 16, cfg.channels(0))
        # A conditional D scores every class (official D_basic: max(label_size, 1) outputs) and
        # keeps the labelled one in `forward`.
        self.dense1 = EqualLinear(cfg.channels(0), max(cfg.label_size, 1), gain=1.0)
        if cfg.progressive:
            # FromRGB of every lower resolution, index 0 = 4x4 (official FromRGB_lod<k>).
            self.from_rgb_low = nn.ModuleList(
                FromRGB(cfg.img_channels, cfg.channels(log2 - 1)) for log2 in range(2, cfg.log2_res)
            )
            self._init_lod(cfg)

    def rgb_in(self, log2: int, img: torch.Tensor) -> torch.Tensor:
        """The FromRGB of resolution 2**log2 applied to an image of that resolution."""
        if log2 == self.cfg.log2_res:
            return F.leaky_relu(self.from_rgb(img) + self.from_rgb_bias.view(1, -1, 1, 1), LRELU_SLOPE)
        return self.from_rgb_low[log2 - 2](img)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Scores [B, 1]; a conditional D needs the labels c [B, label_size] and returns the sum
        of its per-class scores weighted by them (official `LabelSwitch`)."""
        if self.cfg.progressive and self.lod_value > 0:
            scores = self._final(self._features_growing(img))
        else:
            x = self.from_rgb(img) + self.from_rgb_bias.view(1, -1, 1, 1)
            x = F.leaky_relu(x, LRELU_SLOPE)
            for block in self.blocks:
                x = block(x)
            scores = self._final(x)
        if not self.cfg.label_size:
            return scores
        labels = check_labels(c, img.shape[0], self.cfg.label_size).to(scores.dtype)
        return (scores * labels).sum(dim=1, keepdim=True)

    def _features_growing(self, img: torch.Tensor) -> torch.Tensor:
        """The 4x4 features at lod > 0, as the official D_basic computes them: the image box-
        downscaled to the current top resolution, and below it, by the fraction of lod, the
        lower resolution's FromRGB blended in after the top block."""
        lod, log2_res = self.lod_value, self.cfg.log2_res
        if self.structure == "linear":
            x = self.rgb_in(log2_res, img)
            for i, log2 in enumerate(range(log2_res, 2, -1)):
                x = self.blocks[i](x)
                img = downscale2d(img)
                x = lerp_clip(x, self.rgb_in(log2 - 1, img), lod - (log2_res - log2))
            return x
        k = math.floor(lod)
        frac = lod - k
        top = log2_res - k
        x = self.rgb_in(top, downscale2d(img, 2**k))
        for log2 in range(top, 2, -1):
            x = self.blocks[log2_res - log2](x)
            if log2 == top and frac > 0:
                x = lerp(x, self.rgb_in(top - 1, downscale2d(img, 2 ** (k + 1))), frac)
        return x

    def _final(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.mbstd_group_size > 1:
            x = minibatch_stddev(x, self.cfg.mbstd_group_size, self.cfg.mbstd_features)
        x = F.leaky_relu(self.conv(x) + self.conv_bias.view(1, -1, 1, 1), LRELU_SLOPE)
        x = F.leaky_relu(self.dense0(x.flatten(1)), LRELU_SLOPE)
        return self.dense1(x)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
