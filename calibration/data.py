"""Calibration data: synthesis inputs drawn from the model's own latent distribution.

No dataset is needed: z ~ N(0, I) goes through the bundle's mapping network (FP32 onnxruntime),
then the truncation and style mixing the user deploys with, and the chosen noise mode, exactly
as `runtime.Generator` would feed the synthesis network. Everything is drawn from one seeded
generator, so the same settings give the same arrays on every machine.

A class-conditional bundle's mapping also takes labels: each half of the latents (the styles and
their mixing partners) gets the classes in equal shares (counts differ by at most one), shuffled,
so every class is calibrated for however few samples. They come from a generator of their own
(derived from the same seed), so an unconditional bundle's data for a seed is what it was before
labels, and a conditional one's z, crossovers and noise are drawn exactly as an unconditional one's.

One source for every consumer: the FP16 analysis iterates `CalibrationData.batches`, and
onnxruntime's quantizer reads the same arrays through `SynthesisDataReader`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from stylegan_edge.runtime.backends import BaseBackend, open_backend
from stylegan_edge.runtime.bundle import Bundle, onnx_filename, open_bundle
from stylegan_edge.runtime.files import atomic_path, sha256_file
from stylegan_edge.runtime.generator import NOISE_MODES, Generator

from .errors import CalibrationError

CALIB_FORMAT = "stylegan-edge-calibration"
CALIB_VERSION = 1
ORIGIN_CLI = "stylegan calibrate"  # settings["origin"] of files the user drew on purpose


@dataclass(frozen=True)
class CalibrationSettings:
    """How calibration latents are drawn; psi/cutoff None mean the bundle's defaults.

    mixing is the probability that a sample switches from one latent's styles to a second
    latent's at a random layer (as in training's style-mixing regularisation), so calibration
    sees the mixed styles users can ask for.
    """

    samples: int = 64
    psi: float | None = None
    cutoff: int | None = None
    mixing: float = 0.9
    noise: str = "const"
    seed: int = 0

    def check(self, num_layers: int) -> None:
        if self.samples < 1:
            raise CalibrationError(f"--samples must be at least 1, got {self.samples}")
        if not 0.0 <= self.mixing <= 1.0:
            raise CalibrationError(f"--mixing is a probability in [0, 1], got {self.mixing}")
        if self.noise not in NOISE_MODES:
            raise CalibrationError(f"--noise must be one of {', '.join(NOISE_MODES)}, got {self.noise!r}")
        if self.cutoff is not None and not 0 <= self.cutoff <= num_layers:
            raise CalibrationError(f"--cutoff must be in [0, {num_layers}], got {self.cutoff}")


@dataclass(frozen=True)
class CalibrationData:
    """Synthesis inputs for `len(self)` samples.

    ws: W+ styles [N, L, w_dim]. noise: one array per noise input, [N, 1, H, W], or [1, 1, H, W]
    when every sample shares it (const and none modes), broadcast when feeds are made.
    settings: the resolved settings (the bundle's psi and cutoff filled in), the settings as
    requested, and the SHA-256 of the mapping network the styles came from.
    """

    ws: np.ndarray
    noise: dict[str, np.ndarray]
    w_inputs: tuple[str, ...]
    settings: dict[str, Any]

    def __len__(self) -> int:
        return int(self.ws.shape[0])

    @property
    def input_names(self) -> list[str]:
        return [*self.w_inputs, *self.noise]

    def feeds(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Synthesis feeds (float32, contiguous) for samples [start, stop)."""
        stop = len(self) if stop is None else min(stop, len(self))
        if not 0 <= start < stop:
            raise CalibrationError(f"empty sample range [{start}, {stop}) of {len(self)} calibration samples")
        out = {name: np.ascontiguousarray(self.ws[start:stop, i]) for i, name in enumerate(self.w_inputs)}
        for name, arr in self.noise.items():
            part = arr[start:stop] if arr.shape[0] > 1 else np.broadcast_to(arr, (stop - start, *arr.shape[1:]))
            out[name] = np.ascontiguousarray(part, dtype=np.float32)
        return out

    def batches(self, batch_size: int = 8, limit: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        n = len(self) if limit is None else min(limit, len(self))
        for start in range(0, n, batch_size):
            yield self.feeds(start, min(start + batch_size, n))

    def subset(self, start: int, stop: int) -> CalibrationData:
        noise = {k: (v[start:stop] if v.shape[0] > 1 else v) for k, v in self.noise.items()}
        return CalibrationData(self.ws[start:stop], noise, self.w_inputs, dict(self.settings))

    # --- files -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write an .npz (arrays plus the settings as JSON); written beside and renamed into place."""
        path = Path(path)
        header = {"format": CALIB_FORMAT, "version": CALIB_VERSION, "w_inputs": list(self.w_inputs),
                  "settings": self.settings}
        try:
            with atomic_path(path, suffix=".npz") as tmp:
                np.savez(tmp, __header__=np.array(json.dumps(header)), ws=self.ws, **self.noise)
        except OSError as e:
            raise CalibrationError(f"{path}: cannot write calibration data ({e.strerror or e})") from None
        return path

    @classmethod
    def load(cls, path: str | Path) -> CalibrationData:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["__header__"]))
                arrays = {k: z[k] for k in z.files if k != "__header__"}
        except (OSError, KeyError, ValueError) as e:
            raise CalibrationError(f"{path}: not a calibration file ({e})") from None
        if header.get("format") != CALIB_FORMAT or header.get("version") != CALIB_VERSION:
            raise CalibrationError(f"{path}: not a stylegan-edge calibration file of version {CALIB_VERSION}")
        ws = arrays.pop("ws")
        return cls(ws.astype(np.float32), {k: v.astype(np.float32) for k, v in arrays.items()},
                   tuple(header["w_inputs"]), header["settings"])


def mixing_crossovers(rng: np.random.Generator, n: int, num_layers: int, prob: float) -> np.ndarray:
    """Per sample, the first layer that takes the second latent's style (num_layers: none)."""
    cut = rng.integers(1, num_layers, size=n) if num_layers > 1 else np.ones(n, np.int64)
    mixed = rng.random(n) < prob
    return np.where(mixed, cut, num_layers)


def balanced_classes(rng: np.random.Generator, n: int, label_size: int) -> np.ndarray | None:
    """Class indices [2n] for the styles (first n) and their mixing partners (last n): in each half
    every class in equal shares (counts differ by at most one), in random order; the classes that
    get the extra sample when label_size does not divide n are drawn at random too, so none is
    favoured. None for an unconditional model (label_size 0)."""
    if not label_size:
        return None
    halves = []
    for _ in range(2):
        order = rng.permutation(label_size)  # which classes come first in the remainder
        halves.append(rng.permutation(order[np.arange(n) % label_size]))
    return np.concatenate(halves)


def make_calibration_data(
    bundle: str | Path | Bundle, settings: CalibrationSettings | None = None, generator: Generator | None = None,
) -> CalibrationData:
    """Draw `settings.samples` synthesis inputs from the bundle's mapping network.

    generator: a runtime Generator to map with (default: the bundle's FP32 mapping on the
    onnxruntime CPU provider); only its mapping network, w_avg and constant noise are used.
    """
    settings = settings or CalibrationSettings()
    b = open_bundle(bundle)
    meta = b.meta
    settings.check(meta.num_layers)
    own = generator is None
    g = generator or _mapping_generator(b)
    try:
        psi = meta.truncation_psi if settings.psi is None else float(settings.psi)
        cutoff = meta.truncation_cutoff if settings.cutoff is None else int(settings.cutoff)
        n, L = settings.samples, meta.num_layers
        rng = np.random.default_rng(settings.seed)
        z = rng.standard_normal((2 * n, meta.z_dim), dtype=np.float32)
        # A generator of its own for the labels: the draws below stay those of an unconditional bundle.
        classes = balanced_classes(np.random.default_rng([settings.seed, 1]), n, meta.label_size)
        w = g.map(z) if classes is None else g.map(z, g.labels_to_c(2 * n, labels=classes.tolist()))
        ws_a, ws_b = g.broadcast(w[:n]), g.broadcast(w[n:])
        cut = mixing_crossovers(rng, n, L, settings.mixing)
        take_b = np.arange(L)[None, :] >= cut[:, None]
        ws = np.where(take_b[:, :, None], ws_b, ws_a)
        ws = g.truncate(ws, psi, L if cutoff is None else cutoff)
        noise = _noise_arrays(g, n, settings.noise, rng)
    finally:
        if own:
            g.close()
    resolved = {**asdict(settings), "psi": psi, "cutoff": cutoff, "mixed_samples": int((cut < L).sum()),
                "requested": asdict(settings), "mapping_sha256": sha256_file(b.path / onnx_filename("mapping"))}
    if classes is not None:
        resolved["label_counts"] = np.bincount(classes[:n], minlength=meta.label_size).tolist()
    return CalibrationData(np.ascontiguousarray(ws, dtype=np.float32), noise, tuple(meta.w_inputs), resolved)


def _mapping_generator(b: Bundle) -> Generator:
    """A runtime Generator with the bundle's FP32 mapping on the CPU; drawing styles needs no
    synthesis network, so none is opened."""
    mapping = open_backend("onnxruntime", b, "mapping", "fp32", device="cpu")
    return Generator.from_backends(b.meta, mapping, BaseBackend(), b.noise_const(), str(b.path))


def _noise_arrays(g: Generator, n: int, mode: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    meta = g.meta
    if not meta.use_noise:
        return {}
    if mode == "random":
        return g.noise(n, "random", rng)
    # const and none are the same for every sample: keep one copy, broadcast on use.
    return {k: np.ascontiguousarray(v[:1]) for k, v in g.noise(1, mode).items()}


class SynthesisDataReader(CalibrationDataReader):
    """onnxruntime's calibration protocol over `CalibrationData`: one feed dict per batch.

    input_names: restrict (and check) the feeds to a graph's inputs, e.g. after a pre-processing
    step that dropped an unused input.
    """

    def __init__(self, data: CalibrationData, batch_size: int = 8, input_names: list[str] | None = None) -> None:
        if batch_size < 1:
            raise CalibrationError(f"calibration batch size must be at least 1, got {batch_size}")
        self.data = data
        self.batch_size = batch_size
        missing = sorted(set(input_names or []) - set(data.input_names))
        if missing:
            raise CalibrationError(f"calibration data lacks graph inputs {missing[:3]} (made for another bundle?)")
        self.input_names = list(input_names) if input_names is not None else data.input_names
        self._start, self._stop = 0, len(data)
        self._iter: Iterator[dict[str, np.ndarray]] | None = None

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for s in range(self._start, self._stop, self.batch_size):
            feeds = self.data.feeds(s, min(s + self.batch_size, self._stop))
            yield {k: feeds[k] for k in self.input_names}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = self._batches()
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None

    def set_range(self, start_index: int, end_index: int) -> None:
        """Strided calibration (onnxruntime's CalibStridedMinMax) counts in batches."""
        self._start = start_index * self.batch_size
        self._stop = min(end_index * self.batch_size, len(self.data))
        self._iter = None
