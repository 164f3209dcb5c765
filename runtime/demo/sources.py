"""Where the demo's frames come from: a camera, a GStreamer pipeline, a video file, a still image,
or synthetic frames with drawn faces (so the demo and its tests run with no camera).

Every source hands out BGR uint8 frames (OpenCV's order) through `read()`, which returns None
once the source has ended. `live` sources (cameras, pipelines) set their own pace and their time
is wall time; the others are paced by the demo and their time is frame index / fps.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from .errors import SourceError

__all__ = [
    "CaptureSource", "FrameSource", "ImageSource", "SourceError", "SyntheticSource", "open_source", "parse_size",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
DEFAULT_CAMERA_SIZE = (640, 480)
DEFAULT_FPS = 30.0


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480)."""
    try:
        w, h = (int(v) for v in text.lower().replace("*", "x").split("x"))
    except ValueError:
        raise SourceError(f"bad size {text!r}: use WIDTHxHEIGHT, e.g. 640x480") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise SourceError(f"bad size {text!r}: width and height must be 16-8192 pixels")
    return w, h


class FrameSource:
    """The interface every source has."""

    name: str = "source"
    live: bool = False  # a camera or pipeline: frames come at their own pace
    fps: float = DEFAULT_FPS  # nominal rate (pacing of non-live sources, the output video's default)
    endless: bool = False  # never ends by itself (camera, image, synthetic)

    def read(self) -> np.ndarray | None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV logs its own warnings to stderr when a device is missing; the demo says it in one line."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        yield
        return
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(level)


def camera_help(index: int) -> str:
    others = "--source 1" if index == 0 else "--source 0"
    return (
        f"cannot open camera {index}: try {others} (another index), check `ls /dev/video*` and that your user "
        f"may read it (the `video` group), close other programs using it; a Jetson CSI camera needs a GStreamer "
        f"pipeline string (nvarguscamerasrc ... ! appsink) and JetPack's OpenCV; --source synthetic runs with no camera"
    )


def opencv_has_gstreamer() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


class CaptureSource(FrameSource):
    """A cv2.VideoCapture: camera, GStreamer pipeline or video file."""

    def __init__(self, cap: cv2.VideoCapture, name: str, live: bool, first: np.ndarray | None = None,
                 fps: float | None = None, resize: tuple[int, int] | None = None) -> None:
        self.cap = cap
        self.name = name
        self.live = live
        self.endless = live
        reported = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps or (reported if 1.0 <= reported <= 240.0 else DEFAULT_FPS)
        self._first = first
        self._resize = resize

    def read(self) -> np.ndarray | None:
        if self._first is not None:
            frame, self._first = self._first, None
        else:
            ok, frame = self.cap.read()
            if not ok or frame is None:
                return None
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if self._resize and (frame.shape[1], frame.shape[0]) != self._resize:
            frame = cv2.resize(frame, self._resize, interpolation=cv2.INTER_AREA)
        return frame

    def close(self) -> None:
        self.cap.release()


class ImageSource(FrameSource):
    """A still image, repeated: the demo on a photo."""

    endless = True

    def __init__(self, image: np.ndarray, name: str, fps: float = DEFAULT_FPS) -> None:
        self.image = image
        self.name = name
        self.fps = fps

    def read(self) -> np.ndarray | None:
        return self.image.copy()


# Face palette (BGR): skin tones and hair; chosen for contrast with the background so the
# frontal-face cascade finds the drawn faces (tests check that it does).
_SKIN = [(150, 180, 215), (120, 160, 205), (95, 125, 170), (170, 195, 225)]
_HAIR = [(40, 40, 50), (30, 50, 90), (20, 20, 25), (60, 80, 120)]


def draw_face(img: np.ndarray, cx: float, cy: float, half_width: float, skin: tuple[int, int, int],
              hair: tuple[int, int, int], blink: float = 0.0) -> None:
    """A frontal cartoon face (hair, skin oval, brows, eyes, nose, mouth) centred at (cx, cy)."""
    s = half_width
    h = s * 1.3
    aa = cv2.LINE_AA

    def pt(x: float, y: float) -> tuple[int, int]:
        return int(round(x)), int(round(y))

    def ax(a: float, b: float) -> tuple[int, int]:
        return max(1, int(round(a))), max(1, int(round(b)))

    cv2.ellipse(img, pt(cx, cy - 0.35 * h), ax(1.08 * s, 0.8 * h), 0, 180, 360, hair, -1, aa)
    cv2.ellipse(img, pt(cx, cy), ax(s, h), 0, 0, 360, skin, -1, aa)
    ey = cy - 0.2 * h
    for side in (-1, 1):
        x = cx + side * 0.4 * s
        cv2.ellipse(img, pt(x, ey - 0.2 * h), ax(0.28 * s, 0.06 * h), 0, 0, 360, (40, 40, 60), -1, aa)
        open_ = max(0.15, 1.0 - blink)
        cv2.ellipse(img, pt(x, ey), ax(0.22 * s, 0.1 * h * open_), 0, 0, 360, (235, 235, 235), -1, aa)
        cv2.circle(img, pt(x, ey), max(1, int(round(0.09 * s * open_))), (40, 30, 20), -1, aa)
    cv2.ellipse(img, pt(cx, cy + 0.12 * h), ax(0.1 * s, 0.05 * h), 0, 0, 360, (110, 130, 170), -1, aa)
    cv2.ellipse(img, pt(cx, cy + 0.45 * h), ax(0.35 * s, 0.08 * h), 0, 0, 360, (60, 60, 150), -1, aa)


class SyntheticSource(FrameSource):
    """Moving, deterministic frames with drawn faces: frame i depends only on (i, size, faces, seed).

    The faces drift on slow Lissajous paths inside the middle of the frame (the corners stay free
    for the HUD and for tests that check a far corner), the background's colours and soft
    blobs move, and the eyes blink now and then.
    """

    endless = True

    def __init__(self, size: tuple[int, int] = DEFAULT_CAMERA_SIZE, faces: int = 2, fps: float = DEFAULT_FPS,
                 seed: int = 0) -> None:
        if faces < 0 or faces > 4:
            raise SourceError(f"synthetic source draws 0-4 faces, got {faces}")
        self.size = size
        self.faces = faces
        self.fps = fps
        self.seed = seed
        self.name = f"synthetic {size[0]}x{size[1]}"
        self.index = 0
        rng = np.random.default_rng(seed)
        self._phases = rng.uniform(0, 2 * math.pi, size=(max(faces, 1), 4))
        self._blobs = rng.uniform(0, 1, size=(5, 5))
        # The background gradient is computed at 1/8 size and upscaled: it is smooth, and the
        # full-size float version cost more than the rest of the frame.
        w, h = size
        self._small = (max(2, w // 8), max(2, h // 8))
        yy = np.linspace(0.0, 1.0, self._small[1], dtype=np.float32)[:, None, None]
        xx = np.linspace(0.0, 1.0, self._small[0], dtype=np.float32)[None, :, None]
        self._ramp = 0.6 * yy + 0.4 * xx

    def face_boxes(self, i: int) -> list[tuple[int, int, int, int]]:
        """The drawn faces' bounding boxes (x, y, w, h) in frame i (the skin oval, without hair)."""
        return [self._box(cx, cy, s) for cx, cy, s in self._faces(i)]

    @staticmethod
    def _box(cx: float, cy: float, s: float) -> tuple[int, int, int, int]:
        h = s * 1.3
        return int(cx - s), int(cy - h), int(2 * s), int(2 * h)

    def _faces(self, i: int) -> list[tuple[float, float, float]]:
        w, h = self.size
        t = i / self.fps
        out = []
        for k in range(self.faces):
            p = self._phases[k]
            # Faces share the middle band, each in its own column so they never overlap.
            col_w = 0.7 * w / self.faces
            base_x = 0.15 * w + col_w * (k + 0.5)
            s = min(col_w * 0.3, 0.17 * h) * (1.0 + 0.08 * math.sin(0.5 * t + p[2]))
            cx = base_x + 0.12 * col_w * math.sin(0.7 * t + p[0])
            cy = 0.5 * h + 0.06 * h * math.sin(0.9 * t + p[1])
            out.append((cx, cy, s))
        return out

    def frame_at(self, i: int) -> np.ndarray:
        w, h = self.size
        t = i / self.fps
        tint = np.array([70 + 25 * math.sin(0.3 * t), 75 + 20 * math.sin(0.23 * t + 1.0),
                         60 + 20 * math.sin(0.17 * t + 2.0)], np.float32)
        small = (tint * (0.6 + 0.8 * self._ramp)).clip(0, 255).astype(np.uint8)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        for bx, by, br, speed, shade in self._blobs:
            x = int(w * (0.5 + 0.45 * math.sin(speed * t + 6.28 * bx)))
            y = int(h * (0.5 + 0.45 * math.cos(0.8 * speed * t + 6.28 * by)))
            r = int(min(w, h) * (0.04 + 0.06 * br))
            c = int(40 + 60 * shade)
            cv2.circle(img, (x, y), r, (c + 30, c + 10, c), -1, cv2.LINE_AA)
        for k, (cx, cy, s) in enumerate(self._faces(i)):
            blink = max(0.0, 1.0 - abs(((t + 1.3 * k) % 4.0) - 2.0) / 0.12)
            draw_face(img, cx, cy, s, _SKIN[k % len(_SKIN)], _HAIR[k % len(_HAIR)], blink)
        return img

    def read(self) -> np.ndarray | None:
        frame = self.frame_at(self.index)
        self.index += 1
        return frame


def _open_camera(index: int, size: tuple[int, int] | None) -> CaptureSource:
    size = size or DEFAULT_CAMERA_SIZE
    apis = [cv2.CAP_V4L2, cv2.CAP_ANY] if sys.platform.startswith("linux") else [cv2.CAP_ANY]
    for api in apis:
        with _quiet_opencv():
            cap = cv2.VideoCapture(index, api)
            if cap.isOpened():
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
                # Hold one frame, not a queue of old ones: a busy loop then sees the newest frame.
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
                ok, frame = cap.read()
                if ok and frame is not None:
                    return CaptureSource(cap, f"camera {index}", live=True, first=frame)
            cap.release()
    raise SourceError(camera_help(index))


def _open_pipeline(pipeline: str, size: tuple[int, int] | None) -> CaptureSource:
    if not opencv_has_gstreamer():
        raise SourceError(
            "this OpenCV has no GStreamer (the PyPI wheels never do): on a Jetson use JetPack's OpenCV "
            "(sudo apt install python3-opencv, in a venv made with --system-site-packages), or give a camera index"
        )
    with _quiet_opencv():
        cap = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
        ok, frame = cap.read() if cap.isOpened() else (False, None)
    if not ok or frame is None:
        cap.release()
        raise SourceError(
            f"cannot open GStreamer pipeline {pipeline!r}: test it with gst-launch-1.0 (fakesink in place of appsink); "
            f"it must end in '! videoconvert ! video/x-raw,format=BGR ! appsink'"
        )
    return CaptureSource(cap, "gstreamer", live=True, first=frame, resize=size)


def _open_file(path: Path, size: tuple[int, int] | None, fps: float | None) -> FrameSource:
    if path.is_dir():
        raise SourceError(f"--source {path} is a folder: give a video file, an image, a camera index or synthetic")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"cannot read image {path}: OpenCV does not decode it")
        if size:
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return ImageSource(image, path.name, fps or DEFAULT_FPS)
    with _quiet_opencv():
        cap = cv2.VideoCapture(str(path))
        ok, frame = cap.read() if cap.isOpened() else (False, None)
    if not ok or frame is None:
        cap.release()
        raise SourceError(f"cannot read video {path}: OpenCV's FFmpeg does not decode it (or it has no frames)")
    return CaptureSource(cap, path.name, live=False, first=frame, fps=fps, resize=size)


def open_source(spec: str, size: tuple[int, int] | None = None, fps: float | None = None) -> FrameSource:
    """'0' (camera index), a GStreamer pipeline ('... ! appsink'), a video file, an image, or 'synthetic'.

    `size` is the camera's requested resolution (cameras may choose another), the synthetic
    frames' size, and for files and pipelines the size frames are resized to. `fps` paces
    non-live sources (default: a video's own rate, else 30).
    """
    spec = spec.strip()
    if spec.lower() == "synthetic":
        return SyntheticSource(size or DEFAULT_CAMERA_SIZE, fps=fps or DEFAULT_FPS)
    if spec.isdigit():
        return _open_camera(int(spec), size)
    if "!" in spec:
        return _open_pipeline(spec, size)
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(
            f"--source {spec}: no such file; give a camera index (0), a video file, an image, "
            f"a GStreamer pipeline ('... ! appsink') or synthetic"
        )
    return _open_file(path, size, fps)
