"""`stylegan edit MODEL --seed 3 --direction hair_dark --strengths -3,0,3 --out FILE.png`.

Not registered here: cli/main.py adds it with `app.command()(edit)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stylegan_edge.runtime.bundle import BundleError
from stylegan_edge.runtime.latents import parse_floats, parse_seeds

from .common import is_bundle, one_line_errors, open_model, resolve_class
from .generate_cmd import ClassOpt


@one_line_errors
def edit(
    model: Annotated[str, typer.Argument(help="A bundle directory or a checkpoint (PyTorch).")],
    direction: Annotated[str, typer.Option(help="Direction name (see directions.npz).")],
    seed: Annotated[str, typer.Option(help="Seeds (one row each), e.g. 3 or 0-3.")] = "0",
    strengths: Annotated[str, typer.Option(help="Steps along the direction (columns).")] = "-3,-1.5,0,1.5,3",
    layers: Annotated[str, typer.Option(help="Style layers moved: coarse, middle, fine, A-B.")] = "coarse",
    directions: Annotated[Path | None, typer.Option(
        help="directions.npz (default: the bundle's own).")] = None,
    psi: Annotated[float, typer.Option(help="Truncation psi before the edit.")] = 1.0,
    out: Annotated[Path, typer.Option(help="PNG file.")] = Path("edit.png"),
    backend: Annotated[str, typer.Option(help="auto, onnxruntime, tensorrt, or torch (checkpoints).")] = "auto",
    class_: ClassOpt = None,
) -> None:
    """A strip per seed: the face moved along an attribute direction in W."""
    import numpy as np

    from stylegan_edge.runtime.directions import edit as edit_ws
    from stylegan_edge.runtime.directions import load_directions
    from stylegan_edge.runtime.images import make_grid, save_png

    steps = parse_floats(strengths)
    seeds = parse_seeds(seed)
    if not steps or not seeds:
        raise BundleError("--strengths and --seed must name at least one value each")
    source = directions if directions is not None else (Path(model) if is_bundle(model) else None)
    if source is None:
        raise BundleError(f"{model} is a checkpoint: give --directions FILE.npz "
                          "(from `stylegan metrics CHECKPOINT --ls --directions-out FILE.npz`)")
    vector = load_directions(source)[direction]
    g = open_model(model, backend)
    if vector.shape[0] != g.meta.w_dim:
        raise BundleError(f"direction {direction!r} is {vector.shape[0]}-d but {model} has w_dim {g.meta.w_dim}")
    label = resolve_class(g, class_, model)
    z = g.z_from_seeds(seeds)
    # A conditional model maps every seed with the one class asked for.
    w = g.map(z, g.labels_to_c(len(z), label=label)) if label is not None else g.map(z)
    ws = g.truncate(g.broadcast(w), psi=psi)
    rows = [edit_ws(ws, vector, s, layers, g.meta.layer_resolutions) for s in steps]
    # [S, B, L, D] -> one row per seed, one column per strength.
    batch = np.stack(rows, axis=1).reshape(-1, *ws.shape[1:])
    images = g.synthesize(batch)
    save_png(make_grid(images, cols=len(steps)), out)
    typer.echo(f"wrote {out}")
