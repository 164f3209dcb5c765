"""Table 1 of the StyleGAN paper at small scale: configurations A to F, trained progressively
with the same budget and measured with the same metric.

Karras, Laine, Aila, "A Style-Based Generator Architecture for Generative Adversarial Networks"
(CVPR 2019), section 2 and Table 1: starting from the Progressive GAN generator (A), each row adds
one change to the one above it, and the FID of every row is reported for CelebA-HQ and FFHQ at
1024 px. The switches of each row are read from the official code (NVlabs/stylegan train.py, the
"Table 1" presets, and training/networks_stylegan.py).

What this module keeps of the paper's protocol and what it does not is said in `PROTOCOL`; the
configurations themselves are the one table `TABLE1` below.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stylegan_edge.runtime.errors import StyleganError

from .config import ConfigError, ModelConfig, get_preset
from .progressive import ScheduleConfig


class Table1Error(StyleganError, ValueError):
    """A Table 1 run that cannot go on; one line naming the folder or option."""


@dataclass(frozen=True)
class Table1Row:
    key: str
    label: str  # the paper's row label
    change: str  # what the row changes, in words
    model: dict[str, Any]  # ModelConfig fields
    mixing_prob: float
    paper_fid: tuple[float, float]  # Table 1: CelebA-HQ, FFHQ (1024 px, 50k images)


_NO_STYLES = dict(use_styles=False, use_pixel_norm=True, use_instance_norm=False)
_STYLES = dict(use_styles=True, use_pixel_norm=False, use_instance_norm=True)
# One row per configuration. Each row's switches are complete (not relative), so any row can be
# trained alone. Official names: use_mapping (mapping_layers=0 when off), const_input_layer,
# use_noise, use_styles, use_pixel_norm/use_instance_norm, blur_filter, style_mixing_prob.
TABLE1: tuple[Table1Row, ...] = (
    Table1Row(
        "A", "Baseline Progressive GAN",
        "the Progressive GAN generator: w = normalised z fed through a dense input layer, no styles (pixel norm), "
        "no noise, nearest/box resampling without the [1,2,1] blur",
        dict(use_mapping=False, const_input=False, use_noise=False, use_blur=False, **_NO_STYLES), 0.0, (7.79, 8.04),
    ),
    Table1Row(
        "B", "+ Tuning (incl. bilinear up/down)",
        "adds the [1,2,1] low-pass filter after every upsampling and before every downsampling (the paper's "
        "bilinear up/down); the other tuning (longer training, hyper-parameters) is shared by every row here",
        dict(use_mapping=False, const_input=False, use_noise=False, use_blur=True, **_NO_STYLES), 0.0, (6.11, 5.25),
    ),
    Table1Row(
        "C", "+ Add mapping and styles",
        "the mapping network z -> w and AdaIN styles from w in every layer (instance norm replaces pixel norm); "
        "the dense input layer from w stays",
        dict(use_mapping=True, const_input=False, use_noise=False, use_blur=True, **_STYLES), 0.0, (5.34, 4.85),
    ),
    Table1Row(
        "D", "+ Remove traditional input",
        "the synthesis starts from a learned 4x4 constant; w enters only through the styles",
        dict(use_mapping=True, const_input=True, use_noise=False, use_blur=True, **_STYLES), 0.0, (5.07, 4.88),
    ),
    Table1Row(
        "E", "+ Add noise inputs",
        "per-pixel Gaussian noise with learned per-channel strengths before every style",
        dict(use_mapping=True, const_input=True, use_noise=True, use_blur=True, **_STYLES), 0.0, (5.06, 4.42),
    ),
    Table1Row(
        "F", "+ Mixing regularization",
        "style mixing regularisation: 90% of training images switch to a second latent's styles at a random layer",
        dict(use_mapping=True, const_input=True, use_noise=True, use_blur=True, **_STYLES), 0.9, (5.17, 4.40),
    ),
)
ROWS = {row.key: row for row in TABLE1}

PROTOCOL = (
    "Every configuration grows progressively from 4 px with the same schedule, minibatch, learning rates, "
    "non-saturating logistic loss with R1 (the paper's B-F loss; its A used Progressive GAN's WGAN-GP, not "
    "reproduced here), the same seed and data, and is measured by SWD (x1e3, average over the Laplacian "
    "levels) on G_ema at the end; the paper measured FID of 50k images at 1024 px after 12-25M images."
)


def row_model(base: ModelConfig, row: Table1Row) -> ModelConfig:
    """`base` with the row's switches, built for progressive growing."""
    changes = dict(row.model, progressive=True)
    if not changes["use_mapping"]:
        changes["z_dim"] = base.w_dim  # w is the normalised z
    return dataclasses.replace(base, **changes)


@dataclass(frozen=True)
class Table1Settings:
    data: str
    out: str
    res: int = 32
    kimg: float = 20.0
    preset: str = "tiny"
    batch: int = 16
    configs: str = "ABCDEF"
    metric_images: int = 1024
    metric_points: int = 8  # SWD evaluations per configuration after the one at initialisation
    fid_model: str | None = None
    seed: int = 0
    device: str = "cpu"
    workers: int = 0
    # None: the growth takes all but the last 1/(n+1) of the budget, held and faded halves alike.
    lod_training_kimg: float | None = None
    lod_transition_kimg: float | None = None
    minibatch_repeats: int = 4  # the official schedule's: lod and minibatch are re-evaluated every 4 steps
    extra: dict[str, Any] = field(default_factory=dict)  # further TrainConfig fields

    def __post_init__(self) -> None:
        bad = sorted(set(self.configs) - set(ROWS))
        if not self.configs or bad:
            raise ConfigError(f"--configs must be letters from {''.join(ROWS)}, got {self.configs!r}")
        if not isinstance(self.metric_points, int) or not 1 <= self.metric_points <= 1000:
            raise ConfigError(f"--metric-points must be an integer in [1, 1000], got {self.metric_points!r}")

    def model_base(self) -> ModelConfig:
        base = get_preset(self.preset)
        return dataclasses.replace(base, resolution=self.res)

    def schedule(self) -> ScheduleConfig:
        grow = int(math.log2(self.res)) - 2
        phase = self.kimg / (grow + 1)
        training = phase / 2 if self.lod_training_kimg is None else self.lod_training_kimg
        transition = phase / 2 if self.lod_transition_kimg is None else self.lod_transition_kimg
        return ScheduleConfig(lod_initial_resolution=4, lod_training_kimg=training, lod_transition_kimg=transition,
                              minibatch_repeats=self.minibatch_repeats)


def train_config(settings: Table1Settings, row: Table1Row) -> Any:
    from .loop import TrainConfig

    return TrainConfig(
        data=settings.data, out=str(Path(settings.out) / row.key), kimg=settings.kimg, batch=settings.batch,
        mixing_prob=row.mixing_prob, seed=settings.seed, snapshot_kimg=settings.kimg / settings.metric_points,
        metrics_kimg=settings.kimg / settings.metric_points, metric_images=settings.metric_images,
        fid_model=settings.fid_model, workers=settings.workers, device=settings.device, grid_size=16,
        schedule=settings.schedule(), **settings.extra,
    )


DONE = "table1_done.json"


def read_history(run: Path) -> list[dict[str, Any]]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def run_table1(
    settings: Table1Settings, callback: Callable[[str, Any], None] | None = None,
) -> dict[str, Any]:
    """Train (or resume, or skip when finished) every configuration, then write `table1.md`,
    `table1.json` and `table1.png` into `settings.out`; returns what table1.json holds."""
    from .checkpoint import CheckpointError
    from .loop import CHECKPOINT, train

    callback = callback or (lambda key, event: None)
    out = Path(settings.out)
    if out.exists() and not out.is_dir():
        raise Table1Error(f"--out {out}: exists and is not a folder")
    base = settings.model_base()
    results: dict[str, Any] = {}
    for key in settings.configs:
        row = ROWS[key]
        run = out / key
        done = _read_done(run)
        if done is not None and done.get("kimg", -1) >= settings.kimg:
            callback(key, "skipped")  # finished before: not retrained
        else:
            cfg = train_config(settings, row)
            t0 = time.perf_counter()
            resume = (run / CHECKPOINT).is_file()
            try:
                train(cfg, row_model(base, row), resume=resume, callback=lambda e, k=key: callback(k, e))
            except CheckpointError as e:
                raise Table1Error(f"configuration {key}: {e}") from None
            hist = read_history(run)
            done = {"kimg": settings.kimg, "seconds": round(time.perf_counter() - t0, 1),
                    "final": hist[-1] if hist else {}}
            (run / DONE).write_text(json.dumps(done) + "\n")
        results[key] = {"row": dataclasses.asdict(row), "done": done, "history": read_history(run),
                        "model": row_model(base, row).to_dict()}
    summary = {"settings": {k: v for k, v in dataclasses.asdict(settings).items() if k != "extra"},
               "protocol": PROTOCOL, "configs": results}
    out.mkdir(parents=True, exist_ok=True)
    (out / "table1.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "table1.md").write_text(markdown_table(summary))
    draw_plot(summary, out / "table1.png")
    return summary


def _read_done(run: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((run / DONE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def markdown_table(summary: dict[str, Any]) -> str:
    s = summary["settings"]
    has_fid = any("fid" in c["done"].get("final", {}) for c in summary["configs"].values())
    head = ["Config", "Paper's change", "SWD x1e3 (end)", "SWD x1e3 (best)"]
    head += ["FID (end)"] if has_fid else []
    head += ["Paper FID FFHQ", "Paper FID CelebA-HQ", "Train minutes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for key, c in summary["configs"].items():
        row, final = c["row"], c["done"].get("final", {})
        swds = [h["swd_avg"] for h in c["history"] if "swd_avg" in h]
        cells = [key, row["label"], _fmt(final.get("swd_avg")), _fmt(min(swds) if swds else None)]
        if has_fid:
            cells.append(_fmt(final.get("fid")))
        cells += [f"{row['paper_fid'][1]:.2f}", f"{row['paper_fid'][0]:.2f}",
                  f"{c['done'].get('seconds', 0) / 60:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    note = (f"\n{s['preset']} preset at {s['res']} px, {s['kimg']:g} kimg per configuration "
            f"(progressive from 4 px), minibatch {s['batch']}, SWD on {s['metric_images']} images. "
            f"{PROTOCOL}\n")
    return "\n".join(lines) + "\n" + note


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{float(v):.2f}"


# Colour per configuration (distinguishable, also in grey scale order A..F).
_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def draw_plot(summary: dict[str, Any], path: Path, metric: str = "swd_avg") -> None:
    """SWD against kimg, one line per configuration, drawn with Pillow (matplotlib is not a
    dependency): axes with ticks, grey verticals at the ends of each fade-in, a legend."""
    from PIL import Image, ImageDraw, ImageFont

    W, H, left, right, top, bottom = 960, 560, 80, 250, 50, 60
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    series = {k: [(h["kimg"], h[metric]) for h in c["history"] if metric in h]
              for k, c in summary["configs"].items()}
    pts = [p for s in series.values() for p in s]
    s = summary["settings"]
    x_max = max([s["kimg"]] + [p[0] for p in pts])
    y_vals = [p[1] for p in pts] or [0.0, 1.0]
    y_min, y_max = 0.0, max(y_vals) * 1.05 or 1.0
    pw, ph = W - left - right, H - top - bottom

    def xy(x: float, y: float) -> tuple[float, float]:
        return left + pw * x / x_max, top + ph * (1 - (y - y_min) / (y_max - y_min))

    # The growth: where each fade-in ends (a new resolution is fully in).
    grow = int(math.log2(s["res"])) - 2
    phase = s["kimg"] / (grow + 1)
    train_k = phase / 2 if s["lod_training_kimg"] is None else s["lod_training_kimg"]
    trans_k = phase / 2 if s["lod_transition_kimg"] is None else s["lod_transition_kimg"]
    for p in range(grow):
        x0 = (p * (train_k + trans_k) + train_k)
        x1 = x0 + trans_k
        if x1 <= x_max:
            a, b = xy(x0, y_max)[0], xy(x1, y_max)[0]
            d.rectangle([a, top, b, top + ph], fill="#eeeeee")
            d.text((a + 2, top + 2), f"-> {2 ** (p + 3)} px", fill="#777777", font=font)
    d.rectangle([left, top, left + pw, top + ph], outline="black")
    for i in range(6):
        yv = y_min + (y_max - y_min) * i / 5
        _, yy = xy(0, yv)
        d.line([left - 4, yy, left, yy], fill="black")
        d.text((left - 45, yy - 6), f"{yv:.0f}", fill="black", font=font)
        xv = x_max * i / 5
        xx, _ = xy(xv, 0)
        d.line([xx, top + ph, xx, top + ph + 4], fill="black")
        d.text((xx - 10, top + ph + 8), f"{xv:g}", fill="black", font=font)
    d.text((left + pw / 2 - 20, H - 25), "kimg", fill="black", font=font)
    d.text((10, top - 30), f"SWD x1e3 (lower is better) - Table 1 configurations, {s['res']} px, "
           f"{s['kimg']:g} kimg each; shaded: fade-ins", fill="black", font=font)
    for i, (key, pts_k) in enumerate(series.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        coords = [xy(x, y) for x, y in pts_k]
        if len(coords) > 1:
            d.line(coords, fill=colour, width=2)
        for cx, cy in coords:
            d.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=colour)
        ly = top + 10 + 18 * i
        d.line([W - right + 15, ly + 6, W - right + 40, ly + 6], fill=colour, width=3)
        d.text((W - right + 45, ly), f"{key}: {ROWS[key].label if key in ROWS else key}"[:36], fill="black",
               font=font)
    img.save(path)
