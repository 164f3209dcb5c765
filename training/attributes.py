"""Attribute classifiers for linear separability, trained on the procedural faces.

The paper (section 4.2) labels generated images with 40 CelebA-HQ classifiers. The procedural
dataset knows every image's factors of variation (`FaceParams`), so here the labels are exact:
each attribute is a binary split of one field at a documented threshold (close to that field's
median, so the classes are balanced). Training images within `margin` of the threshold are
left out of that attribute's loss: they are the ones a viewer could not label either.

One small convolutional network with one logit per attribute is trained on the CPU in seconds;
`AttributeClassifier.probabilities` gives P(attribute) for images in [-1, 1] (the generator's
output range), at the resolution the classifier was trained at (larger images are box-filtered
down by an integer factor).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stylegan_edge.runtime.errors import StyleganError

from .procedural import FaceParams, face_params, render_params

__all__ = ["ATTRIBUTES", "Attribute", "AttributeClassifier", "AttributeClassifierError", "attribute_labels",
           "train_attribute_classifier"]


def _luma(c: Sequence[float]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]  # Rec. 601


@dataclass(frozen=True)
class Attribute:
    """Positive when `value(params) > threshold` (or < when `below`)."""

    name: str
    description: str
    value: Callable[[FaceParams], float]
    threshold: float
    margin: float
    below: bool = False

    def label(self, p: FaceParams) -> tuple[int, bool]:
        """(label, clear): clear is False within `margin` of the threshold."""
        v = self.value(p)
        positive = v < self.threshold if self.below else v > self.threshold
        return int(positive), abs(v - self.threshold) >= self.margin


# Thresholds: about the median of each field over the dataset (seed 0, 3,000 faces), so the
# splits are balanced; margins about a tenth of the field's spread. Eye openness and smile were
# tried and left out: at 64 px they are one or two pixels, and a classifier trained in seconds
# labels them at 57% and 51% held-out accuracy, so LS would measure the classifier, not W.
ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("yaw_positive", "head_yaw > 0 (head turned one way)", lambda p: p.head_yaw, 0.0, 0.15),
    Attribute("hair_dark", "luma(hair_color) < 0.32", lambda p: _luma(p.hair_color), 0.32, 0.05, below=True),
    Attribute("skin_dark", "luma(skin_color) < 0.63", lambda p: _luma(p.skin_color), 0.63, 0.05, below=True),
    Attribute("head_wide", "head_width > 0.53 (of 0.46..0.6)", lambda p: p.head_width, 0.53, 0.015),
    Attribute("hair_long", "hair_length > 0.65 (of -0.3..1.6)", lambda p: p.hair_length, 0.65, 0.2),
    Attribute("bg_warm", "bg_color red > blue", lambda p: p.bg_color[0] - p.bg_color[2], 0.0, 0.05),
    Attribute("bg_light", "luma(bg_color) > 0.5", lambda p: _luma(p.bg_color), 0.5, 0.05),
)


class AttributeClassifierError(StyleganError, ValueError):
    """Bad input to the attribute classifiers; messages are one line."""


def attribute_labels(params: Sequence[FaceParams], attributes: Sequence[Attribute] = ATTRIBUTES
                     ) -> tuple[np.ndarray, np.ndarray]:
    """labels [N, K] in {0, 1} and clear [N, K] (outside each attribute's margin)."""
    pairs = [[a.label(p) for a in attributes] for p in params]
    arr = np.array(pairs, dtype=np.int64).reshape(len(params), len(attributes), 2)
    return arr[..., 0], arr[..., 1].astype(bool)


class _Net(nn.Module):
    def __init__(self, resolution: int, outputs: int) -> None:
        super().__init__()
        # Stride-2 convolutions down to 8 x 8 (keeps where things are: pose), narrow enough to
        # train in seconds on two cores.
        layers: list[nn.Module] = []
        c, r = 3, resolution
        while r > 8:
            layers += [nn.Conv2d(c, min(max(2 * c, 12), 48), 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c, r = min(max(2 * c, 12), 48), r // 2
        if not layers:
            layers = [nn.Conv2d(3, 12, 3, padding=1), nn.LeakyReLU(0.2)]
            c = 12
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * r * r, 64), nn.LeakyReLU(0.2), nn.Linear(64, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _to_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


class AttributeClassifier:
    """P(attribute) for images; `accuracy` per attribute on held-out procedural faces."""

    def __init__(self, net: nn.Module, resolution: int, attributes: Sequence[Attribute],
                 accuracy: dict[str, float], seconds: float) -> None:
        self.net = net.eval().requires_grad_(False)
        self.resolution = resolution
        self.attributes = tuple(attributes)
        self.names = [a.name for a in attributes]
        self.accuracy = accuracy
        self.seconds = seconds

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """float NCHW images in [-1, 1] -> P(attribute) [N, K] float64."""
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
            raise AttributeClassifierError(f"images must be [N, 3, R, R], got {list(images.shape)}")
        r = images.shape[2]
        if r % self.resolution:
            raise AttributeClassifierError(
                f"images of {r} px cannot be scaled to the classifier's {self.resolution} px")
        f = r // self.resolution
        out = []
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size].float().cpu()
            x = F.avg_pool2d(x, f) if f > 1 else x
            out.append(torch.sigmoid(self.net(x)).double().numpy())
        return np.concatenate(out)


def train_attribute_classifier(
    resolution: int, *, attributes: Sequence[Attribute] = ATTRIBUTES, num_train: int = 4000,
    num_test: int = 500, epochs: int = 6, batch_size: int = 64, seed: int = 0, data_seed: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> AttributeClassifier:
    """Train on procedural faces of dataset seed `data_seed` (not the training data's seed 0:
    the classifiers see faces the generator did not), at min(resolution, 64) px."""
    if resolution < 8 or resolution & (resolution - 1):
        raise AttributeClassifierError(f"resolution must be a power of two >= 8, got {resolution}")
    if num_train < batch_size or num_test < 1 or epochs < 1:
        raise AttributeClassifierError(f"need num_train >= batch_size, num_test >= 1, epochs >= 1; got "
                              f"{num_train}, {num_test}, {epochs}")
    start = time.perf_counter()
    res = min(resolution, 64)
    params = [face_params(i, data_seed) for i in range(num_train + num_test)]
    images = _to_float(render_params(params, res))
    labels, clear = attribute_labels(params, attributes)
    y, m = torch.from_numpy(labels).float(), torch.from_numpy(clear).float()
    with torch.random.fork_rng():  # deterministic, and the caller's global RNG untouched
        torch.manual_seed(seed)
        net = _Net(res, len(attributes))
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        steps = epochs * (num_train // batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
        step = 0
        for _ in range(epochs):
            order = torch.randperm(num_train)
            for i in range(0, num_train - batch_size + 1, batch_size):
                idx = order[i : i + batch_size]
                x = images[idx]  # no flips: a mirror image would swap the yaw attribute
                loss = F.binary_cross_entropy_with_logits(net(x), y[idx], weight=m[idx], reduction="sum")
                opt.zero_grad(set_to_none=True)
                (loss / m[idx].sum().clamp_min(1.0)).backward()
                opt.step()
                sched.step()
                step += 1
                if progress is not None:
                    progress(step, steps)
    net.eval()
    with torch.no_grad():
        pred = (net(images[num_train:]) > 0).long().numpy()
    acc = {a.name: float((pred[:, k] == labels[num_train:, k]).mean()) for k, a in enumerate(attributes)}
    return AttributeClassifier(net, res, attributes, acc, time.perf_counter() - start)
