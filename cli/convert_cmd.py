"""`stylegan convert`: a StyleGAN1 pickle in NVIDIA's format (NVlabs/stylegan or NVlabs/stylegan2
dnnlib) -> our safetensors checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import fail, one_line_errors


@one_line_errors
def convert(
    pickle_path: Annotated[
        Path,
        typer.Argument(
            metavar="PICKLE",
            help="A StyleGAN1 pickle in NVIDIA's format (state version 2-4), e.g. karras2019stylegan-ffhq-1024x1024.pkl.",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Checkpoint to write (default: the pickle's name with .safetensors)."),
    ] = None,
) -> None:
    """Convert a StyleGAN1 network in NVIDIA's pickle format to a stylegan-edge checkpoint.

    The pickle is read as data: nothing in it is run, its embedded source is read as text (edited defaults and
    fused thresholds are used, an edited operation is refused). Gs becomes the generator used for images; G and D
    come along. Class-conditional networks keep their labels, mid-growth snapshots their lod.
    """
    # Imported here so that `stylegan` starts without PyTorch.
    from stylegan_edge.training.official import OfficialPickleError, import_official, save_imported

    out = out if out is not None else Path(pickle_path.with_suffix(".safetensors").name)
    try:
        imported = import_official(pickle_path)
    except OfficialPickleError as e:
        raise fail(str(e)) from None
    try:
        save_imported(imported, out)
    except OSError as e:  # a full disk or read-only folder: one line naming the file
        if isinstance(e, FileNotFoundError | PermissionError):
            raise
        raise fail(f"{e.filename or out}: cannot write ({e.strerror or e})") from None
    typer.echo(imported.summary(out))
