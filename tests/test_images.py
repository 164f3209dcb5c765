"""runtime/images.py: float output to uint8, grids, PNG files; and no torch in it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from stylegan_edge.runtime.images import ImageArrayError, make_grid, save_grid, save_png, to_uint8


def test_to_uint8_maps_the_range_and_transposes():
    x = np.random.default_rng(0).uniform(-1.2, 1.2, size=(2, 3, 5, 7)).astype(np.float32)
    ref = np.clip(np.rint((x.transpose(0, 2, 3, 1).astype(np.float64) + 1.0) * 127.5), 0, 255)
    out = to_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (2, 5, 7, 3)
    assert np.abs(out.astype(int) - ref).max() <= 1  # float32 rounding at .5 boundaries
    ends = to_uint8(np.array([-1.0, 1.0, -3.0, 3.0], np.float32).reshape(1, 1, 1, 4).repeat(3, 1))
    assert ends[0, 0, :, 0].tolist() == [0, 255, 0, 255]


def test_to_uint8_bgr_reverses_channels():
    x = np.random.default_rng(1).uniform(-1, 1, size=(1, 3, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(to_uint8(x, bgr=True), to_uint8(x)[..., ::-1])


def test_to_uint8_single_chw_image_gives_hwc():
    x = np.random.default_rng(2).uniform(-1, 1, size=(3, 6, 4)).astype(np.float32)
    assert to_uint8(x).shape == (6, 4, 3)


@pytest.mark.parametrize("bad", [np.zeros((2, 5, 4, 4), np.float32), np.zeros((3, 4), np.float32),
                                 np.zeros((1, 3, 4, 4), np.uint8)])
def test_to_uint8_rejects_bad_input(bad):
    with pytest.raises(ImageArrayError, match="to_uint8"):
        to_uint8(bad)


def _batch(n: int, h: int = 4, w: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def test_make_grid_places_images_row_by_row():
    imgs = _batch(5)
    grid = make_grid(imgs, cols=3, pad=2, pad_value=7)
    assert grid.shape == (2 * (4 + 2) + 2, 3 * (5 + 2) + 2, 3)
    for i in range(5):
        r, c = divmod(i, 3)
        y, x = 2 + r * 6, 2 + c * 7
        np.testing.assert_array_equal(grid[y : y + 4, x : x + 5], imgs[i])
    assert (grid[8:12, 16:21] == 7).all()  # the unused sixth cell
    assert (grid[:2] == 7).all() and (grid[:, :2] == 7).all()  # border


def test_make_grid_defaults_to_a_square_ish_layout():
    assert make_grid(_batch(10)).shape == (3 * 4, 4 * 5, 3)
    assert make_grid(_batch(1)).shape == (4, 5, 3)


def test_make_grid_rejects_bad_input():
    with pytest.raises(ImageArrayError, match="uint8"):
        make_grid(np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ImageArrayError, match="empty"):
        make_grid(np.zeros((0, 4, 4, 3), np.uint8))
    with pytest.raises(ImageArrayError, match="cols"):
        make_grid(_batch(2), cols=0)


def test_save_grid_and_png_round_trip(tmp_path):
    imgs = _batch(4, seed=3)
    path = save_grid(imgs, tmp_path / "sub" / "grid.png", cols=2)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), make_grid(imgs, cols=2))
    grey = np.random.default_rng(4).integers(0, 256, size=(6, 9), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(save_png(grey, tmp_path / "g.png"))), grey)


def test_save_png_rejects_float(tmp_path):
    with pytest.raises(ImageArrayError, match="g.png"):
        save_png(np.zeros((4, 4, 3), np.float32), tmp_path / "g.png")


def test_images_module_does_not_import_torch():
    code = "import sys, stylegan_edge.runtime.images; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
