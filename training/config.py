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


class ConfigError(ValueError):
    """A configuration that cannot describe a network we implement."""


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
    # Official 'auto' fused_scale: a transposed convolution from this resolution up,
    # nearest upsampling + 3x3 convolution below it.
    fused_up_min_res: int = 128
    # Discriminator.
    mbstd_group_size: int = 4
    mbstd_features: int = 1
    # Defaults for generation; the runtime exposes them as meta.json defaults.
    truncation_psi: float = 0.7
    truncation_cutoff: int | None = None  # None: every style layer
    w_avg_beta: float = 0.995

    def __post_init__(self) -> None:
        res = self.resolution
        if res < 4 or res & (res - 1):
            raise ConfigError(f"resolution must be a power of two >= 4, got {res}")
        if not self.use_mapping and self.z_dim != self.w_dim:
            raise ConfigError("use_mapping=False needs z_dim == w_dim (w is the normalised z)")
        if self.use_mapping and self.mapping_layers < 1:
            raise ConfigError("mapping_layers must be >= 1 when use_mapping is on")
        if self.truncation_cutoff is not None and not 0 <= self.truncation_cutoff <= self.num_layers:
            raise ConfigError(f"truncation_cutoff must be in [0, {self.num_layers}]")

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

    def layer_resolution(self, layer: int) -> int:
        return 2 ** (layer // 2 + 2)

    def layer_channels(self, layer: int) -> int:
        """Output channels of style layer `layer` (stage = log2(res) - 1)."""
        return self.channels(layer // 2 + 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model configuration keys: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))


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
