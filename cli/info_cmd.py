"""`stylegan info`: a model's configuration, parameter counts and arithmetic cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from stylegan_edge.runtime.generator import class_list

from .common import is_bundle, one_line_errors


def describe_model(target: str) -> dict[str, Any]:
    from stylegan_edge.training.checkpoint import checkpoint_config, read_checkpoint
    from stylegan_edge.training.config import PRESETS, get_preset
    from stylegan_edge.training.flops import model_gflops
    from stylegan_edge.training.networks import Discriminator, Generator, count_parameters

    if Path(target).is_file():
        _, meta = read_checkpoint(target)
        cfg, source = checkpoint_config(meta, target), {"checkpoint": target, "kind": meta.get("kind")}
    elif target in PRESETS or not Path(target).exists():
        cfg, source = get_preset(target), {"preset": target}
    else:
        raise FileNotFoundError(2, "not a preset, checkpoint or bundle", target)
    G, D = Generator(cfg), Discriminator(cfg)
    params = {
        "mapping": count_parameters(G.mapping),
        "synthesis": count_parameters(G.synthesis),
        "generator": count_parameters(G),
        "discriminator": count_parameters(D),
    }
    params["total"] = params["generator"] + params["discriminator"]
    data = {
        **source,
        "config": cfg.to_dict(),
        "num_style_layers": cfg.num_layers,
        "layer_channels": [cfg.layer_channels(i) for i in range(cfg.num_layers)],
        "parameters": params,
        "gflop_per_image": model_gflops(cfg),
    }
    if cfg.label_size:  # the same two fields, and the same default names, as a bundle's meta.json
        data["label_size"] = cfg.label_size
        data["label_names"] = list(cfg.label_names) or [str(i) for i in range(cfg.label_size)]
    return data


def describe_bundle(path: str) -> dict[str, Any]:
    from stylegan_edge.runtime.bundle import open_bundle

    b = open_bundle(path)
    raw = dict(b.meta.raw)
    raw.pop("w_avg", None)
    if b.meta.label_size:  # meta.json may leave the names out; the reader fills in "0".."N-1"
        raw["label_names"] = list(b.meta.label_names)
    raw["files"] = sorted(p.name for p in b.path.iterdir())
    return raw


@one_line_errors
def info(
    target: Annotated[str, typer.Argument(help="A preset name (paper, edge256, edge512, faces64, tiny), a checkpoint or a bundle.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a summary.")] = False,
) -> None:
    """Show a model's configuration, parameter counts (mapping, synthesis, discriminator, total) and GFLOP per image."""
    data = describe_bundle(target) if is_bundle(target) else describe_model(target)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    if "parameters" in data:
        cfg, p = data["config"], data["parameters"]
        typer.echo(f"{target}: {cfg['resolution']} px, z {cfg['z_dim']}, w {cfg['w_dim']}, {data['num_style_layers']} style layers")
        typer.echo(f"  channels per layer: {data['layer_channels']}")
        for k in ("mapping", "synthesis", "generator", "discriminator", "total"):
            typer.echo(f"  {k:<14} {p[k]:>12,} parameters")
        typer.echo(f"  {data['gflop_per_image']['total']:.2f} GFLOP per image")
    else:
        typer.echo(f"{target}: bundle v{data['format_version']}, {data['resolution']} px, files: {', '.join(data['files'])}")
    if data.get("label_size"):
        typer.echo(f"  class-conditional, {data['label_size']} classes (--class N or NAME): "
                   f"{class_list(data['label_names'], indices=True)}")
