"""Checkpoints: one safetensors file of named tensors plus JSON metadata; never a pickle.

Layout of the tensor names: `G_ema.<param>` (the generator used for export; always present),
and in training checkpoints `G.<param>`, `D.<param>`, `opt_G.<idx>.<key>`, `opt_D.<idx>.<key>`,
`rng.torch`; progressive models add their level of detail as the buffers `G.synthesis.lod`,
`G_ema.synthesis.lod` and `D.lod` (model files also say it in the `lod` metadata). The metadata
(string -> string, safetensors' own header) holds `format`, `format_version`, `kind` ("model" or
"training"), the model configuration as JSON and, for training, the training configuration,
counters and RNG states.

Writes are atomic: the file is written beside its destination, flushed to disk and renamed over
it, so a crash mid-write leaves the previous checkpoint intact.

Integrity: safetensors has no checksum, so the metadata records `tensors_sha256`, a SHA-256 over
every tensor (name, dtype, shape and bytes, in name order), checked on load; files written before
it existed (the shipped `models/faces64.safetensors`) load without the check. Non-finite weights
are refused on load, naming the tensor.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from stylegan_edge.runtime.errors import StyleganError
from stylegan_edge.runtime.files import atomic_write_bytes

from .config import ConfigError, ModelConfig
from .networks import Discriminator, Generator

FORMAT = "stylegan-edge"
FORMAT_VERSION = 1


HASH_KEY = "tensors_sha256"


class CheckpointError(StyleganError, ValueError):
    """A checkpoint that cannot be used; the message is one line naming the file."""


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors in name order: each name, dtype and shape, then its raw bytes.
    Independent of how safetensors lays the file out, so it survives a rewrite of the header."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        # A byte view works for every dtype, bfloat16 and bool included (numpy has no bfloat16).
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Save named tensors and JSON-serialisable metadata atomically."""
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION)}
    header.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    # safetensors refuses shared or strided storage: give it compact private copies.
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    header[HASH_KEY] = tensors_sha256(flat)
    atomic_write_bytes(path, st_save(flat, metadata=header))


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load and validate a checkpoint file; every failure is one CheckpointError line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        meta = _read_header(data)
    except (SafetensorError, ValueError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({_first_line(e)})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a stylegan-edge checkpoint (no format={FORMAT!r} in its metadata)")
    version = meta.get("format_version", "?")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path}: written in checkpoint format {version}; "
            f"this version of stylegan-edge reads format {FORMAT_VERSION}"
        )
    expected = meta.get(HASH_KEY)
    if expected is not None and tensors_sha256(tensors) != expected:
        raise CheckpointError(
            f"{path}: its tensors do not match the SHA-256 in its metadata (the file is corrupt or was altered)"
        )
    check_finite(tensors, path)
    return tensors, meta


def check_finite(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """One CheckpointError naming the first floating-point tensor holding NaN or infinity."""
    for name in sorted(tensors):
        t = tensors[name]
        if not t.is_floating_point() or not t.numel() or bool(torch.isfinite(t.sum())):
            continue  # a finite sum has no NaN or infinity in it: the cheap test first
        bad = int((~torch.isfinite(t)).sum())
        if bad:  # not merely a sum that overflowed
            raise CheckpointError(f"{path}: tensor {name} holds {bad} NaN or infinite value(s)")


def _read_header(data: bytes) -> dict[str, str]:
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or n > len(data) - 8:
        raise ValueError("header length is out of range")
    return json.loads(data[8 : 8 + n]).get("__metadata__", {}) or {}


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def checkpoint_config(meta: dict[str, str], path: str | Path = "checkpoint") -> ModelConfig:
    try:
        return ModelConfig.from_json(meta["config"])
    except KeyError:
        raise CheckpointError(f"{path}: metadata has no model configuration") from None
    except (ConfigError, TypeError, ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"{path}: invalid model configuration: {_first_line(e)}") from None


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under `prefix.`, with the prefix removed."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def with_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in state.items()}


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str, path: str | Path) -> None:
    """Strictly load a state dict, turning mismatches into one line."""
    if not state:
        raise CheckpointError(f"{path}: holds no {what} weights")
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise CheckpointError(
            f"{path}: {what} weights do not match its configuration "
            f"({len(missing)} missing, {len(unexpected)} unexpected; {detail})"
        )
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise CheckpointError(
                f"{path}: {what} weight {k} has shape {list(v.shape)}, "
                f"the configuration needs {list(expected[k].shape)}"
            )
    module.load_state_dict(state, strict=True)


def save_model(
    path: str | Path, G_ema: Generator, *, G: Generator | None = None, D: Discriminator | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> None:
    """Save an inference model (G_ema, optionally G and D for fine-tuning)."""
    tensors = with_prefix(G_ema.state_dict(), "G_ema")
    if G is not None:
        tensors.update(with_prefix(G.state_dict(), "G"))
    if D is not None:
        tensors.update(with_prefix(D.state_dict(), "D"))
    meta: dict[str, Any] = {"kind": "model", "config": G_ema.cfg.to_json()}
    meta.update(extra_meta or {})
    save_checkpoint(path, tensors, meta)


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """The exportable generator (G_ema) of any checkpoint, in eval mode."""
    tensors, meta = read_checkpoint(path)
    G = Generator(checkpoint_config(meta, path))
    load_state(G, prefixed(tensors, "G_ema"), "generator (G_ema)", path)
    return G.eval().requires_grad_(False).to(device)


def load_discriminator(path: str | Path, device: str | torch.device = "cpu") -> Discriminator:
    tensors, meta = read_checkpoint(path)
    D = Discriminator(checkpoint_config(meta, path))
    load_state(D, prefixed(tensors, "D"), "discriminator (D)", path)
    return D.to(device)
