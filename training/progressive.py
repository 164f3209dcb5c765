"""Progressive growing: the level-of-detail schedule and the reals it trains on.

Facts from the official training (NVlabs/stylegan, training/training_loop.py, `training_schedule`
and `process_reals`; train.py for the paper's settings), reimplemented here:

- training runs in phases of `lod_training_kimg + lod_transition_kimg` thousand images; phase p
  starts at resolution `lod_initial_resolution * 2**p`, holds it for `lod_training_kimg`, then
  fades the next resolution in over `lod_transition_kimg` (lod falls linearly by 1);
  lod = log2(R) - log2(initial) - p - max(phase_kimg - training, 0) / transition, clamped at 0;
- the minibatch and the learning rates are looked up by the current resolution
  2**(log2(R) - floor(lod)) in per-resolution dictionaries, over a base value;
- the schedule is evaluated once per `minibatch_repeats` minibatches and Adam's moments are reset
  whenever floor(lod) or ceil(lod) changes (new layers enter);
- the reals are the dataset's images at the current resolution (the official dataset tool stores
  every level as a rounded 2x2 box mean of the one above), faded by the same fraction of lod
  towards their own 2x2 box mean, and upscaled (nearest) to the full resolution.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from .config import ConfigError
from .networks import downscale2d, lerp, upscale2d


def _pairs(value: Any, name: str, kind: type) -> tuple[tuple[int, Any], ...]:
    """A resolution -> value table as sorted (resolution, value) pairs (JSON gives lists or a
    dict with string keys); one ConfigError naming the field otherwise."""
    items = value.items() if isinstance(value, dict) else value
    try:
        out = []
        for res, v in items:
            res = int(res)
            if res < 4 or res & (res - 1):
                raise ConfigError(f"{name}: resolution {res} is not a power of two >= 4")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"{name}: the value for {res} must be a number > 0, got {v!r}")
            if kind is int and (not isinstance(v, int) and not float(v).is_integer()):
                raise ConfigError(f"{name}: the value for {res} must be an integer, got {v!r}")
            out.append((res, kind(v)))
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{name} must be a table of resolution -> value, got {value!r}") from None
    return tuple(sorted(out))


@dataclass(frozen=True)
class ScheduleConfig:
    """The official `training_schedule` arguments (defaults: its own defaults), less the base
    minibatch and learning rates, which are the run's `batch`, `g_lr` and `d_lr`."""

    lod_initial_resolution: int = 4
    lod_training_kimg: float = 600.0
    lod_transition_kimg: float = 600.0
    minibatch_dict: tuple[tuple[int, int], ...] = ()
    g_lrate_dict: tuple[tuple[int, float], ...] = ()
    d_lrate_dict: tuple[tuple[int, float], ...] = ()
    lrate_rampup_kimg: float = 0.0
    minibatch_repeats: int = 4
    reset_opt_for_new_lod: bool = True

    def __post_init__(self) -> None:
        res = self.lod_initial_resolution
        if isinstance(res, bool) or not isinstance(res, int) or res < 4 or res & (res - 1) or res > 4096:
            raise ConfigError(f"--lod-initial-resolution must be a power of two in [4, 4096], got {res!r}")
        for name in ("lod_training_kimg", "lod_transition_kimg", "lrate_rampup_kimg"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {v!r}")
        r = self.minibatch_repeats
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= 1024:
            raise ConfigError(f"minibatch_repeats must be an integer in [1, 1024], got {r!r}")
        if not isinstance(self.reset_opt_for_new_lod, bool):
            raise ConfigError(f"reset_opt_for_new_lod must be true or false, got {self.reset_opt_for_new_lod!r}")
        # Normalised to sorted pairs, whatever table form was given.
        object.__setattr__(self, "minibatch_dict", _pairs(self.minibatch_dict, "--minibatch", int))
        object.__setattr__(self, "g_lrate_dict", _pairs(self.g_lrate_dict, "g_lrate_dict", float))
        object.__setattr__(self, "d_lrate_dict", _pairs(self.d_lrate_dict, "d_lrate_dict", float))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ScheduleConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a progressive schedule is a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown progressive schedule keys: {', '.join(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class NamedSchedule:
    """A schedule with the base minibatch and learning rates it was published with."""

    schedule: ScheduleConfig
    batch: int
    g_lr: float
    d_lr: float
    about: str


# The paper's learning rates above 64 px (train.py: G_lrate_dict, D_lrate_dict the same).
_PAPER_LRATES = ((128, 0.0015), (256, 0.002), (512, 0.003), (1024, 0.003))
SCHEDULES: dict[str, NamedSchedule] = {
    "official": NamedSchedule(
        ScheduleConfig(), 16, 0.001, 0.001,
        "training_schedule's own defaults: from 4 px, 600 + 600 kimg per resolution, minibatch 16, lr 0.001",
    ),
    "paper-8gpu": NamedSchedule(
        ScheduleConfig(lod_initial_resolution=8, minibatch_dict=((4, 512), (8, 256), (16, 128), (32, 64), (64, 32)),
                       g_lrate_dict=_PAPER_LRATES, d_lrate_dict=_PAPER_LRATES),
        32, 0.001, 0.001, "train.py's StyleGAN FFHQ run on 8 GPUs: from 8 px, 600 + 600 kimg, minibatch 32 to 512",
    ),
    "paper-1gpu": NamedSchedule(
        ScheduleConfig(lod_initial_resolution=8, minibatch_dict=(
            (4, 128), (8, 128), (16, 128), (32, 64), (64, 32), (128, 16), (256, 8), (512, 4)),
            g_lrate_dict=_PAPER_LRATES, d_lrate_dict=_PAPER_LRATES),
        4, 0.001, 0.001, "train.py's 1-GPU settings: minibatch 4 to 128 by resolution",
    ),
}


def get_schedule(name: str) -> NamedSchedule:
    try:
        return SCHEDULES[name]
    except KeyError:
        raise ConfigError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}") from None


def parse_minibatch(text: str) -> tuple[tuple[int, int], ...]:
    """`--minibatch 4:64,8:32,32:16` -> ((4, 64), (8, 32), (32, 16)); one ConfigError otherwise."""
    pairs = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        res, sep, n = part.partition(":")
        if not sep or not res.strip().isdigit() or not n.strip().isdigit():
            raise ConfigError(f"--minibatch: {part!r} is not RESOLUTION:SIZE (for example 4:64,8:32)")
        pairs.append((int(res), int(n)))
    return _pairs(pairs, "--minibatch", int)


@dataclass(frozen=True)
class ScheduleState:
    """Where a run stands: kimg, lod, current resolution, minibatch and learning rates."""

    kimg: float
    lod: float
    resolution: int
    minibatch: int
    g_lr: float
    d_lr: float


def schedule_at(cur_nimg: int, resolution: int, sched: ScheduleConfig, batch: int, g_lr: float,
                d_lr: float) -> ScheduleState:
    """The official `training_schedule` at `cur_nimg` images for a `resolution` network (one
    process: the minibatch is the global one)."""
    kimg = cur_nimg / 1000.0
    # Counted in images, not kimg: 0.072 / 0.024 is 2.9999999999999996 in floating point, which
    # would put a phase boundary one step late and leave lod a hair above a whole value.
    training, transition = sched.lod_training_kimg * 1000.0, sched.lod_transition_kimg * 1000.0
    phase_dur = training + transition
    phase_idx = int(math.floor(cur_nimg / phase_dur)) if phase_dur > 0 else 0
    phase_img = cur_nimg - phase_idx * phase_dur
    log2_res = int(math.log2(resolution))
    lod = float(log2_res - math.floor(math.log2(sched.lod_initial_resolution)) - phase_idx)
    if transition > 0:
        lod -= max(phase_img - training, 0.0) / transition
    if abs(lod - round(lod)) < 1e-9:
        lod = float(round(lod))  # whole values exactly: lod 0 is the fixed network
    # Clamped above too: an initial resolution above the network's means start at full size.
    lod = min(max(lod, 0.0), float(log2_res - 2))
    res = 2 ** (log2_res - int(math.floor(lod)))
    minibatch = dict(sched.minibatch_dict).get(res, batch)
    g = dict(sched.g_lrate_dict).get(res, g_lr)
    d = dict(sched.d_lrate_dict).get(res, d_lr)
    if sched.lrate_rampup_kimg > 0:
        rampup = min(kimg / sched.lrate_rampup_kimg, 1.0)
        g, d = g * rampup, d * rampup
    return ScheduleState(kimg, lod, res, minibatch, g, d)


def new_layers_enter(prev_lod: float | None, lod: float) -> bool:
    """The official Adam reset condition: floor or ceil of lod changed since the last evaluation."""
    if prev_lod is None:
        return True
    return math.floor(lod) != math.floor(prev_lod) or math.ceil(lod) != math.ceil(prev_lod)


def schedule_minibatches(resolution: int, sched: ScheduleConfig, batch: int) -> list[int]:
    """Every minibatch size a run of this schedule will use (for checks before it starts)."""
    log2_res = int(math.log2(resolution))
    first = max(2, min(log2_res, int(math.log2(sched.lod_initial_resolution))))
    table = dict(sched.minibatch_dict)
    return sorted({table.get(2**k, batch) for k in range(first, log2_res + 1)})


def process_reals(reals_u8: torch.Tensor, lod: float) -> torch.Tensor:
    """uint8 reals [N, C, R, R] -> float reals in [-1, 1] as the networks see them at `lod`
    (official `process_reals` on the dataset's level floor(lod)); lod 0 gives x / 127.5 - 1."""
    k = math.floor(lod)
    x = reals_u8.float()
    for _ in range(k):
        # The dataset tool's levels: a 2x2 box mean rounded to 8 bits, one level from the next.
        x = torch.round(downscale2d(x)).clamp(0, 255)
    x = x / 127.5 - 1.0
    frac = lod - k
    if frac > 0:
        x = lerp(x, upscale2d(downscale2d(x)), frac)
    return upscale2d(x, 2**k)


def schedule_summary(resolution: int, sched: ScheduleConfig) -> list[tuple[float, float]]:
    """(kimg, lod) at every phase boundary up to lod 0: the growth plan in a few numbers."""
    points: list[tuple[float, float]] = []
    start = int(math.log2(resolution)) - int(math.log2(sched.lod_initial_resolution))
    phase = sched.lod_training_kimg + sched.lod_transition_kimg
    for p in range(max(start, 0)):
        points.append((p * phase, float(start - p)))
        points.append((p * phase + sched.lod_training_kimg, float(start - p)))
    points.append((max(start, 0) * phase, 0.0))
    return points
