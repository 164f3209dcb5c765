"""Linear separability: the entropy, the SVM, known-answer scores, and the attribute classifiers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stylegan_edge.training.metrics.separability import (
    SeparabilityError,
    conditional_entropy,
    fit_linear_svm,
    separability_from_arrays,
)


def test_conditional_entropy_matches_the_definition() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, 500)
    y = np.where(rng.random(500) < 0.8, x, 1 - x)  # y agrees with x 80% of the time
    want = 0.0
    for i in (0, 1):
        px = np.mean(x == i)
        for j in (0, 1):
            pxy = np.mean((x == i) & (y == j))
            if pxy > 0:
                want -= pxy * math.log(pxy / px)
    assert conditional_entropy(x, y) == pytest.approx(want, rel=1e-12)
    assert conditional_entropy(x, x) == 0.0
    assert conditional_entropy(x, 1 - x) == 0.0  # a perfect predictor, whichever side it calls 1


def test_svm_reaches_the_optimum_of_the_squared_hinge_objective() -> None:
    scipy_opt = pytest.importorskip("scipy.optimize", reason="scipy (the dev extra) is the reference optimiser")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 5))
    y = (x @ rng.standard_normal(5) + 0.7 * rng.standard_normal(300) > 0.3).astype(int)
    svm = fit_linear_svm(x, y, c=0.5)
    s = np.where(y > 0, 1.0, -1.0)

    def objective(th: np.ndarray) -> float:
        m = np.maximum(0.0, 1.0 - s * (x @ th[:5] + th[5]))
        return 0.5 * float(th[:5] @ th[:5]) + 0.5 * float(m @ m)

    ref = scipy_opt.minimize(objective, np.zeros(6), method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15})
    ours = np.append(svm.weight, svm.bias)
    assert objective(ours) <= ref.fun + 1e-7
    np.testing.assert_allclose(ours, ref.x, atol=1e-4)


def test_an_attribute_exactly_linear_in_w_gives_the_minimum_score() -> None:
    rng = np.random.default_rng(2)
    n, d = 1000, 16
    w = rng.standard_normal((n, d))
    normals = rng.standard_normal((3, d))
    logits = 4.0 * (w @ normals.T + rng.normal(0, 0.3, 3))
    probs = 1.0 / (1.0 + np.exp(-logits))
    z = rng.standard_normal((n, d))  # a Z unrelated to the labels
    r = separability_from_arrays({"z": z, "w": w}, probs, ["a", "b", "c"])
    assert r.scores["w"] == 1.0
    assert all(h == 0.0 for h in r.entropies["w"].values())
    assert r.scores["z"] > 4.0  # each unrelated attribute costs close to ln 2
    # The W normals point along the true ones.
    for k, name in enumerate("abc"):
        cos = r.directions()[name] @ normals[k] / np.linalg.norm(normals[k])
        assert cos > 0.95


def test_random_labels_give_close_to_the_maximum_score() -> None:
    rng = np.random.default_rng(3)
    n, d, k = 4000, 4, 5
    probs = rng.random((n, k))
    r = separability_from_arrays({"z": rng.standard_normal((n, d))}, probs, [f"a{i}" for i in range(k)])
    upper = math.exp(k * math.log(2))
    assert 0.85 * upper < r.scores["z"] <= upper + 1e-9
    assert r.num_keep == n // 2


def test_the_most_confident_half_is_kept() -> None:
    rng = np.random.default_rng(4)
    n = 400
    x = rng.standard_normal((n, 3))
    probs = np.full((n, 1), 0.5)
    # Confident samples are linear in x; the unconfident ones have labels opposite to it.
    confident = np.zeros(n, bool)
    confident[rng.permutation(n)[: n // 2]] = True
    side = x[:, 0] > 0
    probs[:, 0] = np.where(confident, np.where(side, 0.99, 0.01), np.where(side, 0.4, 0.6))
    r = separability_from_arrays({"x": x}, probs, ["a"])
    assert r.scores["x"] == 1.0


def test_bad_shapes_are_one_line_errors() -> None:
    with pytest.raises(SeparabilityError, match="probabilities"):
        separability_from_arrays({"z": np.zeros((4, 2))}, np.zeros((4, 3)), ["a"])
    with pytest.raises(SeparabilityError, match="SVM inputs"):
        fit_linear_svm(np.zeros((3, 2)), np.zeros(4))


def test_attribute_labels_follow_the_documented_thresholds() -> None:
    from stylegan_edge.training.attributes import ATTRIBUTES, attribute_labels
    from stylegan_edge.training.procedural import face_params

    params = [face_params(i, 7) for i in range(200)]
    labels, clear = attribute_labels(params)
    yaw = [a.name for a in ATTRIBUTES].index("yaw_positive")
    np.testing.assert_array_equal(labels[:, yaw], [int(p.head_yaw > 0) for p in params])
    np.testing.assert_array_equal(clear[:, yaw], [abs(p.head_yaw) >= 0.15 for p in params])
    # Thresholds near the median: no attribute is nearly constant.
    assert np.all((labels.mean(axis=0) > 0.3) & (labels.mean(axis=0) < 0.7))


def test_attribute_classifier_learns_the_colour_splits_and_labels_generated_images(tiny_G) -> None:
    torch = pytest.importorskip("torch")
    from stylegan_edge.training.attributes import train_attribute_classifier
    from stylegan_edge.training.metrics.separability import linear_separability

    clf = train_attribute_classifier(16, num_train=640, num_test=200, epochs=3)
    assert clf.resolution == 16
    assert clf.accuracy["bg_light"] > 0.75 and clf.accuracy["skin_dark"] > 0.75
    p = clf.probabilities(torch.rand(5, 3, 32, 32) * 2 - 1)  # 32 px images are box-filtered to 16
    assert p.shape == (5, len(clf.names)) and np.all((p >= 0) & (p <= 1))
    r = linear_separability(tiny_G, clf, num_samples=64, batch_size=32)
    assert set(r.scores) == {"z", "w"}
    for s in r.scores.values():
        assert 1.0 <= s <= 2 ** len(clf.names) + 1e-9
