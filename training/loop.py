"""The training loop: alternating D and G steps, lazy R1, style mixing, generator EMA,
sample grids, SWD, and atomic, resumable checkpoints.

Everything a run needs to continue exactly where it stopped (G, G_ema, D, both Adam states, the
image counter and every random-number generator) is in `checkpoint.safetensors`; `model.safetensors`
beside it holds the latest G_ema for export. Ctrl-C finishes the step in flight, saves, and returns.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import signal
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
from .config import ModelConfig
from .data import open_dataset
from .loss import d_loss, g_loss, generator_styles, r1_penalty
from .networks import Discriminator, Generator

CHECKPOINT = "checkpoint.safetensors"
MODEL = "model.safetensors"


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

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        d = json.loads(text)
        d["betas"] = tuple(d["betas"])
        return cls(**d)


@dataclass
class TrainEvent:
    """What the loop reports to its caller (the CLI draws the progress bar from these)."""

    kind: str  # "step", "snapshot", "metrics", "done", "interrupted", "resumed"
    kimg: float
    total_kimg: float
    stats: dict[str, float]
    path: Path | None = None


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
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
            }),
            "opt_groups": json.dumps({
                "opt_G": self.opt_G.state_dict()["param_groups"], "opt_D": self.opt_D.state_dict()["param_groups"],
            }),
        }
        path = out / CHECKPOINT
        save_checkpoint(path, self.state_tensors(), meta)
        save_model(out / MODEL, self.G_ema, extra_meta={"kimg": f"{self.cur_nimg / 1000:.1f}"})
        return path

    @classmethod
    def resume(cls, path: Path, cfg: TrainConfig, dist: dist_utils.DistInfo | None = None) -> Trainer:
        tensors, meta = read_checkpoint(path)
        if meta.get("kind") != "training":
            raise CheckpointError(f"{path}: a model file, not a training checkpoint; it cannot be resumed")
        # The run keeps its own settings; only how long, where and on what may change.
        stored = TrainConfig.from_json(meta["train_config"])
        cfg = dataclasses.replace(stored, kimg=cfg.kimg, out=cfg.out, data=cfg.data, workers=cfg.workers,
                                  device=cfg.device)
        trainer = cls(cfg, checkpoint_config(meta, path), dist)
        for name, module in (("G", trainer.G), ("G_ema", trainer.G_ema), ("D", trainer.D)):
            load_state(module, {k: v.to(trainer.device) for k, v in prefixed(tensors, name).items()}, name, path)
        groups = json.loads(meta["opt_groups"])
        for name, opt in (("opt_G", trainer.opt_G), ("opt_D", trainer.opt_D)):
            state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in prefixed(tensors, name).items():
                idx, field = key.split(".", 1)
                state.setdefault(int(idx), {})[field] = value.to(trainer.device) if field != "step" else value
            opt.load_state_dict({"state": state, "param_groups": groups[name]})
        trainer.rng.set_state(tensors["rng.loop"])
        torch.set_rng_state(tensors["rng.torch"])
        counters = json.loads(meta["counters"])
        trainer.cur_nimg, trainer.step = counters["cur_nimg"], counters["step"]
        trainer.data_epoch, trainer.data_pos = counters["data_epoch"], counters["data_pos"]
        trainer.elapsed = counters["elapsed"]
        return trainer

    # --- one iteration -----------------------------------------------------------------------
    def _autocast(self):
        if self.cfg.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(2, n, self.model_cfg.z_dim, generator=self.rng)
        return z[0].to(self.device), z[1].to(self.device)

    def train_step(self, reals_u8: torch.Tensor) -> dict[str, float]:
        """One D step (with R1 every `r1_interval` steps) and one G step on a batch of reals."""
        cfg, G, D = self.cfg, self.G, self.D
        reals = reals_u8.to(self.device).float() / 127.5 - 1.0
        n = reals.shape[0]
        stats: dict[str, float] = {}

        # Discriminator.
        z, z2 = self._latents(n)
        with torch.no_grad(), self._autocast():
            fake = G.synthesis(generator_styles(G, z, z2, cfg.mixing_prob, self.rng))
        dist_utils.average_tensor(G.w_avg, self.dist)
        with self._autocast():
            loss = d_loss(D, reals, fake.float())
        stats["loss_D"] = float(loss.detach())
        if cfg.r1_gamma > 0 and self.step % cfg.r1_interval == 0:
            r1 = r1_penalty(D, reals)
            loss = loss + r1 * (cfg.r1_gamma / 2 * cfg.r1_interval)
            stats["r1"] = float(r1.detach())
        self.opt_D.zero_grad(set_to_none=True)
        loss.backward()
        dist_utils.average_gradients(list(D.parameters()), self.dist)
        self.opt_D.step()

        # Generator.
        z, z2 = self._latents(n)
        D.requires_grad_(False)
        with self._autocast():
            fake = G.synthesis(generator_styles(G, z, z2, cfg.mixing_prob, self.rng))
            loss = g_loss(D, fake.float())
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


def _grid_latents(cfg: TrainConfig, z_dim: int) -> torch.Tensor:
    return torch.randn(cfg.grid_size, z_dim, generator=torch.Generator().manual_seed(cfg.seed + 7))


@torch.no_grad()
def generate_images(G: Generator, z: torch.Tensor, batch: int = 64) -> np.ndarray:
    """uint8 [N, H, W, 3] from G (psi 1, constant noise), for grids and metrics."""
    out = []
    for i in range(0, len(z), batch):
        img = G(z[i : i + batch].to(G.w_avg.device), noise_mode="const")
        out.append((img.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


class _Batches:
    """Endless shuffled batches, resumable from (epoch, position); each rank takes its slice."""

    def __init__(self, dataset: torch.utils.data.Dataset, batch: int, seed: int, dist: dist_utils.DistInfo,
                 workers: int, epoch: int, pos: int) -> None:
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
                torch.utils.data.Subset(self.dataset, mine.flatten().tolist()), batch_size=self.batch,
                num_workers=self.workers, persistent_workers=False, shuffle=False,
                # Its own generator: creating a loader must not draw from the global stream,
                # or a resumed run would see different noise than an uninterrupted one.
                generator=torch.Generator().manual_seed(self.seed + self.epoch),
            )
            for images in loader:
                self.pos += self.batch * self.dist.world_size
                yield images
            self.epoch, self.pos = self.epoch + 1, 0


def train(
    cfg: TrainConfig, model_cfg: ModelConfig | None = None, resume: bool = False,
    callback: Callable[[TrainEvent], None] | None = None,
) -> Path:
    """Run (or resume) training into `cfg.out`; returns the path of the latest model file."""
    from .metrics.swd import SWDReference  # numpy-heavy; imported when training starts

    callback = callback or (lambda e: None)
    out = Path(cfg.out)
    dist = dist_utils.init_from_env(resolve_device(cfg.device))
    if not dist.is_main:  # one progress bar and one log per run, from rank 0
        callback = lambda e: None  # noqa: E731
    ckpt = out / CHECKPOINT
    if resume:
        if not ckpt.is_file():
            raise CheckpointError(f"{ckpt}: nothing to resume (no checkpoint in {out})")
        trainer = Trainer.resume(ckpt, cfg, dist)
        cfg = trainer.cfg
        callback(TrainEvent("resumed", trainer.cur_nimg / 1000, cfg.kimg, {}, ckpt))
    else:
        if model_cfg is None:
            raise ValueError("a new run needs a model configuration")
        trainer = Trainer(cfg, model_cfg, dist)
    mc = trainer.model_cfg
    dataset = open_dataset(cfg.data, mc.resolution, xflip=cfg.xflip, seed=cfg.seed)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "training_config.json").write_text(json.dumps(
            {"train": json.loads(cfg.to_json()), "model": mc.to_dict(), "dataset_length": len(dataset)}, indent=2))
    per_rank = max(cfg.batch // dist.world_size, 1)
    sampler = _Batches(dataset, per_rank, cfg.seed, dist, cfg.workers, trainer.data_epoch, trainer.data_pos)
    batches = iter(sampler)

    grid_z = _grid_latents(cfg, mc.z_dim)
    swd_ref = fid_ref = None
    if cfg.metrics_kimg > 0 and dist.is_main:
        idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(cfg.seed + 1))[: cfg.metric_images]
        reals = np.stack([dataset[int(i)].permute(1, 2, 0).numpy() for i in idx])
        swd_ref = SWDReference(reals, seed=cfg.seed)
        if cfg.fid_model:
            from .metrics.fid import FIDReference

            fid_ref = FIDReference(cfg.fid_model, reals, cache_path=out / "fid_reals.npz")
        if not resume:
            from stylegan_edge.runtime.images import save_grid

            save_grid(reals[: cfg.grid_size], out / "reals.png")

    def snapshot(kind: str) -> None:
        if not dist.is_main:
            return
        from stylegan_edge.runtime.images import save_grid

        kimg = trainer.cur_nimg / 1000
        grid_path = out / "samples" / f"fakes{int(round(kimg)):06d}.png"
        save_grid(generate_images(trainer.G_ema, grid_z), grid_path)
        path = trainer.save(out)
        callback(TrainEvent(kind, kimg, cfg.kimg, {}, path))

    def metrics() -> None:
        if swd_ref is None:
            return
        t0 = time.perf_counter()
        z = torch.randn(cfg.metric_images, mc.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 3))
        fakes = generate_images(trainer.G_ema, z)
        result = swd_ref.distance(fakes)
        if fid_ref is not None:
            result["fid"] = fid_ref.distance(fakes)
        record = {"kimg": round(trainer.cur_nimg / 1000, 3), "seconds": round(trainer.elapsed, 1),
                  **{k: round(float(v), 4) for k, v in result.items()},
                  "metric_time": round(time.perf_counter() - t0, 2)}
        trainer.history.append(record)
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
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
            stats = trainer.train_step(next(batches))
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
        dist_utils.shutdown(dist)
    return out / MODEL


def _next_tick(nimg: int, every_kimg: float) -> float:
    if every_kimg <= 0:
        return math.inf
    step = every_kimg * 1000
    return (math.floor(nimg / step) + 1) * step
