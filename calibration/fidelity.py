"""Fidelity report: every precision of a bundle against a reference, on the same styles and noise.

The reference is the PyTorch FP32 model (a checkpoint, through `runtime.backends.torch`), or, when
none is given, the bundle's FP32 ONNX (the report says which). Every precision gets the very same
W+ styles (mapped once by the reference) and the same noise arrays, so only the synthesis network
differs. Precisions:

- fp32: `synthesis.onnx` on onnxruntime's CPU provider;
- fp16: `synthesis.fp16.onnx` by emulation (FP16 storage, float32 arithmetic; see
  `fp16_emulation`), the figure that predicts a GPU; and `fp16-ort-cpu`, the same file as the CPU
  provider runs it (it computes FP16 nodes in float32 and does not round activations, so this
  only shows the effect of FP16 weights);
- int8: `synthesis.int8.onnx` on onnxruntime's CPU provider (integer kernels).

Per image: max abs error, PSNR, SSIM; their mean and worst; a PNG grid (reference, then each
precision and its amplified difference) and a JSON file with every figure; and the onnxruntime
CPU speed of each file, measured side by side.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stylegan_edge.runtime.backends.onnxruntime import OnnxRuntimeBackend, SessionSettings
from stylegan_edge.runtime.bundle import FP16_FILE, Bundle, onnx_filename, open_bundle
from stylegan_edge.runtime.generator import NOISE_MODES, Generator
from stylegan_edge.runtime.images import make_grid, save_png, to_uint8, write_text_output

from . import metrics
from .errors import CalibrationError
from .fp16_emulation import emulate_fp16
from .graph import load_model, save_model
from .speed import SpeedSettings, op_profile, time_models

FP16_EMULATED = "fp16"
FP16_ORT = "fp16-ort-cpu"


@dataclass(frozen=True)
class FidelitySettings:
    seeds: tuple[int, ...] = tuple(range(64))
    psi: float | None = None
    noise: str = "const"
    noise_seed: int = 0
    batch_size: int = 8
    grid_seeds: int = 4
    diff_gain: float = 10.0  # the grid shows |difference| x this, per pixel averaged over channels
    speed: SpeedSettings = field(default_factory=SpeedSettings)


@dataclass
class PrecisionResult:
    name: str
    description: str
    comparison: metrics.Comparison
    ms_per_image: float | None

    def to_dict(self, seeds: Sequence[int]) -> dict[str, Any]:
        c = self.comparison
        return {
            "description": self.description,
            "summary": {k: round(v, 6) if isinstance(v, float) else v for k, v in c.summary().items()},
            "ms_per_image": None if self.ms_per_image is None else round(self.ms_per_image, 2),
            "per_image": {
                "seed": list(seeds), "psnr_db": [round(float(v), 3) for v in c.psnr_db],
                "ssim": [round(float(v), 6) for v in c.ssim], "max_abs": [round(float(v), 6) for v in c.max_abs],
            },
        }


@dataclass
class FidelityReport:
    bundle: str
    reference: str
    reference_kind: str  # "pytorch" | "onnx-fp32"
    settings: FidelitySettings
    results: list[PrecisionResult]
    speed_fp32_ms: float | None
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    op_profiles: dict[str, dict[str, float]] = field(default_factory=dict)  # file precision -> op -> ms/image
    labels: list[int] | None = None  # a conditional bundle's class per seed (see fidelity_labels)

    def result(self, name: str) -> PrecisionResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        s = self.settings
        return {
            "format": "stylegan-edge-fidelity", "version": 1, "bundle": self.bundle,
            "reference": {"kind": self.reference_kind, "source": self.reference},
            "seeds": list(s.seeds), "psi": s.psi, "noise": s.noise, "noise_seed": s.noise_seed,
            **({"labels": self.labels} if self.labels is not None else {}),
            "metrics": {"images": "float output clipped to [-1, 1], data range 2",
                        "ssim": "Gaussian window sigma 1.5 (11 taps), K1 0.01, K2 0.03, channel mean",
                        "psnr_cap_db": metrics.PSNR_CAP_DB},
            "speed": {"unit": "ms/image, onnxruntime CPU provider, best of rounds, measured side by side",
                      "batch": s.speed.batch, "threads": s.speed.threads, "rounds": s.speed.rounds},
            "precisions": {r.name: r.to_dict(s.seeds) for r in self.results},
            "op_profile_ms_per_image": self.op_profiles,
            "files": self.files, "notes": self.notes,
        }

    def table(self) -> list[str]:
        head = (f"{'precision':<14} {'PSNR mean':>9} {'worst':>7} {'SSIM mean':>9} {'worst':>7} {'max err':>8} "
                f"{'ms/img':>8}")
        lines = [head, "-" * len(head)]
        for r in self.results:
            s = r.comparison.summary()
            ms = "-" if r.ms_per_image is None else f"{r.ms_per_image:.1f}"
            lines.append(f"{r.name:<14} {s['psnr_db_mean']:>9.2f} {s['psnr_db_worst']:>7.2f} {s['ssim_mean']:>9.5f} "
                         f"{s['ssim_worst']:>7.5f} {s['max_abs_worst']:>8.4f} {ms:>8}")
        return lines


def reference_generator(bundle: Bundle, reference: str | Path | None) -> tuple[Generator, str, str]:
    """(generator, kind, description) for a checkpoint (PyTorch) or, without one, the FP32 ONNX."""
    if reference is None:
        return (Generator(bundle, backend="onnxruntime", device="cpu"), "onnx-fp32",
                f"{bundle.path / onnx_filename('synthesis')} (no --reference checkpoint given)")
    path = Path(reference)
    if not path.is_file():
        raise CalibrationError(f"--reference {path}: no such checkpoint file")
    try:
        from stylegan_edge.runtime.backends.torch import torch_generator
    except ImportError as e:
        raise CalibrationError(f"--reference needs PyTorch ({e.name} is missing): pip install '.[train]'") from None
    g = torch_generator(path)
    if g.meta.synthesis_inputs != bundle.meta.synthesis_inputs or g.resolution != bundle.meta.resolution:
        raise CalibrationError(f"--reference {path}: not the model of {bundle.path} (inputs or resolution differ)")
    return g, "pytorch", str(path)


def _ort_generator(bundle: Bundle, synthesis: Path, precision: str) -> Generator:
    settings = SessionSettings()
    mapping = OnnxRuntimeBackend(bundle.onnx_path("mapping"), device="cpu", settings=settings)
    synth = OnnxRuntimeBackend(synthesis, precision=precision, device="cpu", settings=settings)
    bundle.check_inputs("synthesis", synth.input_names, synthesis)
    return Generator.from_backends(bundle.meta, mapping, synth, bundle.noise_const(), str(bundle.path))


def _synthesize(g: Generator, ws: np.ndarray, noise: list[np.ndarray], batch: int) -> np.ndarray:
    out = []
    for i in range(0, len(ws), batch):
        part = [a[i : i + batch] for a in noise]
        out.append(g.synthesize_float(ws[i : i + batch], part if noise else "none"))
    return np.concatenate(out)


def diff_image(images: np.ndarray, reference: np.ndarray, gain: float) -> np.ndarray:
    """|images - reference| averaged over channels, times `gain`, as uint8 grey RGB (NHWC)."""
    x, _ = metrics.finite_clipped(images, reference)
    d = np.abs(x - np.clip(reference, -1, 1)).mean(axis=1) / metrics.DATA_RANGE * gain
    grey = np.clip(np.rint(d * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def fidelity_labels(n: int, label_size: int) -> list[int] | None:
    """A class-conditional bundle's seeds take the classes in turn (the i-th seed class i mod
    label_size), so the comparison covers every class; None for an unconditional bundle."""
    return [i % label_size for i in range(n)] if label_size else None


def fidelity_report(
    bundle: str | Path | Bundle, out_dir: str | Path, settings: FidelitySettings | None = None,
    reference: str | Path | None = None, log: Callable[[str], None] | None = None,
) -> FidelityReport:
    """Compare every precision in the bundle with the reference; write the PNG grid and JSON."""
    settings = settings or FidelitySettings()
    log = log or (lambda msg: None)
    if settings.noise not in NOISE_MODES:
        raise CalibrationError(f"--noise must be one of {', '.join(NOISE_MODES)}, got {settings.noise!r}")
    if not settings.seeds:
        raise CalibrationError("--seeds selects no seeds")
    b = open_bundle(bundle)
    out = Path(out_dir)  # created by the first write (save_png), whose errors name the file
    n = len(settings.seeds)

    t0 = time.perf_counter()
    ref_g, kind, ref_desc = reference_generator(b, reference)
    labels = fidelity_labels(n, b.meta.label_size)
    ws = ref_g.styles(seeds=list(settings.seeds), psi=settings.psi, labels=labels)
    rng = np.random.default_rng(settings.noise_seed)
    noise_dict = ref_g.noise(n, settings.noise, rng) if b.meta.use_noise else {}
    noise = [np.ascontiguousarray(noise_dict[k]) for k in b.meta.noise_inputs]
    ref_images = _synthesize(ref_g, ws, noise, settings.batch_size)
    ref_g.close()
    log(f"reference ({kind}): {n} images in {time.perf_counter() - t0:.1f}s")

    results: list[PrecisionResult] = []
    images: dict[str, np.ndarray] = {}
    speed_files: dict[str, Path] = {}
    notes = [] if kind == "pytorch" else ["no --reference checkpoint: compared against the FP32 ONNX"]
    with tempfile.TemporaryDirectory(prefix="sg-fidelity.") as tmp_name:
        runs: list[tuple[str, str, Path]] = []
        for p in b.precisions("synthesis"):
            path = b.onnx_path("synthesis", p)
            if p == "fp16":
                emulated = save_model(emulate_fp16(load_model(path)), Path(tmp_name) / "fp16_emulated.onnx")
                runs.append((FP16_EMULATED, f"{FP16_FILE} by emulation (FP16 storage, float32 arithmetic)",
                             emulated))
                runs.append((FP16_ORT, f"{FP16_FILE} as onnxruntime's CPU provider runs it (float32 "
                                       "compute, activations not rounded to FP16)", path))
                speed_files["fp16"] = path
            else:
                runs.append((p, f"{path.name} on onnxruntime's CPU provider", path))
                speed_files[p] = path
        for name, desc, path in runs:
            t0 = time.perf_counter()
            g = _ort_generator(b, path, "fp16" if name.startswith("fp16") else name)
            images[name] = _synthesize(g, ws, noise, settings.batch_size)
            g.close()
            results.append(PrecisionResult(name, desc, metrics.compare(images[name], ref_images), None))
            s = results[-1].comparison.summary()
            log(f"{name}: PSNR {s['psnr_db_mean']:.2f} dB (worst {s['psnr_db_worst']:.2f}), SSIM "
                f"{s['ssim_mean']:.5f} in {time.perf_counter() - t0:.1f}s")

        t0 = time.perf_counter()
        k = min(settings.speed.batch, n)
        feeds = {name: np.ascontiguousarray(ws[:k, i]) for i, name in enumerate(b.meta.w_inputs)}
        feeds.update({name: a[:k] for name, a in zip(b.meta.noise_inputs, noise)})
        speed = time_models({p: path for p, path in speed_files.items()}, feeds, settings.speed)
        profiles = {p: op_profile(path, feeds, tmp_name, settings.speed) for p, path in speed_files.items()}
        log(f"speed side by side ({', '.join(speed_files)}) and operator profiles in {time.perf_counter() - t0:.1f}s")
    for r in results:
        r.ms_per_image = speed.get("fp16" if r.name.startswith("fp16") else r.name)

    report = FidelityReport(str(b.path), ref_desc, kind, settings, results, speed.get("fp32"), notes=notes,
                            op_profiles=profiles, labels=labels)
    grid = _grid(ref_images, images, settings)
    report.files["grid"] = str(save_png(grid, out / "fidelity_grid.png"))
    report.files["json"] = str(out / "fidelity.json")
    report.notes.append("grid columns: reference, then each precision and its |difference| x "
                        f"{settings.diff_gain:g}: " + ", ".join(images))
    write_text_output(out / "fidelity.json", json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _grid(ref_images: np.ndarray, images: dict[str, np.ndarray], settings: FidelitySettings) -> np.ndarray:
    k = min(settings.grid_seeds, len(ref_images))
    columns = [to_uint8(ref_images[:k])]
    for imgs in images.values():
        columns += [to_uint8(imgs[:k]), diff_image(imgs[:k], ref_images[:k], settings.diff_gain)]
    cells = np.stack(columns, axis=1).reshape(-1, *columns[0].shape[1:])
    return make_grid(cells, cols=len(columns), pad=2, pad_value=255)
