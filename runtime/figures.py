"""The paper's figures, from any `Generator` (bundle backends or PyTorch): style mixing,
stochastic variation, and the truncation sweep. Each returns a uint8 image [H, W, 3].

`label` (a class index or name) is for class-conditional models, and every latent of the figure
is mapped with that one class (None for an unconditional model, see `Generator.labels_to_c`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .generator import Generator
from .images import make_grid, to_uint8


def style_mixing_figure(
    g: Generator, row_seeds: Sequence[int], col_seeds: Sequence[int], styles: str = "coarse",
    psi: float | None = None, noise: str = "const", label: Any = None,
) -> np.ndarray:
    """The paper's Figure 3: the top row shows the destination images (source A, one per column),
    the left column the style sources (source B, one per row); each cell is A with the `styles`
    layers ('coarse', 'middle', 'fine' or 'A-B') taken from B."""
    ws_rows = g.styles(seeds=list(row_seeds), psi=psi, label=label)
    ws_cols = g.styles(seeds=list(col_seeds), psi=psi, label=label)
    top = g.synthesize(ws_cols, noise)
    left = g.synthesize(ws_rows, noise)
    blank = np.full_like(top[:1], 255)
    tiles = [blank, top]
    for r in range(len(row_seeds)):
        mixed = g.mix(ws_cols, np.repeat(ws_rows[r : r + 1], len(col_seeds), axis=0), styles)
        tiles += [left[r : r + 1], g.synthesize(mixed, noise)]
    return make_grid(np.concatenate(tiles), cols=len(col_seeds) + 1)


def noise_figure(
    g: Generator, seed: int, draws: int = 6, psi: float | None = None, noise_seed: int = 0, label: Any = None,
) -> np.ndarray:
    """The paper's Figure 4: one w under several noise draws, and the per-pixel standard
    deviation of the draws (amplified; brighter = the noise changes that pixel more)."""
    ws = np.repeat(g.styles(seeds=[seed], psi=psi, label=label), draws, axis=0)
    rng = np.random.default_rng(noise_seed)
    images = g.synthesize_float(ws, "random", rng)
    std = images.std(axis=0).mean(axis=0)  # per pixel, averaged over colour channels
    std_img = np.clip(std / max(float(std.max()), 1e-8) * 255.0, 0, 255).astype(np.uint8)
    std_rgb = np.repeat(std_img[None, :, :, None], 3, axis=3)
    return make_grid(np.concatenate([to_uint8(images), std_rgb]), cols=draws + 1)


def truncation_figure(
    g: Generator, seeds: Sequence[int], psis: Sequence[float], cutoff: int | None = None, noise: str = "const",
    label: Any = None,
) -> np.ndarray:
    """Rows are seeds, columns psi values (psi 0 is the average face, negative psi its
    'opposite')."""
    ws = g.styles(seeds=list(seeds), psi=1.0, label=label)
    tiles = [g.synthesize(g.truncate(ws, psi, cutoff), noise) for psi in psis]
    grid = np.stack(tiles, axis=1).reshape(-1, *tiles[0].shape[1:])
    return make_grid(grid, cols=len(psis))
