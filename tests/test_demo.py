"""The demo end to end, headless on the synthetic source with the tiny bundle: the written video,
the overlays, the worker's pipelining, the keys in a (fake) window, and the command line."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="the demo needs opencv-python-headless 4.x (pip install '.[demo]')")

from typer.testing import CliRunner  # noqa: E402

from stylegan_edge.cli.main import app  # noqa: E402
from stylegan_edge.runtime import Generator  # noqa: E402
from stylegan_edge.runtime.demo import (  # noqa: E402
    DemoApp,
    DemoConfig,
    GenerationWorker,
    GenRequest,
    SyntheticSource,
    run_demo,
)
from stylegan_edge.runtime.demo.overlay import pip_rect  # noqa: E402

SIZE = (320, 240)
# Right edge, between the HUD (top left, about 80 px tall here) and the picture-in-picture (bottom
# right); the synthetic faces stay in the middle band, so nothing is drawn here.
QUIET = (SIZE[0] - 36, 88, 36, 36)
HUD = (8, 8, 120, 40)


@pytest.fixture(scope="module")
def gen(tiny_bundle):
    return Generator(tiny_bundle, backend="onnxruntime")


class SlowGenerator:
    """The tiny generator with a synthesis that takes `delay` seconds: a slow GPU, or a big model."""

    def __init__(self, g: Generator, delay: float) -> None:
        self._g, self.delay, self.calls = g, delay, 0

    def __getattr__(self, name: str):
        return getattr(self._g, name)

    def synthesize(self, *args, **kwargs):
        self.calls += 1
        time.sleep(self.delay)
        return self._g.synthesize(*args, **kwargs)


def read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def region_diff(a: np.ndarray, b: np.ndarray, rect: tuple[int, int, int, int]) -> float:
    x, y, w, h = rect
    return float(np.abs(a[y : y + h, x : x + w].astype(int) - b[y : y + h, x : x + w].astype(int)).mean())


def headless(tmp_path: Path, **changes) -> DemoConfig:
    base = dict(out=tmp_path / "demo.mp4", max_frames=24, realtime=False, pip_size=96, seconds_per_seed=0.5)
    return DemoConfig(**{**base, **changes})


def test_pip_writes_every_frame_with_the_overlay_in_its_corner(gen, tmp_path):
    stats = run_demo(gen, SyntheticSource(SIZE), headless(tmp_path, mode="pip"))
    assert stats.frames == 24 and stats.stopped == "max-frames" and stats.out == tmp_path / "demo.mp4"
    frames = read_video(stats.out)
    assert len(frames) == 24 and frames[0].shape == (SIZE[1], SIZE[0], 3)
    source = SyntheticSource(SIZE)
    pip = pip_rect((SIZE[1], SIZE[0]), 96, "bottom-right")
    for i, frame in enumerate(frames):
        src = source.frame_at(i)
        assert region_diff(frame, src, pip) > 25, i  # every frame has the overlay, the first one too
        assert region_diff(frame, src, QUIET) < 6, i  # and the camera elsewhere (mp4v is lossy)
        assert region_diff(frame, src, HUD) > 15, i  # the HUD darkens its corner
    x, y, w, h = pip
    crops = [f[y : y + h, x : x + w].astype(int) for f in frames]
    assert np.abs(crops[0] - crops[-1]).mean() > 3  # the faces walk


def test_replace_faces_covers_each_detected_face_and_nothing_far_away(gen, tmp_path):
    stats = run_demo(gen, SyntheticSource(SIZE), headless(tmp_path, mode="replace-faces"))
    frames = read_video(stats.out)
    assert len(frames) == 24 and frames[0].shape == (SIZE[1], SIZE[0], 3)
    assert stats.overlays_shown > 0
    source = SyntheticSource(SIZE)
    for i, frame in enumerate(frames):
        src = source.frame_at(i)
        for x, y, w, h in source.face_boxes(i):
            # The middle of each drawn face (eyes to mouth) is replaced.
            inner = (x + w // 4, y + h // 4, w // 2, h // 2)
            assert region_diff(frame, src, inner) > 20, (i, inner)
        assert region_diff(frame, src, QUIET) < 6, i


def test_each_face_gets_its_own_stable_generated_face(gen):
    demo = DemoApp(gen, SyntheticSource(SIZE), DemoConfig(mode="replace-faces"))
    a = demo.styles_for(1.25, (0, 1))
    b = demo.styles_for(1.25, (1, 0))
    assert np.array_equal(a[0], b[1]) and np.array_equal(a[1], b[0])  # by track id, not by position
    assert np.abs(a[0] - a[1]).mean() > 0.05  # different seeds


def test_mixing_takes_the_groups_styles_from_the_second_seed(gen):
    import dataclasses

    from stylegan_edge.runtime import style_layers

    demo = DemoApp(gen, SyntheticSource(SIZE), DemoConfig(mode="pip"))
    plain = demo.styles_for(0.3, (0,))
    demo.settings = dataclasses.replace(demo.settings, mixing=frozenset({"coarse"}))
    mixed = demo.styles_for(0.3, (0,))
    coarse = style_layers("coarse", gen.meta.layer_resolutions)
    changed = np.flatnonzero(np.abs(mixed - plain).sum(axis=(0, 2)) > 0).tolist()
    assert changed == coarse
    second = gen.truncate(gen.broadcast(gen.map(gen.z_from_seeds([demo.config.mix_seed]))), demo.settings.psi)
    assert np.allclose(mixed[0, coarse], second[0, coarse], atol=1e-6)


def test_a_slow_generator_lowers_the_overlay_rate_not_the_camera_rate(gen, tmp_path):
    slow = SlowGenerator(gen, delay=0.15)
    pip = pip_rect((SIZE[1], SIZE[0]), 96, "bottom-right")
    overlays = []

    def grab(i, frame):
        x, y, w, h = pip
        overlays.append(frame[y : y + h, x : x + w].tobytes())

    config = headless(tmp_path, mode="pip", max_frames=30, realtime=True, fps=30.0, hud=False)
    stats = run_demo(slow, SyntheticSource(SIZE), config, on_frame=grab)
    assert stats.frames == 30
    assert stats.generation_fps < 1 / 0.15 + 0.5  # faces come at most every 0.15 s ...
    assert stats.camera_fps > max(12.0, 2.5 * stats.generation_fps)  # ... frames keep flowing (source: 30 fps)
    distinct = len(set(overlays))
    assert 1 <= distinct < 15 and stats.overlays_shown == distinct
    assert len(read_video(stats.out)) == 30


def test_the_worker_drops_stale_requests(gen):
    slow = SlowGenerator(gen, delay=0.2)
    ws = gen.styles(seeds=[1])
    with GenerationWorker(slow) as worker:
        for k in range(6):
            worker.submit(GenRequest(ws, (k,)))
        deadline = time.perf_counter() + 5
        while time.perf_counter() < deadline and (worker.latest() is None or worker.latest().keys != (5,)):
            time.sleep(0.01)
        result = worker.latest()
    assert result is not None and result.keys == (5,)  # the newest request was served
    assert slow.calls <= 2  # the ones in between never ran
    assert result.images.shape == (1, 32, 32, 3) and result.latency > 0


class FakeWindow:
    """A window whose user presses the given keys, one per frame."""

    def __init__(self, keys: str) -> None:
        self.keys = [ord(k) for k in keys]
        self.shown = 0
        self.closed = False

    def show(self, frame: np.ndarray) -> int:
        self.shown += 1
        return self.keys.pop(0) if self.keys else -1

    def close(self) -> None:
        self.closed = True


def test_window_keys_steer_the_demo_and_q_quits(gen, tmp_path):
    window = FakeWindow("+n1 s..q")
    config = DemoConfig(mode="pip", realtime=False, snapshot_dir=tmp_path / "snaps", show_keys=True)
    demo = DemoApp(gen, SyntheticSource(SIZE), config, window=window)
    stats = demo.run()
    assert stats.stopped == "quit" and stats.frames == 8 and window.closed
    assert demo.settings.psi == pytest.approx(gen.meta.truncation_psi + 0.1)
    assert demo.settings.noise == "random" and demo.settings.mixing == {"coarse"} and demo.settings.paused
    assert len(stats.snapshots) == 1 and stats.snapshots[0].parent == tmp_path / "snaps"
    snap = cv2.imread(str(stats.snapshots[0]))
    assert snap.shape == (SIZE[1], SIZE[0], 3)


def test_the_demo_stops_when_a_video_source_ends(gen, tmp_path):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, SIZE)
    source = SyntheticSource(SIZE)
    for i in range(7):
        writer.write(source.frame_at(i))
    writer.release()
    from stylegan_edge.runtime.demo import open_source

    stats = run_demo(gen, open_source(str(clip)), headless(tmp_path, max_frames=None))
    assert stats.stopped == "source-ended" and stats.frames == 7 and len(read_video(stats.out)) == 7


# --- the command line -------------------------------------------------------------------------
runner = CliRunner()


def test_the_command_runs_headless_and_prints_one_summary_line(tiny_bundle, tmp_path):
    out = tmp_path / "cli.mp4"
    result = runner.invoke(app, ["demo", str(tiny_bundle), "--source", "synthetic", "--headless", "--out", str(out),
                                 "--max-frames", "6", "--camera-size", "160x120", "--size", "64", "--no-realtime"])
    assert result.exit_code == 0, result.output
    lines = [s for s in result.stdout.splitlines() if s.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"6 frames to {out}"), result.stdout
    for word in ("camera", "generation", "latency", "fps"):
        assert word in lines[0]
    frames = read_video(out)
    assert len(frames) == 6 and frames[0].shape == (120, 160, 3)


def test_the_command_says_in_one_line_when_the_camera_cannot_open(tiny_bundle):
    index = next(i for i in range(9, 64) if not Path(f"/dev/video{i}").exists())
    result = runner.invoke(app, ["demo", str(tiny_bundle), "--source", str(index), "--headless"])
    assert result.exit_code == 1, result.output
    lines = [s for s in result.stderr.splitlines() if s.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot open camera {index}"), result.stderr
    assert "--source synthetic" in lines[0]


def test_the_command_rejects_an_unknown_mode_in_one_line(tiny_bundle):
    result = runner.invoke(app, ["demo", str(tiny_bundle), "--source", "synthetic", "--mode", "swap"])
    lines = [s for s in result.stderr.splitlines() if s.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "pip, replace-faces" in lines[0], result.output


def test_a_direction_moves_every_style_layer_of_the_walk_along_it(tiny_bundle, tmp_path):
    import dataclasses
    import shutil

    from stylegan_edge.runtime.directions import save_directions

    bundle = tmp_path / "d.sgbundle"
    shutil.copytree(tiny_bundle, bundle)
    d = np.random.default_rng(3).standard_normal(8).astype(np.float32)
    with Generator(bundle, backend="onnxruntime") as g:
        save_directions(bundle, {"hair_dark": np.resize(d, g.meta.w_dim)})
        demo = DemoApp(g, SyntheticSource(SIZE), DemoConfig(mode="pip"))
        assert demo.directions == ("hair_dark",)
        plain = demo.styles_for(0.3, (0,))
        demo.settings = dataclasses.replace(demo.settings, direction="hair_dark", strength=2.0)
        moved = demo.styles_for(0.3, (0,))
        unit = np.resize(d, g.meta.w_dim) / np.linalg.norm(np.resize(d, g.meta.w_dim))
        np.testing.assert_allclose(moved - plain, np.broadcast_to(2.0 * unit, plain.shape), atol=1e-5)
