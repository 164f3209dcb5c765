"""From official StyleGAN1 network records to our configuration and weight names.

The configuration comes from each network's `static_kwargs` over the defaults of the official
build functions (`G_style`, `G_mapping`, `G_synthesis`, `D_basic` in NVlabs/stylegan
`training/networks_stylegan.py`); anything that selects arithmetic we do not implement is refused
with one line. Weights change layout only: TensorFlow keeps convolutions as [k, k, in, out] and
dense layers as [in, out], we keep [out, in, k, k] and [out, in]. The equalised-learning-rate
scales are applied at run time on both sides, so stored values are copied as they are. The fused
upsampling convolution stores the plain 3x3 kernel in both (our `UpConv2d` builds the transposed
kernel from it as the official code does), so it needs no rotation either.

Only `ToRGB_lod0` / `FromRGB_lod0` take part in a finished (lod 0) network; the lower-resolution
ones that progressive growing leaves behind are reported and left out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import ConfigError, ModelConfig
from .official_pickle import NetworkRecord, OfficialPickleError


class UnsupportedNetworkError(OfficialPickleError):
    """An official network whose build arguments or variables describe something we do not implement."""


# Defaults of the official build functions for every argument that shapes the network.
OFFICIAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "G_style": dict(truncation_psi=0.7, truncation_cutoff=8, dlatent_avg_beta=0.995, style_mixing_prob=0.9),
    "G_mapping": dict(
        latent_size=512, label_size=0, dlatent_size=512, dlatent_broadcast=None, mapping_layers=8,
        mapping_fmaps=512, mapping_lrmul=0.01, mapping_nonlinearity="lrelu", use_wscale=True,
        normalize_latents=True, dtype="float32",
    ),
    "G_synthesis": dict(
        dlatent_size=512, num_channels=3, resolution=1024, fmap_base=8192, fmap_decay=1.0, fmap_max=512,
        use_styles=True, const_input_layer=True, use_noise=True, nonlinearity="lrelu", use_wscale=True,
        use_pixel_norm=False, use_instance_norm=True, dtype="float32", fused_scale="auto",
        blur_filter=[1, 2, 1], structure="auto",
    ),
    "D_basic": dict(
        num_channels=1, resolution=32, label_size=0, fmap_base=8192, fmap_decay=1.0, fmap_max=512,
        nonlinearity="lrelu", use_wscale=True, mbstd_group_size=4, mbstd_num_features=1, dtype="float32",
        fused_scale="auto", blur_filter=[1, 2, 1], structure="auto",
    ),
}
# Build arguments that must have one value, because we implement only that arithmetic.
_REQUIRED: dict[str, dict[str, Any]] = {
    "G_mapping": dict(
        label_size=0, mapping_nonlinearity="lrelu", use_wscale=True, normalize_latents=True, dtype="float32",
    ),
    "G_synthesis": dict(
        use_styles=True, nonlinearity="lrelu", use_wscale=True, use_pixel_norm=False, use_instance_norm=True,
        dtype="float32", blur_filter=[1, 2, 1],
    ),
    "D_basic": dict(label_size=0, nonlinearity="lrelu", use_wscale=True, dtype="float32", blur_filter=[1, 2, 1]),
}
# The official 'auto' fused_scale: fused resampling convolutions from 128 px.
_AUTO_FUSED_RES = 128
_STRUCTURES = ("auto", "fixed", "linear", "recursive")  # all the same network at lod 0


@dataclass(frozen=True)
class OfficialWeights:
    """A converted network: our state-dict names -> arrays, and the variables left out."""

    state: dict[str, np.ndarray]
    ignored: tuple[str, ...]


def _plain(value: Any) -> Any:
    """numpy scalars from a pickle as Python numbers; lists and tuples as lists."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def build_args(rec: NetworkRecord, func: str) -> dict[str, Any]:
    """The arguments a network was built with: official defaults, then its static_kwargs."""
    if rec.build_func_name != func:
        raise UnsupportedNetworkError(
            f"network {rec.name} is built by {rec.build_func_name}, not the official StyleGAN {func}"
        )
    args = dict(OFFICIAL_DEFAULTS[func])
    args.update({k: _plain(v) for k, v in rec.static_kwargs.items()})
    for key, want in _REQUIRED.get(func, {}).items():
        if args[key] != want:
            raise UnsupportedNetworkError(
                f"network {rec.name} ({func}) has {key}={args[key]!r}; only {key}={want!r} is implemented"
            )
    return args


def _component(gs: NetworkRecord, key: str) -> NetworkRecord:
    comp = gs.components.get(key)
    if comp is None:
        raise UnsupportedNetworkError(
            f"network {gs.name} has no '{key}' component (it has: {', '.join(gs.components) or 'none'})"
        )
    return comp


def _fused_min_res(value: Any, resolution: int, who: str) -> int:
    if value == "auto":
        return _AUTO_FUSED_RES
    if value is True:
        return 8  # every resampling layer (8 px is the first)
    if value is False:
        return 2 * resolution  # none
    raise UnsupportedNetworkError(f"{who} has fused_scale={value!r}; the official values are True, False and 'auto'")


# Ranges of the build arguments that size the network. Wider than anything NVIDIA released (1024 px,
# 512 features) by a good margin, narrow enough that no argument alone can ask for an absurd network
# before the variables' shapes are compared with it.
_INT_RANGES: dict[str, dict[str, tuple[int, int]]] = {
    "G_mapping": dict(latent_size=(1, 1 << 14), dlatent_size=(1, 1 << 14), mapping_layers=(0, 64),
                      mapping_fmaps=(1, 1 << 14)),
    "G_synthesis": dict(dlatent_size=(1, 1 << 14), num_channels=(1, 4), resolution=(4, 1 << 14),
                        fmap_base=(1, 1 << 24), fmap_max=(1, 1 << 14)),
    "D_basic": dict(num_channels=(1, 4), resolution=(4, 1 << 14), fmap_base=(1, 1 << 24), fmap_max=(1, 1 << 14),
                    mbstd_group_size=(0, 1 << 14), mbstd_num_features=(0, 64)),
}
_FLOAT_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "G_mapping": dict(mapping_lrmul=(1e-12, 1e6)),
    "G_synthesis": dict(fmap_decay=(0.0, 16.0)),
    "D_basic": dict(fmap_decay=(0.0, 16.0)),
}
_BOOLS: dict[str, tuple[str, ...]] = {"G_synthesis": ("const_input_layer", "use_noise")}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _bad(who: str, func: str, key: str, value: Any, need: str) -> UnsupportedNetworkError:
    return UnsupportedNetworkError(f"network {who} ({func}) has {key}={_short(value)}; it must be {need}")


def check_arg_ranges(rec: NetworkRecord, func: str, args: dict[str, Any]) -> None:
    """Types and ranges of the arguments that size a network, checked before anything is built
    from them (a latent_size of -1, a resolution of 2**40, a list where a number belongs)."""
    for key, (lo, hi) in _INT_RANGES.get(func, {}).items():
        if not _is_int(args[key]) or not lo <= args[key] <= hi:
            raise _bad(rec.name, func, key, args[key], f"an integer in [{lo}, {hi}]")
    for key, (flo, fhi) in _FLOAT_RANGES.get(func, {}).items():
        if not _is_real(args[key]) or not flo <= args[key] <= fhi:
            raise _bad(rec.name, func, key, args[key], f"a number in [{flo:g}, {fhi:g}]")
    for key in _BOOLS.get(func, ()):
        if not isinstance(args[key], bool):
            raise _bad(rec.name, func, key, args[key], "True or False")
    if "resolution" in _INT_RANGES.get(func, {}) and args["resolution"] & (args["resolution"] - 1):
        raise _bad(rec.name, func, "resolution", args["resolution"], "a power of two")


def _short(v: Any) -> str:
    text = repr(v) if isinstance(v, (int, float, str, bool, type(None))) else f"a {type(v).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def config_from_records(G: NetworkRecord, D: NetworkRecord, Gs: NetworkRecord) -> ModelConfig:
    """Our ModelConfig for an official (G, D, Gs); one UnsupportedNetworkError line otherwise."""
    style = build_args(Gs, "G_style")
    syn = build_args(_component(Gs, "synthesis"), "G_synthesis")
    mapping = build_args(_component(Gs, "mapping"), "G_mapping")
    d = build_args(D, "D_basic")
    check_arg_ranges(_component(Gs, "synthesis"), "G_synthesis", syn)
    check_arg_ranges(_component(Gs, "mapping"), "G_mapping", mapping)
    check_arg_ranges(D, "D_basic", d)
    for key in ("truncation_psi", "dlatent_avg_beta"):
        if style[key] is not None and not (_is_real(style[key]) and -1e6 <= style[key] <= 1e6):
            raise _bad(Gs.name, "G_style", key, style[key], "a finite number")
    if style["truncation_cutoff"] is not None and not _is_int(style["truncation_cutoff"]):
        raise _bad(Gs.name, "G_style", "truncation_cutoff", style["truncation_cutoff"], "an integer")
    if mapping["dlatent_broadcast"] is not None and not _is_int(mapping["dlatent_broadcast"]):
        raise _bad(Gs.name, "G_mapping", "dlatent_broadcast", mapping["dlatent_broadcast"], "an integer")
    build_args(G, "G_style")
    if {k: _plain(v) for k, v in G.static_kwargs.items()} != {k: _plain(v) for k, v in Gs.static_kwargs.items()}:
        raise UnsupportedNetworkError(f"networks {G.name} and {Gs.name} were built with different arguments")

    res = syn["resolution"]
    num_layers = 2 * int(np.log2(res)) - 2 if isinstance(res, int) and res >= 4 else 0
    for key, value, allowed in (
        ("structure", syn["structure"], _STRUCTURES), ("structure", d["structure"], _STRUCTURES),
    ):
        if value not in allowed:
            raise UnsupportedNetworkError(f"unknown {key}={value!r} (official: {', '.join(allowed)})")
    if mapping["dlatent_size"] != syn["dlatent_size"]:
        raise UnsupportedNetworkError(
            f"mapping dlatent_size {mapping['dlatent_size']} differs from synthesis dlatent_size {syn['dlatent_size']}"
        )
    if mapping["dlatent_broadcast"] not in (None, num_layers):
        raise UnsupportedNetworkError(
            f"mapping dlatent_broadcast={mapping['dlatent_broadcast']} for {num_layers} style layers"
        )
    for key in ("resolution", "num_channels", "fmap_base", "fmap_decay", "fmap_max"):
        if d[key] != syn[key]:
            raise UnsupportedNetworkError(
                f"{D.name} has {key}={d[key]!r} and {Gs.name} {key}={syn[key]!r}; one configuration holds both, "
                "so they must agree"
            )
    g_fused, d_fused = _fused_min_res(syn["fused_scale"], res, Gs.name), _fused_min_res(d["fused_scale"], res, D.name)
    if g_fused != d_fused:
        raise UnsupportedNetworkError(
            f"{Gs.name} fused_scale={syn['fused_scale']!r} and {D.name} fused_scale={d['fused_scale']!r} differ"
        )
    psi, cutoff = style["truncation_psi"], style["truncation_cutoff"]
    if psi is None or cutoff is None or cutoff <= 0:
        psi, cutoff = 1.0, None  # the official G_style then applies no truncation
    else:
        cutoff = min(int(cutoff), num_layers)
    beta = style["dlatent_avg_beta"]
    try:
        return ModelConfig(
            resolution=res,
            z_dim=mapping["latent_size"],
            w_dim=syn["dlatent_size"],
            img_channels=syn["num_channels"],
            fmap_base=syn["fmap_base"],
            fmap_decay=float(syn["fmap_decay"]),
            fmap_max=syn["fmap_max"],
            mapping_layers=mapping["mapping_layers"],
            mapping_width=mapping["mapping_fmaps"],
            mapping_lrmul=float(mapping["mapping_lrmul"]),
            use_mapping=mapping["mapping_layers"] > 0,
            const_input=bool(syn["const_input_layer"]),
            use_noise=bool(syn["use_noise"]),
            fused_up_min_res=g_fused,
            mbstd_group_size=d["mbstd_group_size"],
            mbstd_features=d["mbstd_num_features"],
            truncation_psi=float(psi),
            truncation_cutoff=cutoff,
            w_avg_beta=1.0 if beta is None else float(beta),
        )
    except (ConfigError, TypeError, ValueError) as e:
        raise UnsupportedNetworkError(f"network {Gs.name}: {str(e).splitlines()[0]}") from None


# --- variables ---------------------------------------------------------------------------------

def _conv(v: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(v.transpose(3, 2, 0, 1))  # [k, k, in, out] -> [out, in, k, k]


def _dense(v: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(v.T)  # [in, out] -> [out, in]


def _same(v: np.ndarray) -> np.ndarray:
    return v


class _Variables:
    """A network's variables, taken one by one; whatever is left at the end is accounted for."""

    def __init__(self, rec: NetworkRecord) -> None:
        self.rec = rec
        self.left = rec.all_variables()
        self.state: dict[str, np.ndarray] = {}

    def take(
        self, src: str, dst: str, shape: tuple[int, ...], layout: Callable[[np.ndarray], np.ndarray] = _same
    ) -> None:
        """Move variable `src` to our `dst`, after checking it has the `shape` (official layout)
        that the build arguments imply: every shape is checked here, before any network exists."""
        if src not in self.left:
            raise UnsupportedNetworkError(
                f"network {self.rec.name} has no variable {src}, which the configuration it was built with implies"
            )
        value = self.left[src]
        if tuple(value.shape) != shape:
            raise UnsupportedNetworkError(
                f"network {self.rec.name} variable {src} has shape {list(value.shape)}; the build arguments "
                f"imply {list(shape)}"
            )
        self.state[dst] = layout(np.asarray(self.left.pop(src), dtype=np.float32))

    def check_lod(self, *names: str) -> None:
        for name in names:
            lod = self.left.pop(name, None)
            if lod is not None and float(lod) != 0.0:
                raise UnsupportedNetworkError(
                    f"network {self.rec.name} has {name}={float(lod):g}: it stopped in the middle of progressive "
                    "growing, and only finished networks (lod 0) are converted"
                )

    def finish(self, ignorable: str) -> OfficialWeights:
        ignored = tuple(k for k in self.left if re.fullmatch(ignorable, k))
        unknown = [k for k in self.left if k not in ignored]
        if unknown:
            raise UnsupportedNetworkError(
                f"network {self.rec.name} has variable {unknown[0]} ({len(unknown)} unknown in all), "
                "which the official architecture it names does not have"
            )
        return OfficialWeights(self.state, ignored)


def generator_weights(rec: NetworkRecord, cfg: ModelConfig) -> OfficialWeights:
    """State dict of our `Generator` from an official G_style record (G or Gs). The shapes are
    those of the official G_mapping and G_synthesis (TensorFlow layouts) for `cfg`."""
    v = _Variables(rec)
    syn, mapping = _component(rec, "synthesis").name, _component(rec, "mapping").name
    nf = cfg.channels  # the official nf(stage)
    v.check_lod("lod", f"{syn}/lod")
    v.take("dlatent_avg", "w_avg", (cfg.w_dim,))
    n_map = cfg.mapping_layers if cfg.use_mapping else 0
    for i in range(n_map):
        fan_in = cfg.z_dim if i == 0 else cfg.mapping_width
        fan_out = cfg.w_dim if i == n_map - 1 else cfg.mapping_width
        v.take(f"{mapping}/Dense{i}/weight", f"mapping.layers.{i}.weight", (fan_in, fan_out), _dense)
        v.take(f"{mapping}/Dense{i}/bias", f"mapping.layers.{i}.bias", (fan_out,))

    # (scope, input channels of its convolution or None, output channels, resolution) per style layer
    layers: list[tuple[str, int | None, int, int]] = [
        ("4x4/Const" if cfg.const_input else "4x4/Dense", None, nf(1), 4), ("4x4/Conv", nf(1), nf(1), 4),
    ]
    for log2 in range(3, cfg.log2_res + 1):
        r = 2**log2
        layers += [(f"{r}x{r}/Conv0_up", nf(log2 - 2), nf(log2 - 1), r),
                   (f"{r}x{r}/Conv1", nf(log2 - 1), nf(log2 - 1), r)]
    if cfg.const_input:
        v.take(f"{syn}/4x4/Const/const", "synthesis.const", (1, nf(1), 4, 4))
    else:
        v.take(f"{syn}/4x4/Dense/weight", "synthesis.input_dense.weight", (cfg.w_dim, nf(1) * 16), _dense)
    for i, (scope, ch_in, ch, res) in enumerate(layers):
        dst = f"synthesis.layers.{i}"
        if ch_in is not None:
            v.take(f"{syn}/{scope}/weight", f"{dst}.conv.weight", (3, 3, ch_in, ch), _conv)
        if cfg.use_noise:
            v.take(f"{syn}/noise{i}", f"{dst}.epilogue.noise_const", (1, 1, res, res))
            v.take(f"{syn}/{scope}/Noise/weight", f"{dst}.epilogue.noise_strength", (ch,))
        v.take(f"{syn}/{scope}/bias", f"{dst}.epilogue.bias", (ch,))
        v.take(f"{syn}/{scope}/StyleMod/weight", f"{dst}.epilogue.style.weight", (cfg.w_dim, 2 * ch), _dense)
        v.take(f"{syn}/{scope}/StyleMod/bias", f"{dst}.epilogue.style.bias", (2 * ch,))
    last = nf(cfg.log2_res - 1)
    v.take(f"{syn}/ToRGB_lod0/weight", "synthesis.to_rgb.weight", (1, 1, last, cfg.img_channels), _conv)
    v.take(f"{syn}/ToRGB_lod0/bias", "synthesis.rgb_bias", (cfg.img_channels,))
    return v.finish(rf"{re.escape(syn)}/ToRGB_lod[1-9][0-9]*/(weight|bias)")


def discriminator_weights(rec: NetworkRecord, cfg: ModelConfig) -> OfficialWeights:
    """State dict of our `Discriminator` from an official D_basic record (shapes as D_basic makes them)."""
    v = _Variables(rec)
    nf = cfg.channels
    v.check_lod("lod")
    top = nf(cfg.log2_res - 1)
    v.take("FromRGB_lod0/weight", "from_rgb.weight", (1, 1, cfg.img_channels, top), _conv)
    v.take("FromRGB_lod0/bias", "from_rgb_bias", (top,))
    for j, log2 in enumerate(range(cfg.log2_res, 2, -1)):
        scope, c, c_down = f"{2**log2}x{2**log2}", nf(log2 - 1), nf(log2 - 2)
        v.take(f"{scope}/Conv0/weight", f"blocks.{j}.conv0.weight", (3, 3, c, c), _conv)
        v.take(f"{scope}/Conv0/bias", f"blocks.{j}.bias0", (c,))
        v.take(f"{scope}/Conv1_down/weight", f"blocks.{j}.conv1.weight", (3, 3, c, c_down), _conv)
        v.take(f"{scope}/Conv1_down/bias", f"blocks.{j}.bias1", (c_down,))
    mbstd = cfg.mbstd_features if cfg.mbstd_group_size > 1 else 0
    v.take("4x4/Conv/weight", "conv.weight", (3, 3, nf(1) + mbstd, nf(1)), _conv)
    v.take("4x4/Conv/bias", "conv_bias", (nf(1),))
    v.take("4x4/Dense0/weight", "dense0.weight", (nf(1) * 16, nf(0)), _dense)
    v.take("4x4/Dense0/bias", "dense0.bias", (nf(0),))
    v.take("4x4/Dense1/weight", "dense1.weight", (nf(0), 1), _dense)
    v.take("4x4/Dense1/bias", "dense1.bias", (1,))
    return v.finish(r"FromRGB_lod[1-9][0-9]*/(weight|bias)")
