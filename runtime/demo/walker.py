"""A smooth, looping walk through W: keyframes (seeds mapped once) joined by a curve.

The walk is in W, untruncated: truncation (w_avg + psi (w - w_avg)) is affine, so truncating
the walked point equals walking between truncated keyframes, and psi can change live (the
`+`/`-` keys) without recomputing anything.
"""

from __future__ import annotations

import math

import numpy as np

CURVES = ("catmull-rom", "ease")


class Walker:
    """Position along a closed loop through `keyframes` [K, ...], one keyframe every `seconds_per_key`.

    catmull-rom: a uniform Catmull-Rom spline; it passes through every keyframe with a continuous
    velocity, so the faces keep moving. ease: a linear blend per segment eased with smoothstep, so
    the walk rests for an instant on each keyframe.
    """

    def __init__(self, keyframes: np.ndarray, seconds_per_key: float = 2.0, curve: str = "catmull-rom") -> None:
        keys = np.asarray(keyframes, dtype=np.float32)
        if keys.ndim < 2 or len(keys) == 0:
            raise ValueError(f"keyframes must be [K, ...] with K >= 1, got shape {list(keys.shape)}")
        if not seconds_per_key > 0:
            raise ValueError(f"seconds per keyframe must be > 0, got {seconds_per_key}")
        if curve not in CURVES:
            raise ValueError(f"curve must be one of {CURVES}, got {curve!r}")
        self.keys = keys
        self.seconds_per_key = float(seconds_per_key)
        self.curve = curve

    @property
    def num_keys(self) -> int:
        return len(self.keys)

    @property
    def period(self) -> float:
        """Seconds for one loop."""
        return self.num_keys * self.seconds_per_key

    def segment(self, t: float) -> tuple[int, int, float]:
        """(from keyframe, to keyframe, fraction 0-1) at time t."""
        pos = (t / self.seconds_per_key) % self.num_keys
        i = int(math.floor(pos))
        u = pos - i
        if i >= self.num_keys:  # float rounding at the loop's end
            i, u = 0, 0.0
        return i, (i + 1) % self.num_keys, u

    def at(self, t: float) -> np.ndarray:
        """The walk's point at time t (seconds); loops forever, and t may be negative."""
        i, j, u = self.segment(t)
        k = self.keys
        if self.num_keys == 1:
            return k[0].copy()
        if self.curve == "ease":
            e = u * u * (3.0 - 2.0 * u)
            return (k[i] + (k[j] - k[i]) * np.float32(e)).astype(np.float32)
        p0, p1, p2, p3 = k[(i - 1) % self.num_keys], k[i], k[j], k[(j + 1) % self.num_keys]
        u2, u3 = u * u, u * u * u
        # The Catmull-Rom basis (tension 0.5): weights of p0..p3.
        c0 = -0.5 * u3 + u2 - 0.5 * u
        c1 = 1.5 * u3 - 2.5 * u2 + 1.0
        c2 = -1.5 * u3 + 2.0 * u2 + 0.5 * u
        c3 = 0.5 * u3 - 0.5 * u2
        return (c0 * p0 + c1 * p1 + c2 * p2 + c3 * p3).astype(np.float32)

    def at_offset(self, t: float, key_offset: int) -> np.ndarray:
        """The same walk shifted by whole keyframes: another face on the same loop."""
        return self.at(t + key_offset * self.seconds_per_key)


def coprime_stride(n: int) -> int:
    """A stride near n/3 with gcd(stride, n) = 1, so offsets k*stride mod n visit every keyframe
    before repeating: distinct faces for up to n tracks, and not neighbours on the loop."""
    if n <= 2:
        return 1
    for s in range(max(1, round(n / 3)), n):
        if math.gcd(s, n) == 1:
            return s
    return 1
