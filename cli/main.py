"""The `stylegan` command: one Typer app, one subcommand per job.

Each subcommand lives in its own module and imports its stage lazily, so `stylegan generate`
on a bundle works on a machine without PyTorch.
"""

from __future__ import annotations

import typer

from .bench_cmd import bench
from .calibrate_cmd import calibrate, fidelity
from .convert_cmd import convert
from .demo_cmd import demo
from .edit_cmd import edit
from .export_cmd import export
from .generate_cmd import generate, mix, noise_cmd, truncation
from .info_cmd import info
from .metrics_cmd import metrics
from .project_cmd import project
from .table1_cmd import table1
from .train_cmd import train
from .verify_cmd import verify
from .video_cmd import video

app = typer.Typer(
    name="stylegan",
    help="StyleGAN for the edge: train, export to ONNX/TensorRT, generate, benchmark.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

for command in (info, train, convert, export, calibrate, fidelity, generate, mix, truncation, bench, demo, verify,
                video, metrics, project, edit, table1):
    app.command()(command)
app.command("noise")(noise_cmd)

if __name__ == "__main__":  # `torchrun -m stylegan_edge.cli.main train ...`
    app()
