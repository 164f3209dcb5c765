"""Image arrays to files: float network output to uint8, grids of samples, PNG writing.

numpy and Pillow only: the runtime runs where there is no torch. Arrays from torch work too,
through numpy's array protocol (call `.cpu()` first for GPU tensors).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import StyleganError
from .files import atomic_path


class ImageArrayError(ValueError):
    """An array that cannot be an image or a batch of them; the message names the argument."""


class OutputWriteError(StyleganError, OSError):
    """An output file that could not be written (disk full, read-only folder, I/O error); its
    one line names the file. Nothing is left under that name: writes go to a temporary file
    beside it that is renamed only when complete."""


@contextlib.contextmanager
def output_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """`files.atomic_path` for the commands' outputs: a temporary path to write to, renamed over
    `path` when the block succeeds; any OSError on the way (creating the folder, writing,
    fsync, rename) becomes one OutputWriteError naming `path`."""
    try:
        with atomic_path(path, suffix) as tmp:
            yield tmp
    except OutputWriteError:
        raise
    except OSError as e:
        raise OutputWriteError(e.errno, f"cannot write ({e.strerror or e})", str(path)) from None


def write_text_output(path: str | Path, text: str) -> Path:
    """A text file (JSON reports) written all or nothing; returns the path."""
    with output_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def to_uint8(images: np.ndarray, bgr: bool = False) -> np.ndarray:
    """Network output, float NCHW (or CHW) in [-1, 1], to uint8 NHWC (or HWC), rounded and
    clipped; `bgr` reverses the channels (OpenCV's order)."""
    x = np.asarray(images)
    if x.ndim not in (3, 4) or x.shape[-3] not in (1, 3):
        raise ImageArrayError(f"to_uint8 needs NCHW or CHW with 1 or 3 channels, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ImageArrayError(f"to_uint8 needs floats in [-1, 1], got dtype {x.dtype}")
    x = np.moveaxis(x, -3, -1).astype(np.float32)
    out = np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)
    if bgr and out.shape[-1] == 3:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


def _check_uint8_batch(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise ImageArrayError(f"images must be uint8, got dtype {x.dtype} (use to_uint8 for float output)")
    if x.ndim == 3:  # N grey images
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise ImageArrayError(f"images must be NHWC with 1, 3 or 4 channels, got shape {x.shape}")
    if len(x) == 0:
        raise ImageArrayError("images is empty: nothing to put in a grid")
    return x


def make_grid(images: np.ndarray, cols: int | None = None, pad: int = 0, pad_value: int = 0) -> np.ndarray:
    """Tile uint8 NHWC images row by row into one HWC image, `pad` pixels of `pad_value`
    between cells and around them. `cols` defaults to a square-ish grid; unused cells are
    left at `pad_value`."""
    x = _check_uint8_batch(images)
    n, h, w, c = x.shape
    if cols is None:
        cols = math.ceil(math.sqrt(n))
    if cols < 1:
        raise ImageArrayError(f"cols must be >= 1, got {cols}")
    if pad < 0:
        raise ImageArrayError(f"pad must be >= 0, got {pad}")
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), pad_value, np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        y, xo = pad + r * (h + pad), pad + q * (w + pad)
        grid[y : y + h, xo : xo + w] = x[i]
    return grid


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write one uint8 HWC (or HW) image as PNG, creating the folder, all or nothing (a full disk
    leaves no truncated PNG under `path`; OutputWriteError names it); returns the path."""
    x = np.asarray(image)
    if x.dtype != np.uint8:
        raise ImageArrayError(f"image for {path} must be uint8, got dtype {x.dtype}")
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[-1] not in (3, 4)):
        raise ImageArrayError(f"image for {path} must be HW or HWC with 1, 3 or 4 channels, got shape {x.shape}")
    path = Path(path)
    img = Image.fromarray(np.ascontiguousarray(x))
    with output_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def save_grid(
    images: np.ndarray, path: str | Path, cols: int | None = None, pad: int = 0, pad_value: int = 0
) -> Path:
    """`make_grid` then `save_png`; returns the path."""
    return save_png(make_grid(images, cols=cols, pad=pad, pad_value=pad_value), path)
