"""StyleGAN1 networks in NVIDIA's pickle format (NVlabs/stylegan and NVlabs/stylegan2 dnnlib) as our checkpoints.

    >>> convert_official_pickle("karras2019stylegan-ffhq-1024x1024.pkl", "ffhq.safetensors")

reads the file without running anything in it (`official_pickle`), reads the build source it
embeds as text (`official_source`: its edited defaults and fused thresholds are parameters, an
edited operation is refused), maps `Gs` onto our `Generator` (as `G_ema`), and `G` and `D` onto
the training generator and discriminator, with the configuration read from their build
arguments (`official_mapping`), and writes our safetensors checkpoint. The converted `G_ema`
reproduces the official `Gs.run` images, for every label of a class-conditional network and at
the lod of a snapshot taken during progressive growing: our networks follow the official
arithmetic, layer for layer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylegan_edge.runtime.files import sha256_file

from .checkpoint import save_model
from .config import ModelConfig
from .networks import Discriminator, Generator
from .official_mapping import (
    OfficialWeights,
    SourceFactsCache,
    UnsupportedNetworkError,
    describe_records,
    discriminator_weights,
    generator_weights,
)
from .official_pickle import NetworkRecord, OfficialPickleError, read_official_pickle
from .official_source import OfficialSourceError

__all__ = [
    "ImportedOfficial",
    "NetworkRecord",
    "OfficialPickleError",
    "OfficialSourceError",
    "UnsupportedNetworkError",
    "convert_official_pickle",
    "import_official",
    "load_official_pickle",
    "save_imported",
]


@dataclass(frozen=True)
class ImportedOfficial:
    """An official file as our modules, with what the conversion left out."""

    source: Path
    source_sha256: str
    config: ModelConfig
    G_ema: Generator  # official Gs, the long-term average used for images
    G: Generator  # official G, the instantaneous generator, for fine-tuning
    D: Discriminator
    ignored: tuple[str, ...]  # Gs variables of the lower-resolution ToRGB layers left out (lod 0 only)
    ignored_parameters: int
    official_static_kwargs: dict[str, Any]
    state_version: int = 3  # the dnnlib network state version: 2, 3 (NVlabs/stylegan) or 4 (NVlabs/stylegan2)
    lod: float = 0.0  # Gs's level of detail; > 0: a snapshot taken during progressive growing
    source_edited: tuple[str, ...] = ()  # what the embedded build source changes from NVIDIA's (defaults, thresholds)
    source_origin: str = ""

    def summary(self, out: str | Path | None = None) -> str:
        """One line for the command line."""
        cfg = self.config
        where = f" -> {out}" if out is not None else ""
        layers = len({name.rsplit("/", 1)[0] for name in self.ignored})
        labels = f"{cfg.label_size} classes" if cfg.label_size else "unconditional"
        if self.lod > 0:
            stage = _growth_stage(cfg.resolution, self.lod)
            growth = f"mid-growth at lod {self.lod:g}, kept as Gs.run draws it ({stage})"
        else:
            growth = (f"lod 0; left out {layers} progressive-growing ToRGB layers "
                      f"({self.ignored_parameters:,} parameters)")
        edits = ", ".join(self.source_edited) if self.source_edited else "none"
        return (
            f"{self.source.name}{where}: state v{self.state_version}, {cfg.resolution} px, "
            f"{self.G_ema.num_layers} style layers, z {cfg.z_dim} / w {cfg.w_dim}, {labels}, "
            f"{sum(p.numel() for p in self.G_ema.parameters()):,} generator parameters (G_ema from Gs, with G and D); "
            f"{growth}; source edits: {edits}"
        )


def _growth_stage(resolution: int, lod: float) -> str:
    top = resolution >> math.floor(lod)
    if lod == math.floor(lod):
        return f"{top} px upscaled to {resolution} px"
    return f"{top // 2} px fading into {top} px, upscaled to {resolution} px"


def load_official_pickle(path: str | Path) -> dict[str, NetworkRecord]:
    """The networks of an official file as inert records: {'G': ..., 'D': ..., 'Gs': ...}."""
    G, D, Gs = read_official_pickle(path)
    return {"G": G, "D": D, "Gs": Gs}


def _check_variable_bytes(path: Path, records: tuple[NetworkRecord, ...]) -> None:
    """Every variable of an official file has its own bytes in the file, so together they fit in
    it; a file that names one array many times (each name becomes its own parameter) would make
    the networks far larger than the file, and is refused before anything is converted."""
    size = path.stat().st_size
    total = sum(int(v.nbytes) for rec in records for v in rec.all_variables().values())
    if total > size:
        raise UnsupportedNetworkError(
            f"{path}: its variables need {total:,} bytes but the file holds {size:,}: arrays are shared between "
            "variables, which official files never do"
        )


def _load(module: torch.nn.Module, weights: OfficialWeights, what: str, path: Path) -> None:
    expected = module.state_dict()
    given = weights.state
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:  # the mapping and networks.py disagree: a bug here, not in the file
        raise UnsupportedNetworkError(
            f"{path}: {what} does not map onto our model ({len(missing)} missing, {len(unexpected)} unexpected; "
            f"{(missing or unexpected)[0]})"
        )
    state = {}
    for name, value in given.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise UnsupportedNetworkError(
                f"{path}: {what} weight {name} has shape {list(value.shape)}, its configuration needs "
                f"{list(expected[name].shape)}"
            )
        state[name] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    module.load_state_dict(state, strict=True)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def import_official(path: str | Path, reference: Any = None) -> ImportedOfficial:
    """Read an official file into our modules (eval mode, on the CPU). One-line errors:
    OfficialPickleError for a file that is refused or unreadable, UnsupportedNetworkError (a
    subclass) for a network we do not implement, OfficialSourceError (a subclass) for a build
    source that departs from NVIDIA's. `reference`: what the embedded source is compared with
    (`official_source.reference_from_source`); None, the packaged reference of NVIDIA's files."""
    path = Path(path)
    G_rec, D_rec, Gs_rec = read_official_pickle(path)
    _check_variable_bytes(path, (G_rec, D_rec, Gs_rec))
    try:
        model = describe_records(G_rec, D_rec, Gs_rec, SourceFactsCache(reference))
        cfg = model.config
        gs_w = generator_weights(Gs_rec, cfg, model.lods["Gs"])
        g_w = generator_weights(G_rec, cfg, model.lods["G"])
        d_w = discriminator_weights(D_rec, cfg, model.lods["D"])
    except OfficialPickleError as e:  # one line, with the file named first
        raise type(e)(f"{path}: {e}") from None
    G_ema, G, D = Generator(cfg), Generator(cfg), Discriminator(cfg)
    _load(G_ema, gs_w, "Gs", path)
    _load(G, g_w, "G", path)
    _load(D, d_w, "D", path)
    if cfg.progressive:  # the structure Gs.run / D.run evaluate (not stored: both compute the same values)
        G_ema.synthesis.structure = G.synthesis.structure = model.structures["G"]
        D.structure = model.structures["D"]
    all_gs = Gs_rec.all_variables()
    return ImportedOfficial(
        source=path,
        source_sha256=sha256_file(path),
        config=cfg,
        G_ema=G_ema.eval().requires_grad_(False),
        G=G.eval(),
        D=D.eval(),
        ignored=gs_w.ignored,
        ignored_parameters=sum(int(all_gs[k].size) for k in gs_w.ignored),
        official_static_kwargs=_json_safe({r.name: r.static_kwargs for r in (G_rec, D_rec, Gs_rec)}),
        state_version=Gs_rec.version,
        lod=model.lods["Gs"],
        source_edited=model.edited,
        source_origin=model.origin,
    )


def save_imported(imported: ImportedOfficial, out: str | Path) -> Path:
    """Write an imported network as our checkpoint (G_ema, G and D), with its provenance."""
    out = Path(out)
    save_model(
        out, imported.G_ema, G=imported.G, D=imported.D,
        extra_meta={
            "source": imported.source.name,
            "source_sha256": imported.source_sha256,
            "source_format": f"NVlabs/stylegan pickle (G, D, Gs), network state version {imported.state_version}",
            "official_static_kwargs": json.dumps(imported.official_static_kwargs, sort_keys=True),
            "source_build_module": imported.source_origin,
            "source_edited": json.dumps(list(imported.source_edited)),
            # The level of detail travels in the lod buffers; said here too, as training checkpoints do.
            **({"lod": f"{imported.lod:g}"} if imported.config.progressive else {}),
        },
    )
    return out


def convert_official_pickle(path: str | Path, out: str | Path, reference: Any = None) -> Path:
    """Convert an official StyleGAN1 pickle to our safetensors checkpoint at `out`; returns `out`."""
    return save_imported(import_official(path, reference), out)
