"""Perceptual path length: known answers on synthetic generators, the official crop and filter,
and the ONNX perceptual-model contract."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the path-length metric runs the PyTorch generator")

from stylegan_edge.training.metrics.ppl import (  # noqa: E402
    EPSILON,
    PIXEL_NAME,
    PPL_NAME,
    PerceptualONNX,
    PPLError,
    crop_face,
    filtered_mean,
    path_distances,
    perceptual_path_length,
    pixel_distance,
)

RES = 16


class FakeG:
    """z -> w = M z, image = f(A w) reshaped to [3, RES, RES]; `f` the identity or a square."""

    def __init__(self, z_dim: int = 6, seed: int = 0, square: bool = False, constant: bool = False) -> None:
        rng = np.random.default_rng(seed)
        self.z_dim, self.num_layers = z_dim, 4
        self.M = rng.standard_normal((z_dim, z_dim)) / np.sqrt(z_dim)
        self.A = rng.standard_normal((3 * RES * RES, z_dim)) / np.sqrt(z_dim)
        self.square, self.constant = square, constant
        self.const = torch.from_numpy(rng.standard_normal((1, 3, RES, RES)).astype(np.float32))
        M = torch.from_numpy(self.M.astype(np.float32))
        self.mapping = lambda z: z @ M.T

    def synthesis(self, ws: torch.Tensor, noise: object = None) -> torch.Tensor:
        assert ws.ndim == 3 and ws.shape[1] == self.num_layers
        if self.constant:
            return self.const.expand(ws.shape[0], -1, -1, -1)
        y = ws[:, 0].double() @ torch.from_numpy(self.A).T
        y = y * y if self.square else y
        return y.float().view(-1, 3, RES, RES)


def crop_rows(g: FakeG) -> np.ndarray:
    """Rows of A that survive the face crop (flattened C, H, W order)."""
    idx = torch.arange(3 * RES * RES).view(1, 3, RES, RES).float()
    return crop_face(idx).reshape(-1).long().numpy()


def test_a_generator_that_ignores_its_input_has_path_length_zero() -> None:
    g = FakeG(constant=True)
    for space in ("z", "w"):
        for sampling in ("full", "end"):
            r = perceptual_path_length(g, space=space, sampling=sampling, num_samples=40, batch_size=16)
            assert r.value == 0.0 and np.all(r.distances == 0.0)


def test_linear_generator_in_w_gives_the_analytic_pixel_path_length() -> None:
    g = FakeG(seed=1)
    rng = np.random.default_rng(2)
    z0, z1 = rng.standard_normal((2, 32, g.z_dim))
    t = rng.random(32)
    got = path_distances(g, torch.tensor(z0, dtype=torch.float32), torch.tensor(z1, dtype=torch.float32),
                         torch.tensor(t, dtype=torch.float32), "w")
    # The image is linear in w, so the finite difference is exact: mean((S A M (z1 - z0))^2).
    J = g.A[crop_rows(g)] @ g.M
    want = ((J @ (z1 - z0).T) ** 2).mean(axis=0)
    np.testing.assert_allclose(got, want, rtol=2e-2)


def test_linear_generator_in_w_sampled_mean_matches_the_expectation() -> None:
    g = FakeG(seed=3)
    r = perceptual_path_length(g, space="w", sampling="full", num_samples=2000, batch_size=500, seed=4)
    J = g.A[crop_rows(g)] @ g.M
    # z1 - z0 ~ N(0, 2I): E mean((J dz)^2) = 2 tr(J^T J) / rows.
    expect = 2.0 * np.trace(J.T @ J) / J.shape[0]
    assert r.name == PIXEL_NAME and r.num_samples == 2000
    assert abs(r.distances.mean() / expect - 1.0) < 0.08
    assert r.value == pytest.approx(filtered_mean(r.distances))


def test_linear_generator_in_z_follows_the_unit_sphere_slerp_velocity() -> None:
    g = FakeG(seed=5)
    rng = np.random.default_rng(6)
    z0, z1 = rng.standard_normal((2, 24, g.z_dim))
    t = rng.random(24)
    got = path_distances(g, torch.tensor(z0, dtype=torch.float32), torch.tensor(z1, dtype=torch.float32),
                         torch.tensor(t, dtype=torch.float32), "z")
    a = z0 / np.linalg.norm(z0, axis=1, keepdims=True)
    b = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
    d = (a * b).sum(1, keepdims=True)
    c = b - d * a
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    om = np.arccos(d)
    tt = t[:, None]
    velocity = om * (-a * np.sin(tt * om) + c * np.cos(tt * om))  # d/dt of a cos(t om) + c sin(t om)
    J = g.A[crop_rows(g)] @ g.M
    want = ((J @ velocity.T) ** 2).mean(axis=0)
    np.testing.assert_allclose(got, want, rtol=2e-2)


def test_end_sampling_measures_at_t0_and_full_spreads_t_over_the_path() -> None:
    g = FakeG(seed=7, square=True)
    end = perceptual_path_length(g, space="w", sampling="end", num_samples=300, batch_size=100)
    full = perceptual_path_length(g, space="w", sampling="full", num_samples=300, batch_size=100)
    assert np.all(end.t == 0.0)
    assert 0.0 <= full.t.min() and full.t.max() < 1.0 and 0.25 < full.t.std() < 0.33
    # Same seed, same pairs: only t differs. For an image quadratic in w the derivative at t is
    # 2 (A w(t)) * (A dw); check the end value against that at t = 0 from the pairs themselves.
    rng = np.random.default_rng(8)
    z0, z1 = rng.standard_normal((2, 16, g.z_dim))
    got = path_distances(g, torch.tensor(z0, dtype=torch.float32), torch.tensor(z1, dtype=torch.float32),
                         torch.zeros(16), "w")
    rows = crop_rows(g)
    Aw0 = g.A[rows] @ (g.M @ z0.T)
    Adw = g.A[rows] @ (g.M @ (z1 - z0).T)
    want = ((2 * Aw0 * Adw) ** 2).mean(axis=0)
    np.testing.assert_allclose(got, want, rtol=3e-2)
    assert end.value != pytest.approx(full.value, rel=1e-3)


def test_crop_is_the_official_face_box_and_large_images_are_downscaled_to_256() -> None:
    x = torch.randn(2, 3, 64, 64)
    np.testing.assert_array_equal(crop_face(x).numpy(), x[:, :, 24:56, 16:48].numpy())
    big = torch.randn(1, 3, 1024, 1024)
    want = big[:, :, 384:896, 256:768].reshape(1, 3, 256, 2, 256, 2).mean(dim=(3, 5))
    got = crop_face(big)
    assert got.shape == (1, 3, 256, 256)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)


def test_filter_drops_values_outside_the_1st_and_99th_percentile() -> None:
    rng = np.random.default_rng(9)
    d = rng.random(200)
    d[[3, 50]] = [1e6, -1e6]
    lo, hi = np.sort(d)[1], np.sort(d)[-2]  # the percentiles at 200 samples (lower / higher)
    want = d[(d >= np.percentile(d, 1, method="lower")) & (d <= np.percentile(d, 99, method="higher"))].mean()
    assert filtered_mean(d) == pytest.approx(want)
    assert lo <= filtered_mean(d) <= hi


def _onnx_model(path, kind: str) -> None:
    from onnx import TensorProto, helper, save

    img = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3, "H", "W"]) for n in ("a", "b")]
    if kind == "distance":
        diff = helper.make_node("Sub", ["a", "b"], ["d"])
        sq = helper.make_node("Mul", ["d", "d"], ["s"])
        axes = helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3])
        red = helper.make_node("ReduceMean", ["s", "axes"], ["dist"], keepdims=0)
        out = helper.make_tensor_value_info("dist", TensorProto.FLOAT, ["N"])
        graph = helper.make_graph([diff, sq, red], "lpips", img, [out], initializer=[axes])
    else:
        node = helper.make_node("Identity", ["a"], ["feat"])
        out = helper.make_tensor_value_info("feat", TensorProto.FLOAT, ["N", 3, "H", "W"])
        graph = helper.make_graph([node], "vgg", img[:1], [out])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def test_onnx_distance_model_is_used_and_named_ppl(tmp_path) -> None:
    pytest.importorskip("onnx")
    path = tmp_path / "lpips.onnx"
    _onnx_model(path, "distance")
    model = PerceptualONNX(path)
    rng = np.random.default_rng(10)
    a, b = rng.uniform(-1, 1, (2, 5, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(model(a, b), pixel_distance(a, b), rtol=1e-5)
    g = FakeG(seed=11)
    r = perceptual_path_length(g, space="w", num_samples=20, batch_size=10, distance=model)
    px = perceptual_path_length(g, space="w", num_samples=20, batch_size=10)
    assert r.name == PPL_NAME and px.name == PIXEL_NAME and "not PPL" in px.label
    # float32 differences of nearly equal images inside the ONNX graph: ~1e-4 relative.
    np.testing.assert_allclose(r.distances, px.distances, rtol=2e-3)


def test_onnx_feature_model_gives_lpips_with_unit_weights(tmp_path) -> None:
    pytest.importorskip("onnx")
    path = tmp_path / "vgg.onnx"
    _onnx_model(path, "features")
    model = PerceptualONNX(path, value_range=(0.0, 255.0))
    rng = np.random.default_rng(12)
    a, b = rng.uniform(-1, 1, (2, 4, 3, 6, 6)).astype(np.float32)
    fa, fb = (a + 1) * 127.5, (b + 1) * 127.5
    fa = fa / (np.linalg.norm(fa, axis=1, keepdims=True) + 1e-10)
    fb = fb / (np.linalg.norm(fb, axis=1, keepdims=True) + 1e-10)
    want = ((fa - fb) ** 2).sum(axis=1).mean(axis=(1, 2))
    np.testing.assert_allclose(model(a, b), want, rtol=1e-4)


def test_bad_perceptual_files_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        PerceptualONNX(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(PPLError, match="cannot load perceptual model") as e:
        PerceptualONNX(bad)
    assert "\n" not in str(e.value)


def test_bad_arguments_are_refused() -> None:
    g = FakeG()
    with pytest.raises(PPLError, match="space"):
        perceptual_path_length(g, space="x")
    with pytest.raises(PPLError, match="sampling"):
        perceptual_path_length(g, sampling="middle")
    with pytest.raises(PPLError, match="num_samples"):
        perceptual_path_length(g, num_samples=1)


def test_runs_on_the_tiny_network(tiny_G) -> None:
    r = perceptual_path_length(tiny_G, space="z", num_samples=8, batch_size=4)
    assert r.name == PIXEL_NAME and np.isfinite(r.value) and r.value > 0
    assert r.epsilon == EPSILON and r.distances.shape == (8,)
