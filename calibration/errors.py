"""The calibration stage's one user-error class (the CLI shows it as one red line)."""

from __future__ import annotations


class CalibrationError(ValueError):
    """Bad input to calibration (a setting, a file, a bundle); the message is one line naming it."""
