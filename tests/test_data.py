"""training/data.py: folders, zips and synthetic faces as uint8 [3, R, R] datasets."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylegan_edge.training import procedural
from stylegan_edge.training.data import (
    SYNTHETIC_DEFAULT_LENGTH,
    DatasetError,
    dataset_summary,
    open_dataset,
    prepare_image,
)


def _random_rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Five images of assorted sizes and formats, one in a subfolder, plus files to ignore."""
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    Image.fromarray(_random_rgb(20, 30, 0)).save(root / "a.png")
    Image.fromarray(_random_rgb(16, 16, 1)).save(root / "b.PNG")
    Image.fromarray(_random_rgb(40, 24, 2)).save(root / "c.jpg", quality=95)
    Image.fromarray(_random_rgb(8, 8, 3)).save(root / "sub" / "d.jpeg")
    Image.fromarray(_random_rgb(32, 32, 4)).save(root / "sub" / "e.png")
    Image.fromarray(_random_rgb(8, 8, 5)).save(root / ".hidden" / "x.png")
    Image.fromarray(_random_rgb(8, 8, 6)).save(root / ".dot.png")
    (root / "notes.txt").write_text("not an image")
    return root


def _zip_of(folder: Path, path: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


# --- files ------------------------------------------------------------------------------

def test_folder_finds_images_recursively_and_sorted(folder):
    ds = open_dataset(str(folder), 16)
    assert ds.names == ["a.png", "b.PNG", "c.jpg", "sub/d.jpeg", "sub/e.png"]
    assert len(ds) == 5


def test_items_are_uint8_chw_tensors(folder):
    ds = open_dataset(str(folder), 16)
    for i in range(len(ds)):
        x = ds[i]
        assert isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and x.shape == (3, 16, 16)


def test_same_size_image_passes_through_unchanged(folder):
    ds = open_dataset(str(folder), 16)
    np.testing.assert_array_equal(ds[1].permute(1, 2, 0).numpy(), _random_rgb(16, 16, 1))


def test_centre_crop_keeps_the_middle_square():
    # Wide and tall images whose outer strips are red and centred square green.
    wide = np.zeros((32, 64, 3), np.uint8)
    wide[:] = (255, 0, 0)
    wide[:, 16:48] = (0, 255, 0)
    for img in (wide, wide.transpose(1, 0, 2)):
        for res in (8, 32, 64):
            out = prepare_image(Image.fromarray(img), res)
            assert out.shape == (res, res, 3)
            assert out[..., 0].max() == 0 and out[..., 1].min() == 255  # no red leaks in


def test_resize_keeps_orientation_and_matches_an_area_reference():
    # A horizontal ramp 0..255 over 128 px, downscaled 4x: each output pixel is the mean of its
    # four source columns (Lanczos on a linear ramp is exact up to rounding).
    ramp = np.round(np.linspace(0, 255, 128)).astype(np.uint8)
    img = np.repeat(np.repeat(ramp[None, :, None], 128, 0), 3, 2)
    img[..., 2] = img[..., 0].T  # blue ramps down the rows
    out = prepare_image(Image.fromarray(img), 32).astype(np.float64)
    ref = ramp.astype(np.float64).reshape(32, 4).mean(1)
    assert np.abs(out[:, :, 0] - ref[None, :]).max() <= 1.0
    assert np.abs(out[:, :, 2] - ref[:, None]).max() <= 1.0


def test_upscale_of_a_tiny_image(folder):
    ds = open_dataset(str(folder), 32)
    img = ds.image(3)  # sub/d.jpeg is 8 x 8
    assert img.shape == (32, 32, 3) and img.std() > 10


def test_modes_are_converted_to_rgb():
    rng = np.random.default_rng(7)
    grey = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
    out = prepare_image(Image.fromarray(grey), 8)
    assert all(np.array_equal(out[..., c], grey) for c in range(3))

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[:4, :, 3] = 255  # top half opaque, bottom transparent
    out = prepare_image(Image.fromarray(rgba), 8)
    assert (out[:4] == (10, 20, 30)).all() and (out[4:] == 255).all()  # over white

    pal = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    pal.putpalette([200, 0, 0, 0, 0, 200] + [0] * 762)
    out = prepare_image(pal, 2)
    assert out[0, 0].tolist() == [200, 0, 0] and out[0, 1].tolist() == [0, 0, 200]

    deep = np.array([[0, 32896], [65535, 257]], np.uint16)  # a 16-bit grey PNG
    out = prepare_image(Image.open(io.BytesIO(_png_bytes(deep))), 2)
    assert out[..., 0].tolist() == [[0, 128], [255, 1]]


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((8, 16, 3), np.uint8)
    arr[:, :8] = 255  # left half white; stored landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rot.jpg"
    Image.fromarray(arr).save(path, exif=exif, quality=100)
    img = prepare_image(Image.open(path), 8)  # displayed portrait 8 x 16: top half white
    assert img[:2].mean() > 200 and img[-2:].mean() < 50


def test_xflip_doubles_the_dataset_and_mirrors_its_second_half(folder):
    plain = open_dataset(str(folder), 16)
    ds = open_dataset(str(folder), 16, xflip=True)
    assert len(ds) == 10
    for i in range(5):
        assert torch.equal(ds[i], plain[i])
        assert torch.equal(ds[i + 5], plain[i].flip(-1))
    assert torch.equal(ds[-1], ds[9])


def test_index_out_of_range(folder):
    ds = open_dataset(str(folder), 16)
    with pytest.raises(IndexError):
        ds[5]


def test_max_images_is_a_seeded_sorted_subset(folder):
    a = open_dataset(str(folder), 16, max_images=3, seed=1)
    assert len(a) == 3 and a.names == sorted(a.names)
    assert set(a.names) < set(open_dataset(str(folder), 16).names)
    assert open_dataset(str(folder), 16, max_images=3, seed=1).names == a.names
    seeds = {tuple(open_dataset(str(folder), 16, max_images=3, seed=s).names) for s in range(8)}
    assert len(seeds) > 1


def test_zip_gives_the_same_images_as_the_folder(folder, tmp_path):
    path = _zip_of(folder, tmp_path / "imgs.zip", {"__MACOSX/._a.png": b"junk", "dir/": b""})
    zds, fds = open_dataset(str(path), 16), open_dataset(str(folder), 16)
    assert zds.names == fds.names
    for i in range(len(fds)):
        assert torch.equal(zds[i], fds[i])


def test_zip_works_with_dataloader_workers(folder, tmp_path):
    path = _zip_of(folder, tmp_path / "imgs.zip")
    ds = open_dataset(str(path), 16, xflip=True)
    ds[0]  # open the archive in this process before forking: workers must reopen it
    expected = torch.stack([ds[i] for i in range(len(ds))])
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2)
    assert torch.equal(torch.cat(list(loader)), expected)


def test_zip_dataset_pickles_without_its_handle(folder, tmp_path):
    # What spawn-started workers do: the copy opens its own archive.
    ds = open_dataset(str(_zip_of(folder, tmp_path / "imgs.zip")), 16)
    first = ds[0]
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._zip is None and torch.equal(copy[0], first)


# --- synthetic --------------------------------------------------------------------------

def test_synthetic_faces_are_the_procedural_renders():
    ds = open_dataset("synthetic:faces:6", 16, seed=3)
    for i in (0, 5):
        np.testing.assert_array_equal(ds[i].permute(1, 2, 0).numpy(), procedural.render_face(i, 16, seed=3))


def test_synthetic_lengths():
    assert len(open_dataset("synthetic:faces", 8)) == SYNTHETIC_DEFAULT_LENGTH
    assert len(open_dataset("synthetic:faces:10", 8)) == 10
    assert len(open_dataset("synthetic:faces:10", 8, xflip=True)) == 20
    assert len(open_dataset("synthetic:faces", 8, max_images=7)) == 7


def test_batched_fetch_matches_single_items():
    ds = open_dataset("synthetic:faces:8", 16, xflip=True)
    idx = [0, 9, 3, 15]
    for got, i in zip(ds.__getitems__(idx), idx, strict=True):
        assert torch.equal(got, ds[i])
    batch = next(iter(torch.utils.data.DataLoader(torch.utils.data.Subset(ds, idx), batch_size=4)))
    assert torch.equal(batch, torch.stack([ds[i] for i in idx]))


def test_synthetic_cache_dir_gives_the_same_images(tmp_path):
    seen = []
    cached = open_dataset("synthetic:faces:5", 8, seed=2, cache_dir=tmp_path, progress=lambda d, t: seen.append(d))
    plain = open_dataset("synthetic:faces:5", 8, seed=2)
    assert seen and seen[-1] == 5 and list(tmp_path.glob("*.npy"))
    assert torch.equal(torch.stack(cached.__getitems__(range(5))), torch.stack([plain[i] for i in range(5)]))
    assert torch.equal(pickle.loads(pickle.dumps(cached))[4], plain[4])


def test_summary(folder):
    s = dataset_summary(open_dataset(str(folder), 16, xflip=True))
    assert s["source"] == str(folder) and s["length"] == 10 and s["resolution"] == 16
    assert s["images"] == 5 and s["kind"] == "folder" and s["xflip"] is True


# --- errors -----------------------------------------------------------------------------

def _error(match: str, fn, *args, **kwargs) -> str:
    with pytest.raises(DatasetError, match=match) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_error_empty_folder(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("x")
    assert "empty" in _error("no PNG or JPEG images found", open_dataset, str(tmp_path / "empty"), 16)


def test_error_empty_zip(tmp_path):
    path = tmp_path / "none.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "x")
    assert "none.zip" in _error("no PNG or JPEG images found", open_dataset, str(path), 16)


def test_error_missing_path(tmp_path):
    _error("dataset not found: .*nowhere", open_dataset, str(tmp_path / "nowhere"), 16)


@pytest.mark.parametrize("res", [0, 2, 3, 48, 100, "64", 16.0])
def test_error_resolution_not_a_power_of_two(res):
    _error("resolution must be a power of two >= 4", open_dataset, "synthetic:faces", res)


def test_error_unknown_synthetic_kind():
    _error("unknown synthetic dataset 'synthetic:cats'; known: synthetic:faces", open_dataset, "synthetic:cats", 16)


@pytest.mark.parametrize("source", ["synthetic:faces:0", "synthetic:faces:many", "synthetic:faces:-3"])
def test_error_bad_synthetic_length(source):
    _error("must be a positive integer", open_dataset, source, 16)


def test_error_not_a_dataset_file(tmp_path):
    (tmp_path / "list.txt").write_text("a.png\n")
    _error("unsupported dataset .*list.txt", open_dataset, str(tmp_path / "list.txt"), 16)


def test_error_corrupt_zip(tmp_path):
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 definitely not a zip")
    _error("bad.zip: not a readable zip file", open_dataset, str(tmp_path / "bad.zip"), 16)


def test_error_bad_max_images_and_seed(folder):
    _error("max_images must be a positive integer", open_dataset, str(folder), 16, max_images=0)
    _error("seed must be a non-negative integer", open_dataset, str(folder), 16, seed=-1)


def test_corrupt_image_is_named_on_access(folder, tmp_path):
    good = _png_bytes(_random_rgb(16, 16, 9))
    (folder / "sub" / "e.png").write_bytes(good[: len(good) // 2])  # truncated
    (folder / "z.png").write_bytes(b"not a png at all")
    ds = open_dataset(str(folder), 16)
    ds[0]  # the good ones still load
    _error(r"imgs: cannot read image sub/e\.png \(", ds.__getitem__, 4)
    _error(r"cannot read image z\.png", ds.__getitem__, 5)
    zds = open_dataset(str(_zip_of(folder, tmp_path / "imgs.zip")), 16)
    _error(r"imgs\.zip: cannot read image z\.png", zds.__getitem__, 5)


def test_validate_lists_unreadable_files_with_progress(folder):
    (folder / "z.png").write_bytes(b"not a png")
    (folder / "y.jpg").write_bytes(b"\xff\xd8\xff nor a jpeg")
    ds = open_dataset(str(folder), 16)
    calls = []
    msg = _error("2 of 7 images unreadable: y.jpg, z.png", ds.validate, progress=lambda d, t: calls.append((d, t)))
    assert str(folder) in msg
    assert calls == [(i, 7) for i in range(1, 8)]


def test_validate_passes_on_good_data(folder):
    calls = []
    open_dataset(str(folder), 16).validate(lambda d, t: calls.append(d))
    assert calls[-1] == 5
