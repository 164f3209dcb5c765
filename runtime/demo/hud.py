"""Rates and the heads-up display: camera FPS, generation FPS and latency, the settings, the keys."""

from __future__ import annotations

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX


class Ema:
    """Exponential moving average; the first sample sets it."""

    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha = alpha
        self.value: float | None = None

    def update(self, x: float) -> float:
        self.value = x if self.value is None else self.value + self.alpha * (x - self.value)
        return self.value


class RateMeter:
    """Events per second from the intervals between ticks (EMA of the interval, then inverted:
    averaging intervals, not rates, keeps one long stall from being averaged away)."""

    def __init__(self, alpha: float = 0.1) -> None:
        self._interval = Ema(alpha)
        self._last: float | None = None
        self.count = 0

    def tick(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._interval.update(now - self._last)
        self._last = now
        self.count += 1

    @property
    def rate(self) -> float:
        v = self._interval.value
        return 1.0 / v if v else 0.0


def _text_scale(frame: np.ndarray) -> float:
    return max(0.35, min(1.0, frame.shape[0] / 960))


def draw_panel(frame: np.ndarray, lines: list[str], corner: str = "top-left", margin: int = 8,
               color: tuple[int, int, int] = (255, 255, 255)) -> tuple[int, int, int, int] | None:
    """Text lines on a translucent dark box in a corner of the frame; returns the box."""
    lines = [s for s in lines if s]
    if not lines:
        return None
    scale = _text_scale(frame)
    thick = 1
    sizes = [cv2.getTextSize(s, FONT, scale, thick)[0] for s in lines]
    line_h = int(max(h for _, h in sizes) * 1.7) + 2
    box_w = min(frame.shape[1] - 2 * margin, max(w for w, _ in sizes) + 2 * margin)
    box_h = min(frame.shape[0] - 2 * margin, line_h * len(lines) + margin)
    x = margin if corner.endswith("left") else frame.shape[1] - margin - box_w
    y = margin if corner.startswith("top") else frame.shape[0] - margin - box_h
    roi = frame[y : y + box_h, x : x + box_w]
    # Darken rather than cover: the camera stays visible under the text.
    roi[:] = (roi.astype(np.uint16) * 2 // 5).astype(np.uint8)
    for i, s in enumerate(lines):
        baseline_y = y + margin // 2 + line_h * (i + 1) - line_h // 4
        cv2.putText(frame, s, (x + margin, baseline_y), FONT, scale, color, thick, cv2.LINE_AA)
    return x, y, box_w, box_h


KEY_HELP = [
    "+/- truncation   n noise mode",
    "1/2/3 mix coarse/middle/fine",
    "d direction   [/] along it   c class",
    "space pause walk   s snapshot   q quit",
]
