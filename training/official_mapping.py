"""From official StyleGAN1 network records to our configuration and weight names.

The configuration comes from each network's `static_kwargs` over the defaults of its build
function (`G_style`, `G_mapping`, `G_synthesis`, `D_basic`) AS THE FILE'S OWN SOURCE HAS THEM:
people edit those defaults (`mapping_lrmul`, `fmap_base`, the truncation, the resolution from
which resampling convolutions are fused) instead of passing arguments, and the official loader
builds the network from the embedded source, so the stock values would describe another network.
`official_source.read_build_source` reads them from the text with `ast` (nothing is run) and
refuses a source whose code departs from NVIDIA's. Anything that selects arithmetic we do not
implement is refused with one line. Weights change layout only: TensorFlow keeps convolutions as
[k, k, in, out] and dense layers as [in, out], we keep [out, in, k, k] and [out, in]. The
equalised-learning-rate scales are applied at run time on both sides, so stored values are
copied as they are. The fused upsampling convolution stores the plain 3x3 kernel in both (our
`UpConv2d` builds the transposed kernel from it as the official code does), so it needs no
rotation either.

A finished network (lod 0) uses only `ToRGB_lod0` / `FromRGB_lod0`; the lower-resolution ones
that progressive growing leaves behind are reported and left out. A snapshot taken during
growing (lod > 0) becomes a progressive model at that lod (`ModelConfig.progressive`, the lod
buffers), whose lower-resolution ToRGB/FromRGB layers are `to_rgb_low` / `from_rgb_low`, so it
computes what the official graph computes at that lod.
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
from .official_source import SourceFacts, read_build_source


class UnsupportedNetworkError(OfficialPickleError):
    """An official network whose build arguments or variables describe something we do not implement."""


# The stock defaults of the official build functions (NVlabs/stylegan and NVlabs/stylegan2
# training/networks_stylegan.py, identical in both) for every argument the converter reads. The
# conversion takes the defaults from each file's own source instead; these are what the packaged
# source reference must agree with, and the keys are the arguments read.
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
    "G_mapping": dict(mapping_nonlinearity="lrelu", use_wscale=True, normalize_latents=True, dtype="float32"),
    "G_synthesis": dict(nonlinearity="lrelu", use_wscale=True, dtype="float32"),
    "D_basic": dict(nonlinearity="lrelu", use_wscale=True, dtype="float32"),
}
_BLUR = [1, 2, 1]  # the one filter we implement; official `blur(x)` skips filtering when the filter is falsy
_STRUCTURES = ("auto", "fixed", "linear", "recursive")


@dataclass(frozen=True)
class OfficialWeights:
    """A converted network: our state-dict names -> arrays, and the variables left out."""

    state: dict[str, np.ndarray]
    ignored: tuple[str, ...]


@dataclass(frozen=True)
class OfficialModel:
    """What an official (G, D, Gs) describes: our configuration, each network's level of detail
    (official `lod` variable; > 0 for a snapshot taken during progressive growing) and structure
    as `Gs.run` evaluates it, and what the embedded build source edits (`SourceFacts.edited`)."""

    config: ModelConfig
    lods: dict[str, float]  # 'G', 'D', 'Gs'
    structures: dict[str, str]  # 'G' (for G and Gs), 'D': 'recursive' | 'linear' | 'fixed'
    edited: tuple[str, ...]
    origin: str


class SourceFactsCache:
    """The facts of each distinct build source, read once (G, D, Gs and the components of an
    official file all carry the same text); `reference` None is the packaged reference."""

    def __init__(self, reference: Any = None) -> None:
        self.reference = reference
        self._facts: dict[str, SourceFacts] = {}

    def facts(self, rec: NetworkRecord) -> SourceFacts:
        text = rec.build_module_src
        if text not in self._facts:
            try:
                self._facts[text] = read_build_source(text, self.reference)
            except OfficialPickleError as e:
                raise type(e)(f"network {rec.name}: {e}") from None
        return self._facts[text]


def _plain(value: Any) -> Any:
    """numpy scalars from a pickle as Python numbers; lists and tuples as lists."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def build_args(rec: NetworkRecord, func: str, facts: SourceFacts) -> dict[str, Any]:
    """The arguments a network was built with: its source's defaults, then its static_kwargs."""
    if rec.build_func_name != func:
        raise UnsupportedNetworkError(
            f"network {rec.name} is built by {rec.build_func_name}, not the official StyleGAN {func}"
        )
    defaults = facts.defaults.get(func, {})
    missing = [k for k in OFFICIAL_DEFAULTS[func] if k not in defaults]
    if missing:  # the source reader gives every literal default; a missing one is not a literal
        raise UnsupportedNetworkError(
            f"network {rec.name}: its build source gives {func} no literal default for {missing[0]}"
        )
    args = {k: _plain(v) for k, v in defaults.items()}
    args.update({k: _plain(v) for k, v in rec.static_kwargs.items()})
    for key, want in _REQUIRED.get(func, {}).items():
        if args[key] != want or type(args[key]) is not type(want):
            raise UnsupportedNetworkError(
                f"network {rec.name} ({func}) has {key}={_short(args[key])}; only {key}={want!r} is implemented"
            )
    return args


def _component(gs: NetworkRecord, key: str) -> NetworkRecord:
    comp = gs.components.get(key)
    if comp is None:
        raise UnsupportedNetworkError(
            f"network {gs.name} has no '{key}' component (it has: {', '.join(gs.components) or 'none'})"
        )
    return comp


def _fused_min_res(value: Any, auto: int, resolution: int, who: str) -> int:
    """The resolution from which a network fuses: `auto` is the threshold its source's
    upscale2d_conv2d / conv2d_downscale2d computes for fused_scale='auto'."""
    if value == "auto" and isinstance(value, str):
        return auto
    if value is True:
        return 8  # every resampling layer (8 px is the first)
    if value is False:
        return 2 * resolution  # none
    raise UnsupportedNetworkError(
        f"{who} has fused_scale={_short(value)}; the official values are True, False and 'auto'"
    )


def _use_blur(value: Any, who: str, func: str) -> bool:
    if value is None or value is False or (isinstance(value, list) and not value):
        return False
    if isinstance(value, list) and value == _BLUR and all(_is_real(v) for v in value):
        return True
    raise UnsupportedNetworkError(
        f"network {who} ({func}) has blur_filter={_short(value)}; only [1, 2, 1] and None are implemented"
    )


# Ranges of the build arguments that size the network. Wider than anything NVIDIA released (1024 px,
# 512 features) by a good margin, narrow enough that no argument alone can ask for an absurd network
# before the variables' shapes are compared with it.
_INT_RANGES: dict[str, dict[str, tuple[int, int]]] = {
    "G_mapping": dict(latent_size=(1, 1 << 14), dlatent_size=(1, 1 << 14), mapping_layers=(0, 64),
                      mapping_fmaps=(1, 1 << 14), label_size=(0, 1 << 16)),
    "G_synthesis": dict(dlatent_size=(1, 1 << 14), num_channels=(1, 4), resolution=(4, 1 << 14),
                        fmap_base=(1, 1 << 24), fmap_max=(1, 1 << 14)),
    "D_basic": dict(num_channels=(1, 4), resolution=(4, 1 << 14), fmap_base=(1, 1 << 24), fmap_max=(1, 1 << 14),
                    mbstd_group_size=(0, 1 << 14), mbstd_num_features=(0, 64), label_size=(0, 1 << 16)),
}
_FLOAT_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "G_mapping": dict(mapping_lrmul=(1e-12, 1e6)),
    "G_synthesis": dict(fmap_decay=(0.0, 16.0)),
    "D_basic": dict(fmap_decay=(0.0, 16.0)),
}
_BOOLS: dict[str, tuple[str, ...]] = {
    "G_synthesis": ("const_input_layer", "use_noise", "use_styles", "use_pixel_norm", "use_instance_norm"),
}


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
    if isinstance(v, list) and len(v) <= 8 and all(isinstance(x, (int, float)) for x in v):
        text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _lod(rec: NetworkRecord, name: str, max_lod: int) -> float:
    """A network's own level of detail (0 when the variable is absent, as in a fixed structure)."""
    value = rec.variables.get(name)
    if value is None:
        return 0.0
    if np.shape(value) != () or not math.isfinite(float(value)) or not 0.0 <= float(value) <= max_lod:
        raise UnsupportedNetworkError(
            f"network {rec.name} has {name}={_short(_plain(value))}; a level of detail is a number in [0, {max_lod}]"
        )
    return float(np.float32(value))


def _structure(value: str) -> str:
    # Gs.run and D.run evaluate 'auto' as 'recursive' (the 'linear' graph only for the template);
    # both compute the same values.
    return "recursive" if value == "auto" else value


def describe_records(
    G: NetworkRecord, D: NetworkRecord, Gs: NetworkRecord, sources: SourceFactsCache | None = None,
) -> OfficialModel:
    """Our configuration and the lods of an official (G, D, Gs); one UnsupportedNetworkError line otherwise."""
    sources = sources or SourceFactsCache()
    syn_rec, map_rec = _component(Gs, "synthesis"), _component(Gs, "mapping")
    facts = {key: sources.facts(rec) for key, rec in
             (("G_style", Gs), ("G_synthesis", syn_rec), ("G_mapping", map_rec), ("D_basic", D), ("G", G))}
    style = build_args(Gs, "G_style", facts["G_style"])
    syn = build_args(syn_rec, "G_synthesis", facts["G_synthesis"])
    mapping = build_args(map_rec, "G_mapping", facts["G_mapping"])
    d = build_args(D, "D_basic", facts["D_basic"])
    check_arg_ranges(syn_rec, "G_synthesis", syn)
    check_arg_ranges(map_rec, "G_mapping", mapping)
    check_arg_ranges(D, "D_basic", d)
    for key in ("truncation_psi", "dlatent_avg_beta"):
        if style[key] is not None and not (_is_real(style[key]) and -1e6 <= style[key] <= 1e6):
            raise _bad(Gs.name, "G_style", key, style[key], "a finite number")
    if style["truncation_cutoff"] is not None and not _is_int(style["truncation_cutoff"]):
        raise _bad(Gs.name, "G_style", "truncation_cutoff", style["truncation_cutoff"], "an integer")
    if mapping["dlatent_broadcast"] is not None and not _is_int(mapping["dlatent_broadcast"]):
        raise _bad(Gs.name, "G_mapping", "dlatent_broadcast", mapping["dlatent_broadcast"], "an integer")
    build_args(G, "G_style", facts["G"])
    if {k: _plain(v) for k, v in G.static_kwargs.items()} != {k: _plain(v) for k, v in Gs.static_kwargs.items()}:
        raise UnsupportedNetworkError(f"networks {G.name} and {Gs.name} were built with different arguments")
    if facts["G"] != facts["G_style"]:  # Gs is a clone of G: the same source, so the same defaults
        raise UnsupportedNetworkError(f"networks {G.name} and {Gs.name} were built from different build sources")

    res = syn["resolution"]
    log2_res = int(np.log2(res))
    num_layers = 2 * log2_res - 2
    for who, value in ((Gs.name, syn["structure"]), (D.name, d["structure"])):
        if value not in _STRUCTURES:
            raise UnsupportedNetworkError(
                f"network {who} has structure={_short(value)} (official: {', '.join(_STRUCTURES)})"
            )
    if mapping["dlatent_size"] != syn["dlatent_size"]:
        raise UnsupportedNetworkError(
            f"mapping dlatent_size {mapping['dlatent_size']} differs from synthesis dlatent_size {syn['dlatent_size']}"
        )
    # G_style broadcasts w to the synthesis' style inputs: one per layer, or one without styles.
    num_styles = num_layers if syn["use_styles"] else 1
    if mapping["dlatent_broadcast"] not in (None, num_styles):
        raise UnsupportedNetworkError(
            f"mapping dlatent_broadcast={mapping['dlatent_broadcast']} for {num_styles} style inputs"
        )
    for key in ("resolution", "num_channels", "fmap_base", "fmap_decay", "fmap_max"):
        if d[key] != syn[key]:
            raise UnsupportedNetworkError(
                f"{D.name} has {key}={d[key]!r} and {Gs.name} {key}={syn[key]!r}; one configuration holds both, "
                "so they must agree"
            )
    if d["label_size"] != mapping["label_size"]:
        raise UnsupportedNetworkError(
            f"{D.name} has label_size={d['label_size']} and {Gs.name} label_size={mapping['label_size']}; "
            "one configuration holds both, so they must agree"
        )
    g_blur = _use_blur(syn["blur_filter"], Gs.name, "G_synthesis")
    if _use_blur(d["blur_filter"], D.name, "D_basic") != g_blur:
        raise UnsupportedNetworkError(
            f"{Gs.name} blur_filter={_short(syn['blur_filter'])} and {D.name} blur_filter={_short(d['blur_filter'])} "
            "differ; one configuration holds both, so they must agree"
        )
    if mapping["label_size"] and mapping["mapping_layers"] < 1:
        raise UnsupportedNetworkError(f"network {Gs.name} has labels but no mapping layers, which we do not implement")
    g_fused = _fused_min_res(syn["fused_scale"], facts["G_synthesis"].fused_up_min_res, res, Gs.name)
    d_fused = _fused_min_res(d["fused_scale"], facts["D_basic"].fused_down_min_res, res, D.name)

    max_lod = log2_res - 2
    lods = {"G": _lod(G, "lod", max_lod), "Gs": _lod(Gs, "lod", max_lod), "D": _lod(D, "lod", max_lod)}
    structures = {"G": _structure(syn["structure"]), "D": _structure(d["structure"])}
    # The 'fixed' graphs never read lod: such a network is the full-resolution one whatever it says.
    progressive = any(lods[k] > 0 and structures["D" if k == "D" else "G"] != "fixed" for k in lods)
    if not progressive:
        lods = dict.fromkeys(lods, 0.0)
    elif "fixed" in structures.values():
        raise UnsupportedNetworkError(
            f"{Gs.name} structure={syn['structure']!r} and {D.name} structure={d['structure']!r} at lod "
            f"{max(lods.values()):g}: a mid-growth snapshot converts when neither network is 'fixed'"
        )

    psi, cutoff = style["truncation_psi"], style["truncation_cutoff"]
    if psi is None or cutoff is None or cutoff <= 0:
        psi, cutoff = 1.0, None  # the official G_style then applies no truncation
    else:
        cutoff = min(int(cutoff), num_layers)
    beta = style["dlatent_avg_beta"]
    try:
        cfg = ModelConfig(
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
            const_input=syn["const_input_layer"],
            use_noise=syn["use_noise"],
            use_styles=syn["use_styles"],
            use_pixel_norm=syn["use_pixel_norm"],
            use_instance_norm=syn["use_instance_norm"],
            use_blur=g_blur,
            progressive=progressive,
            fused_up_min_res=g_fused,
            # None keeps configurations of files whose two thresholds agree as they were written.
            fused_down_min_res=None if d_fused == g_fused else d_fused,
            label_size=mapping["label_size"],
            mbstd_group_size=d["mbstd_group_size"],
            mbstd_features=d["mbstd_num_features"],
            truncation_psi=float(psi),
            truncation_cutoff=cutoff,
            w_avg_beta=1.0 if beta is None else float(beta),
        )
    except (ConfigError, TypeError, ValueError) as e:
        raise UnsupportedNetworkError(f"network {Gs.name}: {str(e).splitlines()[0]}") from None
    all_facts = list(facts.values())
    edited = tuple(dict.fromkeys(e for f in all_facts for e in f.edited))
    return OfficialModel(cfg, lods, structures, edited, facts["G_style"].origin)


def config_from_records(
    G: NetworkRecord, D: NetworkRecord, Gs: NetworkRecord, reference: Any = None,
) -> ModelConfig:
    """Our ModelConfig for an official (G, D, Gs); one UnsupportedNetworkError line otherwise."""
    return describe_records(G, D, Gs, SourceFactsCache(reference)).config


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

    def lod(self, names: tuple[str, ...], dst: str | None, lod: float) -> None:
        """The lod variables, read already (`describe_records`): a progressive model keeps its
        own as the buffer `dst`; a finished one has none."""
        for name in names:
            self.left.pop(name, None)
        if dst is not None:
            self.state[dst] = np.asarray(lod, dtype=np.float32)

    def finish(self, ignorable: str | None) -> OfficialWeights:
        ignored = tuple(k for k in self.left if ignorable is not None and re.fullmatch(ignorable, k))
        unknown = [k for k in self.left if k not in ignored]
        if unknown:
            raise UnsupportedNetworkError(
                f"network {self.rec.name} has variable {unknown[0]} ({len(unknown)} unknown in all), "
                "which the official architecture it names does not have"
            )
        return OfficialWeights(self.state, ignored)


def generator_weights(rec: NetworkRecord, cfg: ModelConfig, lod: float = 0.0) -> OfficialWeights:
    """State dict of our `Generator` from an official G_style record (G or Gs) at level of detail
    `lod` (that of the record, for a progressive `cfg`). The shapes are those of the official
    G_mapping and G_synthesis (TensorFlow layouts) for `cfg`."""
    v = _Variables(rec)
    syn, mapping = _component(rec, "synthesis").name, _component(rec, "mapping").name
    nf = cfg.channels  # the official nf(stage)
    # G_style assigns its own lod to the synthesis' before every run, so the synthesis' is not read.
    v.lod(("lod", f"{syn}/lod"), "synthesis.lod" if cfg.progressive else None, lod)
    v.take("dlatent_avg", "w_avg", (cfg.w_dim,))
    n_map = cfg.mapping_layers if cfg.use_mapping else 0
    if cfg.label_size:
        # Official LabelConcat/weight [label_size, latent_size], used raw, as our label_embed.
        v.take(f"{mapping}/LabelConcat/weight", "mapping.label_embed", (cfg.label_size, cfg.z_dim))
    for i in range(n_map):
        fan_in = (2 * cfg.z_dim if cfg.label_size else cfg.z_dim) if i == 0 else cfg.mapping_width
        fan_out = cfg.w_dim if i == n_map - 1 else cfg.mapping_width
        v.take(f"{mapping}/Dense{i}/weight", f"mapping.layers.{i}.weight", (fan_in, fan_out), _dense)
        v.take(f"{mapping}/Dense{i}/bias", f"mapping.layers.{i}.bias", (fan_out,))

    if cfg.const_input:
        v.take(f"{syn}/4x4/Const/const", "synthesis.const", (1, nf(1), 4, 4))
    else:
        v.take(f"{syn}/4x4/Dense/weight", "synthesis.input_dense.weight", (cfg.w_dim, nf(1) * 16), _dense)
    for spec in cfg.synthesis_layers():
        dst, scope, ch = f"synthesis.layers.{spec.index}", spec.scope, spec.out_channels
        if spec.conv != "none":
            v.take(f"{syn}/{scope}/weight", f"{dst}.conv.weight", (3, 3, spec.in_channels, ch), _conv)
        if cfg.use_noise:
            res = spec.resolution
            v.take(f"{syn}/noise{spec.index}", f"{dst}.epilogue.noise_const", (1, 1, res, res))
            v.take(f"{syn}/{scope}/Noise/weight", f"{dst}.epilogue.noise_strength", (ch,))
        v.take(f"{syn}/{scope}/bias", f"{dst}.epilogue.bias", (ch,))
        if cfg.use_styles:
            v.take(f"{syn}/{scope}/StyleMod/weight", f"{dst}.epilogue.style.weight", (cfg.w_dim, 2 * ch), _dense)
            v.take(f"{syn}/{scope}/StyleMod/bias", f"{dst}.epilogue.style.bias", (2 * ch,))
    last = nf(cfg.log2_res - 1)
    v.take(f"{syn}/ToRGB_lod0/weight", "synthesis.to_rgb.weight", (1, 1, last, cfg.img_channels), _conv)
    v.take(f"{syn}/ToRGB_lod0/bias", "synthesis.rgb_bias", (cfg.img_channels,))
    if not cfg.progressive:
        return v.finish(rf"{re.escape(syn)}/ToRGB_lod[1-9][0-9]*/(weight|bias)")
    for log2 in range(2, cfg.log2_res):  # ToRGB_lod<k> draws resolution 2**(log2_res - k)
        scope, dst = f"{syn}/ToRGB_lod{cfg.log2_res - log2}", f"synthesis.to_rgb_low.{log2 - 2}"
        v.take(f"{scope}/weight", f"{dst}.conv.weight", (1, 1, nf(log2 - 1), cfg.img_channels), _conv)
        v.take(f"{scope}/bias", f"{dst}.bias", (cfg.img_channels,))
    return v.finish(None)


def discriminator_weights(rec: NetworkRecord, cfg: ModelConfig, lod: float = 0.0) -> OfficialWeights:
    """State dict of our `Discriminator` from an official D_basic record (shapes as D_basic makes them)."""
    v = _Variables(rec)
    nf = cfg.channels
    v.lod(("lod",), "lod" if cfg.progressive else None, lod)
    top = nf(cfg.log2_res - 1)
    v.take("FromRGB_lod0/weight", "from_rgb.weight", (1, 1, cfg.img_channels, top), _conv)
    v.take("FromRGB_lod0/bias", "from_rgb_bias", (top,))
    for block in cfg.discriminator_blocks():
        j, scope, c, c_down = block.index, block.scope, block.in_channels, block.out_channels
        v.take(f"{scope}/Conv0/weight", f"blocks.{j}.conv0.weight", (3, 3, c, c), _conv)
        v.take(f"{scope}/Conv0/bias", f"blocks.{j}.bias0", (c,))
        v.take(f"{scope}/Conv1_down/weight", f"blocks.{j}.conv1.weight", (3, 3, c, c_down), _conv)
        v.take(f"{scope}/Conv1_down/bias", f"blocks.{j}.bias1", (c_down,))
    mbstd = cfg.mbstd_features if cfg.mbstd_group_size > 1 else 0
    v.take("4x4/Conv/weight", "conv.weight", (3, 3, nf(1) + mbstd, nf(1)), _conv)
    v.take("4x4/Conv/bias", "conv_bias", (nf(1),))
    v.take("4x4/Dense0/weight", "dense0.weight", (nf(1) * 16, nf(0)), _dense)
    v.take("4x4/Dense0/bias", "dense0.bias", (nf(0),))
    # A conditional D_basic scores every class (max(label_size, 1) outputs; official LabelSwitch keeps one).
    n_out = max(cfg.label_size, 1)
    v.take("4x4/Dense1/weight", "dense1.weight", (nf(0), n_out), _dense)
    v.take("4x4/Dense1/bias", "dense1.bias", (n_out,))
    if not cfg.progressive:
        return v.finish(r"FromRGB_lod[1-9][0-9]*/(weight|bias)")
    for log2 in range(2, cfg.log2_res):  # FromRGB_lod<k> reads resolution 2**(log2_res - k)
        scope, dst = f"FromRGB_lod{cfg.log2_res - log2}", f"from_rgb_low.{log2 - 2}"
        v.take(f"{scope}/weight", f"{dst}.conv.weight", (1, 1, cfg.img_channels, nf(log2 - 1)), _conv)
        v.take(f"{scope}/bias", f"{dst}.bias", (nf(log2 - 1),))
    return v.finish(None)
