"""Calibration data: drawn from the model's own latents, deterministic, following the deployed
truncation, mixing and noise settings, and served to onnxruntime's calibrator."""

from __future__ import annotations

import numpy as np
import pytest

from stylegan_edge.calibration.data import (
    CalibrationData,
    CalibrationSettings,
    SynthesisDataReader,
    make_calibration_data,
)
from stylegan_edge.calibration.errors import CalibrationError
from stylegan_edge.runtime.bundle import Bundle

from .conftest import TINY


def test_same_seed_gives_identical_data_and_another_seed_different_data(tiny_bundle):
    a = make_calibration_data(tiny_bundle, CalibrationSettings(samples=6, seed=3, noise="random"))
    b = make_calibration_data(tiny_bundle, CalibrationSettings(samples=6, seed=3, noise="random"))
    c = make_calibration_data(tiny_bundle, CalibrationSettings(samples=6, seed=4, noise="random"))
    np.testing.assert_array_equal(a.ws, b.ws)
    for k in a.noise:
        np.testing.assert_array_equal(a.noise[k], b.noise[k])
    assert np.abs(a.ws - c.ws).max() > 1e-3


def test_styles_come_from_the_bundles_mapping_network(tiny_bundle):
    from stylegan_edge.runtime.generator import Generator

    data = make_calibration_data(tiny_bundle, CalibrationSettings(samples=5, psi=1.0, mixing=0.0, seed=7))
    g = Generator(tiny_bundle, backend="onnxruntime", device="cpu")
    z = np.random.default_rng(7).standard_normal((10, TINY.z_dim), dtype=np.float32)
    np.testing.assert_allclose(data.ws[:, 0], g.map(z)[:5], rtol=1e-5, atol=1e-6)


def test_truncation_follows_psi_and_cutoff(tiny_bundle):
    w_avg = Bundle(tiny_bundle).meta.w_avg
    data = make_calibration_data(tiny_bundle, CalibrationSettings(samples=4, psi=0.0, cutoff=3, mixing=0.0))
    np.testing.assert_allclose(data.ws[:, :3], np.broadcast_to(w_avg, data.ws[:, :3].shape), atol=1e-6)
    assert np.abs(data.ws[:, 3:] - w_avg).max() > 1e-2
    assert data.settings["psi"] == 0.0 and data.settings["cutoff"] == 3


def test_default_truncation_is_the_bundles(tiny_bundle):
    data = make_calibration_data(tiny_bundle, CalibrationSettings(samples=2))
    assert data.settings["psi"] == Bundle(tiny_bundle).meta.truncation_psi


def test_without_mixing_every_layer_shares_one_style(tiny_bundle):
    data = make_calibration_data(tiny_bundle, CalibrationSettings(samples=8, mixing=0.0))
    np.testing.assert_array_equal(data.ws, np.broadcast_to(data.ws[:, :1], data.ws.shape))
    assert data.settings["mixed_samples"] == 0


def test_with_mixing_each_sample_switches_style_once_at_a_layer_after_the_first(tiny_bundle):
    data = make_calibration_data(tiny_bundle, CalibrationSettings(samples=8, mixing=1.0))
    assert data.settings["mixed_samples"] == 8
    for ws in data.ws:
        changes = [i for i in range(1, len(ws)) if np.abs(ws[i] - ws[i - 1]).max() > 0]
        assert len(changes) == 1 and changes[0] >= 1


def test_noise_modes_give_the_bundles_constant_zeros_or_fresh_draws(tiny_bundle):
    const = Bundle(tiny_bundle).noise_const()
    c = make_calibration_data(tiny_bundle, CalibrationSettings(samples=3, noise="const")).feeds()
    z = make_calibration_data(tiny_bundle, CalibrationSettings(samples=3, noise="none")).feeds()
    r = make_calibration_data(tiny_bundle, CalibrationSettings(samples=3, noise="random")).feeds()
    np.testing.assert_array_equal(c["noise_05"], np.broadcast_to(const["noise_05"], c["noise_05"].shape))
    assert not z["noise_05"].any()
    assert np.abs(r["noise_05"][0] - r["noise_05"][1]).max() > 0.1


def test_reader_yields_each_batch_of_graph_feeds_then_none_and_rewinds(tiny_bundle):
    data = make_calibration_data(tiny_bundle, CalibrationSettings(samples=5, noise="random"))
    reader = SynthesisDataReader(data, batch_size=2)
    batches = []
    while (feeds := reader.get_next()) is not None:
        batches.append(feeds)
    assert [f["w_00"].shape[0] for f in batches] == [2, 2, 1] and len(reader) == 3
    assert set(batches[0]) == set(Bundle(tiny_bundle).meta.synthesis_inputs)
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in batches[0].values())
    np.testing.assert_array_equal(batches[1]["w_03"], data.ws[2:4, 3])
    np.testing.assert_array_equal(batches[2]["noise_01"], data.noise["noise_01"][4:5])
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["w_00"], batches[0]["w_00"])


def test_reader_refuses_data_lacking_a_graph_input(tiny_bundle):
    data = make_calibration_data(tiny_bundle, CalibrationSettings(samples=2))
    with pytest.raises(CalibrationError, match="noise_99"):
        SynthesisDataReader(data, 2, [*data.input_names, "noise_99"])


def test_saved_data_loads_back_identically(tiny_bundle, tmp_path):
    data = make_calibration_data(tiny_bundle, CalibrationSettings(samples=3, noise="random", psi=0.5))
    back = CalibrationData.load(data.save(tmp_path / "c.npz"))
    np.testing.assert_array_equal(back.ws, data.ws)
    assert back.settings == data.settings and back.w_inputs == data.w_inputs
    for k, v in data.feeds().items():
        np.testing.assert_array_equal(back.feeds()[k], v)


@pytest.mark.parametrize("kwargs, word", [({"samples": 0}, "--samples"), ({"mixing": 1.5}, "--mixing"),
                                          ({"noise": "pink"}, "--noise"), ({"cutoff": 99}, "--cutoff")])
def test_bad_settings_are_one_line_errors_naming_the_option(tiny_bundle, kwargs, word):
    with pytest.raises(CalibrationError, match=word) as e:
        make_calibration_data(tiny_bundle, CalibrationSettings(**kwargs))
    assert "\n" not in str(e.value)
