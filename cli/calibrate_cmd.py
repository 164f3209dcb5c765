"""`stylegan calibrate` (calibration data for a bundle) and `stylegan fidelity` (every precision
of a bundle against PyTorch or the FP32 ONNX: errors, a PNG grid, JSON, speed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stylegan_edge.calibration import errors as _errors  # noqa: F401 - imported so one_line_errors knows CalibrationError
from stylegan_edge.runtime.latents import parse_seeds

from .common import one_line_errors
from .generate_cmd import NOISE_MODES, choice_option, float_option, int_option, seed_option, seeds_option


@one_line_errors
def calibrate(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    samples: Annotated[int, typer.Option(help="Calibration samples to draw.", callback=int_option(1, 1_000_000))] = 64,
    out: Annotated[Path | None, typer.Option(help="The .npz to write (default: BUNDLE/calib.npz, which `stylegan-export BUNDLE --fp16 --int8` then uses).")] = None,
    psi: Annotated[float | None, typer.Option(help="Truncation psi you deploy with (default: the bundle's).", callback=float_option(-16.0, 16.0))] = None,
    cutoff: Annotated[int | None, typer.Option(help="Truncate only the first N style layers (default: the bundle's).", callback=int_option(0))] = None,
    mixing: Annotated[float, typer.Option(help="Probability of style mixing per sample (switch to a second latent at a random layer).", callback=float_option(0.0, 1.0))] = 0.9,
    noise: Annotated[str, typer.Option(help="Noise mode you deploy with: const, random or none.", callback=choice_option(NOISE_MODES))] = "const",
    seed: Annotated[int, typer.Option(help="Seed of the draw (same seed, same data).", callback=seed_option)] = 0,
) -> None:
    """Draw calibration data from the model's own latent distribution (no dataset needed)."""
    from stylegan_edge.calibration.data import ORIGIN_CLI, CalibrationSettings, make_calibration_data
    from stylegan_edge.runtime.bundle import CALIB_FILE

    settings = CalibrationSettings(samples=samples, psi=psi, cutoff=cutoff, mixing=mixing, noise=noise, seed=seed)
    data = make_calibration_data(bundle, settings)
    data.settings["origin"] = ORIGIN_CLI
    path = data.save(out or Path(bundle) / CALIB_FILE)
    s = data.settings
    typer.echo(f"{path}: {len(data)} samples, psi {s['psi']}, cutoff {s['cutoff']}, {s['mixed_samples']} mixed "
               f"(p={s['mixing']}), noise {s['noise']}, seed {s['seed']}")


@one_line_errors
def fidelity(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory (every precision it holds is measured).")],
    seeds: Annotated[str, typer.Option(help="Seeds, e.g. 0-63.", callback=seeds_option)] = "0-63",
    out: Annotated[Path, typer.Option(help="Folder for fidelity.json and fidelity_grid.png.")] = Path("fidelity"),
    reference: Annotated[Path | None, typer.Option(help="The PyTorch checkpoint the bundle came from (default: compare with the FP32 ONNX).")] = None,
    psi: Annotated[float | None, typer.Option(help="Truncation psi (default: the bundle's).", callback=float_option(-16.0, 16.0))] = None,
    noise: Annotated[str, typer.Option(help="const, random or none.", callback=choice_option(NOISE_MODES))] = "const",
    grid_seeds: Annotated[int, typer.Option(help="Seeds shown in the grid.", callback=int_option(1, 1024))] = 4,
    speed_batch: Annotated[int, typer.Option(help="Images per call when timing.", callback=int_option(1, 4096))] = 4,
    threads: Annotated[int, typer.Option(help="onnxruntime intra-op threads when timing (0: its default).", callback=int_option(0, 1024))] = 1,
    speed_seconds: Annotated[float, typer.Option(help="Time budget for the side-by-side timing (at least 10 rounds).", callback=float_option(0.0, 86400.0))] = 20.0,
) -> None:
    """Max error, PSNR and SSIM of FP32/FP16/INT8 against PyTorch FP32, a comparison grid, and speed."""
    from stylegan_edge.calibration.fidelity import FidelitySettings, fidelity_report
    from stylegan_edge.calibration.speed import SpeedSettings

    settings = FidelitySettings(seeds=tuple(parse_seeds(seeds)), psi=psi, noise=noise, grid_seeds=grid_seeds,
                                speed=SpeedSettings(batch=speed_batch, threads=threads or None, seconds=speed_seconds))
    report = fidelity_report(bundle, out, settings, reference=reference, log=lambda m: typer.echo(f"  {m}", err=True))
    typer.echo(f"reference: {report.reference_kind} ({report.reference}); {len(settings.seeds)} seeds")
    for line in report.table():
        typer.echo(line)
    for note in report.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"wrote {report.files['json']} and {report.files['grid']}")
