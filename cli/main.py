"""The `stylegan` command: one Typer app, one subcommand per job.

Each subcommand lives in its own module and imports its stage lazily, so `stylegan generate`
on a bundle works on a machine without PyTorch.
"""

from __future__ import annotations

import typer

from .export_cmd import export
from .generate_cmd import generate, mix, noise_cmd, truncation
from .info_cmd import info

app = typer.Typer(
    name="stylegan",
    help="StyleGAN for the edge: train, export to ONNX/TensorRT, generate, benchmark.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

app.command()(info)
app.command()(generate)
app.command()(mix)
app.command("noise")(noise_cmd)
app.command()(truncation)
app.command()(export)


def _register_optional() -> None:
    """Commands whose modules are written per stage; each is a plain function."""
    import importlib

    for module, name, command in (
        ("train_cmd", "train", "train"),
        ("convert_cmd", "convert", "convert"),
        ("calibrate_cmd", "calibrate", "calibrate"),
        ("calibrate_cmd", "fidelity", "fidelity"),
        ("bench_cmd", "bench", "bench"),
        ("demo_cmd", "demo", "demo"),
    ):
        try:
            mod = importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.{module}":
                raise
            continue
        app.command(command)(getattr(mod, name))


_register_optional()

if __name__ == "__main__":  # `torchrun -m stylegan_edge.cli.main train ...`
    app()
