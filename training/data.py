"""Training images: folders and zips of PNG/JPEG, and the built-in procedural faces.

`open_dataset(source, resolution)` gives an `ImageDataset` whose items are uint8 tensors
[3, R, R] (RGB). Files are converted to RGB and cropped to their centred square, then resized
to R x R with a Lanczos filter. With `xflip` the dataset is twice as long and its second half
is the first mirrored, as in the official StyleGAN datasets, so every epoch is reproducible.

Class labels (for class-conditional training; `label_size`, `label_names`, `label(i)`): a
`dataset.json` at the root of a folder or zip, as NVlabs/stylegan2-ada-pytorch's dataset_tool
writes it (`{"labels": [["00000/img00000000.png", 6], ...]}` or `"labels": null`; read from its
dataset_tool.py and training/dataset.py), with class indices; label_size is the largest index + 1,
or the length of an optional `"label_names"` list. Without a dataset.json, a folder or zip whose
images all sit in first-level subfolders, two or more, has one class per subfolder
(`data/<class name>/...`, names sorted). `synthetic:faces-classes` has the procedural hair classes.
A label missing, malformed or out of range, or naming no image, is one DatasetError naming the file.

Unreadable files raise `DatasetError` naming the file when they are read; `validate()` reads
every file up front. Zip archives are opened lazily in each process, so DataLoader workers
(forked or spawned) never share a file offset.
"""

from __future__ import annotations

import io
import json
import operator
import os
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from stylegan_edge.runtime.errors import StyleganError

from . import procedural

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SYNTHETIC_KINDS = ("faces", "faces-classes")
LABELS_FILE = "dataset.json"
MAX_LABELS = 100_000  # as ModelConfig's label_size range
SYNTHETIC_DEFAULT_LENGTH = 100_000

# What decoding a bad file raises, by library: Pillow (OSError, SyntaxError for broken PNG
# chunks, ValueError, DecompressionBombError), zipfile (BadZipFile, zlib.error), truncation.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, zipfile.BadZipFile,
                  Image.DecompressionBombError)

Progress = Callable[[int, int], None]


class DatasetError(StyleganError, ValueError):
    """A dataset that cannot be used; the message is one line naming the source or file."""


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _as_int(value: Any, invalid: int) -> int:
    """`value` as an int if it is an integer of any kind (not a float, str or bool), else `invalid`."""
    if isinstance(value, bool):
        return invalid
    try:
        return operator.index(value)
    except TypeError:
        return invalid


def check_resolution(resolution: int) -> int:
    res = _as_int(resolution, 0)
    if res < 4 or res & (res - 1):
        raise DatasetError(f"resolution must be a power of two >= 4, got {resolution!r}")
    return res


# --- one image --------------------------------------------------------------------------

def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB. Transparent pixels are composited over white."""
    img = ImageOps.exif_transpose(img)  # camera JPEGs stored sideways
    if img.mode.startswith("I") or img.mode == "F":
        # 16-bit (or wider) grey: scale to 8 bits rather than let convert() clip it.
        arr = np.asarray(img).astype(np.float64)
        if img.mode.startswith("I;16") or (img.mode == "I" and arr.max() > 255):
            arr = arr / 257.0
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def prepare_image(img: Image.Image, resolution: int) -> np.ndarray:
    """A decoded image as uint8 [R, R, 3] RGB: the centred square, resized with Lanczos."""
    img = _to_rgb(img)
    w, h = img.size
    s = min(w, h)
    if w != h:
        # Crop first: resizing with a box would let the filter reach outside the square.
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    if s != resolution:
        # reducing_gap=3 first box-reduces big downscales; Pillow documents the result as
        # indistinguishable from a full Lanczos, and it is several times faster.
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(img, dtype=np.uint8)


# --- datasets ---------------------------------------------------------------------------

class ImageDataset(torch.utils.data.Dataset):
    """Images 0..num_images-1 of a source, uint8 [3, R, R]; with xflip also mirrored copies.

    Subclasses implement `_load(raw_index) -> uint8 [R, R, 3]` (and `_load_many` if they can
    load a batch faster than one by one).
    """

    kind = "images"

    def __init__(self, source: str, resolution: int, num_images: int, xflip: bool) -> None:
        self.source = source
        self.resolution = check_resolution(resolution)
        self.num_images = num_images
        self.xflip = xflip
        # Class labels: int64 [num_images] class indices, or None for an unlabelled dataset.
        self.raw_labels: np.ndarray | None = None
        self.label_size = 0
        self.label_names: tuple[str, ...] = ()

    @property
    def has_labels(self) -> bool:
        return self.raw_labels is not None

    def label(self, index: int) -> int:
        """The class index of item `index` (a mirrored copy keeps its original's class)."""
        if self.raw_labels is None:
            raise DatasetError(f"{self.source}: the dataset has no class labels")
        return int(self.raw_labels[self._raw(index)[0]])

    def labels(self, indices: Sequence[int]) -> np.ndarray:
        """Class indices of the items, int64 [N]."""
        if self.raw_labels is None:
            raise DatasetError(f"{self.source}: the dataset has no class labels")
        return self.raw_labels[[self._raw(int(i))[0] for i in indices]].astype(np.int64)

    def all_labels(self) -> np.ndarray:
        """Class indices of every item in order, int64 [len(self)] (the label distribution)."""
        if self.raw_labels is None:
            raise DatasetError(f"{self.source}: the dataset has no class labels")
        return np.tile(self.raw_labels, 2 if self.xflip else 1).astype(np.int64)

    # The part a subclass provides.
    def _load(self, raw_index: int) -> np.ndarray:
        raise NotImplementedError

    def _load_many(self, raw_indices: Sequence[int]) -> list[np.ndarray]:
        return [self._load(i) for i in raw_indices]

    # Indexing.
    def __len__(self) -> int:
        return self.num_images * (2 if self.xflip else 1)

    def _raw(self, index: int) -> tuple[int, bool]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {self.source} ({n} items)")
        index %= n
        return index % self.num_images, index >= self.num_images

    def image(self, index: int) -> np.ndarray:
        """Item `index` as uint8 [R, R, 3] RGB (numpy, for viewing and metrics)."""
        raw, flip = self._raw(index)
        img = self._load(raw)
        return np.ascontiguousarray(img[:, ::-1]) if flip else img

    def images(self, indices: Sequence[int]) -> np.ndarray:
        """Items as uint8 [N, R, R, 3], loaded together where the source can batch."""
        raws = [self._raw(int(i)) for i in indices]
        imgs = self._load_many([r for r, _ in raws])
        out = np.empty((len(raws), self.resolution, self.resolution, 3), np.uint8)
        for k, ((_, flip), img) in enumerate(zip(raws, imgs, strict=True)):
            out[k] = img[:, ::-1] if flip else img
        return out

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.image(index).transpose(2, 0, 1)))

    def __getitems__(self, indices: Sequence[int]) -> list[torch.Tensor]:
        # DataLoader's batched fetch: the procedural faces render a whole batch at once.
        batch = torch.from_numpy(self.images(indices).transpose(0, 3, 1, 2).copy())
        return list(batch.unbind(0))

    def validate(self, progress: Progress | None = None) -> None:
        """Decode every image; raise one DatasetError naming the unreadable files."""
        if progress is not None:
            progress(self.num_images, self.num_images)

    def __repr__(self) -> str:
        flip = ", xflip" if self.xflip else ""
        classes = f", {self.label_size} classes" if self.has_labels else ""
        return f"{type(self).__name__}({self.source!r}, {self.resolution}px, {self.num_images} images{flip}{classes})"


def _subset(names: list[str], max_images: int | None, seed: int) -> list[str]:
    """At most max_images names, a seeded random choice kept in sorted order."""
    if max_images is None or max_images >= len(names):
        return names
    keep = np.random.default_rng(seed).choice(len(names), size=max_images, replace=False)
    return [names[i] for i in sorted(keep)]


class _FileDataset(ImageDataset):
    """Images stored as files; `names` are their paths relative to the source, sorted."""

    def __init__(self, source: str, resolution: int, names: list[str], xflip: bool) -> None:
        if not names:
            raise DatasetError(f"{source}: no PNG or JPEG images found")
        super().__init__(source, resolution, len(names), xflip)
        self.names = names

    def _read(self, name: str) -> bytes | Path:
        raise NotImplementedError

    def _read_labels_file(self) -> bytes | None:
        """The bytes of the root dataset.json, or None when there is none."""
        raise NotImplementedError

    def _attach_labels(self, all_names: list[str]) -> None:
        """Labels of `self.names` from dataset.json, else from per-class folders (module doc)."""
        data = self._read_labels_file()
        if data is not None:
            found = _labels_from_json(self.source, data, all_names)
            if found is None:  # "labels": null, as dataset_tool writes for unlabelled data
                return
            by_name, size, names = found
        else:
            tops = {n.split("/", 1)[0] for n in all_names}
            if len(tops) < 2 or any("/" not in n for n in all_names):
                return
            names = tuple(sorted(tops))
            index = {c: i for i, c in enumerate(names)}
            by_name, size = {n: index[n.split("/", 1)[0]] for n in all_names}, len(names)
        self.raw_labels = np.array([by_name[n] for n in self.names], dtype=np.int64)
        self.label_size, self.label_names = size, names

    def _decode(self, raw_index: int) -> Image.Image:
        name = self.names[raw_index]
        try:
            data = self._read(name)
            with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
                img.load()
                return img
        except _DECODE_ERRORS as e:
            raise DatasetError(f"{self.source}: cannot read image {name} ({_one_line(e)})") from None

    def _load(self, raw_index: int) -> np.ndarray:
        img = self._decode(raw_index)
        try:
            return prepare_image(img, self.resolution)
        except _DECODE_ERRORS as e:
            name = self.names[raw_index]
            raise DatasetError(f"{self.source}: cannot convert image {name} ({_one_line(e)})") from None

    def validate(self, progress: Progress | None = None) -> None:
        bad: list[str] = []
        for i in range(self.num_images):
            try:
                _to_rgb(self._decode(i))
            except _DECODE_ERRORS:  # DatasetError included
                bad.append(self.names[i])
            if progress is not None:
                progress(i + 1, self.num_images)
        if bad:
            listed = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise DatasetError(f"{self.source}: {len(bad)} of {self.num_images} images unreadable: {listed}")


class FolderDataset(_FileDataset):
    """PNG/JPEG files anywhere under a folder (hidden files and folders skipped)."""

    kind = "folder"

    def __init__(self, source: str, resolution: int, *, xflip: bool, seed: int, max_images: int | None) -> None:
        self.root = Path(source)
        names, seen = [], set()
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:  # a symlink cycle
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root)
            names += [(rel / f).as_posix() for f in filenames
                      if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
        names.sort()
        super().__init__(source, resolution, _subset(names, max_images, seed), xflip)
        self._attach_labels(names)

    def _read(self, name: str) -> Path:
        return self.root / name

    def _read_labels_file(self) -> bytes | None:
        path = self.root / LABELS_FILE
        if not path.is_file():
            return None
        try:
            return path.read_bytes()
        except OSError as e:
            raise DatasetError(f"{path}: cannot read ({_one_line(e)})") from None


class ZipDataset(_FileDataset):
    """PNG/JPEG members of a zip archive, opened lazily once per process."""

    kind = "zip"

    def __init__(self, source: str, resolution: int, *, xflip: bool, seed: int, max_images: int | None) -> None:
        self.path = Path(source)
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid = -1
        try:
            with zipfile.ZipFile(self.path) as zf:
                members = zf.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise DatasetError(f"{source}: not a readable zip file ({_one_line(e)})") from None
        names = sorted(m for m in members if _is_image_member(m))
        self._has_labels_file = LABELS_FILE in members
        super().__init__(source, resolution, _subset(names, max_images, seed), xflip)
        self._attach_labels(names)

    def _archive(self) -> zipfile.ZipFile:
        # A zip handle shared across fork() shares its file offset: reopen in each process.
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip = zipfile.ZipFile(self.path)
            self._zip_pid = os.getpid()
        return self._zip

    def _read(self, name: str) -> bytes:
        return self._archive().read(name)

    def _read_labels_file(self) -> bytes | None:
        if not self._has_labels_file:
            return None
        try:
            return self._archive().read(LABELS_FILE)
        except _DECODE_ERRORS as e:
            raise DatasetError(f"{self.source}: cannot read {LABELS_FILE} ({_one_line(e)})") from None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_zip"], state["_zip_pid"] = None, -1
        return state

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None


def _labels_from_json(source: str, data: bytes, names: list[str]
                      ) -> tuple[dict[str, int], int, tuple[str, ...]] | None:
    """{image name: class}, label_size and class names from a dataset.json, checked against the
    dataset's images `names`; None for `"labels": null`. One DatasetError line naming the file."""
    where = f"{source}: {LABELS_FILE}"
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise DatasetError(f"{where}: not valid JSON ({_one_line(e)})") from None
    if not isinstance(doc, dict) or "labels" not in doc:
        raise DatasetError(f'{where}: expected an object with a "labels" list')
    entries = doc["labels"]
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise DatasetError(f'{where}: "labels" must be a list of [file name, class index] pairs or null')
    label_names: tuple[str, ...] = ()
    if "label_names" in doc:  # an extension: class names, which also fix label_size
        raw = doc["label_names"]
        if (not isinstance(raw, list) or not 0 < len(raw) <= MAX_LABELS
                or not all(isinstance(n, str) and 0 < len(n) <= 200 for n in raw)):
            raise DatasetError(f'{where}: "label_names" must be a list of 1 to {MAX_LABELS} non-empty names')
        label_names = tuple(raw)
    limit = len(label_names) or MAX_LABELS
    known = set(names)
    by_name: dict[str, int] = {}
    for entry in entries:
        if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], str):
            raise DatasetError(f"{where}: each label must be a [file name, class index] pair, got {entry!r:.80}")
        name, value = entry[0].replace("\\", "/"), entry[1]
        if name not in known:
            raise DatasetError(f"{where}: labels {name}, which is not an image of the dataset")
        if isinstance(value, list):
            raise DatasetError(f"{where}: {name}: label vectors are not supported, only class indices")
        cls = _as_int(value, -1)  # floats, strings and booleans are not class indices
        if not 0 <= cls < limit:
            raise DatasetError(f"{where}: {name}: class index {value!r} out of range [0, {limit})")
        by_name[name] = cls
    missing = [n for n in names if n not in by_name]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DatasetError(f"{where}: no label for {missing[0]}{more}")
    size = len(label_names) or max(by_name.values()) + 1
    return by_name, size, label_names


def _is_image_member(name: str) -> bool:
    parts = name.split("/")
    return (not name.endswith("/") and name.lower().endswith(IMAGE_EXTENSIONS)
            and not any(p.startswith(".") or p == "__MACOSX" for p in parts))


class SyntheticFaces(ImageDataset):
    """The procedural faces of `procedural.py`, image i = render_face(i, R, seed); with `classes`
    (`synthetic:faces-classes`) the faces of `procedural.render_class_faces`, labelled by hair class.

    With a cache file (`procedural.cache_faces`) the images are rendered once and memory-mapped.
    """

    kind = "synthetic"

    def __init__(self, source: str, resolution: int, length: int, *, xflip: bool, seed: int,
                 cache: Path | None = None, classes: bool = False) -> None:
        super().__init__(source, resolution, length, xflip)
        self.seed = seed
        self.cache = cache
        self.classes = classes
        self._array: np.ndarray | None = None
        if classes:
            self.raw_labels = np.arange(length, dtype=np.int64) % len(procedural.HAIR_CLASSES)
            self.label_size, self.label_names = len(procedural.CLASS_NAMES), procedural.CLASS_NAMES

    def _cached(self) -> np.ndarray | None:
        if self.cache is None:
            return None
        if self._array is None:
            self._array = np.load(self.cache, mmap_mode="r")
        return self._array

    def _load(self, raw_index: int) -> np.ndarray:
        arr = self._cached()
        if arr is not None:
            return np.array(arr[raw_index])
        return self._render([raw_index])[0]

    def _render(self, raw_indices: Sequence[int]) -> np.ndarray:
        render = procedural.render_class_faces if self.classes else procedural.render_faces
        return render(raw_indices, self.resolution, self.seed)

    def _load_many(self, raw_indices: Sequence[int]) -> list[np.ndarray]:
        arr = self._cached()
        if arr is not None:
            return list(arr[np.asarray(raw_indices, dtype=np.int64)])
        return list(self._render(raw_indices))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_array"] = None  # a memmap would pickle its whole contents
        return state


# --- opening ----------------------------------------------------------------------------

def _parse_synthetic(source: str) -> tuple[str, int]:
    parts = source.split(":")
    kind = parts[1] if len(parts) > 1 else ""
    if kind not in SYNTHETIC_KINDS or len(parts) > 3:
        known = ", ".join(f"synthetic:{k}[:N]" for k in SYNTHETIC_KINDS)
        raise DatasetError(f"unknown synthetic dataset {source!r}; known: {known}")
    if len(parts) == 2:
        return kind, SYNTHETIC_DEFAULT_LENGTH
    try:
        length = int(parts[2])
    except ValueError:
        length = 0
    if length < 1:
        raise DatasetError(f"{source}: the length after '{kind}:' must be a positive integer, got {parts[2]!r}")
    return kind, length


def open_dataset(
    source: str,
    resolution: int,
    *,
    xflip: bool = False,
    seed: int = 0,
    max_images: int | None = None,
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> ImageDataset:
    """Open a folder of PNG/JPEG (searched recursively), a .zip of them, or `synthetic:faces`
    (`synthetic:faces:N` for N images, default 100000) or `synthetic:faces-classes[:N]` (labelled).

    `seed` picks the procedural faces, and for files which `max_images` are kept (a seeded
    random subset, in name order). `cache_dir`, for the synthetic faces only, renders them once
    into a memory-mapped .npy there (reporting through `progress`) instead of on every access.
    """
    source = str(source)
    check_resolution(resolution)
    if max_images is not None and _as_int(max_images, 0) < 1:
        raise DatasetError(f"max_images must be a positive integer or None, got {max_images!r}")
    if _as_int(seed, -1) < 0:
        raise DatasetError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    max_images = None if max_images is None else int(max_images)
    if source.startswith("synthetic:"):
        kind, length = _parse_synthetic(source)
        if max_images is not None:
            length = min(length, max_images)
        cache = None
        if cache_dir is not None:
            cache = Path(cache_dir) / f"{kind}-seed{seed}-{resolution}px-{length}.npy"
            procedural.cache_faces(cache, length, resolution, seed, progress=progress, classes=kind == "faces-classes")
        return SyntheticFaces(source, resolution, length, xflip=xflip, seed=seed, cache=cache,
                              classes=kind == "faces-classes")
    path = Path(source)
    if not path.exists():
        raise DatasetError(f"dataset not found: {source}")
    if path.is_dir():
        return FolderDataset(source, resolution, xflip=xflip, seed=seed, max_images=max_images)
    if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
        return ZipDataset(source, resolution, xflip=xflip, seed=seed, max_images=max_images)
    raise DatasetError(f"unsupported dataset {source}: expected a folder of images, a .zip of images, "
                       f"or synthetic:faces[-classes][:N]")


def dataset_summary(ds: ImageDataset) -> dict[str, Any]:
    """What to log about a dataset."""
    return {
        "source": ds.source,
        "kind": ds.kind,
        "length": len(ds),
        "images": ds.num_images,
        "resolution": ds.resolution,
        "xflip": ds.xflip,
        "label_size": ds.label_size,
        "label_names": list(ds.label_names),
    }
