"""Evaluation metrics: SWD on Laplacian-pyramid patches and FID with a local ONNX extractor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stylegan_edge.training.metrics import fid, swd

# --- helpers ------------------------------------------------------------------------------


def structured_images(n: int, res: int, seed: int) -> np.ndarray:
    """Smooth random colour fields plus texture: images with content at every pyramid level."""
    rng = np.random.default_rng(seed)
    low = rng.random((n, 4, 4, 3)).astype(np.float32) * 255
    up = np.repeat(np.repeat(low, res // 4, axis=1), res // 4, axis=2)
    base = swd.pyr_up(swd.pyr_down(up))
    texture = rng.normal(0.0, 20.0, (n, res, res, 3))
    return np.clip(base + texture, 0, 255).astype(np.uint8)


def literal_pyr_down(x: np.ndarray) -> np.ndarray:
    """Reference: full 5x5 binomial convolution with mirrored borders, then every other pixel."""
    k1 = np.array([1, 4, 6, 4, 1], np.float64) / 16
    kernel = np.outer(k1, k1)
    h, w = x.shape[1:3]
    xp = np.pad(x.astype(np.float64), ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    out = np.zeros(x.shape, np.float64)
    for i in range(5):
        for j in range(5):
            out += kernel[i, j] * xp[:, i : i + h, j : j + w]
    return out[:, ::2, ::2]


def literal_pyr_up(x: np.ndarray) -> np.ndarray:
    """Reference: zero insertion, mirrored borders, 5x5 binomial kernel times four."""
    n, h, w, c = x.shape
    z = np.zeros((n, 2 * h, 2 * w, c), np.float64)
    z[:, ::2, ::2] = x
    k1 = np.array([1, 4, 6, 4, 1], np.float64) / 16
    kernel = np.outer(k1, k1) * 4
    zp = np.pad(z, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    out = np.zeros_like(z)
    for i in range(5):
        for j in range(5):
            out += kernel[i, j] * zp[:, i : i + 2 * h, j : j + 2 * w]
    return out


# --- SWD: pyramid -------------------------------------------------------------------------


def test_pyr_down_matches_literal_convolution():
    x = np.random.default_rng(1).random((3, 32, 32, 3), dtype=np.float32) * 255
    np.testing.assert_allclose(swd.pyr_down(x), literal_pyr_down(x), rtol=0, atol=1e-3)


def test_pyr_up_matches_literal_zero_insertion():
    x = np.random.default_rng(2).random((3, 16, 16, 3), dtype=np.float32) * 255
    np.testing.assert_allclose(swd.pyr_up(x), literal_pyr_up(x), rtol=0, atol=1e-3)


def test_pyramid_ops_match_opencv():
    cv2 = pytest.importorskip("cv2", reason="the OpenCV comparison needs opencv-python-headless")
    x = np.random.default_rng(3).random((2, 32, 32, 3), dtype=np.float32) * 255
    down = swd.pyr_down(x)
    np.testing.assert_allclose(down, np.stack([cv2.pyrDown(im) for im in x]), rtol=0, atol=1e-3)
    np.testing.assert_allclose(swd.pyr_up(down), np.stack([cv2.pyrUp(im) for im in down]), rtol=0, atol=1e-3)


@pytest.mark.parametrize("res", [32, 64])
def test_laplacian_pyramid_reconstructs_image(res):
    images = np.random.default_rng(res).integers(0, 256, (2, res, res, 3), dtype=np.uint8)
    levels = swd.laplacian_pyramid(images, len(swd.pyramid_resolutions(res)))
    assert [lv.shape[1] for lv in levels] == swd.pyramid_resolutions(res)
    np.testing.assert_allclose(swd.reconstruct_laplacian_pyramid(levels), images, rtol=0, atol=1e-3)


# --- SWD: descriptors -----------------------------------------------------------------------


def test_descriptors_shape_and_channel_normalisation():
    images = structured_images(6, 32, seed=4)
    cfg = swd.SWDConfig(nhoods_per_image=32)
    desc = swd.swd_descriptors(images, np.random.default_rng(0), cfg)
    assert [d.shape for d in desc] == [(6 * 32, 147), (6 * 32, 147)]
    for d in desc:
        per_channel = d.reshape(-1, 3)
        np.testing.assert_allclose(per_channel.mean(axis=0), 0.0, atol=1e-4)
        np.testing.assert_allclose(per_channel.std(axis=0), 1.0, atol=1e-4)


def test_descriptors_are_windows_of_their_image_under_one_affine_map_per_channel():
    images = structured_images(2, 16, seed=5)
    k = 8
    desc = swd.swd_descriptors(images, np.random.default_rng(7), swd.SWDConfig(nhoods_per_image=k))[0]
    level = images.astype(np.float64)  # a 16 px image has one level: the image itself
    windows = np.lib.stride_tricks.sliding_window_view(level, (7, 7), axis=(1, 2))  # [n, 10, 10, 3, 7, 7]
    maps = []
    for row, d in enumerate(desc.reshape(-1, 7, 7, 3).astype(np.float64)):
        cand = windows[row // k].transpose(0, 1, 3, 4, 2).reshape(-1, 49, 3)  # descriptor i's own image
        target = d.reshape(49, 3)
        # Per channel, target = a * window + b exactly for the window it was cut from.
        wc = cand - cand.mean(axis=1, keepdims=True)
        tc = target - target.mean(axis=0)
        a = (wc * tc).sum(axis=1) / np.maximum((wc * wc).sum(axis=1), 1e-12)
        resid = ((tc[None] - a[:, None, :] * wc) ** 2).sum(axis=(1, 2))
        best = int(np.argmin(resid))
        assert resid[best] < 1e-6
        b = target.mean(axis=0) - a[best] * cand[best].mean(axis=0)
        maps.append(np.concatenate([a[best], b]))
    maps = np.array(maps)
    np.testing.assert_allclose(maps, np.broadcast_to(maps[0], maps.shape), rtol=1e-4, atol=1e-4)


def test_descriptors_do_not_depend_on_batch_size():
    images = structured_images(7, 32, seed=6)
    small = swd.swd_descriptors(images, np.random.default_rng(3), swd.SWDConfig(batch_size=3))
    large = swd.swd_descriptors(images, np.random.default_rng(3), swd.SWDConfig(batch_size=256))
    for s, lg in zip(small, large, strict=True):
        np.testing.assert_allclose(s, lg, rtol=0, atol=1e-5)


# --- SWD: the 1-D and sliced distances ---------------------------------------------------------


def test_sliced_wasserstein_of_a_translation_is_mean_abs_projected_shift():
    rng = np.random.default_rng(8)
    a = rng.standard_normal((500, 147)).astype(np.float32)
    shift = rng.standard_normal(147).astype(np.float32) * 0.1
    got = swd.sliced_wasserstein(a, a + shift, np.random.default_rng(9), dirs_per_repeat=16, dir_repeats=3)
    dirs = swd.random_directions(np.random.default_rng(9), 147, 16, 3)
    expected = np.mean(np.abs(shift.astype(np.float64) @ dirs))
    assert got == pytest.approx(expected, rel=1e-4)


def test_sliced_wasserstein_of_identical_sets_is_zero():
    a = np.random.default_rng(10).standard_normal((300, 147)).astype(np.float32)
    assert swd.sliced_wasserstein(a, a.copy(), np.random.default_rng(0)) == 0.0


def test_wasserstein_1d_unequal_sizes_matches_cdf_integral():
    rng = np.random.default_rng(11)
    a = np.sort(rng.standard_normal((4, 30)), axis=1)
    b = np.sort(rng.standard_normal((4, 45)) + 0.3, axis=1)
    got = swd.wasserstein_1d_sorted(a, b)
    for row in range(4):
        # W1 = integral over x of |F_a(x) - F_b(x)|, piecewise constant between sample points.
        xs = np.sort(np.concatenate([a[row], b[row]]))
        fa = np.searchsorted(a[row], xs[:-1], side="right") / a.shape[1]
        fb = np.searchsorted(b[row], xs[:-1], side="right") / b.shape[1]
        assert got[row] == pytest.approx(np.sum(np.abs(fa - fb) * np.diff(xs)), rel=1e-9)


# --- SWD: the metric ------------------------------------------------------------------------


@pytest.mark.parametrize("res, keys", [(32, ["swd_32", "swd_16"]), (64, ["swd_64", "swd_32", "swd_16"])])
def test_swd_reports_one_key_per_level_and_their_mean(res, keys):
    result = swd.sliced_wasserstein_distance(structured_images(8, res, 1), structured_images(8, res, 2))
    assert list(result) == [*keys, "swd_avg"]
    assert result["swd_avg"] == pytest.approx(np.mean([result[k] for k in keys]))
    assert all(result[k] > 0 for k in keys)


def test_swd_of_identical_sets_is_zero():
    images = structured_images(8, 32, seed=12)
    result = swd.sliced_wasserstein_distance(images, images.copy())
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in result.values())


def test_swd_grows_with_added_noise():
    images = structured_images(24, 32, seed=13)
    rng = np.random.default_rng(14)
    values = []
    for sigma in (4, 16, 48):
        noisy = np.clip(images + rng.normal(0, sigma, images.shape), 0, 255).astype(np.uint8)
        values.append(swd.sliced_wasserstein_distance(images, noisy)["swd_avg"])
    assert 0 < values[0] < values[1] < values[2]


def test_swd_grows_with_blur():
    images = structured_images(24, 64, seed=15)
    x = images.astype(np.float32)
    values = []
    for _ in range(3):
        x = swd.pyr_up(swd.pyr_down(x))
        blurred = np.clip(np.round(x), 0, 255).astype(np.uint8)
        values.append(swd.sliced_wasserstein_distance(images, blurred)["swd_64"])
    assert 0 < values[0] < values[1] < values[2]


def test_swd_is_deterministic_given_seed():
    a, b = structured_images(8, 32, 16), structured_images(8, 32, 17)
    first = swd.sliced_wasserstein_distance(a, b, seed=5)
    assert swd.sliced_wasserstein_distance(a, b, seed=5) == first
    assert swd.sliced_wasserstein_distance(a, b, seed=6) != first


def test_swd_reference_with_and_without_projection_cache_agree():
    a, b = structured_images(8, 64, 18), structured_images(8, 64, 19)
    cached = swd.SWDReference(a, seed=3)
    uncached = swd.SWDReference(a, seed=3, max_cache_bytes=0)
    assert cached.sorted_real is not None and uncached.sorted_real is None
    got, ref = cached.distance(b), uncached.distance(b)
    for key in ref:
        assert got[key] == pytest.approx(ref[key], rel=1e-5)


def test_swd_reference_repeated_calls_give_same_value():
    a, b = structured_images(8, 32, 20), structured_images(8, 32, 21)
    ref = swd.SWDReference(a, seed=1)
    assert ref.distance(b) == ref.distance(b)


def test_swd_accepts_sets_of_different_sizes():
    a, b = structured_images(12, 32, 22), structured_images(7, 32, 23)
    result = swd.sliced_wasserstein_distance(a, b)
    assert np.isfinite(result["swd_avg"]) and result["swd_avg"] > 0


def test_swd_independent_positions_leave_a_positive_floor_for_identical_sets():
    images = structured_images(8, 32, seed=24)
    cfg = swd.SWDConfig(shared_positions=False)
    assert swd.sliced_wasserstein_distance(images, images, config=cfg)["swd_avg"] > 0


def test_swd_reports_progress():
    calls = []
    swd.SWDReference(
        structured_images(5, 32, 25), config=swd.SWDConfig(batch_size=2), progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(2, 5), (4, 5), (5, 5)]


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((2, 32, 32, 3), np.float32), "uint8"),
        (np.zeros((2, 32, 16, 3), np.uint8), "square"),
        (np.zeros((2, 8, 8, 3), np.uint8), ">= 16"),
        (np.zeros((2, 32, 32), np.uint8), "[N, H, W, 3]"),
    ],
)
def test_swd_rejects_bad_images_with_one_line(images, message):
    with pytest.raises(swd.SWDInputError) as info:
        swd.sliced_wasserstein_distance(images, images)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_swd_rejects_mismatched_resolutions():
    with pytest.raises(swd.SWDInputError, match="64 px"):
        swd.sliced_wasserstein_distance(structured_images(2, 32, 0), structured_images(2, 64, 0))


# --- FID: the distance ------------------------------------------------------------------------


def random_spd(rng: np.random.Generator, d: int, rank: int | None = None) -> np.ndarray:
    x = rng.standard_normal((rank or 2 * d, d))
    return x.T @ x / x.shape[0]


def fid_reference(mu1, s1, mu2, s2) -> float:
    """Independent route: eigenvalues of the (non-symmetric) product S1 S2, real and >= 0 in theory."""
    eig = np.linalg.eigvals(s1 @ s2)
    tr = np.sum(np.sqrt(np.clip(eig.real, 0, None)))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr)


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(30)
    mu1, mu2 = rng.standard_normal(20), rng.standard_normal(20)
    v1, v2 = rng.random(20) + 0.1, rng.random(20) + 0.1
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert fid.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_commuting_closed_form():
    rng = np.random.default_rng(31)
    q, _ = np.linalg.qr(rng.standard_normal((24, 24)))
    v1, v2 = rng.random(24) + 0.05, rng.random(24) + 0.05
    s1, s2 = (q * v1) @ q.T, (q * v2) @ q.T
    mu1, mu2 = rng.standard_normal(24), rng.standard_normal(24)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_general_matches_eigenvalues_of_product():
    rng = np.random.default_rng(32)
    s1, s2 = random_spd(rng, 40), random_spd(rng, 40)
    mu1, mu2 = rng.standard_normal(40), rng.standard_normal(40)
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(fid_reference(mu1, s1, mu2, s2), rel=1e-8)


def test_frechet_distance_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg", reason="the sqrtm reference needs scipy")
    rng = np.random.default_rng(33)
    s1, s2 = random_spd(rng, 32), random_spd(rng, 32)
    mu1, mu2 = rng.standard_normal(32), rng.standard_normal(32)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-7)


def test_frechet_distance_is_symmetric():
    rng = np.random.default_rng(34)
    s1, s2 = random_spd(rng, 30, rank=10), random_spd(rng, 30)
    mu1, mu2 = rng.standard_normal(30), rng.standard_normal(30)
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(fid.frechet_distance(mu2, s2, mu1, s1), rel=1e-8)


def test_frechet_distance_of_identical_singular_statistics_is_zero():
    rng = np.random.default_rng(35)
    s = random_spd(rng, 64, rank=20)  # fewer samples than dimensions, as with small sets
    mu = rng.standard_normal(64)
    assert fid.frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-8 * np.trace(s))


def test_frechet_distance_ignores_negligible_imaginary_parts():
    rng = np.random.default_rng(36)
    s1, s2 = random_spd(rng, 10), random_spd(rng, 10)
    mu1, mu2 = rng.standard_normal(10), rng.standard_normal(10)
    got = fid.frechet_distance(mu1, s1 + 1e-12j, mu2, s2)
    assert got == pytest.approx(fid.frechet_distance(mu1, s1, mu2, s2), rel=1e-10)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(fid.FIDStatisticsError, match="do not match"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_feature_statistics_match_numpy_cov():
    x = np.random.default_rng(37).standard_normal((50, 6))
    mu, sigma = fid.feature_statistics(x)
    np.testing.assert_allclose(mu, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-14)


# --- FID: preprocessing -----------------------------------------------------------------------


@pytest.mark.parametrize("src, dst", [(16, 8), (16, 37), (32, 299), (20, 13)])
def test_resize_matches_torch_bilinear(src, dst):
    torch = pytest.importorskip("torch", reason="the resize reference is torch's F.interpolate")
    x = np.random.default_rng(src * dst).random((2, 3, src, src), dtype=np.float32)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(x), size=(dst, dst), mode="bilinear", align_corners=False
    )
    np.testing.assert_allclose(fid.resize_bilinear(x, (dst, dst)), expected.numpy(), rtol=0, atol=1e-5)


def test_preprocess_maps_value_range_and_layout():
    images = np.random.default_rng(38).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    out = fid.preprocess_images(images, (8, 8), (-1.0, 1.0))
    assert out.dtype == np.float32 and out.shape == (2, 3, 8, 8)
    np.testing.assert_allclose(out, images.transpose(0, 3, 1, 2) / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_allclose(fid.preprocess_images(images, (8, 8), (0.0, 255.0)), images.transpose(0, 3, 1, 2))


# --- FID: ONNX extractor end to end -------------------------------------------------------------

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # the ONNX builders below are skipped; everything else still runs
    onnx = None

pytestmark_onnx = pytest.mark.skipif(onnx is None, reason="building test feature extractors needs onnx ('.[export]')")


def save_model(path: Path, nodes, inputs, outputs, initializers=()) -> Path:
    graph = helper.make_graph(nodes, "extractor", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def flatten_model(path: Path, size: int = 8, d: int = 16, batch: int | str = "n", seed: int = 0) -> np.ndarray:
    """Fixed-size extractor: Flatten [N, 3*size*size] then MatMul to D; returns the weight."""
    w = np.random.default_rng(seed).standard_normal((3 * size * size, d)).astype(np.float32) / size
    save_model(
        path,
        [helper.make_node("Flatten", ["x"], ["f"], axis=1), helper.make_node("MatMul", ["f", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, d])],
        [numpy_helper.from_array(w, "w")],
    )
    return w


def pool_model(path: Path, d: int = 16, flatten: bool = True) -> Path:
    """Any-size extractor: GlobalAveragePool, 1x1 Conv to D, optionally Flatten."""
    w = np.random.default_rng(1).standard_normal((d, 3, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Conv", ["p", "w"], ["c"])]
    out_shape: list = ["n", d, 1, 1]
    if flatten:
        nodes.append(helper.make_node("Flatten", ["c"], ["y"], axis=1))
        out_shape = ["n", d]
    else:
        nodes[-1] = helper.make_node("Conv", ["p", "w"], ["y"])
    return save_model(
        path,
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(w, "w")],
    )


def reference_features(images: np.ndarray, w: np.ndarray) -> np.ndarray:
    """16 px -> 8 px half-pixel bilinear is the mean of 2x2 blocks; then [-1, 1] and the MatMul."""
    x = images.astype(np.float64).transpose(0, 3, 1, 2)
    n, c, h, wd = x.shape
    small = x.reshape(n, c, h // 2, 2, wd // 2, 2).mean(axis=(3, 5))
    return (small / 127.5 - 1.0).reshape(n, -1) @ w.astype(np.float64)


@pytestmark_onnx
def test_features_resize_to_model_size(tmp_path):
    w = flatten_model(tmp_path / "m.onnx")
    model = fid.InceptionONNX(tmp_path / "m.onnx")
    assert model.input_size == (8, 8)
    images = np.random.default_rng(40).integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    got = model.features(images, batch_size=4)
    np.testing.assert_allclose(got, reference_features(images, w), rtol=1e-4, atol=1e-4)


@pytestmark_onnx
def test_compute_fid_end_to_end_matches_reference(tmp_path):
    w = flatten_model(tmp_path / "m.onnx")
    rng = np.random.default_rng(41)
    real = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    fake = np.clip(real.astype(np.int64) + rng.integers(-40, 60, real.shape), 0, 255).astype(np.uint8)
    fr, ff = reference_features(real, w), reference_features(fake, w)
    expected = fid_reference(fr.mean(0), np.cov(fr, rowvar=False), ff.mean(0), np.cov(ff, rowvar=False))
    got = fid.compute_fid(real, fake, tmp_path / "m.onnx", batch_size=16)
    assert got == pytest.approx(expected, rel=1e-4)


@pytestmark_onnx
def test_compute_fid_identical_sets_near_zero_and_shift_increases_it(tmp_path):
    pool_model(tmp_path / "p.onnx")
    rng = np.random.default_rng(42)
    real = rng.integers(0, 200, (30, 20, 20, 3), dtype=np.uint8)
    same = fid.compute_fid(real, real.copy(), tmp_path / "p.onnx", input_size=(12, 12))
    shifted = fid.compute_fid(real, real + 30, tmp_path / "p.onnx", input_size=(12, 12))
    assert same == pytest.approx(0.0, abs=1e-6)
    assert shifted > 1e-3


@pytestmark_onnx
def test_pool_output_with_trailing_unit_dims_is_flattened(tmp_path):
    images = np.random.default_rng(43).integers(0, 256, (5, 10, 10, 3), dtype=np.uint8)
    flat = fid.InceptionONNX(pool_model(tmp_path / "a.onnx"), input_size=(10, 10)).features(images)
    kept = fid.InceptionONNX(pool_model(tmp_path / "b.onnx", flatten=False), input_size=(10, 10)).features(images)
    assert flat.shape == (5, 16)
    np.testing.assert_allclose(kept, flat, rtol=1e-6)


@pytestmark_onnx
def test_static_batch_dimension_is_padded(tmp_path):
    w = flatten_model(tmp_path / "s.onnx", batch=4)
    images = np.random.default_rng(44).integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    got = fid.InceptionONNX(tmp_path / "s.onnx").features(images, batch_size=64)
    np.testing.assert_allclose(got, reference_features(images, w), rtol=1e-4, atol=1e-4)


@pytestmark_onnx
def test_real_statistics_cache_is_written_and_reused(tmp_path):
    flatten_model(tmp_path / "m.onnx")
    rng = np.random.default_rng(45)
    real, fake = (rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8) for _ in range(2))
    cache = tmp_path / "stats" / "real.npz"
    first = fid.compute_fid(real, fake, tmp_path / "m.onnx", cache_path=cache)
    assert cache.is_file()
    with np.load(cache, allow_pickle=False) as data:
        assert data["mu"].shape == (16,) and data["sigma"].shape == (16, 16) and int(data["num_images"]) == 20
    assert fid.compute_fid(None, fake, tmp_path / "m.onnx", cache_path=cache) == pytest.approx(first, rel=1e-12)


@pytestmark_onnx
def test_cache_from_another_model_is_refused(tmp_path):
    flatten_model(tmp_path / "a.onnx", seed=0)
    flatten_model(tmp_path / "b.onnx", seed=1)
    images = np.random.default_rng(46).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    cache = tmp_path / "real.npz"
    fid.compute_fid(images, images, tmp_path / "a.onnx", cache_path=cache)
    with pytest.raises(fid.FIDStatisticsError, match="another model"):
        fid.compute_fid(None, images, tmp_path / "b.onnx", cache_path=cache)


@pytestmark_onnx
def test_statistics_round_trip(tmp_path):
    rng = np.random.default_rng(47)
    stats = fid.FIDStatistics(rng.standard_normal(5), random_spd(rng, 5), 9, "abc", (299, 299), (-1.0, 1.0))
    fid.save_statistics(tmp_path / "s.npz", stats)
    back = fid.load_statistics(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.mu, stats.mu)
    np.testing.assert_array_equal(back.sigma, stats.sigma)
    assert (back.num_images, back.model_sha256, back.input_size, back.value_range) == (
        9,
        "abc",
        (299, 299),
        (-1.0, 1.0),
    )


@pytestmark_onnx
def test_missing_real_images_without_cache_is_an_error(tmp_path):
    flatten_model(tmp_path / "m.onnx")
    with pytest.raises(fid.FIDError, match="real_images are needed"):
        fid.compute_fid(None, np.zeros((2, 16, 16, 3), np.uint8), tmp_path / "m.onnx")


@pytestmark_onnx
def test_missing_model_file_is_one_line_error(tmp_path):
    with pytest.raises(fid.FIDModelNotFoundError) as info:
        fid.InceptionONNX(tmp_path / "nope.onnx")
    assert "nope.onnx" in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


@pytestmark_onnx
def test_corrupt_model_file_is_one_line_error(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(fid.FIDModelError) as info:
        fid.InceptionONNX(tmp_path / "bad.onnx")
    assert "bad.onnx" in str(info.value) and "\n" not in str(info.value)


@pytestmark_onnx
def test_output_of_wrong_rank_is_refused_at_load(tmp_path):
    path = save_model(
        tmp_path / "r3.onnx",
        [helper.make_node("ReduceMean", ["x"], ["y"], axes=[3], keepdims=0)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, 8])],
    )
    with pytest.raises(fid.FIDModelError, match=r"\[N, D\]") as info:
        fid.InceptionONNX(path)
    assert "\n" not in str(info.value)


@pytestmark_onnx
def test_spatial_output_is_refused_when_run(tmp_path):
    path = save_model(
        tmp_path / "relu.onnx",
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, 8, 8])],
    )
    model = fid.InceptionONNX(path)
    with pytest.raises(fid.FIDModelError, match=r"must be \[N, D\], got \(2, 3, 8, 8\)"):
        model.features(np.zeros((2, 8, 8, 3), np.uint8))


@pytestmark_onnx
def test_conflicting_input_size_is_refused(tmp_path):
    flatten_model(tmp_path / "m.onnx")
    with pytest.raises(fid.FIDModelError, match="input_size"):
        fid.InceptionONNX(tmp_path / "m.onnx", input_size=(299, 299))
