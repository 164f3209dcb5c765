"""The demo's parts, without a model: frame sources, the walk, detection and tracking, blending,
keys, and that the demo never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="the demo needs opencv-python-headless 4.x (pip install '.[demo]')")

from stylegan_edge.runtime.demo import (  # noqa: E402
    FaceDetector,
    FaceTracker,
    Settings,
    SourceError,
    SyntheticSource,
    Walker,
    apply_key,
    open_source,
    parse_size,
)
from stylegan_edge.runtime.demo.faces import iou  # noqa: E402
from stylegan_edge.runtime.demo.overlay import paste_face, paste_pip, pip_rect  # noqa: E402
from stylegan_edge.runtime.demo.walker import coprime_stride  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# --- no torch ---------------------------------------------------------------------------------
def test_importing_the_demo_does_not_import_torch():
    code = (
        "import sys\n"
        "import stylegan_edge.runtime.demo, stylegan_edge.runtime.demo.app, stylegan_edge.cli.demo_cmd\n"
        "bad = sorted(k for k in sys.modules if k == 'torch' or k.startswith('torch.'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


# --- sources ----------------------------------------------------------------------------------
def test_synthetic_frames_are_deterministic_and_move():
    a, b = SyntheticSource((320, 240), seed=3), SyntheticSource((320, 240), seed=3)
    frames_a = [a.read() for _ in range(12)]
    frames_b = [b.read() for _ in range(12)]
    assert all(np.array_equal(x, y) for x, y in zip(frames_a, frames_b))
    assert frames_a[0].shape == (240, 320, 3) and frames_a[0].dtype == np.uint8
    assert np.array_equal(frames_a[7], SyntheticSource((320, 240), seed=3).frame_at(7))
    assert np.abs(frames_a[0].astype(int) - frames_a[11].astype(int)).mean() > 0.5  # it moves


@pytest.mark.parametrize("size", [(320, 240), (640, 480)])
def test_the_frontal_face_cascade_finds_every_synthetic_face(size):
    source, detector = SyntheticSource(size), FaceDetector()
    for i in range(0, 120, 10):
        truth = source.face_boxes(i)
        found = detector.detect(source.frame_at(i))
        assert len(truth) == 2
        for box in truth:
            assert max((iou(box, f) for f in found), default=0.0) > 0.4, (i, box, found)


def test_a_camera_that_cannot_open_is_one_line_saying_what_to_try():
    index = next(i for i in range(9, 64) if not Path(f"/dev/video{i}").exists())
    with pytest.raises(SourceError) as e:
        open_source(str(index))
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"cannot open camera {index}")
    for hint in ("--source 0", "ls /dev/video*", "video", "GStreamer", "--source synthetic"):
        assert hint in message, hint


def test_a_missing_source_file_is_one_line():
    with pytest.raises(SourceError, match="no such file"):
        open_source("no/such/clip.mp4")


def test_a_still_image_repeats_and_a_video_file_ends(tmp_path):
    frame = SyntheticSource((64, 48)).frame_at(5)
    cv2.imwrite(str(tmp_path / "still.png"), frame)
    still = open_source(str(tmp_path / "still.png"))
    assert all(np.array_equal(still.read(), frame) for _ in range(3)) and still.endless
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(4):
        writer.write(frame)
    writer.release()
    clip = open_source(str(tmp_path / "clip.avi"), size=(32, 24))
    frames = []
    while (f := clip.read()) is not None:
        frames.append(f)
    assert len(frames) == 4 and frames[0].shape == (24, 32, 3) and not clip.live
    clip.close()


@pytest.mark.parametrize("text, size", [("640x480", (640, 480)), ("1280X720", (1280, 720))])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["640", "axb", "8x8"])
def test_bad_sizes_are_one_line(text):
    with pytest.raises(SourceError, match="size"):
        parse_size(text)


# --- the walk ---------------------------------------------------------------------------------
@pytest.fixture
def keys():
    return np.random.default_rng(7).standard_normal((5, 16)).astype(np.float32)


@pytest.mark.parametrize("curve", ["catmull-rom", "ease"])
def test_the_walk_passes_through_every_keyframe(keys, curve):
    walk = Walker(keys, seconds_per_key=1.5, curve=curve)
    for k in range(len(keys)):
        assert np.allclose(walk.at(1.5 * k), keys[k], atol=1e-5)
    assert np.allclose(walk.at(walk.period), keys[0], atol=1e-5)  # it loops


@pytest.mark.parametrize("curve", ["catmull-rom", "ease"])
def test_the_walk_is_smooth(keys, curve):
    walk = Walker(keys, seconds_per_key=1.0, curve=curve)
    dt = 1 / 120
    path = np.stack([walk.at(i * dt) for i in range(int(2 * walk.period / dt))])
    step = np.linalg.norm(np.diff(path, axis=0), axis=1)
    spread = np.linalg.norm(keys[:, None] - keys[None], axis=-1).max()
    # Small steps (no jumps, also across the loop's seam and keyframes) ...
    assert step.max() < 0.05 * spread
    # ... that change gradually: the velocity is continuous (C1), not just the position.
    velocity = np.diff(path, axis=0) / dt
    accel = np.linalg.norm(np.diff(velocity, axis=0), axis=1)
    assert accel.max() < 0.05 * np.linalg.norm(velocity, axis=1).max()


def test_linear_blends_would_fail_the_smoothness_check(keys):
    # The check above can fail: a plain per-segment lerp has a velocity jump at each keyframe.
    dt = 1 / 120
    t = np.arange(0, len(keys), dt)
    i = np.floor(t).astype(int) % len(keys)
    u = (t - np.floor(t))[:, None]
    path = keys[i] + (keys[(i + 1) % len(keys)] - keys[i]) * u
    velocity = np.diff(path, axis=0) / dt
    accel = np.linalg.norm(np.diff(velocity, axis=0), axis=1)
    assert accel.max() > 0.05 * np.linalg.norm(velocity, axis=1).max()


def test_offsets_give_different_faces_on_the_same_loop(keys):
    walk = Walker(keys, 1.0)
    stride = coprime_stride(len(keys))
    offsets = {(k * stride) % len(keys) for k in range(len(keys))}
    assert len(offsets) == len(keys)  # every track starts on its own keyframe
    assert np.allclose(walk.at_offset(0.0, stride), keys[stride % len(keys)], atol=1e-5)


# --- detection, tracking, blending ------------------------------------------------------------
def test_tracks_keep_their_ids_through_motion_and_dropped_detections():
    tracker = FaceTracker(max_misses=3)
    a, b = (100.0, 100.0, 80.0, 80.0), (300.0, 120.0, 70.0, 70.0)
    ids = [t.id for t in tracker.update([a, b])]
    assert ids == [0, 1]
    for step in range(1, 6):
        moved_a = (a[0] + 4 * step, a[1], a[2], a[3])
        boxes = [moved_a] if step == 3 else [(b[0] - 3 * step, b[1], b[2], b[3]), moved_a]  # b missed once
        tracks = tracker.update(boxes)
        assert [t.id for t in tracks] == [0, 1]
    assert tracks[0].box[0] > a[0]  # follows the motion, smoothed
    for _ in range(4):  # b leaves: dropped after max_misses; a new face takes the free id
        tracks = tracker.update([(a[0] + 20, a[1], a[2], a[3])])
    assert [t.id for t in tracks] == [0]
    tracks = tracker.update([(a[0] + 20, a[1], a[2], a[3]), (500.0, 50.0, 60.0, 60.0)])
    assert [t.id for t in tracks] == [0, 1]


def test_a_pasted_face_is_blended_inside_the_box_and_leaves_the_rest_alone():
    frame = np.full((200, 200, 3), 40, np.uint8)
    face = np.full((32, 32, 3), 220, np.uint8)
    x, y, w, h = paste_face(frame, face, (70.0, 70.0, 60.0, 60.0), color_match=0.0)
    centre = frame[100, 100]
    assert (centre > 200).all()  # the face, fully opaque in the middle
    assert (frame[:y].astype(int) == 40).all() and (frame[:, x + w :].astype(int) == 40).all()
    row = frame[100, x : x + w, 0].astype(int)
    ramp = row[(row > 45) & (row < 215)]
    assert len(ramp) >= 4  # a feathered edge: several intermediate values, not a hard cut


def test_a_face_at_the_frame_edge_is_clipped_not_an_error():
    frame = np.full((120, 160, 3), 40, np.uint8)
    rect = paste_face(frame, np.full((32, 32, 3), 220, np.uint8), (-30.0, 80.0, 60.0, 60.0))
    assert rect is not None and rect[0] == 0 and rect[1] + rect[3] == 120


def test_picture_in_picture_goes_in_the_corner():
    frame = np.zeros((240, 320, 3), np.uint8)
    face = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    x, y, w, h = paste_pip(frame, face, 96, "bottom-right", margin=12)
    assert (x, y, w, h) == pip_rect(frame.shape, 96) == (320 - 12 - 96, 240 - 12 - 96, 96, 96)
    assert frame[y : y + h, x : x + w].std() > 20 and frame[: y - 4].max() == 0


# --- keys -------------------------------------------------------------------------------------
def test_keys_change_the_settings():
    s = Settings(psi=0.7, noise="const")
    s, action, _ = apply_key(ord("+"), s)
    assert s.psi == pytest.approx(0.8) and action is None
    s, _, _ = apply_key(ord("-"), apply_key(ord("-"), s)[0])
    assert s.psi == pytest.approx(0.6)
    assert [apply_key(ord("n"), Settings(0.7, m))[0].noise for m in ("const", "random", "none")] == \
        ["random", "none", "const"]
    s, _, _ = apply_key(ord("1"), s)
    s, _, _ = apply_key(ord("2"), s)
    assert s.mixing == {"coarse", "middle"}
    s, _, _ = apply_key(ord("1"), s)
    assert s.mixing == {"middle"}
    assert apply_key(ord(" "), s)[0].paused
    assert apply_key(ord("s"), s)[1] == "snapshot"
    assert apply_key(ord("q"), s)[1] == "quit" and apply_key(27, s)[1] == "quit"
    assert apply_key(-1, s) == (s, None, "")


def test_mixing_a_group_the_model_lacks_says_so():
    s = Settings(psi=0.7, noise="const")
    new, _, message = apply_key(ord("3"), s, mix_available=("coarse", "middle"))
    assert new == s and "fine" in message


def test_an_opencv_without_cascades_is_one_line_naming_the_fix(monkeypatch):
    from stylegan_edge.runtime.demo import DetectorUnavailable, faces

    monkeypatch.setattr(faces.cv2, "data", None, raising=False)
    monkeypatch.setattr(faces, "SYSTEM_CASCADE_DIRS", ())
    with pytest.raises(DetectorUnavailable) as e:
        FaceDetector()
    assert "\n" not in str(e.value) and "<5" in str(e.value)


def test_the_direction_key_cycles_the_bundles_directions_and_brackets_move_along_it():
    s = Settings(psi=0.7, noise="const")
    assert "no directions.npz" in apply_key(ord("d"), s)[2]
    assert "direction first" in apply_key(ord("]"), s)[2]
    names = ("hair_dark", "yaw")
    s, _, _ = apply_key(ord("d"), s, directions=names)
    assert s.direction == "hair_dark"
    for _ in range(12):
        s, _, _ = apply_key(ord("]"), s, directions=names)
    assert s.strength == 5.0  # clamped
    s, _, message = apply_key(ord("["), s, directions=names)
    assert s.strength == 4.5 and "hair_dark +4.5" in message
    assert [apply_key(ord("d"), s, directions=names)[0].direction, apply_key(ord("d"), apply_key(
        ord("d"), s, directions=names)[0], directions=names)[0].direction] == ["yaw", None]
