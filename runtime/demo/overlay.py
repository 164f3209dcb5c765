"""Putting generated faces into camera frames: picture-in-picture, and face replacement blended
through a feathered elliptical mask (a local face anonymiser). All functions draw in place on a
BGR uint8 frame and return the rectangle they touched (x, y, w, h), or None.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

Rect = tuple[int, int, int, int]
CORNERS = ("bottom-right", "top-right", "top-left", "bottom-left")


def pip_rect(frame_shape: tuple[int, ...], size: int, corner: str = "bottom-right", margin: int = 12) -> Rect:
    """Where a size x size picture-in-picture goes (shrunk to fit small frames)."""
    if corner not in CORNERS:
        raise ValueError(f"corner must be one of {CORNERS}, got {corner!r}")
    fh, fw = frame_shape[:2]
    size = max(8, min(size, fw - 2 * margin, fh - 2 * margin))
    x = fw - margin - size if corner.endswith("right") else margin
    y = margin if corner.startswith("top") else fh - margin - size
    return x, y, size, size


def paste_pip(frame: np.ndarray, face: np.ndarray, size: int, corner: str = "bottom-right", margin: int = 12,
              border: int = 2) -> Rect:
    """Paste `face` (BGR) as a square inset with a thin border."""
    x, y, w, h = pip_rect(frame.shape, size, corner, margin)
    # Generators are small (32-256 px): upscale smoothly; downscale without aliasing.
    interp = cv2.INTER_CUBIC if w > face.shape[1] else cv2.INTER_AREA
    frame[y : y + h, x : x + w] = cv2.resize(face, (w, h), interpolation=interp)
    if border > 0:
        cv2.rectangle(frame, (x - border, y - border), (x + w + border - 1, y + h + border - 1), (240, 240, 240),
                      border)
    return x, y, w, h


_MASK_BASE = 256
# Semi-axes of the blended ellipse as fractions of the pasted square; with the feather's blur
# (sigma = feather * size) they leave > 2.5 sigma to the square's edge, so no seam shows there.
MASK_AXES = (0.30, 0.36)


@functools.lru_cache(maxsize=8)
def _base_mask(axes: tuple[float, float], feather: float) -> np.ndarray:
    n = _MASK_BASE
    mask = np.zeros((n, n), np.float32)
    cv2.ellipse(mask, (n // 2, n // 2), (max(1, int(axes[0] * n)), max(1, int(axes[1] * n))), 0, 0, 360, 1.0, -1,
                cv2.LINE_AA)
    return cv2.GaussianBlur(mask, (0, 0), max(0.5, feather * n))


@functools.lru_cache(maxsize=32)
def feather_mask(w: int, h: int, axes: tuple[float, float] = MASK_AXES, feather: float = 0.05) -> np.ndarray:
    """A float32 [h, w] alpha in [0, 1]: an ellipse (semi-axes as fractions of w and h) whose edge
    fades over about `feather` of the size. Blurred once at a fixed size and resized (a blur at
    every face size would cost more than the blend); cached, since boxes keep their size a while."""
    mask = cv2.resize(_base_mask(axes, feather), (w, h), interpolation=cv2.INTER_LINEAR)
    mask.setflags(write=False)
    return mask


def _enlarged(box: tuple[float, float, float, float], enlarge: float, frame_shape: tuple[int, ...]
              ) -> tuple[Rect, Rect] | None:
    """The enlarged square around a detection, and its part inside the frame."""
    x, y, w, h = box
    side = max(w, h) * enlarge
    cx, cy = x + w / 2, y + h / 2
    if side < 4:
        return None
    # Sizes snap to 4 px so cached masks are reused while a smoothed box breathes by a pixel.
    s = int(round(side / 4)) * 4
    x0, y0 = int(round(cx - s / 2)), int(round(cy - s / 2))
    fh, fw = frame_shape[:2]
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(fw, x0 + s), min(fh, y0 + s)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    return (x0, y0, s, s), (cx0, cy0, cx1 - cx0, cy1 - cy0)


def paste_face(frame: np.ndarray, face: np.ndarray, box: tuple[float, float, float, float], enlarge: float = 1.8,
               feather: float = 0.05, color_match: float = 0.3) -> Rect | None:
    """Blend a generated face over a detected one.

    The cascade's box spans brows to chin; a generated image has the face in its middle half or
    so (FFHQ's alignment: ~60%; the procedural faces: ~45%), so the image is scaled to `enlarge`
    times the box and only its central ellipse (about 1.1 x 1.3 boxes) is blended in.
    `color_match` moves the face's mean colour that far toward the frame's under the mask
    (0: none, 1: equal means), which hides most of the seam under other lighting.
    """
    placed = _enlarged(box, enlarge, frame.shape)
    if placed is None:
        return None
    (x0, y0, s, _), (cx, cy, cw, ch) = placed
    region = frame[cy : cy + ch, cx : cx + cw]
    if color_match > 0:
        face = _match_mean(face, region, cx - x0, cy - y0, s, feather, color_match)
    interp = cv2.INTER_CUBIC if s > face.shape[1] else cv2.INTER_AREA
    big = cv2.resize(face, (s, s), interpolation=interp)
    alpha = feather_mask(s, s, feather=feather)
    sx, sy = cx - x0, cy - y0
    big = np.ascontiguousarray(big[sy : sy + ch, sx : sx + cw])
    a = np.ascontiguousarray(alpha[sy : sy + ch, sx : sx + cw])
    frame[cy : cy + ch, cx : cx + cw] = cv2.blendLinear(big, region, a, 1.0 - a)
    return cx, cy, cw, ch


def _match_mean(face: np.ndarray, region: np.ndarray, sx: int, sy: int, s: int, feather: float, strength: float
                ) -> np.ndarray:
    """Shift the face's mean colour toward the region's, both weighted by the mask. Measured on
    32x32 copies: means need no detail, and the frame-sized version cost more than the blend."""
    n = 32
    mask = feather_mask(n, n, feather=feather)
    # The part of the pasted square that is inside the frame, in the 32x32 grid.
    x0, y0 = sx * n // s, sy * n // s
    x1, y1 = max(x0 + 1, (sx + region.shape[1]) * n // s), max(y0 + 1, (sy + region.shape[0]) * n // s)
    m = mask[y0:y1, x0:x1]
    weight = float(m.sum())
    if weight < 1.0:
        return face
    reg = cv2.resize(region, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32)
    fac = cv2.resize(face, (n, n), interpolation=cv2.INTER_AREA)[y0:y1, x0:x1].astype(np.float32)
    shift = ((reg - fac) * m[:, :, None]).sum(axis=(0, 1)) / weight
    return np.clip(face.astype(np.float32) + strength * shift, 0, 255).astype(np.uint8)


def pixelate(frame: np.ndarray, box: tuple[float, float, float, float], enlarge: float = 1.3, blocks: int = 8
             ) -> Rect | None:
    """Coarse pixelation of a face: what the anonymiser shows before its generated face is ready."""
    placed = _enlarged(box, enlarge, frame.shape)
    if placed is None:
        return None
    _, (cx, cy, cw, ch) = placed
    roi = frame[cy : cy + ch, cx : cx + cw]
    small = cv2.resize(roi, (max(1, cw * blocks // max(cw, ch)), max(1, ch * blocks // max(cw, ch))),
                       interpolation=cv2.INTER_AREA)
    frame[cy : cy + ch, cx : cx + cw] = cv2.resize(small, (cw, ch), interpolation=cv2.INTER_NEAREST)
    return cx, cy, cw, ch
