"""The calibration stage's one user-error class (the CLI shows it as one red line)."""

from __future__ import annotations

from stylegan_edge.runtime.errors import StyleganError


class CalibrationError(StyleganError, ValueError):
    """Bad input to calibration (a setting, a file, a bundle); the message is one line naming it."""
