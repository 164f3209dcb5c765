"""A procedural cartoon-face dataset: deterministic, download-free, fast enough to train from.

Every image is a function of (seed, index): `face_params(index, seed)` draws a `FaceParams`
from a generator seeded by both, and `render_params` paints it with numpy signed distance
fields, batched. Edges are anti-aliased analytically (coverage from the distance); the
features, where the thin lines and small dots are, are also supersampled 2x and box-filtered
(and below 32 px everything is painted on a 32 px grid and box-filtered down). The same
parameters give the same face at every resolution. On one core of the development machine,
`render_faces` makes about 1100-1500 images/s at 32 px and 500-650 at 64 px (one image at a
time costs 1.5-2x more); `cache_faces` renders a dataset once into a memory-mapped .npy.

The factors of variation are placed at the scales StyleGAN's style-mixing figure groups them
(`FACTOR_GROUPS`, matching `STYLE_RANGES` in runtime/generator.py), so that a generator trained
on these faces should learn them in the matching style layers:

- coarse (visible at 4-8 px): head position, tilt and yaw (yaw slides the features sideways),
  head size, aspect and jaw taper, the hair mass silhouette (volume, height, length), the
  shoulders, and the background gradient's colours and direction;
- middle (16-32 px): eyes (height, spacing, size, openness, gaze), eyebrows (height, tilt,
  thickness, arch), nose (length, width), mouth (height, width, smile, opening) and the fringe
  (hairline depth, slant, curve, parting);
- fine (64 px and up): skin, hair, eye, lip and clothes colours, freckles, blush, hair strand
  texture, and the lighting (direction, strength, specular highlights).

The groups are independent by construction: fine fields only change colours and textures,
never which part covers a pixel (`render_labels` is unchanged); middle fields only move parts
inside the head outline; coarse fields move the outline itself and everything around it.
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class FaceParams:
    """One face. Lengths are in units of the frame's half-width (coarse) or of the head's
    half-height (middle: positions relative to the head centre); colours are RGB in [0, 1]."""

    # --- coarse -------------------------------------------------------------------------
    head_x: float = 0.0  # head centre, frame units
    head_y: float = 0.0
    head_tilt: float = 0.0  # roll, radians, positive clockwise on screen
    head_yaw: float = 0.0  # -1..1: features slide sideways, ears and hair the other way
    head_width: float = 0.46  # half-width of the head ellipse, frame units
    head_height: float = 0.61  # half-height
    jaw: float = 0.15  # 0 round .. 0.4 narrow chin
    hair_volume: float = 1.15  # hair mass half-width relative to the head's
    hair_top: float = 0.1  # hair height above the skull, head half-heights
    hair_length: float = 0.3  # how far the hair mass reaches below the head centre
    shoulder_width: float = 0.85
    bg_color: RGB = (0.5, 0.6, 0.7)
    bg_color2: RGB = (0.3, 0.4, 0.5)
    bg_angle: float = 1.57  # direction of the background gradient, radians
    # --- middle -------------------------------------------------------------------------
    eye_y: float = -0.05  # head half-heights below the head centre
    eye_spacing: float = 0.42  # half the distance between the eyes, in head half-widths
    eye_size: float = 0.12  # eye half-width
    eye_open: float = 0.7  # eye height / width
    gaze: float = 0.0  # -1..1, iris shift
    brow_height: float = 0.16  # above the eye centre
    brow_tilt: float = 0.0  # positive: inner ends lower (cross)
    brow_thickness: float = 0.03
    brow_arch: float = 0.03
    nose_length: float = 0.2
    nose_width: float = 0.08
    mouth_y: float = 0.5
    mouth_width: float = 0.22  # half-width
    mouth_smile: float = 0.04  # corners raised by this much; negative frowns
    mouth_open: float = 0.0  # half-height of the open mouth
    fringe_depth: float = -0.6  # hairline height at the middle, head half-heights
    fringe_slant: float = 0.0
    fringe_curve: float = 0.4  # how far the hair comes down at the temples
    fringe_part: float = 0.0  # depth of the parting notch
    fringe_part_x: float = 0.0
    # --- fine ---------------------------------------------------------------------------
    skin_color: RGB = (0.94, 0.76, 0.63)
    hair_color: RGB = (0.27, 0.18, 0.12)
    eye_color: RGB = (0.35, 0.22, 0.12)
    lip_color: RGB = (0.8, 0.4, 0.4)
    clothes_color: RGB = (0.3, 0.35, 0.6)
    freckles: float = 0.0  # 0..1 density
    blush: float = 0.2
    hair_strand_freq: float = 40.0
    hair_strand_contrast: float = 0.15
    texture_seed: int = 0  # freckle pattern and strand phase
    light_angle: float = -2.3  # radians; the light comes from this direction
    light_strength: float = 0.15
    highlight: float = 0.2  # specular highlights on skin, hair and lips


_FIELDS = tuple(f.name for f in dataclasses.fields(FaceParams))
FACTOR_GROUPS: dict[str, tuple[str, ...]] = {
    "coarse": _FIELDS[: _FIELDS.index("eye_y")],
    "middle": _FIELDS[_FIELDS.index("eye_y") : _FIELDS.index("skin_color")],
    "fine": _FIELDS[_FIELDS.index("skin_color") :],
}

# Part indices of `render_labels`, in painting order.
LABELS = (
    "background", "clothes", "hair", "neck", "ear", "skin", "fringe",
    "eye_white", "iris", "pupil", "brow", "nostril", "lips", "mouth",
)
_L = {name: i for i, name in enumerate(LABELS)}


# --- sampling ---------------------------------------------------------------------------

_SKIN_TONES = np.array([
    (255, 226, 200), (245, 204, 172), (230, 180, 140), (205, 145, 105),
    (170, 110, 75), (130, 85, 58), (95, 62, 45),
]) / 255.0
_HAIR_COLOURS = np.array([
    (28, 24, 24), (60, 40, 28), (105, 70, 42), (140, 66, 34), (196, 106, 46),
    (222, 186, 118), (236, 226, 200), (150, 150, 155),
]) / 255.0
# Black and browns are the most common, reds the rarest.
_HAIR_CDF = np.cumsum([0.2, 0.2, 0.18, 0.07, 0.07, 0.13, 0.07, 0.08])[:-1]
_EYE_COLOURS = np.array([
    (85, 52, 28), (125, 95, 45), (65, 125, 70), (55, 105, 175), (115, 128, 140), (40, 30, 25),
]) / 255.0


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (r, g, b)


def sample_face_params(rng: np.random.Generator) -> FaceParams:
    """Draw one face from one block of uniforms, handed out in field order.

    The order of the draws is part of the dataset's definition: append, never reorder.
    """
    draws = iter(rng.random(80).tolist())

    def uni(lo: float = 0.0, hi: float = 1.0) -> float:
        return lo + (hi - lo) * next(draws)

    def jitter(colour: Sequence[float], amount: float) -> RGB:
        r, g, b = (min(max(c + uni(-amount, amount), 0.0), 1.0) for c in colour)
        return (r, g, b)

    coarse = dict(
        head_x=uni(-0.08, 0.08),
        head_y=uni(-0.06, 0.06),
        head_tilt=uni(-0.2, 0.2),
        head_yaw=uni(-1.0, 1.0),
        head_width=uni(0.46, 0.6),
        head_height=uni(0.63, 0.74),
        jaw=uni(0.0, 0.4),
        hair_volume=uni(1.03, 1.4),
        hair_top=uni(0.0, 0.3),
        hair_length=uni(-0.3, 1.6),
        shoulder_width=uni(0.65, 1.0),
    )
    bg_h, bg_s, bg_v = uni(), uni(0.15, 0.65), uni(0.35, 0.95)
    coarse["bg_color"] = _hsv(bg_h, bg_s, bg_v)
    coarse["bg_color2"] = _hsv(bg_h + uni(-0.08, 0.08), bg_s * 1.2, bg_v * uni(0.55, 0.9))
    coarse["bg_angle"] = uni(0.0, 2 * math.pi)

    middle = dict(
        eye_y=uni(-0.14, 0.02),
        eye_spacing=uni(0.36, 0.5),
        eye_size=uni(0.085, 0.14),
        eye_open=uni(0.2, 0.95),
        gaze=uni(-0.6, 0.6),
        brow_height=uni(0.13, 0.24),
        brow_tilt=uni(-0.35, 0.35),
        brow_thickness=uni(0.016, 0.045),
        brow_arch=uni(-0.01, 0.07),
        nose_length=uni(0.14, 0.3),
        nose_width=uni(0.05, 0.11),
        mouth_y=uni(0.5, 0.64),
        mouth_width=uni(0.13, 0.28),
        mouth_smile=uni(-0.05, 0.11),
        mouth_open=max(0.0, uni(-0.05, 0.08)),  # closed about 40% of the time
        fringe_depth=uni(-0.85, -0.3),
        fringe_slant=uni(-0.45, 0.45),
        fringe_curve=uni(0.0, 0.9),
        fringe_part=max(0.0, uni(-0.35, 0.35)),  # no parting half of the time
        fringe_part_x=uni(-0.4, 0.4),
    )

    # Skin: along a ramp of natural tones, now and then a cartoon colour.
    tone = uni(0.0, len(_SKIN_TONES) - 1.0001)
    k = int(tone)
    skin = _SKIN_TONES[k] + (tone - k) * (_SKIN_TONES[k + 1] - _SKIN_TONES[k])
    cartoon_skin, cartoon_hue = uni(), uni()
    skin_rgb = jitter(skin.tolist(), 0.03)
    if cartoon_skin < 0.08:
        skin_rgb = _hsv(cartoon_hue, 0.3, 0.85)
    dyed, hair_pick, dye_h, dye_s, dye_v = uni(), uni(), uni(), uni(0.55, 0.9), uni(0.45, 0.9)
    hair_rgb = jitter(_HAIR_COLOURS[int(np.searchsorted(_HAIR_CDF, hair_pick))].tolist(), 0.04)
    if dyed < 0.2:
        hair_rgb = _hsv(dye_h, dye_s, dye_v)
    eye_rgb = jitter(_EYE_COLOURS[min(int(uni() * len(_EYE_COLOURS)), len(_EYE_COLOURS) - 1)].tolist(), 0.05)
    lipstick, lip_h = uni(), uni(0.95, 1.05)
    natural_lip = (skin_rgb[0] * 0.85, skin_rgb[1] * 0.55, skin_rgb[2] * 0.55)
    lip = natural_lip if lipstick < 0.7 else _hsv(lip_h, 0.7, 0.75)
    fine = dict(
        skin_color=skin_rgb,
        hair_color=hair_rgb,
        eye_color=eye_rgb,
        lip_color=jitter(lip, 0.04),
        clothes_color=_hsv(uni(), uni(0.15, 0.85), uni(0.2, 0.9)),
        freckles=max(0.0, uni(-2.0, 1.0)),  # freckled a third of the time
        blush=uni(0.0, 0.5),
        hair_strand_freq=uni(12.0, 35.0),
        hair_strand_contrast=uni(0.05, 0.25),
        texture_seed=int(uni(0.0, 65535.99)),
        light_angle=uni(-math.pi, math.pi),
        light_strength=uni(0.05, 0.3),
        highlight=uni(0.0, 0.35),
    )
    return FaceParams(**coarse, **middle, **fine)


def face_params(index: int, seed: int = 0) -> FaceParams:
    """The parameters of image `index` of the dataset with this seed."""
    if index < 0 or seed < 0:
        raise ValueError(f"index and seed must be >= 0, got index={index}, seed={seed}")
    return sample_face_params(np.random.default_rng([int(seed), int(index)]))


def mix_params(base: FaceParams, donor: FaceParams, groups: Iterable[str]) -> FaceParams:
    """`base` with the fields of the named factor groups taken from `donor`."""
    fields: dict[str, object] = {}
    for g in groups:
        if g not in FACTOR_GROUPS:
            raise ValueError(f"unknown factor group {g!r}; choose from {', '.join(FACTOR_GROUPS)}")
        fields.update({name: getattr(donor, name) for name in FACTOR_GROUPS[g]})
    return dataclasses.replace(base, **fields)


# --- rendering --------------------------------------------------------------------------

_F32 = np.float32


def _rgb(r: float, g: float, b: float) -> np.ndarray:
    # Images are painted planar, [3, N, H, W]: long contiguous loops per channel.
    return np.array([r, g, b], _F32).reshape(3, 1, 1, 1)


_WHITE = _rgb(0.96, 0.95, 0.93)
_PUPIL = _rgb(0.05, 0.04, 0.04)
_GLINT = _rgb(1.0, 1.0, 1.0)
_LID = _rgb(0.12, 0.08, 0.07)
_BLUSH = _rgb(0.95, 0.42, 0.45)
_TEETH = _rgb(0.95, 0.93, 0.88)
_MOUTH = _rgb(0.35, 0.06, 0.1)
_NOSE_TIP = _rgb(1.0, 0.97, 0.93)


def _stack(params: Sequence[FaceParams]) -> dict[str, np.ndarray]:
    """Fields as float32 arrays shaped to broadcast against [N, H, W] (colours: [3, N, 1, 1])."""
    out = {}
    n = len(params)
    for name in _FIELDS:
        vals = np.array([getattr(p, name) for p in params], dtype=_F32)
        out[name] = vals.T.reshape(3, n, 1, 1) if vals.ndim == 2 else vals.reshape(n, 1, 1)
    return out


def _cov(d: np.ndarray, px: float) -> np.ndarray:
    """Coverage of a pixel by the inside (d < 0) of a distance field: a one-pixel ramp."""
    c = _F32(0.5) - d * _F32(1.0 / px)
    return np.clip(c, _F32(0.0), _F32(1.0), out=c)


def _ellipse(x: np.ndarray, y: np.ndarray, rx, ry) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse (exact on the axes)."""
    irx, iry = _F32(1.0) / rx, _F32(1.0) / ry  # per-image scalars: multiply, don't divide arrays
    a, b = x * irx, y * iry
    k0 = np.sqrt(a * a + b * b)
    a *= irx
    b *= iry
    k1 = np.sqrt(a * a + b * b)
    k1 += _F32(1e-6)
    k1 = np.reciprocal(k1, out=k1)
    return k0 * (k0 - _F32(1.0)) * k1


def _bump(q: np.ndarray) -> np.ndarray:
    """A smooth bump in a squared distance q: 1 at 0, 0 from 1 on. Cheaper than exp(-3q)."""
    t = _F32(1.0) - q
    np.maximum(t, _F32(0.0), out=t)
    t *= t
    return t


def _wave(phase: np.ndarray) -> np.ndarray:
    """A parabolic stand-in for sin(phase), within 0.06 of it and half the cost."""
    u = phase * _F32(0.5 / np.pi)
    u -= np.floor(u + _F32(0.5))
    return u * (_F32(8.0) - _F32(16.0) * np.abs(u))


class _Canvas:
    """An RGB float image being painted, with the part labels when asked for them."""

    def __init__(self, img: np.ndarray, labels: np.ndarray | None) -> None:
        self.img, self.labels = img, labels
        self._buf = np.empty_like(img)

    def paint(self, cov: np.ndarray, colour: np.ndarray, label: str | None) -> None:
        # img <- img + cov * (colour - img), in place and without temporaries.
        diff = np.subtract(colour, self.img, out=self._buf)
        diff *= cov
        self.img += diff
        if self.labels is not None and label is not None:
            self.labels[cov > 0.5] = _L[label]


def _frame(p: dict[str, np.ndarray], U: np.ndarray, V: np.ndarray) -> dict[str, np.ndarray]:
    """Head-frame (x, y: rotated about the head centre) and face-frame (X, Y: head half-heights,
    shifted by the yaw) coordinates of the pixel grid U [., 1, W], V [., H, 1]."""
    ct, st = np.cos(p["head_tilt"]), np.sin(p["head_tilt"])
    dx, dy = U - p["head_x"], V - p["head_y"]
    x = ct * dx + st * dy
    y = ct * dy - st * dx
    s = p["head_height"]
    X = (x - p["head_yaw"] * _F32(0.11) * p["head_width"]) / s
    return {"x": x, "y": y, "X": X, "Y": y / s}


def _paint_frame(c: _Canvas, p: dict[str, np.ndarray], size: int, px_out: float) -> tuple[np.ndarray, np.ndarray]:
    """Everything that spans the frame: background, body, hair, head, fringe. Returns the
    head's and the fringe's coverage, which the features' skin textures respect. `px_out` is
    the final image's pixel size, below which textures fade out."""
    px = 2.0 / size
    g = ((np.arange(size, dtype=_F32) + _F32(0.5)) * _F32(px) - _F32(1.0))
    U, V = g.reshape(1, 1, size), g.reshape(1, size, 1)

    # Background: a linear gradient between two colours.
    t = (U * np.cos(p["bg_angle"]) + V * np.sin(p["bg_angle"])) * _F32(0.5) + _F32(0.5)
    np.clip(t, 0.0, 1.0, out=t)
    c.img[:] = p["bg_color"]
    c.img += t * (p["bg_color2"] - p["bg_color"])

    lx, ly = np.cos(p["light_angle"]), np.sin(p["light_angle"])
    rx, ry, yaw = p["head_width"], p["head_height"], p["head_yaw"]
    hx, hy = p["head_x"], p["head_y"]

    # Shoulders: the body does not roll with the head.
    d = _ellipse(U - hx * _F32(0.5), V - _F32(1.42), p["shoulder_width"], _F32(0.55))
    shade_body = _F32(1.0) - _F32(0.6) * np.clip(V - _F32(0.85), 0, 1)
    c.paint(_cov(d, px), p["clothes_color"] * shade_body, "clothes")

    f = _frame(p, U, V)
    x, y = f["x"], f["y"]
    nx, ny = x / rx, y / ry  # 0 at the head centre, 1 on the outline

    # Hair mass behind the head: an ellipse over the skull, and a rounded box for long hair.
    back = -yaw * _F32(0.06) * rx
    top = p["hair_top"]
    hrx = rx * p["hair_volume"]
    xb = np.abs(x - back)
    d_hair = _ellipse(xb, y + ry * (_F32(0.1) + _F32(0.5) * top), hrx, ry * (_F32(0.9) + _F32(0.5) * top))
    corner = _F32(0.25) * rx
    length = p["hair_length"]
    bx = xb - (hrx * _F32(0.93) - corner)
    by = np.abs(y - ry * (length - _F32(0.1)) * _F32(0.5)) - (ry * (length + _F32(0.1)) * _F32(0.5) - corner)
    mx, my = np.maximum(bx, _F32(0.0)), np.maximum(by, _F32(0.0))  # (np.hypot is 8x slower)
    d_box = np.sqrt(mx * mx + my * my) + np.minimum(np.maximum(bx, by), _F32(0.0)) - corner
    hair_col = _hair_colour(p, x, y, nx, ny, lx, ly, px_out)
    c.paint(_cov(np.minimum(d_hair, d_box), px), hair_col * _F32(0.8), "hair")

    # Neck, in shadow under the chin.
    skin = p["skin_color"]
    st = np.sin(p["head_tilt"])
    d_neck = np.maximum(np.abs(U - hx - st * ry * _F32(0.6)) - rx * _F32(0.42), np.abs(V - hy - _F32(0.9)) - _F32(0.9))
    c.paint(_cov(d_neck, px), skin * _F32(0.78), "neck")

    # Ears: they slide against the features when the head turns.
    d_ear = _ellipse(np.abs(x + yaw * _F32(0.09) * rx) - rx * _F32(0.97), y - ry * _F32(0.05),
                     rx * _F32(0.14), ry * _F32(0.2))
    c.paint(_cov(d_ear, px), skin * _F32(0.9), "ear")

    # Head: an ellipse narrowing towards the chin, shaded from the light and with a highlight.
    taper = _F32(1.0) - p["jaw"] * np.clip(ny, 0.0, 1.0) ** 2
    head_cov = _cov(_ellipse(x / taper, y, rx, ry), px)
    shade = _F32(1.0) + p["light_strength"] * (nx * lx + ny * ly) - _F32(0.12) * (nx * nx + ny * ny)
    spec = p["highlight"] * _F32(0.7) * _bump(((nx - _F32(0.5) * lx) ** 2 + (ny - _F32(0.5) * ly) ** 2) * _F32(9.0))
    c.paint(head_cov, skin * shade + spec, "skin")

    # Fringe: hair over the forehead down to a hairline with a wavy edge, inside the head.
    X, Y = f["X"], f["Y"]
    hairline = (p["fringe_depth"] + p["fringe_slant"] * X + p["fringe_curve"] * X * X
                - p["fringe_part"] * _bump((X - p["fringe_part_x"]) ** 2 * _F32(20.0))
                + _F32(0.018) * _wave(X * _F32(28.0) + p["fringe_part_x"] * _F32(9.0)))
    fringe_cov = np.minimum(head_cov, _cov((Y - hairline) * ry * _F32(0.8), px))
    c.paint(fringe_cov, hair_col, "fringe")
    return head_cov, fringe_cov


def _hair_colour(p, x, y, nx, ny, lx, ly, px_out) -> np.ndarray:
    """Hair colour with strands radiating from the crown and a sheen on the lit side."""
    ry = p["head_height"]
    above = y + ry * _F32(1.6)
    crown = x / above  # about the tangent of the angle seen from a point above the head
    freq = p["hair_strand_freq"]
    # Strands fade out where their local period nears two output pixels, so they never alias.
    period = above * (_F32(np.pi) / freq)
    fade = np.clip(period * _F32(0.5 / px_out) - _F32(1.0), 0.0, 1.0)
    phase = p["texture_seed"] * _F32(0.001)
    strands = _F32(1.0) + p["hair_strand_contrast"] * fade * _wave(freq * _F32(2.0) * crown + phase)
    r2 = nx * nx + ny * ny - _F32(1.0)
    sheen = p["highlight"] * _F32(0.8) * _bump(r2 * r2 * _F32(3.4)) * np.clip(nx * lx + ny * ly + _F32(0.3), 0, 1)
    return p["hair_color"] * strands + sheen


# The face's features fit in this box of face units (head half-heights, about the face's
# centre); it grows with the parameters that move features outwards.
def _feature_box(p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    spacing = p["eye_spacing"] * p["head_width"] / p["head_height"]
    half = np.maximum(np.maximum(spacing + p["eye_size"] * 1.45 + 0.05, p["mouth_width"] + 0.06), 0.75)
    brow_top = (p["eye_y"] - p["brow_height"] - np.abs(p["brow_arch"]) - np.abs(p["brow_tilt"]) * p["eye_size"] * 1.35
                - p["brow_thickness"] * 1.7)
    top = np.minimum(np.minimum(brow_top, p["eye_y"] - p["eye_size"] * p["eye_open"]) - 0.06, -0.55)
    bottom = np.maximum(p["mouth_y"] + np.abs(p["mouth_smile"]) + p["mouth_open"] + 0.08, 0.78)
    return half, top, bottom


def _feature_window(p: dict[str, np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Per-image pixel origins (ox, oy) and a common size (w, h) of windows holding the features."""
    half, top, bottom = (v.reshape(-1) for v in _feature_box(p))
    s = p["head_height"].reshape(-1)
    shift = (p["head_yaw"] * 0.11 * p["head_width"]).reshape(-1)
    ct, st = np.cos(p["head_tilt"]).reshape(-1), np.sin(p["head_tilt"]).reshape(-1)
    us, vs = [], []
    for cx in (-half, half):
        for cy in (top, bottom):
            x, y = cx * s + shift, cy * s  # head frame -> screen: rotate back by the tilt
            us.append(ct * x - st * y)
            vs.append(st * x + ct * y)
    hx, hy = p["head_x"].reshape(-1), p["head_y"].reshape(-1)
    to_px = size / 2.0
    u0 = np.floor((np.min(us, axis=0) + hx + 1.0) * to_px).astype(int) - 1
    u1 = np.ceil((np.max(us, axis=0) + hx + 1.0) * to_px).astype(int) + 1
    v0 = np.floor((np.min(vs, axis=0) + hy + 1.0) * to_px).astype(int) - 1
    v1 = np.ceil((np.max(vs, axis=0) + hy + 1.0) * to_px).astype(int) + 1
    w, h = min(size, int((u1 - u0).max())), min(size, int((v1 - v0).max()))
    return np.clip(u0, 0, size - w), np.clip(v0, 0, size - h), w, h


def _paint_features(c: _Canvas, p: dict[str, np.ndarray], U: np.ndarray, V: np.ndarray, px: float,
                    skin_mask: np.ndarray) -> None:
    """Skin textures, eyes, eyebrows, nose and mouth, on a grid U [N, 1, W], V [N, H, 1]."""
    f = _frame(p, U, V)
    X, Y = f["X"], f["Y"]
    s = p["head_height"]
    skin = p["skin_color"]
    hl = p["highlight"]

    # Blush and freckles are skin texture: colour only, under the fringe.
    cheek = np.exp(((np.abs(X) - _F32(0.38)) ** 2 + (Y - _F32(0.3)) ** 2) * _F32(-40.0))
    c.paint(p["blush"] * cheek * skin_mask, _BLUSH, None)
    c.paint(_freckles(p, X, Y, px / s) * skin_mask, skin * _F32(0.62), None)

    # Eyes, mirrored about the face's centre line.
    Xa, side = np.abs(X), np.sign(X)
    es, eo = p["eye_size"], p["eye_open"]
    ex, ey = Xa - p["eye_spacing"] * p["head_width"] / s, Y - p["eye_y"]
    d_white = _ellipse(ex, ey, es, es * eo) * s
    white_cov = _cov(d_white, px)
    c.paint(white_cov, _WHITE, "eye_white")
    ir = es * _F32(0.6)
    ix = ex - side * p["gaze"] * es * _F32(0.45)
    r_iris = np.sqrt(ix * ix + ey * ey)
    c.paint(np.minimum(white_cov, _cov((r_iris - ir) * s, px)), p["eye_color"], "iris")
    c.paint(np.minimum(white_cov, _cov((r_iris - ir * _F32(0.45)) * s, px)), _PUPIL, "pupil")
    glint = np.sqrt((ix + ir * _F32(0.3)) ** 2 + (ey + ir * _F32(0.35)) ** 2) - ir * _F32(0.25)
    c.paint(np.minimum(white_cov, _cov(glint * s, px)) * _F32(0.9), _GLINT, None)
    lid = np.abs(d_white) - np.where(ey < 0, _F32(0.018), _F32(0.006)) * s
    c.paint(_cov(lid, px) * _F32(0.9), _LID, None)

    # Eyebrows: tapered arcs above the eyes, darker than the hair.
    bw = es * _F32(1.35)
    tb = ex / bw
    yb = -p["brow_height"] - p["brow_arch"] * (_F32(1.0) - tb * tb) - p["brow_tilt"] * tb * bw
    th = p["brow_thickness"] * (_F32(1.1) - _F32(0.5) * tb)
    d_brow = np.maximum(np.abs(ey - yb) - th, (np.abs(tb) - _F32(1.0)) * bw) * s
    c.paint(_cov(d_brow, px), p["hair_color"] * _F32(0.6), "brow")

    # Nose: a soft shadow, two nostrils and a lit tip; it sticks out, so it turns further.
    nxx = X - p["head_yaw"] * _F32(0.05)
    nw = p["nose_width"]
    ny = Y - (p["eye_y"] + p["nose_length"] + _F32(0.08))
    d_nose = _ellipse(nxx, ny + nw * _F32(0.2), nw * _F32(1.1), nw * _F32(0.9)) / (nw * _F32(0.8))
    c.paint(np.clip(_F32(0.5) - d_nose, 0, 1) * _F32(0.3), skin * _F32(0.75), None)
    d_nostril = _ellipse(np.abs(nxx) - nw * _F32(0.45), ny - nw * _F32(0.25), nw * _F32(0.22), nw * _F32(0.13)) * s
    c.paint(_cov(d_nostril, px) * _F32(0.8), skin * _F32(0.5), "nostril")
    tip = np.exp(((nxx + _F32(0.3) * nw) ** 2 + (ny + _F32(0.2) * nw) ** 2) / (nw * nw * _F32(-0.25)))
    c.paint(tip * (_F32(0.1) + _F32(0.6) * hl), _NOSE_TIP, None)

    # Mouth: a lens between two parabolas that bend with the smile; lips around it.
    mw = p["mouth_width"]
    tm = X / mw
    bulge = np.maximum(_F32(1.0) - tm * tm, _F32(0.0))
    yc = p["mouth_y"] - p["mouth_smile"] * tm * tm
    dy = Y - yc
    cap = (np.abs(tm) - _F32(1.0)) * mw
    inner = p["mouth_open"] * bulge
    d_lips = np.maximum(np.abs(dy - _F32(0.01)) - inner - _F32(0.013) - _F32(0.035) * bulge, cap - _F32(0.01)) * s
    gloss = hl * np.exp(-((tm + _F32(0.2)) ** 2) - ((dy - inner - _F32(0.03)) * _F32(30.0)) ** 2)
    c.paint(_cov(d_lips, px), p["lip_color"] * (_F32(1.0) + gloss), "lips")
    d_mouth = np.maximum(np.abs(dy) - inner - _F32(0.007), cap) * s
    teeth = (dy < -inner * _F32(0.15)) & (p["mouth_open"] > _F32(0.02))
    c.paint(_cov(d_mouth, px), np.where(teeth, _TEETH, _MOUTH), "mouth")


def _freckles(p, X, Y, px_face: float) -> np.ndarray:
    """Freckle coverage on the cheeks and nose: jittered dots on a hashed grid of cells."""
    cell = _F32(0.07)
    gx, gy = (X + _F32(8.0)) / cell, (Y + _F32(8.0)) / cell
    fx, fy = np.floor(gx), np.floor(gy)
    h = (fx.astype(np.int32) * np.int32(73856093)) ^ (fy.astype(np.int32) * np.int32(19349663))
    h ^= p["texture_seed"].astype(np.int32) * np.int32(83492791)
    h = (h ^ (h >> 13)) * np.int32(1274126177)
    h ^= h >> 16
    ox = (h & 255).astype(_F32) * _F32(0.6 / 255) - _F32(0.3)
    oy = ((h >> 8) & 255).astype(_F32) * _F32(0.6 / 255) - _F32(0.3)
    keep = (((h >> 16) & 255).astype(_F32) + _F32(0.5)) * _F32(1.0 / 256)  # never 0: no stray dots
    fx = gx - fx - _F32(0.5) - ox
    fy = gy - fy - _F32(0.5) - oy
    radius = _F32(0.2) * cell
    d = np.sqrt(fx * fx + fy * fy) * cell - radius
    region = np.exp(((np.abs(X) - _F32(0.25)) ** 2) * _F32(-14.0) - ((Y - _F32(0.2)) ** 2) * _F32(30.0))
    # Dots below a pixel are averaged by the supersampling, as a camera would.
    return _cov(d, px_face) * (keep < p["freckles"] * region) * _F32(0.7)


def _render_batch(params: Sequence[FaceParams], size: int, f: int, px_out: float, labels: bool
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """Paint faces at `size` px: planar float32 [3, N, size, size] in [0, 1], and int8 labels.

    The frame's large shapes are painted at `size`, where their analytic coverage already
    anti-aliases them. The features (a window of about a third of the frame, with the thin
    lines and small dots) are painted `f` times finer over the frame upsampled, and box-filtered
    back: supersampling where it matters, at a fraction of its cost.
    """
    p = _stack(params)
    n, R = len(params), size
    c = _Canvas(np.empty((3, n, R, R), _F32), np.zeros((n, R, R), np.int8) if labels else None)
    head_cov, fringe_cov = _paint_frame(c, p, R, px_out)
    skin = head_cov * (1.0 - fringe_cov)  # where the skin shows: blush and freckles go there

    ox, oy, w, h = _feature_window(p, R)
    img_w = np.empty((3, n, h * f, w * f), _F32)
    mask_w = np.empty((n, h * f, w * f), _F32)
    lab_w = np.empty((n, h, w), np.int8) if labels else None  # labels only at f == 1

    def up(a: np.ndarray) -> np.ndarray:
        return a if f == 1 else a.repeat(f, axis=-2).repeat(f, axis=-1)

    for i in range(n):
        win = (slice(oy[i], oy[i] + h), slice(ox[i], ox[i] + w))
        img_w[:, i] = up(c.img[(slice(None), i, *win)])
        mask_w[i] = up(skin[(i, *win)])
        if lab_w is not None:
            lab_w[i] = c.labels[(i, *win)]
    px = 2.0 / (R * f)
    U = ((ox[:, None, None] * f + np.arange(w * f)[None, None, :]) + 0.5) * px - 1.0
    V = ((oy[:, None, None] * f + np.arange(h * f)[None, :, None]) + 0.5) * px - 1.0
    _paint_features(_Canvas(img_w, lab_w), p, U.astype(_F32), V.astype(_F32), px, mask_w)
    img_w = _downsample(img_w, f)
    for i in range(n):
        win = (slice(oy[i], oy[i] + h), slice(ox[i], ox[i] + w))
        c.img[(slice(None), i, *win)] = img_w[:, i]
        if lab_w is not None:
            c.labels[(i, *win)] = lab_w[i]
    return c.img, c.labels


def _downsample(img: np.ndarray, f: int) -> np.ndarray:
    """Box filter [..., H, W] by an integer factor: the mean of each f x f block (strided sums
    are much faster than a reshaped mean)."""
    if f == 1:
        return img
    rows = img[..., 0::f, :].copy()
    for k in range(1, f):
        rows += img[..., k::f, :]
    out = rows[..., 0::f].copy()
    for k in range(1, f):
        out += rows[..., k::f]
    out *= _F32(1.0 / (f * f))
    return out


def _supersample(resolution: int) -> tuple[int, int]:
    """Factors (frame, features) of supersampling: the frame is painted on at least 32 px and
    the features on twice that, below which their middle-scale parts would alias."""
    g = max(1, -(-32 // resolution))
    return g, 2


def render_params(params: FaceParams | Sequence[FaceParams], resolution: int) -> np.ndarray:
    """Render faces: one `FaceParams` gives uint8 [R, R, 3], a sequence [N, R, R, 3]."""
    if resolution < 4:
        raise ValueError(f"resolution must be >= 4, got {resolution}")
    single = isinstance(params, FaceParams)
    plist = [params] if single else list(params)
    g, f = _supersample(resolution)
    out = np.empty((len(plist), resolution, resolution, 3), np.uint8)
    # Chunks of about 16k frame pixels keep the temporaries in cache.
    chunk = max(1, (1 << 14) // (resolution * g) ** 2)
    for i in range(0, len(plist), chunk):
        img, _ = _render_batch(plist[i : i + chunk], resolution * g, f, 2.0 / resolution, labels=False)
        img = _downsample(img, g)
        img *= _F32(255.0)
        img += _F32(0.5)
        out[i : i + img.shape[1]] = np.clip(img, 0, 255).transpose(1, 2, 3, 0)
    return out[0] if single else out


def render_labels(params: FaceParams | Sequence[FaceParams], resolution: int) -> np.ndarray:
    """Part map (int8 indices into `LABELS`, sampled at pixel centres) of the faces."""
    single = isinstance(params, FaceParams)
    plist = [params] if single else list(params)
    _, labels = _render_batch(plist, resolution, 1, 2.0 / resolution, labels=True)
    assert labels is not None
    return labels[0] if single else labels


def render_face(index: int, resolution: int, seed: int = 0) -> np.ndarray:
    """Image `index` of the dataset with this seed: uint8 [R, R, 3] RGB."""
    return render_params(face_params(index, seed), resolution)


def render_faces(indices: Iterable[int], resolution: int, seed: int = 0) -> np.ndarray:
    """Images `indices` of the dataset with this seed, batched: uint8 [N, R, R, 3] RGB."""
    return render_params([face_params(int(i), seed) for i in indices], resolution)


def cache_faces(
    path: str | Path,
    count: int,
    resolution: int,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    classes: bool = False,
) -> np.ndarray:
    """Images 0..count-1 as a memory-mapped uint8 [count, R, R, 3] `.npy`, rendered once
    (`classes`: those of `synthetic:faces-classes`).

    An existing file is reused when its shape fits and its first and last images match a fresh
    render (so another seed, or a changed renderer, is noticed); otherwise it is re-rendered. It
    is written beside its destination and renamed, so an interrupted run leaves no partial file.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    path = Path(path)
    shape = (count, resolution, resolution, 3)
    render = render_class_faces if classes else render_faces
    if path.exists():
        try:
            arr = np.load(path, mmap_mode="r")
            if (arr.shape == shape and arr.dtype == np.uint8
                    and np.array_equal(arr[[0, -1]], render([0, count - 1], resolution, seed))):
                return arr
        except (ValueError, OSError):
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
    step = 1024
    for i in range(0, count, step):
        j = min(count, i + step)
        arr[i:j] = render(range(i, j), resolution, seed)
        if progress is not None:
            progress(j, count)
    arr.flush()
    del arr
    tmp.replace(path)
    return np.load(path, mmap_mode="r")


# --- classes ----------------------------------------------------------------------------
# `synthetic:faces-classes`: the same faces, each with one of a few hair styles, the image's
# class. A class fixes both the hair's silhouette (coarse: length, volume, height) and its colour
# (fine), so that it shows at every scale and a 32 px conditional model learns it in minutes.
# Everything else about a face is the unconditional dataset's face of the same index.

@dataclass(frozen=True)
class HairClass:
    """A class of `synthetic:faces-classes`: ranges of the hair fields it sets, and its colour."""

    name: str
    colour: RGB  # jittered by +-0.04 per channel
    hair_length: tuple[float, float]
    hair_volume: tuple[float, float]
    hair_top: tuple[float, float]


HAIR_CLASSES: tuple[HairClass, ...] = (
    HairClass("short-black", (28 / 255, 24 / 255, 24 / 255), (-0.3, 0.0), (1.03, 1.1), (0.0, 0.08)),
    HairClass("long-blond", (226 / 255, 190 / 255, 118 / 255), (1.2, 1.6), (1.12, 1.25), (0.05, 0.15)),
    HairClass("bob-red", (190 / 255, 70 / 255, 30 / 255), (0.35, 0.7), (1.28, 1.4), (0.15, 0.25)),
    HairClass("tall-blue", (50 / 255, 90 / 255, 200 / 255), (-0.1, 0.3), (1.2, 1.35), (0.28, 0.4)),
)
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in HAIR_CLASSES)


def face_class(index: int) -> int:
    """The class of image `index` of `synthetic:faces-classes`: classes take turns, so every
    prefix of the dataset is balanced to within one image."""
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    return index % len(HAIR_CLASSES)


def class_face_params(index: int, seed: int = 0, label: int | None = None) -> FaceParams:
    """Image `index` of `synthetic:faces-classes` (with `label`: the same face in that class).

    The hair fields come from their own stream (seeded by seed, index and a tag), so the rest
    of the face is exactly `face_params(index, seed)`."""
    label = face_class(index) if label is None else label
    if not 0 <= label < len(HAIR_CLASSES):
        raise ValueError(f"label must be in [0, {len(HAIR_CLASSES)}), got {label}")
    cls = HAIR_CLASSES[label]
    u = np.random.default_rng([int(seed), int(index), 0x4841]).random(6)

    def pick(lo_hi: tuple[float, float], t: float) -> float:
        return lo_hi[0] + (lo_hi[1] - lo_hi[0]) * float(t)

    r, g, b = (min(max(ch + 0.08 * (float(t) - 0.5), 0.0), 1.0) for ch, t in zip(cls.colour, u[3:], strict=True))
    return dataclasses.replace(
        face_params(index, seed), hair_color=(r, g, b), hair_length=pick(cls.hair_length, u[0]),
        hair_volume=pick(cls.hair_volume, u[1]), hair_top=pick(cls.hair_top, u[2]),
    )


def render_class_faces(indices: Iterable[int], resolution: int, seed: int = 0) -> np.ndarray:
    """Images `indices` of `synthetic:faces-classes`, batched: uint8 [N, R, R, 3] RGB."""
    return render_params([class_face_params(int(i), seed) for i in indices], resolution)
