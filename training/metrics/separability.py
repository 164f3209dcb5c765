"""Linear separability (Karras et al. 2019, section 4.2), in Z and in W, and the SVM normals in
W as attribute directions (as InterFaceGAN, Shen et al. 2020).

As the official code (NVlabs/stylegan, metrics/linear_separability.py): for each attribute the
generated samples are ranked by the classifier's confidence max(p, 1 - p) and the most
confident half is kept; a linear SVM is fitted to the classifier's labels from the latent (z, or
w of the last layer: the same w for every layer here); its own predictions on those samples X
and the labels Y give a 2 x 2 joint distribution and H(Y|X). The score is exp(sum over
attributes of H(Y|X)) with H in nats, the official 2 ** (sum of H in bits): 1 when every
attribute is linearly separable, at most 2 ** n_attributes.

The SVM is the primal L2-regularised squared-hinge SVM with C = 1 (what scikit-learn's
`LinearSVC()` fits by default; scikit-learn is not a dependency here), solved exactly by
Newton's method in numpy. Unlike liblinear, the intercept is not regularised.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stylegan_edge.runtime.errors import StyleganError

__all__ = ["LinearSVM", "SeparabilityError", "SeparabilityResult", "conditional_entropy", "fit_linear_svm",
           "linear_separability", "separability_from_arrays"]


class SeparabilityError(StyleganError, ValueError):
    """Bad input to the separability metric; messages are one line."""


def conditional_entropy(x: np.ndarray, y: np.ndarray) -> float:
    """H(Y|X) in nats of two binary label arrays (the empirical joint distribution)."""
    x, y = np.asarray(x).astype(np.int64).ravel(), np.asarray(y).astype(np.int64).ravel()
    if x.shape != y.shape or x.size == 0:
        raise SeparabilityError(f"need two label arrays of one non-zero length, got {x.shape} and {y.shape}")
    joint = np.array([[np.mean((x == i) & (y == j)) for j in (0, 1)] for i in (0, 1)])
    px = joint.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log(joint / px), 0.0)
    return max(0.0, float(-terms.sum()))  # rounding can slip just below zero


@dataclass(frozen=True)
class LinearSVM:
    """f(x) = x . weight + bias; label 1 where f > 0."""

    weight: np.ndarray
    bias: float

    def decision(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) @ self.weight + self.bias

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (self.decision(x) > 0).astype(np.int64)


def fit_linear_svm(x: np.ndarray, labels: np.ndarray, c: float = 1.0, max_iter: int = 50) -> LinearSVM:
    """Minimise 0.5 |w|^2 + C sum max(0, 1 - y_i (x_i . w + b))^2, y in {-1, 1}, by Newton's
    method (the objective is piecewise quadratic: each step is exact on the current active set,
    and the set stops changing after a few steps)."""
    x = np.asarray(x, np.float64)
    y = np.where(np.asarray(labels).ravel() > 0, 1.0, -1.0)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise SeparabilityError(f"SVM inputs must be [N >= 2, D] with N labels, got {x.shape} and {y.shape}")
    n, d = x.shape
    xa = np.hstack([x, np.ones((n, 1))])
    reg = np.ones(d + 1)
    reg[-1] = 0.0  # the intercept is not penalised
    theta = np.zeros(d + 1)

    def objective(th: np.ndarray) -> float:
        m = np.maximum(0.0, 1.0 - y * (xa @ th))
        return 0.5 * float(th @ (reg * th)) + c * float(m @ m)

    for _ in range(max_iter):
        margin = 1.0 - y * (xa @ theta)
        active = margin > 0
        xs = xa[active]
        grad = reg * theta - 2.0 * c * xs.T @ (y[active] * margin[active])
        if np.linalg.norm(grad) <= 1e-10 * max(1.0, n):
            break
        hess = np.diag(reg) + 2.0 * c * xs.T @ xs + 1e-12 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        # A backtracking line search keeps the generalised Newton step from overshooting when the
        # active set changes.
        f0, s = objective(theta), 1.0
        while s > 1e-6 and objective(theta - s * step) > f0 - 1e-4 * s * float(grad @ step):
            s *= 0.5
        theta = theta - s * step
        if s * np.linalg.norm(step) <= 1e-12 * max(1.0, np.linalg.norm(theta)):
            break
    return LinearSVM(theta[:d].copy(), float(theta[d]))


@dataclass(frozen=True)
class SeparabilityResult:
    """Scores by space ('z', 'w'), H(Y|X) per attribute and space, and the fitted SVMs."""

    scores: dict[str, float]
    entropies: dict[str, dict[str, float]]  # space -> attribute -> H(Y|X) in nats
    accuracies: dict[str, dict[str, float]]  # space -> attribute -> SVM agreement with the labels
    svms: dict[str, dict[str, LinearSVM]] = field(repr=False)
    num_samples: int = 0
    num_keep: int = 0
    seconds: float = 0.0
    w_std: dict[str, float] = field(default_factory=dict)  # spread of w along each W normal

    def to_json(self) -> dict[str, Any]:
        return {"metric": "linear separability", "scores": self.scores, "entropies_nats": self.entropies,
                "svm_accuracy": self.accuracies, "samples": self.num_samples, "kept": self.num_keep,
                "seconds": round(self.seconds, 2)}

    def directions(self, space: str = "w") -> dict[str, np.ndarray]:
        """Unit normals of the SVMs, pointing to the attribute's positive side, float32."""
        return {name: (svm.weight / max(np.linalg.norm(svm.weight), 1e-12)).astype(np.float32)
                for name, svm in self.svms[space].items()}


def separability_from_arrays(
    latents: dict[str, np.ndarray], probabilities: np.ndarray, names: Sequence[str], keep: float = 0.5,
) -> SeparabilityResult:
    """LS from latents by space ([N, D] each) and classifier P(attribute) [N, K]."""
    p = np.asarray(probabilities, np.float64)
    if p.ndim != 2 or p.shape[1] != len(names):
        raise SeparabilityError(f"probabilities must be [N, {len(names)}], got {p.shape}")
    n = p.shape[0]
    if not 0 < keep <= 1:
        raise SeparabilityError(f"keep must be in (0, 1], got {keep}")
    num_keep = max(2, int(round(n * keep)))
    entropies: dict[str, dict[str, float]] = {s: {} for s in latents}
    accuracies: dict[str, dict[str, float]] = {s: {} for s in latents}
    svms: dict[str, dict[str, LinearSVM]] = {s: {} for s in latents}
    for k, name in enumerate(names):
        confidence = np.maximum(p[:, k], 1.0 - p[:, k])
        kept = np.argsort(-confidence, kind="stable")[:num_keep]
        target = (p[kept, k] > 0.5).astype(np.int64)
        for space, lat in latents.items():
            x = np.asarray(lat, np.float64)[kept]
            if target.min() == target.max():
                # One class only: nothing to separate; the official code then assumes a perfect fit.
                svm, pred = LinearSVM(np.zeros(x.shape[1]), 1.0 if target[0] else -1.0), target
            else:
                svm = fit_linear_svm(x, target)
                pred = svm.predict(x)
            svms[space][name] = svm
            entropies[space][name] = conditional_entropy(pred, target)
            accuracies[space][name] = float((pred == target).mean())
    scores = {s: math.exp(sum(h.values())) for s, h in entropies.items()}
    w_std = {}
    if "w" in latents:
        w = np.asarray(latents["w"], np.float64)
        for name, svm in svms["w"].items():
            norm = np.linalg.norm(svm.weight)
            w_std[name] = float((w @ svm.weight).std() / norm) if norm > 0 else 0.0
    return SeparabilityResult(scores, entropies, accuracies, svms, n, num_keep, 0.0, w_std)


def linear_separability(
    G: Any, classifier: Any, *, num_samples: int = 2000, batch_size: int = 32, keep: float = 0.5,
    seed: int = 0, progress: Callable[[int, int], None] | None = None,
) -> SeparabilityResult:
    """LS of a PyTorch generator `G` (training/networks.Generator) in Z and W with an
    `AttributeClassifier` (training/attributes.py). Noise is random, as officially."""
    import torch

    if num_samples < 4 or batch_size < 1:
        raise SeparabilityError(f"num_samples must be >= 4 and batch_size >= 1, got {num_samples}, {batch_size}")
    start = time.perf_counter()
    dev = next(G.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    zs, ws, probs = [], [], []
    with torch.no_grad():
        for i in range(0, num_samples, batch_size):
            b = min(batch_size, num_samples - i)
            z = torch.randn(b, G.cfg.z_dim, generator=gen)
            w = G.mapping(z.to(dev))
            noise = G.synthesis.make_noise(b, "random", generator=None)
            noise = [n if n is None else torch.randn(n.shape, generator=gen).to(dev) for n in noise]
            images = G.synthesis(G.broadcast(w), noise=noise).float().clamp(-1, 1)
            probs.append(classifier.probabilities(images))
            zs.append(z.numpy())
            ws.append(w.float().cpu().numpy())
            if progress is not None:
                progress(i + b, num_samples)
    result = separability_from_arrays({"z": np.concatenate(zs), "w": np.concatenate(ws)}, np.concatenate(probs),
                                      classifier.names, keep)
    return SeparabilityResult(result.scores, result.entropies, result.accuracies, result.svms, result.num_samples,
                              result.num_keep, time.perf_counter() - start, result.w_std)
