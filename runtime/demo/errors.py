"""The demo's user errors: each is one line that names what failed and what to try."""

from __future__ import annotations

from stylegan_edge.runtime.errors import StyleganError


class DemoError(StyleganError, RuntimeError):
    """Bad demo input or a missing capability (no camera, no cascade, no video encoder)."""


class SourceError(DemoError):
    """A frame source that cannot be opened or read."""


class DetectorUnavailable(DemoError):  # noqa: N818 - reads as a state, like BackendUnavailable
    """The face detector's cascade is missing from this OpenCV."""


class OutputError(DemoError):
    """A video file or snapshot that cannot be written."""
