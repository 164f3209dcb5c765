"""The ONNX bundle: a directory that export writes and every backend reads.

`meta.json` describes the model (sizes, per-layer resolutions, w_avg, truncation defaults) and
records the size and SHA-256 of each file it goes with, so the runtime needs nothing else. This
module is the one place a bundle's files are checked: meta.json for its own types and ranges,
the files against meta.json's record, noise_const.npz against the shapes meta.json implies
(before anything is allocated) and the graphs' inputs and outputs against meta.json; every
failure is one `BundleError` line naming the file and the field. No torch here: a Jetson runs
bundles with numpy and onnxruntime or TensorRT alone.
"""

from __future__ import annotations

import json
import math
import re
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import StyleganError
from .files import file_record

BUNDLE_FORMAT = "stylegan-edge-bundle"
# 2: meta.json records every file's size and SHA-256 ("files").
BUNDLE_FORMAT_VERSION = 2
PRECISIONS = ("fp32", "fp16", "int8")
MODELS = ("mapping", "synthesis")
REQUIRED_FILES = ("meta.json", "mapping.onnx", "synthesis.onnx")
NOISE_FILE = "noise_const.npz"
# A meta.json is a few kB (a 1024 px model's is ~20 kB); anything far larger is not one.
MAX_META_BYTES = 16 << 20
# Bounds that no real model comes near but that keep every size derived from them finite.
MAX_RESOLUTION = 1 << 14
MAX_DIM = 1 << 16
MAX_LAYERS = 64
MAX_CHANNELS = 1 << 16
_SHA256 = re.compile(r"[0-9a-f]{64}")


class BundleError(StyleganError, ValueError):
    """A bundle that cannot be used; the message is one line naming the file."""


# The mapping graph's inputs: the latent z, and for a class-conditional model the labels c
# [B, label_size] (one-hot, or any mixture: the label embedding is linear). The one place their
# names are spelt; export, every backend, the TensorRT profiles and the CLI read them here.
LATENT_INPUT = "z"
LABEL_INPUT = "c"
# No real model has anywhere near this many classes; it keeps a one-hot row's size finite.
MAX_LABELS = 100_000
MAX_LABEL_NAME = 200


def w_input(layer: int) -> str:
    return f"w_{layer:02d}"


def noise_input(layer: int) -> str:
    return f"noise_{layer:02d}"


def onnx_filename(model: str, precision: str = "fp32") -> str:
    """`synthesis.onnx`, `synthesis.fp16.onnx`, `synthesis.int8.onnx`, ..."""
    if model not in MODELS:
        raise BundleError(f"unknown model {model!r}; a bundle holds {', '.join(MODELS)}")
    if precision not in PRECISIONS:
        raise BundleError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return f"{model}.onnx" if precision == "fp32" else f"{model}.{precision}.onnx"


# INT8 for strongly typed TensorRT builds: the Q/DQ of `synthesis.int8.onnx` on the mixed FP16 graph
# (opset 19: FP16 scales), so layers outside the quantised convolutions run FP16, not FP32.
INT8_FP16_FILE = "synthesis.int8-fp16.onnx"


def strongly_typed_onnx_filename(model: str, precision: str) -> str:
    """The file a strongly typed TensorRT build reads for `precision` (the network runs exactly
    the types the file states)."""
    if model == "synthesis" and precision == "int8":
        return INT8_FP16_FILE
    return onnx_filename(model, precision)


# Calibration's files: the mixed FP16 graph, Q/DQ on the FP32 graph (onnxruntime, TensorRT 8.6), the
# precision plan (runtime/precision_plan.py) and the calibration latents.
FP16_FILE = onnx_filename("synthesis", "fp16")
INT8_FILE = onnx_filename("synthesis", "int8")
PLAN_FILE = "precision_plan.json"
CALIB_FILE = "calib.npz"
# The ONNX metadata entry in which calibration records each reduced-precision file's provenance
# (JSON with `source_sha256`, the SHA-256 of the synthesis.onnx it was made from).
PRECISION_METADATA_KEY = "stylegan_edge.precision"
# TensorRT: the timing cache every engine build of the bundle reuses, each engine
# `<model>.<precision>.engine`, and beside it the sidecar `<engine file name>.json`
# (runtime/engine_meta.py), e.g. `synthesis.fp16.engine.json`.
TIMING_CACHE_FILE = "timing.cache"
ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"


def engine_filename(model: str, precision: str) -> str:
    return f"{model}.{precision}{ENGINE_SUFFIX}"


def sidecar_filename(engine_name: str) -> str:
    """`synthesis.fp16.engine` -> `synthesis.fp16.engine.json`."""
    return engine_name + SIDECAR_SUFFIX


# --- typed field readers: each failure names the file and the field --------------------------------------
def _field(d: dict[str, Any], key: str, path: Path, where: str = "") -> Any:
    if key not in d:
        raise BundleError(f"{path}: missing field {where}{key!r}")
    return d[key]


def _int(d: dict[str, Any], key: str, path: Path, lo: int, hi: int, where: str = "") -> int:
    v = _field(d, key, path, where)
    # JSON true/false are Python ints; a size is never a boolean.
    if not isinstance(v, int) or isinstance(v, bool):
        raise BundleError(f"{path}: field {where}{key!r} must be an integer, got {_show(v)}")
    if not lo <= v <= hi:
        raise BundleError(f"{path}: field {where}{key!r} is {v}, outside {lo}..{hi}")
    return v


def _float(d: dict[str, Any], key: str, path: Path, where: str = "") -> float:
    v = _field(d, key, path, where)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise BundleError(f"{path}: field {where}{key!r} must be a number, got {_show(v)}")
    if not math.isfinite(v):
        raise BundleError(f"{path}: field {where}{key!r} is {v}, not a finite number")
    return float(v)


def _show(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (str, int, float, bool, type(None))) else type(v).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _check_file_records(files: Any, path: Path) -> dict[str, dict[str, Any]]:
    if not isinstance(files, dict):
        raise BundleError(f"{path}: field 'files' must be an object of file records, got {_show(files)}")
    for name, rec in files.items():
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            raise BundleError(f"{path}: field 'files' names {name!r}, not a file in the bundle")
        if not isinstance(rec, dict):
            raise BundleError(f"{path}: field files[{name!r}] must be an object, got {_show(rec)}")
        where = f"files[{name!r}]."
        _int(rec, "bytes", path, 0, 1 << 50, where)
        sha = _field(rec, "sha256", path, where)
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise BundleError(f"{path}: field {where}'sha256' must be 64 lowercase hex digits, got {_show(sha)}")
    return files


@dataclass(frozen=True)
class BundleMeta:
    """The parsed `meta.json`."""

    format_version: int
    resolution: int
    img_channels: int
    z_dim: int
    w_dim: int
    num_layers: int
    layer_resolutions: tuple[int, ...]
    layer_channels: tuple[int, ...]
    use_noise: bool
    w_avg: np.ndarray
    truncation_psi: float
    truncation_cutoff: int | None
    opset: int
    raw: dict[str, Any]
    # Class conditioning: 0 for an unconditional model (meta.json then has neither field);
    # label_names defaults to "0".."N-1" when the model names none.
    label_size: int = 0
    label_names: tuple[str, ...] = ()

    @property
    def conditional(self) -> bool:
        return self.label_size > 0

    @property
    def mapping_inputs(self) -> list[str]:
        return [LATENT_INPUT, LABEL_INPUT] if self.label_size else [LATENT_INPUT]

    @property
    def w_inputs(self) -> list[str]:
        return [w_input(i) for i in range(self.num_layers)]

    @property
    def noise_inputs(self) -> list[str]:
        return [noise_input(i) for i in range(self.num_layers)] if self.use_noise else []

    @property
    def synthesis_inputs(self) -> list[str]:
        return self.w_inputs + self.noise_inputs

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        """The file records (name -> {"sha256", "bytes"}); empty for metadata made in memory."""
        return self.raw.get("files") or {}

    @property
    def largest_feature_map_bytes(self) -> int:
        """FP32 bytes of the synthesis network's largest feature map, per image."""
        return 4 * max(c * r * r for c, r in zip(self.layer_channels, self.layer_resolutions))

    def input_shapes(self, model: str) -> dict[str, tuple[int | None, ...]]:
        """Each graph input's shape as meta.json implies it (None: the batch axis)."""
        if model == "mapping":
            shapes_m: dict[str, tuple[int | None, ...]] = {LATENT_INPUT: (None, self.z_dim)}
            if self.label_size:
                shapes_m[LABEL_INPUT] = (None, self.label_size)
            return shapes_m
        shapes: dict[str, tuple[int | None, ...]] = {n: (None, self.w_dim) for n in self.w_inputs}
        shapes.update({n: (None, 1, r, r) for n, r in zip(self.noise_inputs, self.layer_resolutions)})
        return shapes

    def output_shapes(self, model: str) -> dict[str, tuple[int | None, ...]]:
        if model == "mapping":
            return {"w": (None, self.w_dim)}
        return {"image": (None, self.img_channels, self.resolution, self.resolution)}

    @classmethod
    def from_dict(cls, d: Any, path: Path) -> BundleMeta:
        """Check every field's type and range; a bundle from another format version is refused
        before its fields are read (they may mean something else)."""
        if not isinstance(d, dict):
            raise BundleError(f"{path}: not a stylegan-edge bundle (meta.json holds a {type(d).__name__}, "
                              "not an object)")
        fmt, version = d.get("format"), d.get("format_version")
        if fmt != BUNDLE_FORMAT:
            raise BundleError(f"{path}: not a stylegan-edge bundle (format is {_show(fmt)})")
        if version != BUNDLE_FORMAT_VERSION or isinstance(version, bool):
            raise BundleError(
                f"{path}: bundle format version {_show(version)}; this runtime reads version {BUNDLE_FORMAT_VERSION} "
                "(re-export it with `stylegan-export CHECKPOINT`)"
            )
        resolution = _int(d, "resolution", path, 4, MAX_RESOLUTION)
        num_layers = _int(d, "num_layers", path, 1, MAX_LAYERS)
        w_dim = _int(d, "w_dim", path, 1, MAX_DIM)
        layers = _field(d, "layers", path)
        if not isinstance(layers, list) or len(layers) != num_layers:
            got = f"{len(layers)} entries" if isinstance(layers, list) else _show(layers)
            raise BundleError(f"{path}: field 'layers' must be a list of num_layers={num_layers} entries, got {got}")
        res, chans = [], []
        for i, layer in enumerate(layers):
            if not isinstance(layer, dict):
                raise BundleError(f"{path}: field layers[{i}] must be an object, got {_show(layer)}")
            res.append(_int(layer, "resolution", path, 1, resolution, f"layers[{i}]."))
            chans.append(_int(layer, "channels", path, 1, MAX_CHANNELS, f"layers[{i}]."))
        use_noise = _field(d, "use_noise", path)
        if not isinstance(use_noise, bool):
            raise BundleError(f"{path}: field 'use_noise' must be true or false, got {_show(use_noise)}")
        w_avg = _field(d, "w_avg", path)
        if not isinstance(w_avg, list) or len(w_avg) != w_dim:
            got = f"{len(w_avg)} numbers" if isinstance(w_avg, list) else _show(w_avg)
            raise BundleError(f"{path}: field 'w_avg' must be a list of w_dim={w_dim} numbers, got {got}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in w_avg):
            raise BundleError(f"{path}: field 'w_avg' must hold only numbers")
        w_avg_arr = np.asarray(w_avg, dtype=np.float32)
        if not np.isfinite(w_avg_arr).all():
            raise BundleError(f"{path}: field 'w_avg' holds NaN, inf or values beyond float32 range")
        trunc = _field(d, "truncation", path)
        if not isinstance(trunc, dict):
            raise BundleError(f"{path}: field 'truncation' must be an object, got {_show(trunc)}")
        cutoff = _field(trunc, "cutoff", path, "truncation.")
        label_size, label_names = _labels(d, path)
        meta = cls(
            format_version=BUNDLE_FORMAT_VERSION,
            resolution=resolution,
            img_channels=_int(d, "img_channels", path, 1, 4),
            z_dim=_int(d, "z_dim", path, 1, MAX_DIM),
            w_dim=w_dim,
            num_layers=num_layers,
            layer_resolutions=tuple(res),
            layer_channels=tuple(chans),
            use_noise=use_noise,
            w_avg=w_avg_arr,
            truncation_psi=_float(trunc, "psi", path, "truncation."),
            truncation_cutoff=None if cutoff is None else _int(trunc, "cutoff", path, 0, num_layers, "truncation."),
            # 0: metadata made in memory before export (the PyTorch reference path).
            opset=_int(d, "opset", path, 0, 1000),
            raw=d,
            label_size=label_size,
            label_names=label_names,
        )
        if "files" in d:
            _check_file_records(d["files"], path)
        return meta


def _labels(d: dict[str, Any], path: Path) -> tuple[int, tuple[str, ...]]:
    """label_size and label_names of a conditional bundle's meta.json; (0, ()) when it has neither.
    An unconditional bundle writes neither field, so that its meta.json is as before labels."""
    if "label_size" not in d:
        if "label_names" in d:
            raise BundleError(f"{path}: field 'label_names' without 'label_size'")
        return 0, ()
    size = _int(d, "label_size", path, 1, MAX_LABELS)
    if "label_names" not in d:
        return size, tuple(str(i) for i in range(size))
    names = d["label_names"]
    if not isinstance(names, list) or len(names) != size:
        got = f"{len(names)} entries" if isinstance(names, list) else _show(names)
        raise BundleError(f"{path}: field 'label_names' must be a list of label_size={size} names, got {got}")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not 0 < len(name) <= MAX_LABEL_NAME:
            raise BundleError(f"{path}: field label_names[{i}] must be a name of 1 to {MAX_LABEL_NAME} characters, "
                              f"got {_show(name)}")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise BundleError(f"{path}: field 'label_names' names {_show(dup)} twice")
    return size, tuple(names)


def read_meta(path: Path) -> BundleMeta:
    """meta.json -> BundleMeta; whatever the file holds, the failure is one BundleError line."""
    try:
        size = path.stat().st_size
        if size > MAX_META_BYTES:
            raise BundleError(f"{path}: {size} bytes, not a bundle's meta.json (at most {MAX_META_BYTES})")
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except BundleError:
        raise
    except OSError as e:
        raise BundleError(f"{path}: unreadable ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise BundleError(f"{path}: not a bundle's meta.json (not UTF-8 text)") from None
    except (json.JSONDecodeError, RecursionError, ValueError) as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BundleError(f"{path}: not valid JSON ({text})") from None
    return BundleMeta.from_dict(raw, path)


def _shape_text(shape: Sequence[Any]) -> str:
    return "[" + ",".join("B" if d is None else str(d) for d in shape) + "]"


class Bundle:
    """An opened bundle directory: meta.json checked, and every file meta.json records present
    with its recorded size. `verify=True` also compares SHA-256s (cheap at 64 px; see
    `verify_files` and `stylegan verify` for the numbers)."""

    def __init__(self, path: str | Path, verify: bool = True) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise BundleError(f"{self.path}: no such bundle directory")
        for name in REQUIRED_FILES:
            if not (self.path / name).is_file():
                raise BundleError(f"{self.path / name}: missing from the bundle (re-export it)")
        meta_path = self.path / "meta.json"
        self.meta = read_meta(meta_path)
        files = self.meta.raw.get("files")
        if files is None:
            raise BundleError(f"{meta_path}: missing field 'files' (the files' sizes and SHA-256; re-export it with "
                              "`stylegan-export CHECKPOINT`)")
        needed = [n for n in REQUIRED_FILES if n != "meta.json"] + ([NOISE_FILE] if self.meta.use_noise else [])
        for name in needed:
            if name not in files:
                raise BundleError(f"{meta_path}: field 'files' has no record of {name} (re-export the bundle)")
        self.verify_files(hashes=verify)

    def __repr__(self) -> str:
        m = self.meta
        return f"Bundle({str(self.path)!r}, {m.resolution}px, {m.num_layers} style layers)"

    def verify_files(self, hashes: bool = True) -> list[str]:
        """Check every file meta.json records: present, of the recorded size and (hashes=True)
        the recorded SHA-256. Returns the names checked."""
        checked = []
        for name, rec in self.meta.files.items():
            p = self.path / name
            if not p.is_file():
                raise BundleError(f"{p}: missing from the bundle (meta.json records it)")
            size = p.stat().st_size
            if size != rec["bytes"]:
                raise BundleError(f"{p}: {size} bytes, meta.json records {rec['bytes']} (truncated or replaced; "
                                  "re-export the bundle)")
            if hashes:
                try:
                    actual = file_record(p)["sha256"]
                except OSError as e:
                    raise BundleError(f"{p}: unreadable ({e.strerror or e})") from None
                if actual != rec["sha256"]:
                    raise BundleError(f"{p}: SHA-256 differs from meta.json's record (corrupt or from another "
                                      "model; re-export the bundle)")
            checked.append(name)
        return checked

    def file(self, name: str) -> Path:
        p = self.path / name
        if not p.is_file():
            raise BundleError(f"{p}: missing from the bundle")
        return p

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def onnx_path(self, model: str, precision: str = "fp32") -> Path:
        name = onnx_filename(model, precision)
        if not self.has(name):
            hint = {
                "fp16": "run `stylegan-export BUNDLE --fp16`",
                "int8": "run `stylegan-export BUNDLE --int8`",
            }.get(precision, "re-export the bundle")
            raise BundleError(f"{self.path / name}: not in the bundle ({hint})")
        return self.path / name

    def precisions(self, model: str = "synthesis") -> list[str]:
        return [p for p in PRECISIONS if self.has(onnx_filename(model, p))]

    def noise_const(self) -> dict[str, np.ndarray]:
        """The model's fixed noise images by input name, each [1, 1, H, W] float32."""
        if not self.meta.use_noise:
            return {}
        shapes = {n: (1, 1, r, r) for n, r in zip(self.meta.noise_inputs, self.meta.layer_resolutions)}
        return read_noise_npz(self.file(NOISE_FILE), shapes)

    def check_inputs(self, model: str, names: list[str], path: Path) -> None:
        """Raise if an ONNX graph's or engine's input names disagree with meta.json."""
        expected = self.meta.mapping_inputs if model == "mapping" else self.meta.synthesis_inputs
        if sorted(names) != sorted(expected):
            missing = sorted(set(expected) - set(names))
            extra = sorted(set(names) - set(expected))
            raise BundleError(
                f"{path}: inputs disagree with meta.json (missing {missing[:3]}, unexpected {extra[:3]})"
            )

    def check_graph(
        self, model: str, inputs: dict[str, Sequence[Any]], outputs: dict[str, Sequence[Any]], path: Path,
    ) -> None:
        """Raise if a graph's inputs or outputs (name -> shape, a non-integer dim being symbolic)
        disagree with meta.json. The batch axis may be anything; every other axis must be the
        number meta.json implies."""
        self.check_inputs(model, list(inputs), path)
        wanted_out = self.meta.output_shapes(model)
        missing = sorted(set(wanted_out) - set(outputs))
        if missing:
            raise BundleError(f"{path}: has no output {missing[0]!r} (outputs: {sorted(outputs)[:3]})")
        for kind, got, wanted in (("input", inputs, self.meta.input_shapes(model)), ("output", outputs, wanted_out)):
            for name, want in wanted.items():
                shape = list(got[name])
                ok = len(shape) == len(want) and all(
                    w is None or (isinstance(s, int) and s == w) for s, w in zip(shape, want))
                if not ok:
                    shown = "[" + ",".join(str(s) if isinstance(s, int) else "?" for s in shape) + "]"
                    raise BundleError(f"{path}: {kind} {name} is {shown}, meta.json implies {_shape_text(want)}")


def read_noise_npz(path: Path, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """An .npz of float arrays with exactly these names and shapes, as float32. Each member's
    .npy header is read and checked against `shapes` before its data is, so a header claiming
    10^10 elements costs nothing; pickled (object) arrays are refused."""
    from numpy.lib import format as npy

    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            members = {m.filename.removesuffix(".npy"): m for m in zf.infolist()}
            missing = [n for n in shapes if n not in members]
            if missing:
                raise BundleError(f"{path}: no array {missing[0]} (it holds {sorted(members)[:4]})")
            extra = sorted(set(members) - set(shapes))
            if extra:
                raise BundleError(f"{path}: unexpected array {extra[0]!r} (meta.json implies {len(shapes)} arrays)")
            for name, shape in shapes.items():
                with zf.open(members[name]) as f:
                    version = npy.read_magic(f)
                    if version == (1, 0):
                        hshape, fortran, dtype = npy.read_array_header_1_0(f)
                    elif version == (2, 0):
                        hshape, fortran, dtype = npy.read_array_header_2_0(f)
                    else:
                        raise BundleError(f"{path}: {name} has .npy format version {version}")
                    if tuple(hshape) != tuple(shape):
                        raise BundleError(f"{path}: {name} is {list(hshape)}, meta.json implies {list(shape)}")
                    if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
                        raise BundleError(f"{path}: {name} has dtype {dtype}, not a float")
                    nbytes = math.prod(shape) * dtype.itemsize
                    data = f.read(nbytes)
                    if len(data) != nbytes:
                        raise BundleError(f"{path}: {name} is truncated ({len(data)} of {nbytes} bytes)")
                    order = "F" if fortran else "C"
                    a = np.frombuffer(data, dtype=dtype).reshape(shape, order=order).astype(np.float32)
                    if not np.isfinite(a).all():
                        raise BundleError(f"{path}: {name} holds NaN or inf")
                    arrays[name] = np.ascontiguousarray(a)
    except BundleError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError, NotImplementedError) as e:
        # read_magic / read_array_header raise ValueError on a malformed header; zipfile raises
        # BadZipFile (or a CRC failure as BadZipFile) on damage.
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BundleError(f"{path}: not a readable .npz of noise images ({text})") from None
    return arrays


def open_bundle(path: str | Path | Bundle) -> Bundle:
    return path if isinstance(path, Bundle) else Bundle(path)


def verify_bundle(path: str | Path, log: Callable[[str], None] | None = None) -> Bundle:
    """The full check behind `stylegan verify`: meta.json, every recorded file's size and
    SHA-256, the noise images, every graph loaded by onnxruntime (CPU) with its inputs and outputs
    against meta.json, and one image through the FP32 graphs that must come out finite."""
    from .backends.onnxruntime import OnnxRuntimeBackend, SessionSettings

    log = log or (lambda msg: None)
    t0 = time.perf_counter()
    bundle = Bundle(path, verify=False)
    names = bundle.verify_files(hashes=True)
    log(f"meta.json: format version {bundle.meta.format_version}, {bundle.meta.resolution} px; "
        f"SHA-256 of {', '.join(names)} match ({time.perf_counter() - t0:.2f}s)")
    const = bundle.noise_const()
    if const:
        log(f"{NOISE_FILE}: {len(const)} noise images of the shapes meta.json implies")
    settings = SessionSettings(cache_optimized=False)
    sessions: dict[str, OnnxRuntimeBackend] = {}
    try:
        for model in MODELS:
            for precision in bundle.precisions(model):
                p = bundle.onnx_path(model, precision)
                backend = OnnxRuntimeBackend(p, precision=precision, device="cpu", settings=settings)
                bundle.check_graph(model, backend.input_shapes, backend.output_shapes, p)
                if precision == "fp32":
                    sessions[model] = backend
                else:
                    backend.close()
                log(f"{p.name}: loads in onnxruntime; inputs and outputs match meta.json")
        m = bundle.meta
        feeds_m = {LATENT_INPUT: np.random.RandomState(0).randn(1, m.z_dim).astype(np.float32)}
        if m.label_size:  # the first class
            feeds_m[LABEL_INPUT] = np.eye(1, m.label_size, dtype=np.float32)
        w = sessions["mapping"].run(feeds_m)["w"]
        feeds = {n: w for n in m.w_inputs}
        feeds.update({n: const[n] for n in m.noise_inputs})
        image = sessions["synthesis"].run(feeds)["image"]
        for name, out in (("mapping.onnx", w), ("synthesis.onnx", image)):
            if not np.isfinite(out).all():
                raise BundleError(f"{bundle.path / name}: gives NaN or inf for seed 0 (corrupt weights?)")
        log(f"seed 0 through the FP32 graphs: finite image {list(image.shape)}")
    finally:
        for backend in sessions.values():
            backend.close()
    return bundle
