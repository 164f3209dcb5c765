"""`stylegan verify BUNDLE`: the full integrity check of a bundle.

Opening a bundle already checks meta.json, each recorded file's size and SHA-256, and the graphs'
inputs against meta.json; this also loads every graph (reduced precisions included) and runs one
image through the FP32 ones, so a copied or downloaded bundle can be checked before deployment.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .common import one_line_errors


@one_line_errors
def verify(
    bundle: Annotated[str, typer.Argument(help="A bundle directory (NAME.sgbundle).")],
) -> None:
    """Check a bundle completely: hashes, noise images, every graph against meta.json, one image."""
    from stylegan_edge.runtime.bundle import verify_bundle

    b = verify_bundle(bundle, log=typer.echo)
    typer.echo(f"{b.path}: ok")
