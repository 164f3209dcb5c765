"""The training loop: alternating D and G steps, lazy R1, style mixing, generator EMA,
sample grids, SWD, and atomic, resumable checkpoints.

Everything a run needs to continue exactly where it stopped (G, G_ema, D, both Adam states, the
image counter and every random-number generator) is in `checkpoint.safetensors`; `model.safetensors`
beside it holds the latest G_ema for export. Ctrl-C finishes the step in flight, saves, and returns
(the CLI then exits 130).

Progressive growing (`TrainConfig.schedule`, a model with `progressive=True`): before each step the
official schedule (training/progressive.py) sets lod, minibatch and learning rates from the image
counter, resetting Adam when new layers enter; the reals are faded and upscaled to that lod. The
networks' lod buffers and the counters `lod` and `sched_nimg` are all a resumed run needs to
continue mid-fade exactly.

Faults end a run in one line: every file is written through the atomic path, so a full disk, a
read-only folder or an I/O error raises `TrainingError` naming the file while the previous
checkpoint stays whole; a bad image met mid-run saves a checkpoint, then raises `DatasetError`
naming the file (from DataLoader workers too). One run at a time holds `OUT/train.lock`.

Class-conditional runs (`TrainConfig.cond`, a labelled dataset: training/data.py): the model's
`label_size` and `label_names` come from the dataset. As the official StyleGAN loop does, the D
step makes its fakes with the labels of the reals beside them, and the G step draws random labels
of the dataset (its label distribution); R1 sees the reals with their labels. The labels of fakes
are drawn from the loop's generator after the latents, so a resumed run continues the same stream.
Metrics then also report the per-class SWD against its label-shifted control
(training/metrics/conditional.py).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import json
import math
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylegan_edge.runtime.errors import StyleganError
from stylegan_edge.runtime.files import atomic_path, atomic_write_bytes

from . import distributed as dist_utils
from .checkpoint import (
    CheckpointError,
    checkpoint_config,
    load_state,
    prefixed,
    read_checkpoint,
    save_checkpoint,
    save_model,
    with_prefix,
)
from .config import ConfigError, ModelConfig
from .data import DatasetError, ImageDataset, open_dataset
from .loss import d_loss, g_loss, generator_styles, r1_penalty
from .networks import Discriminator, Generator
from .progressive import (
    ScheduleConfig,
    ScheduleState,
    new_layers_enter,
    process_reals,
    schedule_at,
    schedule_minibatches,
)

CHECKPOINT = "checkpoint.safetensors"
MODEL = "model.safetensors"
METRICS = "metrics.jsonl"
LOCK = "train.lock"


class TrainingError(StyleganError, RuntimeError):
    """A run that cannot go on (a disk fault, another run writing to the same folder); the
    message is one line naming the path."""


@dataclass(frozen=True)
class TrainConfig:
    data: str
    out: str
    kimg: float = 100.0
    batch: int = 16
    g_lr: float = 0.002
    d_lr: float = 0.002
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 10.0
    r1_interval: int = 16  # lazy regularisation: every N steps, weighted by N
    mixing_prob: float = 0.9
    ema_kimg: float = 10.0  # G_ema half-life in thousands of images
    ema_rampup: float | None = 0.05  # half-life capped at this share of images seen, for short runs
    xflip: bool = False
    seed: int = 0
    snapshot_kimg: float = 5.0  # sample grid and checkpoint interval
    metrics_kimg: float = 10.0  # SWD interval (0: off)
    metric_images: int = 1024
    fid_model: str | None = None  # an ONNX Inception feature extractor (see metrics/fid.py)
    grid_size: int = 64
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    workers: int = 2
    device: str = "auto"
    # Progressive growing (the model needs progressive=True): the lod schedule; `batch`, `g_lr`
    # and `d_lr` are its base values. None: fixed resolution.
    schedule: ScheduleConfig | None = None
    # Class-conditional training on the dataset's labels (the model's label_size comes from them).
    cond: bool = False

    def __post_init__(self) -> None:
        _check_train_config(self)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        if d["schedule"] is None:
            del d["schedule"]  # fixed-resolution runs record exactly what they always did
        if not d["cond"]:
            del d["cond"]  # so do unconditional ones
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ConfigError(f"a training configuration is a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown training configuration keys: {', '.join(unknown)}")
        if not isinstance(d.get("betas"), list) or len(d["betas"]) != 2:
            raise ConfigError(f"betas must be a list of two numbers, got {d.get('betas')!r}")
        d["betas"] = tuple(d["betas"])
        if d.get("schedule") is not None:
            d["schedule"] = ScheduleConfig.from_dict(d["schedule"])
        return cls(**d)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_OPTION = {"kimg": "--kimg", "batch": "--batch", "g_lr": "--g-lr", "d_lr": "--d-lr", "r1_gamma": "--r1-gamma",
           "r1_interval": "--r1-interval", "mixing_prob": "--mixing", "ema_kimg": "--ema-kimg",
           "snapshot_kimg": "--snapshot-kimg", "metrics_kimg": "--metrics-kimg", "metric_images": "--metric-images",
           "workers": "--workers", "seed": "--seed", "device": "--device"}


def _check_train_config(cfg: TrainConfig) -> None:
    """One ConfigError naming the option (as the CLI spells it) of the first bad field. NaN fails
    every range check, so it is refused everywhere."""

    def bad(field: str, want: str) -> ConfigError:
        return ConfigError(f"{_OPTION.get(field, field)} must be {want}, got {getattr(cfg, field)!r}")

    for field in ("data", "out", "device"):
        if not isinstance(getattr(cfg, field), str) or not getattr(cfg, field):
            raise bad(field, "a non-empty string")
    positive = ("kimg", "g_lr", "d_lr")
    for field in positive:
        if not _is_number(getattr(cfg, field)) or getattr(cfg, field) <= 0:
            raise bad(field, "a finite number > 0")
    for field in ("r1_gamma", "ema_kimg", "snapshot_kimg", "metrics_kimg"):
        if not _is_number(getattr(cfg, field)) or getattr(cfg, field) < 0:
            raise bad(field, "a finite number >= 0")
    if not _is_number(cfg.mixing_prob) or not 0 <= cfg.mixing_prob <= 1:
        raise bad("mixing_prob", "a number in [0, 1]")
    if cfg.ema_rampup is not None and (not _is_number(cfg.ema_rampup) or cfg.ema_rampup < 0):
        raise bad("ema_rampup", "a finite number >= 0 or None")
    if (not isinstance(cfg.betas, tuple) or len(cfg.betas) != 2
            or not all(_is_number(b) and 0 <= b < 1 for b in cfg.betas)):
        raise bad("betas", "two numbers in [0, 1)")
    for field, lo, hi in (("batch", 1, 1 << 20), ("r1_interval", 1, 1 << 20), ("metric_images", 1, 1 << 20),
                          ("grid_size", 1, 1024), ("workers", 0, 256), ("seed", 0, 2**32 - 1)):
        value = getattr(cfg, field)
        if not _is_int(value) or not lo <= value <= hi:
            raise bad(field, f"an integer in [{lo}, {hi}]")
    for field in ("xflip", "amp", "cond"):
        if not isinstance(getattr(cfg, field), bool):
            raise bad(field, "true or false")
    if cfg.fid_model is not None and not isinstance(cfg.fid_model, str):
        raise bad("fid_model", "a path or None")
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", cfg.device):
        raise bad("device", "auto, cpu, cuda or cuda:N")
    if cfg.schedule is not None and not isinstance(cfg.schedule, ScheduleConfig):
        raise bad("schedule", "a ScheduleConfig or None")


@dataclass
class TrainEvent:
    """What the loop reports to its caller (the CLI draws the progress bar from these)."""

    kind: str  # "step", "snapshot", "metrics", "done", "interrupted", "resumed", "note"
    kimg: float
    total_kimg: float
    stats: dict[str, float]
    path: Path | None = None
    message: str = ""  # "note": one line for the log


def resolve_device(device: str) -> str:
    """`auto` to what this machine has; a CUDA device that is not there is one ConfigError."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA device is available to PyTorch on this machine")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


class Trainer:
    """Owns the networks, optimisers and counters of one run."""

    def __init__(self, cfg: TrainConfig, model_cfg: ModelConfig, dist: dist_utils.DistInfo | None = None) -> None:
        self.cfg = cfg
        self.dist = dist or dist_utils.DistInfo()
        self.device = torch.device(resolve_device(cfg.device))
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.model_cfg = model_cfg
        if cfg.schedule is not None and not model_cfg.progressive:
            raise ConfigError("a progressive schedule needs a model built with progressive=True (--progressive)")
        if bool(model_cfg.label_size) != cfg.cond:
            raise ConfigError(f"a model with label_size={model_cfg.label_size} needs cond={bool(model_cfg.label_size)} "
                              "(--cond trains on the dataset's class labels)")
        self.G = Generator(model_cfg).to(self.device)
        self.D = Discriminator(model_cfg).to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        dist_utils.broadcast_module(self.G, self.dist)
        dist_utils.broadcast_module(self.D, self.dist)
        dist_utils.broadcast_module(self.G_ema, self.dist)
        # Lazy R1 (Karras et al. 2020): Adam's lr and betas are adjusted for the extra D step.
        c = cfg.r1_interval / (cfg.r1_interval + 1) if cfg.r1_interval > 1 else 1.0
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.g_lr, betas=cfg.betas, eps=1e-8)
        self.opt_D = torch.optim.Adam(
            self.D.parameters(), lr=cfg.d_lr * c, betas=(cfg.betas[0] ** c, cfg.betas[1] ** c), eps=1e-8
        )
        self.cur_nimg = 0
        self.step = 0
        # One generator for every random draw of the loop, so resuming continues the stream;
        # offset by rank so that replicas see different latents.
        self.rng = torch.Generator(device="cpu").manual_seed(cfg.seed * 1000 + self.dist.rank)
        self.data_epoch = 0
        self.data_pos = 0
        self.elapsed = 0.0
        self.history: list[dict[str, Any]] = []
        # Conditional runs: the class of every dataset item, from which the G step draws the
        # labels of its fakes (set by `set_label_distribution` once the dataset is open).
        self.label_pool: torch.Tensor | None = None
        # Progressive growing: the lod trained at (None before the first step, so the first
        # evaluation resets Adam as the official loop's prev_lod = -1 does) and the image count
        # at which the schedule was last evaluated (it holds for `minibatch_repeats` steps).
        self.lod: float | None = None
        self.sched_nimg = 0
        if model_cfg.progressive:
            # The networks start at the schedule's first lod (or fully grown without a schedule).
            lod = self.schedule_state(0).lod if cfg.schedule is not None else 0.0
            for net in (self.G, self.G_ema):
                net.set_lod(lod)
            self.D.set_lod(lod)

    # --- labels ------------------------------------------------------------------------------
    def set_label_distribution(self, labels: np.ndarray) -> None:
        """The dataset's class indices, one per item: random fake labels are drawn from them."""
        labels = np.asarray(labels, dtype=np.int64)
        if labels.ndim != 1 or not len(labels) or labels.min() < 0 or labels.max() >= self.model_cfg.label_size:
            raise ConfigError(f"labels must be class indices in [0, {self.model_cfg.label_size}), one per item")
        self.label_pool = torch.from_numpy(labels)

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        """Class indices [N] -> c [N, label_size] on the training device."""
        return torch.nn.functional.one_hot(labels.long(), self.model_cfg.label_size).float().to(self.device)

    def random_labels(self, n: int) -> torch.Tensor:
        """n labels drawn from the dataset's distribution (official get_random_labels), one-hot."""
        if self.label_pool is None:
            raise ConfigError("a conditional run needs the dataset's labels (set_label_distribution)")
        pick = torch.randint(len(self.label_pool), (n,), generator=self.rng)
        return self.one_hot(self.label_pool[pick])

    # --- progressive growing -----------------------------------------------------------------
    def schedule_state(self, nimg: int) -> ScheduleState:
        assert self.cfg.schedule is not None
        return schedule_at(nimg, self.model_cfg.resolution, self.cfg.schedule, self.cfg.batch, self.cfg.g_lr,
                           self.cfg.d_lr)

    def begin_step(self) -> int:
        """Progressive runs: evaluate the schedule (every `minibatch_repeats` steps), set lod,
        learning rates and, when new layers enter, fresh Adam moments; returns this process's
        minibatch."""
        sched = self.cfg.schedule
        assert sched is not None
        if self.step % sched.minibatch_repeats == 0:
            self.sched_nimg = self.cur_nimg
        s = self.schedule_state(self.sched_nimg)
        if sched.reset_opt_for_new_lod and new_layers_enter(self.lod, s.lod):
            self.opt_G.state.clear()
            self.opt_D.state.clear()
        self.lod = s.lod
        for net in (self.G, self.G_ema):
            net.set_lod(s.lod)
        self.D.set_lod(s.lod)
        c = self.cfg.r1_interval / (self.cfg.r1_interval + 1) if self.cfg.r1_interval > 1 else 1.0
        for group in self.opt_G.param_groups:
            group["lr"] = s.g_lr
        for group in self.opt_D.param_groups:
            group["lr"] = s.d_lr * c
        return max(s.minibatch // self.dist.world_size, 1)

    # --- checkpoints -----------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        t = with_prefix(self.G.state_dict(), "G")
        t.update(with_prefix(self.G_ema.state_dict(), "G_ema"))
        t.update(with_prefix(self.D.state_dict(), "D"))
        for name, opt in (("opt_G", self.opt_G), ("opt_D", self.opt_D)):
            for idx, state in opt.state_dict()["state"].items():
                for key, value in state.items():
                    t[f"{name}.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        t["rng.loop"] = self.rng.get_state()
        t["rng.torch"] = torch.get_rng_state()
        return t

    def save(self, out: Path) -> Path:
        meta = {
            "kind": "training",
            "config": self.model_cfg.to_json(),
            "train_config": self.cfg.to_json(),
            "counters": json.dumps({
                "cur_nimg": self.cur_nimg, "step": self.step, "data_epoch": self.data_epoch,
                "data_pos": self.data_pos, "elapsed": self.elapsed,
                # What a progressive run needs to continue mid-fade exactly (absent otherwise).
                **({"lod": self.lod, "sched_nimg": self.sched_nimg} if self.cfg.schedule is not None else {}),
            }),
            "opt_groups": json.dumps({
                "opt_G": self.opt_G.state_dict()["param_groups"], "opt_D": self.opt_D.state_dict()["param_groups"],
            }),
        }
        path = out / CHECKPOINT
        with _writing(path, path):
            save_checkpoint(path, self.state_tensors(), meta)
        extra = {"kimg": f"{self.cur_nimg / 1000:.1f}"}
        if self.model_cfg.progressive:
            extra["lod"] = f"{self.G_ema.lod:g}"
        with _writing(out / MODEL, path):
            save_model(out / MODEL, self.G_ema, extra_meta=extra)
        return path

    @classmethod
    def resume(cls, path: Path, cfg: TrainConfig, dist: dist_utils.DistInfo | None = None) -> Trainer:
        tensors, meta = read_checkpoint(path)
        if meta.get("kind") != "training":
            raise CheckpointError(f"{path}: a model file, not a training checkpoint; it cannot be resumed")
        stored, counters, groups = _training_meta(meta, path)
        # The run keeps its own settings; only how long, where and on what may change.
        cfg = dataclasses.replace(stored, kimg=cfg.kimg, out=cfg.out, data=cfg.data, workers=cfg.workers,
                                  device=cfg.device)
        # The model configuration is validated (sizes bounded) before any network is built.
        trainer = cls(cfg, checkpoint_config(meta, path), dist)
        for name, module in (("G", trainer.G), ("G_ema", trainer.G_ema), ("D", trainer.D)):
            load_state(module, {k: v.to(trainer.device) for k, v in prefixed(tensors, name).items()}, name, path)
        for key in ("rng.loop", "rng.torch"):
            if key not in tensors:
                raise CheckpointError(f"{path}: a training checkpoint without its {key} tensor; it cannot be resumed")
        try:
            for name, opt in (("opt_G", trainer.opt_G), ("opt_D", trainer.opt_D)):
                state: dict[int, dict[str, torch.Tensor]] = {}
                for key, value in prefixed(tensors, name).items():
                    idx, field = key.split(".", 1)
                    state.setdefault(int(idx), {})[field] = value.to(trainer.device) if field != "step" else value
                opt.load_state_dict({"state": state, "param_groups": groups[name]})
            trainer.rng.set_state(tensors["rng.loop"])
            torch.set_rng_state(tensors["rng.torch"])
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as e:
            # Whatever the optimiser or RNG make of a state that does not fit them is the file's fault.
            raise CheckpointError(f"{path}: optimiser or RNG state does not fit the run ({_first_line(e)})") from None
        trainer.cur_nimg, trainer.step = counters["cur_nimg"], counters["step"]
        trainer.data_epoch, trainer.data_pos = counters["data_epoch"], counters["data_pos"]
        trainer.elapsed = counters["elapsed"]
        if cfg.schedule is not None:
            trainer.lod, trainer.sched_nimg = counters.get("lod"), counters.get("sched_nimg", trainer.cur_nimg)
        if trainer.model_cfg.progressive:
            # The buffers just loaded hold the lod; G_ema's was copied from G at every step.
            trainer.G_ema.set_lod(trainer.G.lod)
        return trainer

    # --- one iteration -----------------------------------------------------------------------
    def _autocast(self):
        if self.cfg.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(2, n, self.model_cfg.z_dim, generator=self.rng)
        return z[0].to(self.device), z[1].to(self.device)

    def train_step(self, reals_u8: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        """One D step (with R1 every `r1_interval` steps) and one G step on a batch of reals
        (conditional runs: with their class indices `labels` [N])."""
        cfg, G, D = self.cfg, self.G, self.D
        c_real = None
        if cfg.cond:
            if labels is None or labels.shape != (reals_u8.shape[0],):
                raise ConfigError(f"a conditional run needs one class index per real image, got {labels!r:.60}")
            c_real = self.one_hot(labels)
        if self.model_cfg.progressive:
            reals = process_reals(reals_u8.to(self.device), G.lod)
        else:
            reals = reals_u8.to(self.device).float() / 127.5 - 1.0
        n = reals.shape[0]
        stats: dict[str, float] = {}
        if self.model_cfg.progressive:
            stats["lod"] = G.lod

        # Discriminator.
        z, z2 = self._latents(n)
        with torch.no_grad(), self._autocast():
            # Official D_logistic_simplegp: the fakes are made with the reals' labels.
            fake = G.synthesis(generator_styles(G, z, z2, cfg.mixing_prob, self.rng, c=c_real))
        dist_utils.average_tensor(G.w_avg, self.dist)
        with self._autocast():
            loss = d_loss(D, reals, fake.float(), c_real, c_real)
        stats["loss_D"] = float(loss.detach())
        if cfg.r1_gamma > 0 and self.step % cfg.r1_interval == 0:
            r1 = r1_penalty(D, reals, c_real)
            loss = loss + r1 * (cfg.r1_gamma / 2 * cfg.r1_interval)
            stats["r1"] = float(r1.detach())
        self.opt_D.zero_grad(set_to_none=True)
        loss.backward()
        dist_utils.average_gradients(list(D.parameters()), self.dist)
        self.opt_D.step()

        # Generator.
        z, z2 = self._latents(n)
        # Official G_logistic_nonsaturating: random labels of the training set.
        c_fake = self.random_labels(n) if cfg.cond else None
        D.requires_grad_(False)
        with self._autocast():
            fake = G.synthesis(generator_styles(G, z, z2, cfg.mixing_prob, self.rng, c=c_fake))
            loss = g_loss(D, fake.float(), c_fake)
        D.requires_grad_(True)
        stats["loss_G"] = float(loss.detach())
        self.opt_G.zero_grad(set_to_none=True)
        loss.backward()
        dist_utils.average_gradients(list(G.parameters()), self.dist)
        self.opt_G.step()
        dist_utils.average_tensor(G.w_avg, self.dist)

        # Generator EMA, half-life in images (ramped up for short runs as in StyleGAN2-ADA).
        global_batch = n * self.dist.world_size
        self.cur_nimg += global_batch
        ema_nimg = cfg.ema_kimg * 1000
        if cfg.ema_rampup:
            ema_nimg = min(ema_nimg, self.cur_nimg * cfg.ema_rampup)
        beta = 0.5 ** (global_batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), G.parameters()):
                p_ema.copy_(p.detach().lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)
        self.step += 1
        return stats


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def _training_meta(meta: dict[str, str], path: Path) -> tuple[TrainConfig, dict[str, Any], dict[str, Any]]:
    """The training configuration, counters and optimiser groups of a checkpoint, checked for
    type and range; one CheckpointError naming the file and the field otherwise."""
    for key in ("train_config", "counters", "opt_groups"):
        if key not in meta:
            raise CheckpointError(f"{path}: a training checkpoint without its {key} metadata; it cannot be resumed")
    try:
        stored = TrainConfig.from_json(meta["train_config"])
    except (ConfigError, TypeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: invalid train_config metadata: {_first_line(e)}") from None
    try:
        counters = json.loads(meta["counters"])
        groups = json.loads(meta["opt_groups"])
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: invalid training metadata: {_first_line(e)}") from None
    if not isinstance(counters, dict):
        raise CheckpointError(f"{path}: invalid counters metadata: not a JSON object")
    for key in ("cur_nimg", "step", "data_epoch", "data_pos"):
        if not _is_int(counters.get(key)) or not 0 <= counters[key] < 2**62:
            raise CheckpointError(f"{path}: invalid counters metadata: {key} must be a non-negative integer")
    if not _is_number(counters.get("elapsed")) or counters["elapsed"] < 0:
        raise CheckpointError(f"{path}: invalid counters metadata: elapsed must be a non-negative number")
    lod = counters.get("lod")
    if lod is not None and (not _is_number(lod) or not 0 <= lod <= 12):
        raise CheckpointError(f"{path}: invalid counters metadata: lod must be a number in [0, 12] or null")
    sched_nimg = counters.get("sched_nimg")
    if sched_nimg is not None and (not _is_int(sched_nimg) or not 0 <= sched_nimg <= counters["cur_nimg"]):
        raise CheckpointError(f"{path}: invalid counters metadata: sched_nimg must be an integer in [0, cur_nimg]")
    if not isinstance(groups, dict) or not all(isinstance(groups.get(k), list) for k in ("opt_G", "opt_D")):
        raise CheckpointError(f"{path}: invalid opt_groups metadata: needs lists opt_G and opt_D")
    return stored, counters, groups


# What a write can fail with that reading never does: used where one call both reads and writes.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO})


@contextlib.contextmanager
def _writing(path: Path, checkpoint: Path, only_write_errors: bool = False) -> Iterator[None]:
    """Turn an OSError while writing `path` (disk full, read-only, I/O error, file too large)
    into one TrainingError line naming it; the atomic writes have left the old file whole."""
    try:
        yield
    except OSError as e:
        if only_write_errors and e.errno not in _WRITE_ERRNOS:
            raise
        reason = e.strerror or _first_line(e)
        if checkpoint.is_file():
            kept = f"; the last good checkpoint {checkpoint} is kept"
        else:
            kept = "; no checkpoint has been saved yet"
        raise TrainingError(f"{path}: cannot write ({reason}){kept}") from None


def _write_text(path: Path, text: str, checkpoint: Path) -> None:
    with _writing(path, checkpoint):
        atomic_write_bytes(path, text.encode())


def _write_grid(images: np.ndarray, path: Path, checkpoint: Path) -> None:
    from stylegan_edge.runtime.images import save_grid

    # Through a temporary file: a kill mid-write must not leave a truncated PNG under the name.
    with _writing(path, checkpoint), atomic_path(path) as tmp:
        save_grid(images, tmp)


def _lock_out(out: Path, checkpoint: Path) -> int:
    """Hold an exclusive lock on `out` for this process (released when the fd closes, also
    when the process dies); a second writer gets one line naming the holder's pid."""
    import fcntl

    path = out / LOCK
    with _writing(path, checkpoint):
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise TrainingError(
            f"{out}: another training (pid {holder}) is writing to this folder; wait for it to end or use another --out"
        ) from None
    try:
        with _writing(path, checkpoint):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
    except BaseException:
        os.close(fd)
        raise
    return fd


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary files of atomic writes that a killed run left (`.NAME.XXXX.tmp`); only called
    while holding the lock, so none of them can belong to a live writer."""
    for folder in (out, out / "samples"):
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    tmp.unlink()


def _kept_metrics(path: Path, cur_nimg: int) -> list[dict[str, Any]]:
    """The metrics rows a resumed run keeps: those up to its checkpoint's image count. Rows
    past it were measured on weights the checkpoint does not hold, and the resumed run measures
    them again."""
    if not path.is_file():
        return []
    limit = round(cur_nimg / 1000, 3)
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill in older versions
        if isinstance(row, dict) and _is_number(row.get("kimg")) and row["kimg"] <= limit:
            rows.append(row)
    return rows


def _grid_latents(cfg: TrainConfig, z_dim: int) -> torch.Tensor:
    return torch.randn(cfg.grid_size, z_dim, generator=torch.Generator().manual_seed(cfg.seed + 7))


@torch.no_grad()
def generate_images(G: Generator, z: torch.Tensor, batch: int = 64, c: torch.Tensor | None = None) -> np.ndarray:
    """uint8 [N, H, W, 3] from G (psi 1, constant noise), for grids and metrics; a conditional G
    needs the labels c [N, label_size]."""
    out = []
    dev = G.w_avg.device
    for i in range(0, len(z), batch):
        ci = None if c is None else c[i : i + batch].to(dev)
        img = G(z[i : i + batch].to(dev), noise_mode="const", c=ci)
        out.append((img.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


@dataclass(frozen=True)
class _Failure:
    """A DatasetError met in a DataLoader worker, carried to the main process as data: re-raised
    by the loader it would lose its message (it becomes "Caught DatasetError in worker 0")."""

    message: str


class _LoaderView(torch.utils.data.Dataset):
    """The items `indices` of `dataset`; an unreadable image becomes a `_Failure` batch."""

    def __init__(self, dataset: torch.utils.data.Dataset, indices: list[int]) -> None:
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        try:
            return self.dataset[self.indices[i]]
        except DatasetError as e:
            return _Failure(str(e))

    def __getitems__(self, items: Sequence[int]) -> list[Any]:
        try:
            getitems = getattr(self.dataset, "__getitems__", None)
            if getitems is None:
                return [self.dataset[self.indices[i]] for i in items]
            return getitems([self.indices[i] for i in items])
        except DatasetError as e:
            return [_Failure(str(e))]


def _collate(items: list[Any]) -> Any:
    for item in items:
        if isinstance(item, _Failure):
            return item
    return torch.utils.data.default_collate(items)


class _Batches:
    """Endless shuffled batches (images, dataset indices), resumable from (epoch, position); each
    rank takes its slice. The indices give a conditional run the labels of its reals."""

    def __init__(self, dataset: torch.utils.data.Dataset, batch: int, seed: int, dist: dist_utils.DistInfo,
                 workers: int, epoch: int, pos: int) -> None:
        if len(dataset) < batch * dist.world_size:
            # Without this the loop below would look for a full batch forever.
            raise DatasetError(f"{len(dataset)} images are fewer than one batch of {batch * dist.world_size}")
        self.dataset, self.batch, self.seed, self.dist, self.workers = dataset, batch, seed, dist, workers
        self.epoch, self.pos = epoch, pos

    def __iter__(self):
        while True:
            order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(self.seed + self.epoch))
            order = order[self.pos :]
            usable = len(order) - len(order) % (self.batch * self.dist.world_size)
            if usable <= 0:
                self.epoch, self.pos = self.epoch + 1, 0
                continue
            mine = order[:usable].view(-1, self.dist.world_size, self.batch)[:, self.dist.rank]
            loader = torch.utils.data.DataLoader(
                _LoaderView(self.dataset, mine.flatten().tolist()), batch_size=self.batch,
                num_workers=self.workers, persistent_workers=False, shuffle=False, collate_fn=_collate,
                # Its own generator: creating a loader must not draw from the global stream,
                # or a resumed run would see different noise than an uninterrupted one.
                generator=torch.Generator().manual_seed(self.seed + self.epoch),
            )
            # The loader keeps the order of `mine`: batch k is its k-th row of `batch` items.
            indices = mine.flatten().split(self.batch)
            for k, images in enumerate(loader):
                if isinstance(images, _Failure):
                    # Raised in the main process, with the worker's message (it names the file).
                    raise DatasetError(images.message)
                self.pos += self.batch * self.dist.world_size
                yield images, indices[k]
            self.epoch, self.pos = self.epoch + 1, 0


def check_batch(cfg: TrainConfig, model_cfg: ModelConfig, dataset_length: int, world_size: int = 1) -> int:
    """The per-process batch, or one error line: a dataset smaller than one batch is refused
    (capping the batch silently would change the run's hyperparameters), as is a batch the
    minibatch-stddev group does not divide."""
    if cfg.schedule is not None:
        # Every minibatch the schedule will use is checked now, not when its resolution comes.
        sizes = schedule_minibatches(model_cfg.resolution, cfg.schedule, cfg.batch)
        for size in sizes:
            check_batch(dataclasses.replace(cfg, batch=size, schedule=None), model_cfg, dataset_length, world_size)
        # The loader's unit: every minibatch is a whole number of these.
        return math.gcd(*(max(size // world_size, 1) for size in sizes))
    per_rank = max(cfg.batch // world_size, 1)
    need = per_rank * world_size
    if dataset_length < need:
        raise DatasetError(
            f"{cfg.data}: {dataset_length} images are fewer than one batch of {need}; "
            f"use --batch {dataset_length} or less, or more images"
        )
    group = min(model_cfg.mbstd_group_size, per_rank)
    if model_cfg.mbstd_group_size > 1 and per_rank % group:
        raise ConfigError(
            f"--batch {cfg.batch}: each process's batch ({per_rank}) must be a multiple of the minibatch-stddev "
            f"group size {group}"
        )
    return per_rank


def train(
    cfg: TrainConfig, model_cfg: ModelConfig | None = None, resume: bool = False,
    callback: Callable[[TrainEvent], None] | None = None,
) -> Path:
    """Run (or resume) training into `cfg.out`; returns the path of the latest model file.

    Raises (one line each) ConfigError, DatasetError, CheckpointError, and TrainingError for a
    disk fault or a folder another run holds. Ctrl-C saves and returns; the last event is then
    "interrupted"."""
    callback = callback or (lambda e: None)
    out = Path(cfg.out)
    device = resolve_device(cfg.device)
    ckpt = out / CHECKPOINT
    if resume and not ckpt.is_file():
        raise CheckpointError(f"{ckpt}: nothing to resume (no checkpoint in {out})")
    if not resume and model_cfg is None:
        raise ValueError("a new run needs a model configuration")
    dist = dist_utils.init_from_env(device)
    lock: int | None = None
    created = not out.exists()
    try:
        if dist.is_main:
            # Before anything is read or written: two runs must never interleave their files.
            lock = _lock_out(out, ckpt)
            _remove_stale_temporaries(out)
        else:  # one progress bar and one log per run, from rank 0
            callback = lambda e: None  # noqa: E731
        return _run(cfg, model_cfg, resume, callback, out, dist)
    except BaseException:
        if lock is not None and created and [p.name for p in out.iterdir()] == [LOCK]:
            # Refused before writing anything (a dataset too small, say): leave no empty run behind.
            with contextlib.suppress(OSError):
                (out / LOCK).unlink()
                out.rmdir()
        raise
    finally:
        if lock is not None:
            os.close(lock)
        dist_utils.shutdown(dist)


def _run(
    cfg: TrainConfig, model_cfg: ModelConfig | None, resume: bool, callback: Callable[[TrainEvent], None],
    out: Path, dist: dist_utils.DistInfo,
) -> Path:
    from .metrics.swd import SWDReference  # numpy-heavy; imported when training starts

    ckpt = out / CHECKPOINT
    if resume:
        trainer = Trainer.resume(ckpt, cfg, dist)
        cfg = trainer.cfg
        callback(TrainEvent("resumed", trainer.cur_nimg / 1000, cfg.kimg, {}, ckpt))
        dataset = open_dataset(cfg.data, trainer.model_cfg.resolution, xflip=cfg.xflip, seed=cfg.seed)
        _check_labels(cfg, trainer.model_cfg, dataset)
    else:
        assert model_cfg is not None
        # The dataset first: a conditional model takes its label count and names from it.
        dataset = open_dataset(cfg.data, model_cfg.resolution, xflip=cfg.xflip, seed=cfg.seed)
        model_cfg = conditioned_config(cfg, model_cfg, dataset)
        trainer = Trainer(cfg, model_cfg, dist)
    mc = trainer.model_cfg
    if cfg.cond:
        trainer.set_label_distribution(dataset.all_labels())
    elif dataset.has_labels:
        callback(TrainEvent("note", trainer.cur_nimg / 1000, cfg.kimg, {}, message=(
            f"{cfg.data} has {dataset.label_size} classes; training unconditionally (--cond uses them)")))
    per_rank = check_batch(cfg, mc, len(dataset), dist.world_size)
    if dist.is_main:
        _write_text(out / "training_config.json", json.dumps(
            {"train": json.loads(cfg.to_json()), "model": mc.to_dict(), "dataset_length": len(dataset)}, indent=2),
            ckpt)
        if resume:
            # Rows measured after the checkpoint would be measured again: drop them.
            trainer.history = _kept_metrics(out / METRICS, trainer.cur_nimg)
            if (out / METRICS).is_file():
                _write_metrics(out / METRICS, trainer.history, ckpt)
    sampler = _Batches(dataset, per_rank, cfg.seed, dist, cfg.workers, trainer.data_epoch, trainer.data_pos)
    batches = iter(sampler)

    grid_z = _grid_latents(cfg, mc.z_dim)
    # A conditional grid: classes take turns, so each class shows across the grid.
    grid_c = torch.nn.functional.one_hot(torch.arange(cfg.grid_size) % mc.label_size, mc.label_size).float() \
        if cfg.cond else None
    swd_ref = fid_ref = class_ref = None
    metric_c = None
    if cfg.metrics_kimg > 0 and dist.is_main:
        idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(cfg.seed + 1))[: cfg.metric_images]
        reals = np.stack([dataset[int(i)].permute(1, 2, 0).numpy() for i in idx])
        swd_ref = SWDReference(reals, seed=cfg.seed)
        if cfg.cond:
            from .metrics.conditional import ClassSWD

            # The fakes are made with the labels of the reals, so each class has as many of both.
            real_labels = dataset.labels(idx.tolist())
            metric_c = trainer.one_hot(torch.from_numpy(real_labels)).cpu()
            class_ref = ClassSWD(reals, real_labels, mc.label_size, seed=cfg.seed)
        if cfg.fid_model:
            from .metrics.fid import FIDReference

            # It writes its cache of the reals' statistics; a missing model file stays its own error.
            with _writing(out / "fid_reals.npz", ckpt, only_write_errors=True):
                fid_ref = FIDReference(cfg.fid_model, reals, cache_path=out / "fid_reals.npz")
        if not resume:
            _write_grid(reals[: cfg.grid_size], out / "reals.png", ckpt)

    saved = {"nimg": trainer.cur_nimg if resume else None}

    def snapshot(kind: str) -> None:
        if not dist.is_main:
            return
        kimg = trainer.cur_nimg / 1000
        # The checkpoint first: on a full disk it is what must survive. Grids are named by image
        # count, so snapshots closer than 1 kimg apart (or a final one off the tick) never collide.
        path = trainer.save(out)
        saved["nimg"] = trainer.cur_nimg
        _write_grid(generate_images(trainer.G_ema, grid_z, c=grid_c),
                    out / "samples" / f"fakes{trainer.cur_nimg:09d}.png", ckpt)
        callback(TrainEvent(kind, kimg, cfg.kimg, {}, path))

    def metrics() -> None:
        if swd_ref is None:
            return
        t0 = time.perf_counter()
        n = len(metric_c) if metric_c is not None else cfg.metric_images
        z = torch.randn(n, mc.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 3))
        fakes = generate_images(trainer.G_ema, z, c=metric_c)
        result = swd_ref.distance(fakes)
        if class_ref is not None:
            per_class = class_ref.compare(fakes, class_ref.labels)
            result["swd_class"], result["swd_class_control"] = per_class.matched, per_class.control
        if fid_ref is not None:
            result["fid"] = fid_ref.distance(fakes)
        record = {"kimg": round(trainer.cur_nimg / 1000, 3), "seconds": round(trainer.elapsed, 1),
                  **{k: round(float(v), 4) for k, v in result.items()},
                  "metric_time": round(time.perf_counter() - t0, 2)}
        trainer.history.append(record)
        _write_metrics(out / METRICS, trainer.history, ckpt)
        callback(TrainEvent("metrics", trainer.cur_nimg / 1000, cfg.kimg, dict(result)))

    if not resume and cfg.metrics_kimg > 0:
        metrics()  # the value at initialisation, the baseline learning is measured against

    stop = {"requested": False}
    previous = signal.getsignal(signal.SIGINT)

    def request_stop(signum: int, frame: Any) -> None:
        if stop["requested"]:  # a second Ctrl-C aborts at once
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        stop["requested"] = True

    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        signal.signal(signal.SIGINT, request_stop)
    try:
        total = int(cfg.kimg * 1000)
        next_snapshot = _next_tick(trainer.cur_nimg, cfg.snapshot_kimg)
        next_metrics = _next_tick(trainer.cur_nimg, cfg.metrics_kimg)
        t_last = time.perf_counter()
        while trainer.cur_nimg < total and not stop["requested"]:
            try:
                if cfg.schedule is not None:
                    # Minibatches vary by resolution: gathered from loader units of `per_rank`.
                    need = trainer.begin_step()
                    parts = [next(batches) for _ in range(need // per_rank)]
                    reals, indices = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
                else:
                    reals, indices = next(batches)
            except DatasetError as e:
                # A bad image mid-run: keep what was learned since the last save, then stop.
                if dist.is_main and saved["nimg"] != trainer.cur_nimg:
                    snapshot("stopped")
                note = f"; saved {ckpt} at kimg {trainer.cur_nimg / 1000:g}" if dist.is_main else ""
                raise DatasetError(f"{_first_line(e)}{note}") from None
            labels = torch.from_numpy(dataset.labels(indices.tolist())) if cfg.cond else None
            stats = trainer.train_step(reals, labels)
            now = time.perf_counter()
            trainer.elapsed += now - t_last
            t_last = now
            trainer.data_epoch, trainer.data_pos = sampler.epoch, sampler.pos
            callback(TrainEvent("step", trainer.cur_nimg / 1000, cfg.kimg, stats))
            if trainer.cur_nimg >= next_snapshot:
                snapshot("snapshot")
                next_snapshot = _next_tick(trainer.cur_nimg, cfg.snapshot_kimg)
            if cfg.metrics_kimg > 0 and trainer.cur_nimg >= next_metrics:
                metrics()
                next_metrics = _next_tick(trainer.cur_nimg, cfg.metrics_kimg)
        snapshot("interrupted" if stop["requested"] else "done")
        if cfg.metrics_kimg > 0 and not stop["requested"] and (not trainer.history or
                                                                trainer.history[-1]["kimg"] < trainer.cur_nimg / 1000):
            metrics()
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
    return out / MODEL


def conditioned_config(cfg: TrainConfig, model_cfg: ModelConfig, dataset: ImageDataset) -> ModelConfig:
    """The model configuration of a new run on `dataset`: with `cfg.cond`, its label_size and
    names; one line when the dataset has no labels or they contradict a model already labelled."""
    if not cfg.cond:
        return model_cfg
    if not dataset.has_labels:
        raise DatasetError(f"--cond: {cfg.data} has no class labels (a dataset.json, one folder per class, "
                           f"or synthetic:faces-classes)")
    if model_cfg.label_size and model_cfg.label_size != dataset.label_size:
        raise ConfigError(f"--cond: the model has label_size={model_cfg.label_size} but {cfg.data} has "
                          f"{dataset.label_size} classes")
    return dataclasses.replace(model_cfg, label_size=dataset.label_size, label_names=dataset.label_names)


def _check_labels(cfg: TrainConfig, mc: ModelConfig, dataset: ImageDataset) -> None:
    """A resumed conditional run needs the same classes in its dataset as in its checkpoint."""
    if not cfg.cond:
        return
    if dataset.label_size != mc.label_size or (mc.label_names and dataset.label_names != mc.label_names):
        have = f"{dataset.label_size} classes" if dataset.has_labels else "no class labels"
        raise DatasetError(f"{cfg.data}: has {have}, but the run was trained with {mc.label_size} classes"
                           + (f" ({', '.join(mc.label_names)})" if mc.label_names else ""))


def _write_metrics(path: Path, rows: list[dict[str, Any]], checkpoint: Path) -> None:
    # The whole file each time (it is small): atomic, and a resumed run's truncation sticks.
    _write_text(path, "".join(json.dumps(r) + "\n" for r in rows), checkpoint)



def _next_tick(nimg: int, every_kimg: float) -> float:
    if every_kimg <= 0:
        return math.inf
    step = every_kimg * 1000
    return (math.floor(nimg / step) + 1) * step
