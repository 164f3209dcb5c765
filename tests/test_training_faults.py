"""`stylegan train` under bad options, small or broken datasets, a second writer, Ctrl-C, and
disk faults: one `error:` line (exit 1; 130 for Ctrl-C), no traceback, the last good checkpoint
kept and resumable, and nothing partial under a final name."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from stylegan_edge.cli.main import app
from stylegan_edge.training.checkpoint import read_checkpoint
from stylegan_edge.training.config import PRESETS, ConfigError, ModelConfig
from stylegan_edge.training.data import DatasetError
from stylegan_edge.training.loop import LOCK, TrainConfig, TrainingError, train

runner = CliRunner()
MICRO = ModelConfig(resolution=16, z_dim=8, w_dim=8, fmap_base=32, fmap_max=8, mapping_layers=2, mapping_width=8)
# The tiny preset, a few steps of batch 4, no metrics and no intermediate snapshots: seconds per run.
FAST = ("--preset", "tiny", "--batch", "4", "--workers", "0", "--metrics-kimg", "0", "--snapshot-kimg", "1000",
        "--device", "cpu")


def _cfg(out: Path, **kw) -> TrainConfig:
    base = dict(data="synthetic:faces:64", out=str(out), kimg=0.008, batch=4, workers=0, metrics_kimg=0,
                snapshot_kimg=1000, grid_size=4, r1_interval=2, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def cli(*args) -> object:
    return runner.invoke(app, ["train", *(str(a) for a in args)])


def assert_one_error(result, *fragments: str, code: int = 1) -> str:
    """Exactly one `error:` line holding every fragment, the exit code, and no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for f in fragments:
        assert f in errors[0], errors[0]
    return errors[0]


def nimg(path: Path) -> int:
    return json.loads(read_checkpoint(path)[1]["counters"])["cur_nimg"]


def no_temporaries(out: Path) -> bool:
    return not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture
def deadline():
    """A loop that spins forever (the old small-dataset bug) fails the test instead of hanging it."""

    def expired(signum, frame):
        raise TimeoutError("the command did not finish in 120 s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _images(folder: Path, n: int, bad: tuple[int, ...] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        path = folder / f"img{i:02d}.png"
        if i in bad:
            path.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
        else:
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    return folder


# --- options -------------------------------------------------------------------------------

@pytest.mark.parametrize("option, value, fragment", [
    ("--kimg", "nan", "--kimg"), ("--kimg", "0", "--kimg"), ("--kimg", "-1", "--kimg"),
    ("--batch", "0", "--batch"), ("--batch", "-4", "--batch"), ("--r1-interval", "0", "--r1-interval"),
    ("--mixing", "1.5", "--mixing"), ("--g-lr", "inf", "--g-lr"), ("--workers", "-1", "--workers"),
    ("--device", "tpu", "--device"),
])
def test_a_bad_option_is_one_line_before_anything_is_written(tmp_path, option, value, fragment):
    out = tmp_path / "run"
    args = [a for a in ("--data", "synthetic:faces:64", "--out", out, *FAST)]
    if option == "--device":
        args = args[:-2]
    result = cli(*args, option, value)
    assert_one_error(result, fragment, value)
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_one_line(tmp_path):
    out = tmp_path / "run"
    result = cli("--data", "synthetic:faces:64", "--out", out, *FAST[:-2], "--device", "cuda")
    assert_one_error(result, "--device cuda", "CUDA")
    assert not out.exists()


def test_the_api_refuses_the_same_options():
    for bad in (dict(kimg=float("nan")), dict(batch=0), dict(r1_interval=0), dict(batch=True), dict(seed=-1)):
        with pytest.raises(ConfigError):
            TrainConfig(data="synthetic:faces", out="x", **bad)


# --- small datasets ------------------------------------------------------------------------

@pytest.mark.parametrize("source, batch", [("folder3", "8"), ("synthetic:faces:5", "8"),
                                           ("synthetic:faces:64", "1000000")])
def test_a_dataset_smaller_than_one_batch_is_one_line_not_a_hang(tmp_path, deadline, source, batch):
    data = _images(tmp_path / "three", 3) if source == "folder3" else source
    out = tmp_path / "run"
    args = [a for a in FAST if a != "4"]  # every FAST option but the batch
    args.remove("--batch")
    result = cli("--data", data, "--out", out, *args, "--batch", batch, "--kimg", "0.008")
    assert_one_error(result, "fewer than one batch", str(data))
    assert not (out / "checkpoint.safetensors").exists() and not (out / "model.safetensors").exists()


def test_a_batch_the_minibatch_stddev_group_does_not_divide_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="multiple of the minibatch-stddev group"):
        train(_cfg(tmp_path, batch=6), MICRO)


# --- a second writer, stale temporaries, resumed metrics -----------------------------------

def test_a_second_writer_gets_one_line_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    # Another run holds the lock (a separate open file description conflicts with flock).
    with open(out / LOCK, "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.write("424242\n")
        holder.flush()
        result = cli("--data", "synthetic:faces:64", "--out", out, *FAST, "--kimg", "0.004")
        assert_one_error(result, "pid 424242", str(out))
        assert not (out / "checkpoint.safetensors").exists()
    train(_cfg(out), MICRO)  # released: the folder is usable again
    assert (out / "checkpoint.safetensors").is_file()


def test_stale_temporaries_from_a_killed_run_are_removed(tmp_path):
    train(_cfg(tmp_path), MICRO)
    stale = [tmp_path / ".checkpoint.safetensors.k1ll3d.tmp", tmp_path / "samples" / ".fakes000000004.png.x.tmp"]
    for p in stale:
        p.write_bytes(b"partial")
    keep = tmp_path / "notes.tmp"  # not one of ours: left alone
    keep.write_text("mine")
    train(_cfg(tmp_path, kimg=0.012), resume=True)
    assert not any(p.exists() for p in stale) and keep.read_text() == "mine"


def test_resume_writes_no_duplicate_metrics_rows(tmp_path):
    cfg = dict(metrics_kimg=0.004, metric_images=16)
    train(_cfg(tmp_path, **cfg), MICRO)
    ckpt_kimg = nimg(tmp_path / "checkpoint.safetensors") / 1000
    # A row measured after the checkpoint by a run that was then killed.
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"kimg": ckpt_kimg + 0.004, "swd_avg": -1.0}) + "\n")
    train(_cfg(tmp_path, **cfg), resume=True)  # same length: nothing to train
    train(_cfg(tmp_path, kimg=0.016, **cfg), resume=True)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    kimgs = [r["kimg"] for r in rows]
    assert kimgs == sorted(set(kimgs)), kimgs
    assert kimgs[0] == 0 and kimgs[-1] == 0.016 and all(r["swd_avg"] >= 0 for r in rows)


# --- Ctrl-C and sample grids ---------------------------------------------------------------

def test_ctrl_c_saves_and_exits_130(tmp_path):
    out = tmp_path / "run"
    args = ["--data", "synthetic:faces:64", "--out", str(out), "--preset", "tiny", "--batch", "4", "--workers", "0",
            "--metrics-kimg", "0", "--snapshot-kimg", "0.004", "--device", "cpu", "--kimg", "100"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "stylegan_edge.cli.main", "train", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        t0 = time.monotonic()
        # A first grid means the loop (and its Ctrl-C handler) is running.
        while not list((out / "samples").glob("fakes*.png")) and time.monotonic() - t0 < 120:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(OSError):
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "error:" not in err
    assert nimg(out / "checkpoint.safetensors") >= 4


def test_sample_grids_closer_than_one_kimg_never_collide(tmp_path):
    events = []
    train(_cfg(tmp_path, kimg=0.012, snapshot_kimg=0.004), MICRO, callback=events.append)
    saved = [e for e in events if e.kind in ("snapshot", "done")]
    grids = sorted(p.name for p in (tmp_path / "samples").glob("fakes*.png"))
    assert len(saved) == 4  # three ticks and the final save (at the last tick's image count)
    assert grids == [f"fakes{n:09d}.png" for n in (4, 8, 12)]
    assert no_temporaries(tmp_path)


# --- bad images ----------------------------------------------------------------------------

def test_a_corrupt_image_in_a_worker_names_its_file_and_the_run_saves_first(tmp_path):
    # The third batch of epoch 0 holds the bad image, so two steps succeed first.
    order = torch.randperm(16, generator=torch.Generator().manual_seed(0)).tolist()
    bad = order[9]
    data = _images(tmp_path / "data", 16, bad=(bad,))
    out = tmp_path / "run"
    events = []
    with pytest.raises(DatasetError) as info:
        train(_cfg(out, data=str(data), workers=2, kimg=1), MICRO, callback=events.append)
    message = str(info.value)
    assert f"img{bad:02d}.png" in message and "saved" in message and "\n" not in message
    assert [e.kind for e in events].count("step") == 2 and events[-1].kind == "stopped"
    assert nimg(out / "checkpoint.safetensors") == 8


def test_a_corrupt_image_is_one_cli_line_with_workers(tmp_path):
    data = _images(tmp_path / "data", 8, bad=(3,))
    result = cli("--data", data, "--out", tmp_path / "run", *[a if a != "0" else "2" for a in FAST], "--kimg", "1")
    assert_one_error(result, "img03.png")


# --- disk faults ---------------------------------------------------------------------------

def _checkpoint_tmp(name: str | os.PathLike) -> bool:
    return Path(name).name.startswith(".checkpoint.safetensors.")


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.mark.parametrize("where, code", [("write", errno.ENOSPC), ("fsync", errno.EIO), ("replace", errno.EIO)])
def test_an_io_error_saving_the_checkpoint_is_one_line_and_the_last_checkpoint_resumes(
        tmp_path, monkeypatch, where, code):
    out = tmp_path / "run"
    train(_cfg(out), MICRO)
    ckpt = out / "checkpoint.safetensors"
    before = ckpt.read_bytes()
    fault = OSError(code, os.strerror(code))
    hits = []

    if where == "write":
        original_write = Path.write_bytes

        def write_bytes(self, data):
            if _checkpoint_tmp(self):
                hits.append(self)
                raise fault
            return original_write(self, data)

        monkeypatch.setattr(Path, "write_bytes", write_bytes)
    elif where == "fsync":
        original_fsync = os.fsync

        def fsync(fd):
            if _checkpoint_tmp(_fd_path(fd if isinstance(fd, int) else fd.fileno())):
                hits.append(fd)
                raise fault
            return original_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
    else:
        original_replace = os.replace

        def replace(src, dst, **kw):
            if Path(dst).name == "checkpoint.safetensors":
                hits.append(dst)
                raise fault
            return original_replace(src, dst, **kw)

        monkeypatch.setattr(os, "replace", replace)

    result = cli("--data", "synthetic:faces:64", "--out", out, *FAST, "--kimg", "0.016", "--resume")
    assert hits, f"the fault at {where} was never reached"
    assert_one_error(result, str(ckpt), os.strerror(code), "last good checkpoint")
    assert ckpt.read_bytes() == before and no_temporaries(out)
    monkeypatch.undo()
    result = cli("--data", "synthetic:faces:64", "--out", out, *FAST, "--kimg", "0.016", "--resume")
    assert result.exit_code == 0, result.output
    assert nimg(ckpt) == 16


DISK_FULL = r"""
import resource, signal, sys
from stylegan_edge.cli.main import app
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
app(sys.argv[2:], prog_name="stylegan")
"""


def test_a_full_disk_is_one_line_and_the_last_checkpoint_resumes(tmp_path):
    """RLIMIT_FSIZE in a subprocess stands in for a full disk: the kernel refuses to grow any file
    past the limit, so the checkpoint (the largest file) cannot be written while the small ones can."""
    out = tmp_path / "run"
    train(_cfg(out, kimg=0.004, grid_size=64), PRESETS["tiny"])
    ckpt = out / "checkpoint.safetensors"
    before = ckpt.read_bytes()
    limit = len(before) // 2
    assert (out / "model.safetensors").stat().st_size < limit  # so the model could fit; the checkpoint not
    args = ["train", "--data", "synthetic:faces:64", "--out", str(out), *FAST, "--kimg", "0.008", "--resume"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", DISK_FULL, str(limit), *args], capture_output=True, text=True,
                          env=env, timeout=240)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr
    assert str(ckpt) in errors[0] and "too large" in errors[0].lower(), errors[0]
    assert ckpt.read_bytes() == before and no_temporaries(out)
    train(TrainConfig(data="synthetic:faces:64", out=str(out), kimg=0.008, workers=0, device="cpu"), resume=True)
    assert nimg(ckpt) == 8


def test_a_read_only_filesystem_is_one_line_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(_cfg(out), MICRO)
    ckpt = out / "checkpoint.safetensors"
    before = ckpt.read_bytes()
    # Every new file in the run folder fails as on a filesystem mounted read-only (root ignores
    # chmod, so a read-only folder cannot be made here).
    import tempfile

    original = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve().is_relative_to(out.resolve()):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), dir)
        return original(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    result = cli("--data", "synthetic:faces:64", "--out", out, *FAST, "--kimg", "0.016", "--resume")
    assert_one_error(result, str(out), os.strerror(errno.EROFS), "last good checkpoint")
    with pytest.raises(TrainingError, match="cannot write"):  # the Python API raises the same one line
        train(_cfg(out, kimg=0.016), resume=True)
    assert ckpt.read_bytes() == before and no_temporaries(out)


def test_a_read_only_folder_is_one_line(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only folders")
    out = tmp_path / "run"
    train(_cfg(out), MICRO)
    before = (out / "checkpoint.safetensors").read_bytes()
    out.chmod(0o500)
    try:
        result = cli("--data", "synthetic:faces:64", "--out", out, *FAST, "--kimg", "0.016", "--resume")
        assert_one_error(result, str(out))
    finally:
        out.chmod(0o700)
    assert (out / "checkpoint.safetensors").read_bytes() == before
