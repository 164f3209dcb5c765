"""Face detection with the Haar cascade that ships in the OpenCV 4.x wheels, and a small tracker
that smooths the boxes over time and gives each face a stable id (so each keeps its generated face).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import DetectorUnavailable

CASCADE = "haarcascade_frontalface_default.xml"
Box = tuple[float, float, float, float]  # x, y, w, h in frame pixels


@dataclass(frozen=True)
class DetectorConfig:
    detect_width: int = 320  # frames are downscaled to this width to detect (Haar cost grows with pixels)
    scale_factor: float = 1.15  # 1.1 finds a few more faces at ~1.4x the cost
    min_neighbors: int = 5
    min_size: int = 24  # smallest face, in downscaled pixels (the cascade's window is 24x24)
    every: int = 2  # detect every Nth frame; tracks coast in between (Haar is the loop's largest cost)


# Where distribution builds keep the cascades: JetPack's apt OpenCV (python3-opencv) has no
# cv2.data module, but installs them here.
SYSTEM_CASCADE_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/local/share/opencv4/haarcascades",
                       "/usr/share/opencv/haarcascades")


def cascade_path() -> Path:
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    for candidate in ([folder] if folder else []) + list(SYSTEM_CASCADE_DIRS):
        path = Path(candidate) / CASCADE
        if path.is_file():
            return path
    raise DetectorUnavailable(
        f"OpenCV {cv2.__version__} has no Haar cascades ({CASCADE}; OpenCV 5 dropped them): "
        f"pip install 'opencv-python-headless>=4.8,<5'"
    )


class FaceDetector:
    """Frontal faces in a BGR frame, as boxes in the frame's pixels."""

    def __init__(self, config: DetectorConfig = DetectorConfig()) -> None:
        self.config = config
        path = cascade_path()
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise DetectorUnavailable(f"cannot load the face cascade {path}: reinstall opencv-python-headless<5")

    def detect(self, frame: np.ndarray) -> list[Box]:
        c = self.config
        h, w = frame.shape[:2]
        scale = min(1.0, c.detect_width / w)
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        if scale < 1.0:
            gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        # Equalising makes the cascade's light/dark features work under dim or flat lighting.
        gray = cv2.equalizeHist(gray)
        found = self.cascade.detectMultiScale(gray, scaleFactor=c.scale_factor, minNeighbors=c.min_neighbors,
                                              minSize=(c.min_size, c.min_size))
        return [tuple(float(v) / scale for v in box) for box in np.asarray(found).reshape(-1, 4)]


def iou(a: Box, b: Box) -> float:
    ax1, ay1, ax2, ay2 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx1, by1, bx2, by2 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    id: int
    box: np.ndarray  # x, y, w, h (float)
    hits: int = 1
    misses: int = 0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))

    @property
    def rect(self) -> tuple[int, int, int, int]:
        x, y, w, h = self.box
        return int(round(x)), int(round(y)), int(round(w)), int(round(h))


class FaceTracker:
    """Greedy IoU matching of detections to tracks, exponential smoothing of the boxes.

    A track survives `max_misses` frames without a detection (the cascade drops faces for a frame
    now and then; an anonymiser must not flash the real face). New tracks take the lowest free
    id, so ids stay small and each one keeps its generated face while it lives.
    """

    def __init__(self, smoothing: float = 0.6, max_misses: int = 10, max_tracks: int = 16, min_iou: float = 0.15
                 ) -> None:
        self.smoothing = smoothing
        self.max_misses = max_misses
        self.max_tracks = max_tracks
        self.min_iou = min_iou
        self.tracks: list[Track] = []

    def coast(self) -> list[Track]:
        """A frame without detection: boxes keep their last velocity (damped)."""
        for t in self.tracks:
            t.box = t.box + t.velocity
            t.velocity = t.velocity * 0.5
        return list(self.tracks)

    def update(self, boxes: list[Box]) -> list[Track]:
        dets = [np.asarray(b, dtype=np.float64) for b in boxes]
        pairs = sorted(((iou(tuple(t.box), tuple(d)), ti, di) for ti, t in enumerate(self.tracks)
                        for di, d in enumerate(dets)), reverse=True)
        used_t: set[int] = set()
        used_d: set[int] = set()
        for score, ti, di in pairs:
            if score < self.min_iou:
                break
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            t = self.tracks[ti]
            new = self.smoothing * t.box + (1.0 - self.smoothing) * dets[di]
            t.velocity = 0.5 * t.velocity + 0.5 * (new - t.box)
            t.box, t.hits, t.misses = new, t.hits + 1, 0
        for ti, t in enumerate(self.tracks):
            if ti not in used_t:
                t.misses += 1
                t.box = t.box + t.velocity
        self.tracks = [t for t in self.tracks if t.misses <= self.max_misses]
        for di, d in enumerate(dets):
            if di in used_d or len(self.tracks) >= self.max_tracks:
                continue
            taken = {t.id for t in self.tracks}
            free = next(i for i in range(self.max_tracks + 1) if i not in taken)
            self.tracks.append(Track(free, d))
        self.tracks.sort(key=lambda t: t.id)
        return list(self.tracks)
