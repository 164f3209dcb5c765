"""`stylegan metrics MODEL --ppl --ls`: the paper's disentanglement metrics, in Z and in W.

Not registered here: cli/main.py adds it with `app.command()(metrics)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from stylegan_edge.runtime.bundle import BundleError
from stylegan_edge.runtime.images import write_text_output
from stylegan_edge.runtime.latents import parse_floats

from .common import is_bundle, one_line_errors


class MetricsArgumentError(BundleError):
    """A bad option of `stylegan metrics`; one line."""


def _choices(text: str, allowed: tuple[str, ...], option: str) -> list[str]:
    items = [s.strip().lower() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if bad or not items:
        raise MetricsArgumentError(f"{option} takes a comma-separated subset of {','.join(allowed)}, got {text!r}")
    return list(dict.fromkeys(items))


@one_line_errors
def metrics(
    model: Annotated[Path, typer.Argument(help="A checkpoint (.safetensors); the metrics run in PyTorch.")],
    ppl: Annotated[bool, typer.Option("--ppl", help="Perceptual path length (full and end).")] = False,
    ls: Annotated[bool, typer.Option("--ls", help="Linear separability.")] = False,
    space: Annotated[str, typer.Option(help="Latent spaces: z, w or z,w.")] = "z,w",
    sampling: Annotated[str, typer.Option(help="Path-length sampling: full, end or full,end.")] = "full,end",
    samples: Annotated[int, typer.Option(help="Pairs for the path length; generated images for LS.")] = 2000,
    perceptual: Annotated[Path | None, typer.Option(
        help="LPIPS/VGG ONNX file (docs/metrics.md). Without it the path length is a pixel one, not PPL.")] = None,
    perceptual_range: Annotated[str, typer.Option(
        help="Value range the perceptual model takes, lo,hi (LPIPS: -1,1; vgg16_zhang: 0,255).")] = "-1,1",
    directions_out: Annotated[Path | None, typer.Option(
        help="Write the W directions of the LS classifiers here (a bundle folder or directions.npz).")] = None,
    batch: Annotated[int, typer.Option(help="Minibatch size.")] = 16,
    seed: Annotated[int, typer.Option(help="Random seed of the latents.")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON.")] = None,
    per_class: Annotated[bool, typer.Option(
        "--per-class", help="Class-conditional models: per-class SWD against a label-shuffled control (needs --data).",
    )] = False,
    data: Annotated[str | None, typer.Option(
        help="With --per-class: the labelled dataset the model was trained on (folder, zip, synthetic:faces-classes).",
    )] = None,
) -> None:
    """The paper's perceptual path length and linear separability, Z against W; per-class SWD."""

    if not (ppl or ls or per_class):
        raise MetricsArgumentError("choose a metric: --ppl, --ls, --per-class or several")
    if per_class and data is None:
        raise MetricsArgumentError("--per-class needs --data, the labelled dataset to compare each class with")
    spaces = _choices(space, ("z", "w"), "--space")
    samplings = _choices(sampling, ("full", "end"), "--sampling")
    if samples < 4 or batch < 1:
        raise MetricsArgumentError(f"--samples must be >= 4 and --batch >= 1, got {samples} and {batch}")
    if directions_out is not None and not ls:
        raise MetricsArgumentError("--directions-out needs --ls (the directions are the LS classifiers' SVM normals)")
    if directions_out is not None and "w" not in spaces:
        raise MetricsArgumentError("--directions-out needs W in --space")
    value_range = parse_floats(perceptual_range)
    if len(value_range) != 2 or value_range[0] >= value_range[1]:
        raise MetricsArgumentError(f"--perceptual-range must be lo,hi with lo < hi, got {perceptual_range!r}")
    if is_bundle(model):
        raise MetricsArgumentError(f"{model}: the metrics run in PyTorch on a checkpoint (.safetensors), not a bundle")
    if not model.exists():
        raise FileNotFoundError(2, "no such checkpoint", str(model))

    from stylegan_edge.training.checkpoint import load_generator

    distance = None
    if ppl and perceptual is not None:
        from stylegan_edge.training.metrics.ppl import PerceptualONNX

        distance = PerceptualONNX(perceptual, value_range=(value_range[0], value_range[1]))
    G = load_generator(model)
    report: dict[str, object] = {"model": str(model)}
    if ppl:
        from stylegan_edge.training.metrics.ppl import perceptual_path_length

        results = []
        for smp in samplings:
            line = []
            for sp in spaces:
                r = perceptual_path_length(G, space=sp, sampling=smp, num_samples=samples, batch_size=batch,
                                           distance=distance, seed=seed)
                results.append(r.to_json())
                line.append(f"{sp.upper()} {r.value:.4g} ({r.seconds:.0f} s)")
            typer.echo(f"{results[-1]['metric']} {smp}: " + ", ".join(line) + f"  [{samples} pairs]")
        report["path_length"] = results
    if ls:
        from stylegan_edge.training.attributes import train_attribute_classifier
        from stylegan_edge.training.metrics.separability import linear_separability

        clf = train_attribute_classifier(G.cfg.resolution)
        accuracy = ", ".join(f"{k} {v:.2f}" for k, v in clf.accuracy.items())
        typer.echo(f"attribute classifiers ({clf.seconds:.0f} s), held-out accuracy: {accuracy}")
        r = linear_separability(G, clf, num_samples=samples, batch_size=batch, seed=seed)
        chosen = {s: r.scores[s] for s in spaces}
        typer.echo("linear separability: " + ", ".join(f"{s.upper()} {v:.3f}" for s, v in chosen.items())
                   + f"  [{len(clf.names)} attributes, {samples} samples, {r.seconds:.0f} s]")
        for s in spaces:
            typer.echo(f"  H(Y|X) in {s.upper()}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.entropies[s].items()))
        report["linear_separability"] = {**r.to_json(), "classifier_accuracy": clf.accuracy,
                                         "attributes": {a.name: a.description for a in clf.attributes}}
        if directions_out is not None:
            from stylegan_edge.runtime.directions import save_directions

            meta = {a.name: {"attribute": a.description, "space": "w", "accuracy": r.accuracies["w"][a.name],
                             "classifier_accuracy": clf.accuracy[a.name], "w_std": r.w_std[a.name],
                             "samples": r.num_keep, "model": str(model)} for a in clf.attributes}
            written = save_directions(directions_out, r.directions("w"), meta)
            typer.echo(f"wrote {written}")
    if per_class:
        from stylegan_edge.training.data import open_dataset
        from stylegan_edge.training.metrics.conditional import measure_generator
        from stylegan_edge.training.metrics.swd import SWDInputError

        if not G.cfg.label_size:
            raise MetricsArgumentError(f"{model}: --per-class needs a class-conditional model (label_size > 0)")
        dataset = open_dataset(data, G.cfg.resolution, seed=seed)
        try:
            r = measure_generator(G, dataset, num_images=samples, seed=seed, batch=batch)
        except SWDInputError as e:
            raise MetricsArgumentError(str(e)) from None
        typer.echo(f"per-class SWD x 1e3: matched {r.matched:.2f}, label-shuffled control {r.control:.2f}, "
                   f"nearest class right for {r.accuracy:.0%} of {len(r.classes)} classes  "
                   f"[{int(r.real_counts.sum())} images]")
        report["per_class_swd"] = r.to_json()
    if json_out is not None:
        write_text_output(json_out, json.dumps(report, indent=2))
        typer.echo(f"wrote {json_out}")
