"""The ONNX bundle: a directory that export writes and every backend reads.

`meta.json` describes the model (sizes, per-layer resolutions, w_avg, truncation defaults) so
the runtime needs nothing else; this module reads and checks it, with one-line errors that
name the offending file. No torch here: a Jetson runs bundles with numpy and onnxruntime or
TensorRT alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BUNDLE_FORMAT = "stylegan-edge-bundle"
BUNDLE_FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
MODELS = ("mapping", "synthesis")
REQUIRED_FILES = ("meta.json", "mapping.onnx", "synthesis.onnx")


class BundleError(ValueError):
    """A bundle that cannot be used; the message is one line naming the file."""


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


def engine_filename(model: str, precision: str) -> str:
    return f"{model}.{precision}.engine"


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
    def largest_feature_map_bytes(self) -> int:
        """FP32 bytes of the synthesis network's largest feature map, per image."""
        return 4 * max(c * r * r for c, r in zip(self.layer_channels, self.layer_resolutions))

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: Path) -> BundleMeta:
        fmt, version = d.get("format"), d.get("format_version")
        if fmt != BUNDLE_FORMAT:
            raise BundleError(f"{path}: not a stylegan-edge bundle (format is {fmt!r})")
        if version != BUNDLE_FORMAT_VERSION:
            raise BundleError(
                f"{path}: bundle format version {version}; this runtime reads version {BUNDLE_FORMAT_VERSION} "
                "(re-export it with this version's stylegan-export)"
            )
        try:
            layers = d["layers"]
            trunc = d["truncation"]
            meta = cls(
                format_version=int(version),
                resolution=int(d["resolution"]),
                img_channels=int(d["img_channels"]),
                z_dim=int(d["z_dim"]),
                w_dim=int(d["w_dim"]),
                num_layers=int(d["num_layers"]),
                layer_resolutions=tuple(int(x["resolution"]) for x in layers),
                layer_channels=tuple(int(x["channels"]) for x in layers),
                use_noise=bool(d["use_noise"]),
                w_avg=np.asarray(d["w_avg"], dtype=np.float32),
                truncation_psi=float(trunc["psi"]),
                truncation_cutoff=None if trunc["cutoff"] is None else int(trunc["cutoff"]),
                opset=int(d["opset"]),
                raw=d,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"{path}: missing or malformed field {e}") from None
        if len(meta.layer_resolutions) != meta.num_layers or meta.w_avg.shape != (meta.w_dim,):
            raise BundleError(f"{path}: layers or w_avg disagree with num_layers/w_dim")
        return meta


class Bundle:
    """An opened bundle directory. Cheap: reads meta.json and checks files exist."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise BundleError(f"{self.path}: no such bundle directory")
        for name in REQUIRED_FILES:
            if not (self.path / name).is_file():
                raise BundleError(f"{self.path / name}: missing from the bundle (re-export it)")
        meta_path = self.path / "meta.json"
        try:
            raw = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise BundleError(f"{meta_path}: unreadable ({e})") from None
        self.meta = BundleMeta.from_dict(raw, meta_path)

    def __repr__(self) -> str:
        m = self.meta
        return f"Bundle({str(self.path)!r}, {m.resolution}px, {m.num_layers} style layers)"

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
        path = self.file("noise_const.npz")
        with np.load(path) as data:
            arrays = {k: data[k].astype(np.float32) for k in data.files}
        for i, name in enumerate(self.meta.noise_inputs):
            r = self.meta.layer_resolutions[i]
            if name not in arrays or arrays[name].shape != (1, 1, r, r):
                raise BundleError(f"{path}: {name} missing or not of shape [1, 1, {r}, {r}]")
        return arrays

    def check_inputs(self, model: str, names: list[str], path: Path) -> None:
        """Raise if an ONNX graph's inputs disagree with meta.json."""
        expected = ["z"] if model == "mapping" else self.meta.synthesis_inputs
        if sorted(names) != sorted(expected):
            missing = sorted(set(expected) - set(names))
            extra = sorted(set(names) - set(expected))
            raise BundleError(
                f"{path}: inputs disagree with meta.json (missing {missing[:3]}, unexpected {extra[:3]})"
            )


def open_bundle(path: str | Path | Bundle) -> Bundle:
    return path if isinstance(path, Bundle) else Bundle(path)
