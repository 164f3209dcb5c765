"""The installed stylegan-edge version, as bundles and engine sidecars record it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

# Not installed (a source tree on sys.path): still a valid version string (PEP 440 local label).
UNKNOWN_VERSION = "0+unknown"


def tool_version() -> str:
    """The version of the installed stylegan-edge distribution, "0+unknown" when there is none."""
    try:
        return version("stylegan-edge")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return UNKNOWN_VERSION
