"""`stylegan video`: the walk's frames are what the runtime gives for the same latents."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from stylegan_edge.runtime import Generator
from stylegan_edge.runtime.video import VideoSpecError, Walk, frame_positions, render_frames, walk_styles

cv2 = pytest.importorskip("cv2", reason="videos are written with OpenCV (pip install '.[demo]')")


@pytest.fixture(scope="module")
def g(tiny_bundle):
    with Generator(tiny_bundle, backend="onnxruntime") as gen:
        yield gen


@pytest.mark.parametrize("loop, frames", [(True, 3 * 4), (False, 2 * 4 + 1)])
def test_a_walk_visits_every_keyframe_and_ends_where_it_should(loop, frames):
    walk = Walk((3, 1, 4), seconds_per_seed=2, fps=2, loop=loop)
    i, j, t = frame_positions(walk)
    assert walk.num_frames == len(t) == frames
    keyframes = [k for k in range(frames) if t[k] == 0]
    assert [int(i[k]) for k in keyframes] == ([0, 1, 2] if loop else [0, 1, 2])
    assert (int(j[-1]) == 0) if loop else (int(i[-1]) == 2 and t[-1] == 0)
    assert np.all((t >= 0) & (t < 1))


@pytest.mark.parametrize("space", ["w", "z"])
def test_keyframes_are_the_images_generate_gives_for_their_seeds(g, space):
    seeds = (7, 2, 11)
    walk = Walk(seeds, seconds_per_seed=1, fps=3, space=space, psi=0.6)
    frames = list(render_frames(g, walk_styles(g, walk), bgr=False))
    assert len(frames) == walk.num_frames == 9
    expected = g.generate(seeds=list(seeds), psi=0.6)
    for k, seed_image in zip((0, 3, 6), expected):
        assert np.array_equal(frames[k], seed_image)
    assert not np.array_equal(frames[1], frames[0])  # it moves between keyframes


def test_frames_between_keyframes_lie_on_the_line_in_w(g):
    walk = Walk((5, 9), seconds_per_seed=1, fps=4, space="w", psi=1.0, loop=False)
    ws = walk_styles(g, walk)
    w5, w9 = g.map(g.z_from_seeds([5, 9]))
    np.testing.assert_allclose(ws[2, 0], 0.5 * (w5 + w9), atol=1e-6)


def test_style_mixing_copies_the_mix_seeds_coarse_styles_into_every_frame(g):
    walk = Walk((1, 2), seconds_per_seed=1, fps=2, mix_seed=8, mix_layers="coarse", psi=1.0)
    ws = walk_styles(g, walk)
    src = g.styles(seeds=[8], psi=1.0)[0]
    coarse = [k for k, r in enumerate(g.meta.layer_resolutions) if r <= 8]
    assert np.array_equal(ws[:, coarse], np.broadcast_to(src[coarse], (len(ws), len(coarse), src.shape[-1])))
    fine = [k for k in range(g.num_layers) if k not in coarse]
    assert not np.array_equal(ws[0, fine], src[fine])


@pytest.mark.parametrize("kwargs, word", [({"fps": 0}, "fps"), ({"seconds_per_seed": float("nan")}, "seconds"),
                                          ({"space": "x"}, "space"), ({"seeds": ()}, "seed")])
def test_a_bad_walk_is_a_one_line_error(kwargs, word):
    with pytest.raises(VideoSpecError, match=word):
        Walk(**{"seeds": (1, 2), **kwargs})


def test_the_command_writes_a_video_with_every_frame(tiny_bundle, tmp_path):
    from stylegan_edge.cli.main import app

    from .test_demo import read_video

    out = tmp_path / "walk.avi"
    result = CliRunner().invoke(app, ["video", str(tiny_bundle), "--seeds", "0,3", "--seconds-per-seed", "0.5",
                                      "--fps", "10", "--out", str(out)])
    assert result.exit_code == 0, result.output
    frames = read_video(out)
    assert len(frames) == 10 and frames[0].shape == (32, 32, 3)
    assert "10 frames" in result.output


def test_the_command_refuses_a_zero_fps_in_one_line(tiny_bundle, tmp_path):
    from stylegan_edge.cli.main import app

    result = CliRunner().invoke(app, ["video", str(tiny_bundle), "--fps", "0", "--out", str(tmp_path / "v.mp4")])
    assert result.exit_code == 1 and result.output.count("error:") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "v.mp4").exists()
