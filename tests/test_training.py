"""The training loop: losses, resumable and atomic checkpoints, Ctrl-C, and data parallelism."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch

from stylegan_edge.training.checkpoint import CheckpointError, load_generator, read_checkpoint
from stylegan_edge.training.config import ModelConfig
from stylegan_edge.training.loop import TrainConfig, Trainer, train
from stylegan_edge.training.loss import d_loss, g_loss, r1_penalty
from stylegan_edge.training.networks import Discriminator

# 16 px and a handful of channels: a training step takes milliseconds.
MICRO = ModelConfig(resolution=16, z_dim=8, w_dim=8, fmap_base=32, fmap_max=8, mapping_layers=2, mapping_width=8)


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(data="synthetic:faces:256", out=str(tmp_path), kimg=0.024, batch=4, workers=0, metrics_kimg=0,
                snapshot_kimg=1000, grid_size=4, r1_interval=2, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _state(path):
    tensors, _ = read_checkpoint(path)
    return {k: v for k, v in tensors.items() if not k.startswith("rng.")}


def test_losses_are_the_non_saturating_logistic_pair_with_r1():
    torch.manual_seed(0)
    D = Discriminator(MICRO)
    real, fake = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    assert torch.isclose(g_loss(D, fake), torch.nn.functional.softplus(-D(fake)).mean())
    expected = torch.nn.functional.softplus(D(fake)).mean() + torch.nn.functional.softplus(-D(real)).mean()
    assert torch.isclose(d_loss(D, real, fake), expected)
    x = real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x)
    assert torch.isclose(r1_penalty(D, real), grad.square().sum((1, 2, 3)).mean(), rtol=1e-4)


def test_a_training_run_writes_model_checkpoint_grids_and_config(tmp_path):
    events = []
    model = train(_cfg(tmp_path, metrics_kimg=0.012, metric_images=32, snapshot_kimg=0.012), MICRO,
                  callback=events.append)
    assert model == tmp_path / "model.safetensors"
    assert load_generator(model).cfg == MICRO
    assert (tmp_path / "reals.png").is_file() and list((tmp_path / "samples").glob("fakes*.png"))
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["kimg"] == 0 and metrics[-1]["kimg"] >= 0.024 and "swd_avg" in metrics[-1]
    assert events[-1].kind in ("done", "metrics")
    assert json.loads((tmp_path / "training_config.json").read_text())["model"]["resolution"] == 16


def _tiny_feature_extractor(path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("MatMul", ["f", "w"], ["y"])],
        "features", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 6])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_fid_is_reported_when_a_feature_extractor_is_given(tmp_path):
    model = _tiny_feature_extractor(tmp_path / "features.onnx")
    train(_cfg(tmp_path / "run", metrics_kimg=0.024, metric_images=16, fid_model=str(model)), MICRO)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(m["fid"] >= 0 for m in metrics)
    assert (tmp_path / "run" / "fid_reals.npz").is_file()


def test_resuming_continues_exactly_where_the_run_stopped(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(_cfg(straight, kimg=0.024), MICRO)
    train(_cfg(split, kimg=0.012), MICRO)
    train(_cfg(split, kimg=0.024), resume=True)
    a, b = _state(straight / "checkpoint.safetensors"), _state(split / "checkpoint.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path):
    steps = []

    def interrupt_after_two_steps(event):
        if event.kind == "step":
            steps.append(event)
            if len(steps) == 2:
                os.kill(os.getpid(), signal.SIGINT)

    events = []
    train(_cfg(tmp_path), MICRO, callback=lambda e: (interrupt_after_two_steps(e), events.append(e)))
    assert events[-1].kind == "interrupted" and len(steps) == 2
    _, meta = read_checkpoint(tmp_path / "checkpoint.safetensors")
    assert json.loads(meta["counters"])["cur_nimg"] == 8
    train(_cfg(tmp_path), resume=True)
    _, meta = read_checkpoint(tmp_path / "checkpoint.safetensors")
    assert json.loads(meta["counters"])["cur_nimg"] == 24


def test_resume_without_a_checkpoint_is_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(_cfg(tmp_path), resume=True)


def test_g_ema_follows_g_and_w_avg_is_tracked(tmp_path):
    trainer = Trainer(_cfg(tmp_path), MICRO)
    before = [p.clone() for p in trainer.G_ema.parameters()]
    reals = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    for _ in range(3):
        trainer.train_step(reals)
    moved = sum(not torch.equal(a, b) for a, b in zip(before, trainer.G_ema.parameters()))
    assert moved > 0
    assert trainer.G.w_avg.abs().sum() > 0 and torch.equal(trainer.G.w_avg, trainer.G_ema.w_avg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DDP_WORKER = r"""
import hashlib, sys, torch
from stylegan_edge.training.loop import Trainer, TrainConfig
from stylegan_edge.training.config import ModelConfig
from stylegan_edge.training import distributed
cfg = ModelConfig(**__CFG__)
info = distributed.init_from_env("cpu")
t = Trainer(TrainConfig(data="x", out=".", batch=8, r1_interval=2, device="cpu"), cfg, info)
torch.manual_seed(100 + info.rank)  # each replica sees different reals
for _ in range(3):
    t.train_step(torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8))
h = hashlib.sha256()
for m in (t.G, t.D, t.G_ema):
    for v in m.state_dict().values():
        h.update(v.numpy().tobytes())
print(info.rank, info.world_size, h.hexdigest())
distributed.shutdown(info)
"""


def test_two_process_data_parallel_keeps_replicas_identical(tmp_path):
    port = _free_port()
    code = DDP_WORKER.replace("__CFG__", repr(dataclasses.asdict(MICRO)))
    procs = []
    for rank in range(2):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                   LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=tmp_path))
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    lines = sorted(out.split() for out, _ in outs)
    assert [line[:2] for line in lines] == [["0", "2"], ["1", "2"]]
    assert lines[0][2] == lines[1][2]  # same weights, buffers (w_avg) and EMA on both replicas
