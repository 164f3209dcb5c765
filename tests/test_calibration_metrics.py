"""Fidelity measures: PSNR, SSIM (against scikit-image's value), max error, non-finite pixels."""

from __future__ import annotations

import numpy as np
import pytest

from stylegan_edge.calibration import metrics


def _pattern() -> tuple[np.ndarray, np.ndarray]:
    """Two deterministic 3x32x32 images (no RNG, so the reference value holds everywhere)."""
    i, j = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    a = np.stack([np.sin(0.3 * i + c) * np.cos(0.2 * j - c) for c in range(3)])
    b = a + 0.15 * np.cos(0.05 * i * j + 1.0) - 0.05
    return a, b


def test_ssim_matches_scikit_image():
    # skimage.metrics.structural_similarity(a, b, data_range=2.0, channel_axis=0, gaussian_weights=True,
    # sigma=1.5, use_sample_covariance=False) with scikit-image 0.26 gives 0.7912968889410524.
    a, b = _pattern()
    assert metrics.structural_similarity(a, b, 2.0) == pytest.approx(0.7912968889410524, abs=1e-12)


def test_ssim_of_identical_images_is_one_and_of_different_ones_less():
    a = np.random.default_rng(0).uniform(-1, 1, (2, 3, 24, 24))
    np.testing.assert_allclose(metrics.ssim(a, a), 1.0, atol=1e-12)
    assert (metrics.ssim(a + 0.1 * np.random.default_rng(1).standard_normal(a.shape), a) < 0.99).all()


def test_ssim_of_two_flat_images_is_the_luminance_term():
    x, y = np.full((1, 1, 16, 16), 0.2), np.full((1, 1, 16, 16), -0.3)
    c1 = (0.01 * 2.0) ** 2
    expected = (2 * 0.2 * -0.3 + c1) / (0.2**2 + 0.3**2 + c1)
    assert metrics.ssim(x, y)[0] == pytest.approx(expected, rel=1e-9)


def test_psnr_of_a_uniform_offset_is_known():
    ref = np.random.default_rng(2).uniform(-0.5, 0.5, (3, 3, 16, 16))
    np.testing.assert_allclose(metrics.psnr(ref + 0.02, ref), 10 * np.log10(4 / 0.02**2), rtol=1e-9)


def test_psnr_of_identical_images_is_capped_not_infinite():
    ref = np.random.default_rng(3).uniform(-1, 1, (2, 3, 8, 8))
    assert (metrics.psnr(ref, ref) == metrics.PSNR_CAP_DB).all()


def test_non_finite_pixels_count_as_the_largest_error():
    ref = np.random.default_rng(4).uniform(-0.9, 0.9, (1, 3, 16, 16))
    broken = ref.copy()
    broken[0, 0, :4, :4] = np.nan
    c = metrics.compare(broken, ref)
    assert c.nonfinite_pixels == 16
    assert np.isfinite(c.psnr_db).all() and c.psnr_db[0] < 25
    assert c.max_abs[0] == np.inf


def test_max_abs_error_is_per_image():
    ref = np.zeros((2, 3, 8, 8))
    x = ref.copy()
    x[1, 2, 3, 4] = -0.25
    np.testing.assert_array_equal(metrics.max_abs_error(x, ref), [0.0, 0.25])
