"""The procedural face dataset: determinism, shapes, and factor groups that stay independent."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from stylegan_edge.training import procedural as P

# Parts painted inside the head outline; the middle factors may only move these.
HEAD_PARTS = [P.LABELS.index(n) for n in
              ("skin", "fringe", "eye_white", "iris", "pupil", "brow", "nostril", "lips", "mouth")]


def _pairs(n: int, seed: int) -> list[tuple[P.FaceParams, P.FaceParams]]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, 10**6, size=(n, 2))
    return [(P.face_params(int(a)), P.face_params(int(b))) for a, b in idx]


def test_render_face_is_a_function_of_seed_and_index():
    a = P.render_face(7, 32, seed=3)
    assert np.array_equal(a, P.render_face(7, 32, seed=3))
    assert np.abs(a.astype(int) - P.render_face(8, 32, seed=3)).mean() > 5
    assert np.abs(a.astype(int) - P.render_face(7, 32, seed=4)).mean() > 5


@pytest.mark.parametrize("resolution", [4, 8, 16, 32, 64])
def test_render_face_is_uint8_rgb_square(resolution):
    img = P.render_face(1, resolution)
    assert img.shape == (resolution, resolution, 3)
    assert img.dtype == np.uint8
    assert img.std() > 10  # a picture, not a flat fill


def test_batched_render_equals_one_at_a_time():
    idx = [0, 5, 17, 99, 1234]
    batch = P.render_faces(idx, 32, seed=2)
    assert batch.shape == (5, 32, 32, 3)
    for img, i in zip(batch, idx, strict=True):
        np.testing.assert_array_equal(img, P.render_face(i, 32, seed=2))


def test_same_face_at_every_resolution():
    # Box-downscaling the 64 px render gives the 32 px render, up to texture fading
    # (mean error about 1 level; different faces differ by about 60).
    hi = P.render_faces(range(8), 64).astype(np.float64)
    lo = P.render_faces(range(8), 32).astype(np.float64)
    down = hi.reshape(8, 32, 2, 32, 2, 3).mean(axis=(2, 4))
    assert np.abs(down - lo).mean() < 3.0


def test_downsample_is_the_block_mean():
    x = np.random.default_rng(0).random((3, 2, 12, 12)).astype(np.float32)
    ref = x.reshape(3, 2, 4, 3, 4, 3).mean(axis=(3, 5))
    np.testing.assert_allclose(P._downsample(x, 3), ref, rtol=0, atol=1e-6)


def test_factor_groups_partition_the_fields():
    names = [f.name for f in dataclasses.fields(P.FaceParams)]
    grouped = [n for g in ("coarse", "middle", "fine") for n in P.FACTOR_GROUPS[g]]
    assert sorted(grouped) == sorted(names)
    assert len(grouped) == len(set(grouped))


def test_mix_params_takes_only_the_named_group():
    a, b = P.face_params(1), P.face_params(2)
    m = P.mix_params(a, b, ["middle"])
    for name in P.FACTOR_GROUPS["middle"]:
        assert getattr(m, name) == getattr(b, name)
    for name in P.FACTOR_GROUPS["coarse"] + P.FACTOR_GROUPS["fine"]:
        assert getattr(m, name) == getattr(a, name)


def test_fine_factors_change_colours_not_parts():
    for a, b in _pairs(12, seed=11):
        m = P.mix_params(a, b, ["fine"])
        np.testing.assert_array_equal(P.render_labels(m, 64), P.render_labels(a, 64))
        assert np.abs(P.render_params(m, 32).astype(int) - P.render_params(a, 32)).mean() > 2


def test_middle_factors_move_parts_only_inside_the_head():
    changed = 0
    for a, b in _pairs(12, seed=12):
        la, lm = P.render_labels(a, 64), P.render_labels(P.mix_params(a, b, ["middle"]), 64)
        head = np.isin(la, HEAD_PARTS)
        np.testing.assert_array_equal(np.isin(lm, HEAD_PARTS), head)  # same head outline
        np.testing.assert_array_equal(lm[~head], la[~head])  # nothing outside it moves
        changed += int((lm != la).sum() > 20)
    assert changed >= 11  # and inside, the features do move


def test_coarse_factors_move_the_head_outline():
    moved = 0
    for a, b in _pairs(12, seed=13):
        la, lm = P.render_labels(a, 32), P.render_labels(P.mix_params(a, b, ["coarse"]), 32)
        moved += int((np.isin(la, HEAD_PARTS) != np.isin(lm, HEAD_PARTS)).sum() > 10)
    assert moved >= 11


def test_faces_are_centred_and_fill_the_frame():
    labels = P.render_labels([P.face_params(i) for i in range(32)], 32)
    for lab in labels:
        ys, xs = np.nonzero(np.isin(lab, HEAD_PARTS))
        assert abs(xs.mean() - 15.5) < 4 and abs(ys.mean() - 15.5) < 5
        assert 0.2 < len(xs) / lab.size < 0.6


def test_feature_window_loses_nothing(monkeypatch):
    # Features are painted on per-image windows for speed; a full-frame window must agree.
    params = [P.face_params(i, seed=5) for i in range(24)]
    windowed = P.render_params(params, 32).astype(int)

    def full(p, size):
        n = p["head_x"].shape[0]
        return np.zeros(n, int), np.zeros(n, int), size, size

    monkeypatch.setattr(P, "_feature_window", full)
    assert np.abs(P.render_params(params, 32) - windowed).max() <= 3


def test_sampled_parameters_stay_in_their_documented_ranges():
    ps = [P.face_params(i) for i in range(300)]
    assert all(-1.0 <= p.head_yaw <= 1.0 and 0.0 <= p.jaw <= 0.4 for p in ps)
    colours = np.array([c for p in ps for c in (p.skin_color, p.hair_color, p.bg_color, p.lip_color)])
    assert colours.min() >= 0.0 and colours.max() <= 1.0
    # Each switch-like factor takes both of its states.
    assert 0.2 < np.mean([p.freckles > 0 for p in ps]) < 0.5
    assert 0.4 < np.mean([p.mouth_open > 0 for p in ps]) < 0.8


def test_errors_for_bad_arguments():
    with pytest.raises(ValueError, match="index and seed must be >= 0"):
        P.face_params(-1)
    with pytest.raises(ValueError, match="resolution must be >= 4"):
        P.render_face(0, 2)
    with pytest.raises(ValueError, match="unknown factor group 'hair'"):
        P.mix_params(P.face_params(0), P.face_params(1), ["hair"])


def test_cache_faces_renders_once_and_reuses(tmp_path):
    path = tmp_path / "cache" / "faces.npy"
    calls = []
    arr = P.cache_faces(path, 5, 16, seed=1, progress=lambda d, t: calls.append((d, t)))
    np.testing.assert_array_equal(np.asarray(arr), P.render_faces(range(5), 16, seed=1))
    assert calls[-1] == (5, 5)
    mtime = path.stat().st_mtime_ns
    again = P.cache_faces(path, 5, 16, seed=1)
    assert path.stat().st_mtime_ns == mtime and again.shape == (5, 16, 16, 3)
    # A cache of another shape is replaced, not misread.
    assert P.cache_faces(path, 3, 8, seed=1).shape == (3, 8, 8, 3)


def test_cache_faces_notices_another_seed(tmp_path):
    path = tmp_path / "faces.npy"
    P.cache_faces(path, 4, 8, seed=1)
    np.testing.assert_array_equal(np.asarray(P.cache_faces(path, 4, 8, seed=2)), P.render_faces(range(4), 8, seed=2))
