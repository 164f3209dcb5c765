"""Model configuration: one frozen dataclass, serialised as JSON into checkpoints and bundles.

Kept free of torch so that `stylegan info`, the exporter's metadata and the converter can read
and validate configurations without building a network.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from stylegan_edge.runtime.errors import StyleganError


class ConfigError(StyleganError, ValueError):
    """A configuration that cannot describe a network we implement."""


@dataclass(frozen=True)
class SynthesisLayerSpec:
    """One style layer of the synthesis network, as every stage sees it.

    `conv`: "none" for the 4x4 input's own layer (the learned constant or the dense input, no
    convolution), "conv" for a 3x3 convolution, "up" for 2x upsampling then a 3x3 convolution
    (`fused`: the official transposed-convolution form, from `fused_up_min_res` up; `blur`: the
    [1, 2, 1] filter after it). `scope` is the official variable scope (G_synthesis).
    """

    index: int
    resolution: int
    in_channels: int
    out_channels: int
    conv: str
    fused: bool
    blur: bool
    scope: str


@dataclass(frozen=True)
class DiscriminatorBlockSpec:
    """One discriminator block: 3x3 conv at `resolution` (in_channels), then the downsampling
    3x3 conv to out_channels (`fused`: one strided 4x4 convolution; `blur` before it)."""

    index: int
    resolution: int
    in_channels: int
    out_channels: int
    fused: bool
    blur: bool
    scope: str


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build the generator and discriminator.

    Field names follow the official StyleGAN build arguments where one exists, so that the
    pickle converter maps `static_kwargs` one to one.
    """

    resolution: int = 1024
    z_dim: int = 512
    w_dim: int = 512
    img_channels: int = 3
    # Feature maps per stage: min(fmap_base / 2**(stage * fmap_decay), fmap_max).
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_max: int = 512
    mapping_layers: int = 8
    mapping_width: int = 512
    mapping_lrmul: float = 0.01
    # The paper's ablation switches (Table 1).
    use_mapping: bool = True  # False: w = pixel-normalised z (z_dim must equal w_dim)
    const_input: bool = True  # False: the "traditional" input, a dense layer from w
    use_noise: bool = True
    # Table 1's remaining switches (configurations A and B), official G_synthesis/D_basic names.
    # use_styles=False: no AdaIN, the network never reads w past the traditional input (official
    # `use_styles=False`); the baseline then normalises by pixel norm instead of instance norm
    # (official train.py's tuned baseline: use_pixel_norm=True, use_instance_norm=False).
    use_styles: bool = True
    use_pixel_norm: bool = False
    use_instance_norm: bool = True
    # False: no [1, 2, 1] low-pass filter after upsampling in G nor before downsampling in D
    # (official `blur_filter=None`, Progressive GAN's nearest/box resampling).
    use_blur: bool = True
    # A ToRGB per resolution in G and a FromRGB per resolution in D, and a level of detail (lod)
    # that fades them in (official structure 'linear'/'recursive'); False: the fixed network.
    progressive: bool = False
    # Official 'auto' fused_scale: in G a transposed convolution from this output resolution up,
    # nearest upsampling + 3x3 convolution below it; in D a strided convolution from
    # `fused_down_min_res` (input resolution) up, convolution + average pooling below. The
    # official code has one threshold in each function (`upscale2d_conv2d`, `conv2d_downscale2d`)
    # and people edit them apart. None: the same as fused_up_min_res (configurations written
    # before the two were told apart).
    fused_up_min_res: int = 128
    fused_down_min_res: int | None = None
    # Class conditioning (official `label_size`): the mapping embeds a one-hot label [B, label_size]
    # and concatenates it to z; the discriminator scores every class and keeps the labelled one.
    # 0: unconditional. `label_names` (empty, or one per class) travel to bundles and the CLI.
    label_size: int = 0
    label_names: tuple[str, ...] = ()
    # Discriminator.
    mbstd_group_size: int = 4
    mbstd_features: int = 1
    # Defaults for generation; the runtime exposes them as meta.json defaults.
    truncation_psi: float = 0.7
    truncation_cutoff: int | None = None  # None: every style layer
    w_avg_beta: float = 0.995

    def __post_init__(self) -> None:
        # Types and ranges first: a configuration read from a file is untrusted, and a network is
        # built (memory allocated) from it, so every size is bounded before anything uses it.
        _check_fields(self)
        res = self.resolution
        if res < 4 or res & (res - 1):
            raise ConfigError(f"resolution must be a power of two >= 4, got {res}")
        if not self.use_mapping and self.z_dim != self.w_dim:
            raise ConfigError("use_mapping=False needs z_dim == w_dim (w is the normalised z)")
        if self.label_size and not self.use_mapping:
            raise ConfigError("label_size > 0 needs the mapping network (use_mapping=True): labels enter through it")
        if self.label_names and len(self.label_names) != self.label_size:
            raise ConfigError(f"label_names has {len(self.label_names)} names for label_size={self.label_size}")
        if self.use_mapping and self.mapping_layers < 1:
            raise ConfigError("mapping_layers must be >= 1 when use_mapping is on")
        if self.truncation_cutoff is not None and not 0 <= self.truncation_cutoff <= self.num_layers:
            raise ConfigError(f"truncation_cutoff must be in [0, {self.num_layers}]")
        for stage in range(self.log2_res):
            if self.channels(stage) < 1:
                raise ConfigError(
                    f"fmap_base={self.fmap_base} with fmap_decay={self.fmap_decay} leaves stage {stage} with no "
                    "feature maps"
                )
        if self.mbstd_group_size > 1 and (self.mbstd_features < 1 or self.channels(1) % self.mbstd_features):
            raise ConfigError(
                f"mbstd_features={self.mbstd_features} must be >= 1 and divide the {self.channels(1)} "
                "feature maps at 4x4"
            )
        total = parameter_count(self)
        if total > MAX_PARAMETERS:
            raise ConfigError(
                f"the configuration describes {total:,} parameters and buffers, more than the {MAX_PARAMETERS:,} "
                "this implementation builds"
            )

    # --- derived shape facts, shared by every stage ---------------------------------------
    @property
    def log2_res(self) -> int:
        return int(math.log2(self.resolution))

    @property
    def num_layers(self) -> int:
        """Style layers: two per resolution from 4x4 up (18 at 1024 px)."""
        return 2 * self.log2_res - 2

    def channels(self, stage: int) -> int:
        """Feature maps of a stage, as the official `nf(stage)`."""
        return min(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))), self.fmap_max)

    @property
    def d_fused_min_res(self) -> int:
        """The discriminator's fused-downsampling threshold (input resolution)."""
        return self.fused_up_min_res if self.fused_down_min_res is None else self.fused_down_min_res

    def synthesis_layers(self) -> tuple[SynthesisLayerSpec, ...]:
        """The style layers, in order: the one description of the synthesis structure that the
        networks, the inference graph, the FLOP count, the official-pickle mapping and the bundle's
        layer table (and so the runtime's named style ranges) are built from. Two per resolution:
        at 4x4 the input's own layer and a 3x3 convolution; above, an upsampling convolution and a
        3x3 convolution, with the official nf(stage) channels (stage = log2(resolution) - 1)."""
        c4 = self.channels(1)
        first = "4x4/Const" if self.const_input else "4x4/Dense"
        specs = [
            SynthesisLayerSpec(0, 4, c4, c4, "none", False, False, first),
            SynthesisLayerSpec(1, 4, c4, c4, "conv", False, False, "4x4/Conv"),
        ]
        for log2 in range(3, self.log2_res + 1):
            res, c_in, c_out = 2**log2, self.channels(log2 - 2), self.channels(log2 - 1)
            i = len(specs)
            specs.append(SynthesisLayerSpec(i, res, c_in, c_out, "up", res >= self.fused_up_min_res, self.use_blur,
                                            f"{res}x{res}/Conv0_up"))
            specs.append(SynthesisLayerSpec(i + 1, res, c_out, c_out, "conv", False, False, f"{res}x{res}/Conv1"))
        return tuple(specs)

    def discriminator_blocks(self) -> tuple[DiscriminatorBlockSpec, ...]:
        """The discriminator's blocks from the full resolution down to 8x8 (the 4x4 head is fixed)."""
        return tuple(
            DiscriminatorBlockSpec(j, 2**log2, self.channels(log2 - 1), self.channels(log2 - 2),
                                   2**log2 >= self.d_fused_min_res, self.use_blur, f"{2**log2}x{2**log2}")
            for j, log2 in enumerate(range(self.log2_res, 2, -1))
        )

    def layer_resolution(self, layer: int) -> int:
        return self.synthesis_layers()[layer].resolution

    def layer_channels(self, layer: int) -> int:
        """Output channels of style layer `layer`."""
        return self.synthesis_layers()[layer].out_channels

    def to_dict(self) -> dict[str, Any]:
        # Fields added after models were shipped are written only when they differ from their
        # default: a configuration that has none of them serialises exactly as it always did
        # (bundle metadata, checkpoints and training_config.json of existing runs are unchanged).
        d = dataclasses.asdict(self)
        for name, default in _LATER_FIELDS.items():
            if d[name] == default:
                del d[name]
        if "label_names" in d:
            d["label_names"] = list(d["label_names"])
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model configuration keys: {', '.join(unknown)}")
        data = dict(data)
        if isinstance(data.get("label_names"), list):  # JSON has no tuples
            data["label_names"] = tuple(data["label_names"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))


# Bounds on every field, so that no configuration (from a checkpoint, a bundle or a pickle)
# makes the network builder allocate without limit. Generous: the paper's network is 26M
# parameters at 1024 px with 512 channels; NVIDIA's largest StyleGANs stay well inside.
MAX_PARAMETERS = 1_000_000_000
_INT_RANGES: dict[str, tuple[int, int]] = {
    "resolution": (4, 4096),
    "z_dim": (1, 8192),
    "w_dim": (1, 8192),
    "img_channels": (1, 4),
    "fmap_base": (1, 1 << 20),
    "fmap_max": (1, 8192),
    "mapping_layers": (0, 64),
    "mapping_width": (1, 8192),
    "fused_up_min_res": (0, 1 << 16),
    "mbstd_group_size": (0, 1024),
    "mbstd_features": (0, 8192),
    "label_size": (0, 100_000),
}
_FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "fmap_decay": (0.0, 16.0),
    "mapping_lrmul": (1e-6, 1e3),
    "truncation_psi": (-16.0, 16.0),
    "w_avg_beta": (0.0, 1.0),
}
_BOOL_FIELDS = ("use_mapping", "const_input", "use_noise", "use_styles", "use_pixel_norm", "use_instance_norm",
                "use_blur", "progressive")
# Fields added later, with the defaults that reproduce the network as it was before them.
_LATER_FIELDS: dict[str, Any] = {
    "use_styles": True, "use_pixel_norm": False, "use_instance_norm": True, "use_blur": True, "progressive": False,
    "label_size": 0, "label_names": (), "fused_down_min_res": None,
}
MAX_LABEL_NAME = 200


def _check_fields(cfg: ModelConfig) -> None:
    """One ConfigError naming the first field of the wrong type or out of its range."""
    for name, (lo, hi) in _INT_RANGES.items():
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        if not lo <= value <= hi:
            raise ConfigError(f"{name} must be in [{lo}, {hi}], got {value}")
    for name, (lo_f, hi_f) in _FLOAT_RANGES.items():
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        # NaN fails both comparisons, so it is refused here too.
        if not lo_f <= value <= hi_f:
            raise ConfigError(f"{name} must be a finite number in [{lo_f:g}, {hi_f:g}], got {value}")
    for name in _BOOL_FIELDS:
        value = getattr(cfg, name)
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
    down = cfg.fused_down_min_res
    if down is not None and (isinstance(down, bool) or not isinstance(down, int) or not 0 <= down <= 1 << 16):
        raise ConfigError(f"fused_down_min_res must be null or an integer in [0, {1 << 16}], got {down!r}")
    names = cfg.label_names
    if not isinstance(names, tuple) or not all(isinstance(n, str) and 0 < len(n) <= MAX_LABEL_NAME for n in names):
        raise ConfigError(f"label_names must be a list of non-empty names of at most {MAX_LABEL_NAME} characters")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"label_names names {dup!r} twice (a class is chosen by its one name)")
    cutoff = cfg.truncation_cutoff
    if cutoff is not None and (isinstance(cutoff, bool) or not isinstance(cutoff, int)):
        raise ConfigError(f"truncation_cutoff must be an integer or null, got {cutoff!r}")


def parameter_count(cfg: ModelConfig) -> int:
    """Elements the generator and discriminator allocate (learned parameters and the saved noise
    images), from the configuration alone, so a size can be refused before anything is built.
    Mirrors the layer list of networks.py (a test checks it against the built networks)."""
    c = cfg.channels
    w, log2 = cfg.w_dim, cfg.log2_res

    def dense(n_in: int, n_out: int, bias: bool = True) -> int:
        return n_in * n_out + (n_out if bias else 0)

    def style_layer(spec: SynthesisLayerSpec) -> int:
        ch, res = spec.out_channels, spec.resolution
        n = (9 * spec.in_channels * ch if spec.conv != "none" else 0) + (dense(w, 2 * ch) if cfg.use_styles else 0) + ch
        return n + (ch + res * res if cfg.use_noise else 0)

    g = 0
    if cfg.use_mapping:
        z_in = 2 * cfg.z_dim if cfg.label_size else cfg.z_dim  # z and the label's embedding, concatenated
        dims = [z_in] + [cfg.mapping_width] * (cfg.mapping_layers - 1) + [w]
        g += sum(dense(a, b) for a, b in zip(dims[:-1], dims[1:])) + cfg.label_size * cfg.z_dim
    g += w  # w_avg
    g += c(1) * 16 if cfg.const_input else dense(w, c(1) * 16, bias=False)
    g += sum(style_layer(spec) for spec in cfg.synthesis_layers())
    g += c(log2 - 1) * cfg.img_channels + cfg.img_channels  # toRGB and its bias

    d = cfg.img_channels * c(log2 - 1) + c(log2 - 1)  # fromRGB and its bias
    if cfg.progressive:  # a ToRGB and a FromRGB for every lower resolution, 4x4 up
        g += sum(c(stage - 1) * cfg.img_channels + cfg.img_channels for stage in range(2, log2))
        d += sum(cfg.img_channels * c(stage - 1) + c(stage - 1) for stage in range(2, log2))
    for block in cfg.discriminator_blocks():
        c_in, c_out = block.in_channels, block.out_channels
        d += 9 * c_in * c_in + c_in + 9 * c_in * c_out + c_out
    mbstd = cfg.mbstd_features if cfg.mbstd_group_size > 1 else 0
    d += 9 * (c(1) + mbstd) * c(1) + c(1) + dense(c(1) * 16, c(0)) + dense(c(0), max(cfg.label_size, 1))
    return g + d


PRESETS: dict[str, ModelConfig] = {
    # The paper's FFHQ generator: 1024 px, 512 channels, 26.2M parameters.
    "paper": ModelConfig(),
    # Edge presets: the paper's structure with narrow high-resolution layers, sized so that
    # a Jetson Orin runs them in real time (GFLOP per image in `stylegan info`).
    "edge256": ModelConfig(
        resolution=256, z_dim=256, w_dim=256, fmap_base=2048, fmap_max=256,
        mapping_width=256,
    ),
    "edge512": ModelConfig(
        resolution=512, z_dim=256, w_dim=256, fmap_base=4096, fmap_max=128,
        mapping_width=256,
    ),
    # The shipped model's shape: small enough to train on a 2-core CPU in a few hours.
    "faces64": ModelConfig(
        resolution=64, z_dim=128, w_dim=128, fmap_base=512, fmap_max=64,
        mapping_layers=4, mapping_width=128,
    ),
    # Tests: every code path at 32 px in milliseconds.
    "tiny": ModelConfig(
        resolution=32, z_dim=32, w_dim=32, fmap_base=128, fmap_max=32,
        mapping_layers=2, mapping_width=32,
    ),
}


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
