"""The torch-free runtime: Generator on onnxruntime against the PyTorch reference."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from stylegan_edge.runtime import BundleError, Generator, parse_seeds, slerp, style_layers
from stylegan_edge.runtime.latents import SeedError, lerp

from .conftest import TINY


@pytest.fixture(scope="module")
def rt(tiny_bundle):
    return Generator(tiny_bundle, backend="onnxruntime")


@pytest.fixture(scope="module")
def ref(tiny_G):
    from stylegan_edge.runtime.backends.torch import torch_generator

    return torch_generator(tiny_G)


def test_importing_the_runtime_does_not_import_torch():
    code = (
        "import sys; import stylegan_edge.runtime, stylegan_edge.runtime.figures;"
        "import stylegan_edge.runtime.backends.onnxruntime; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_generate_returns_uint8_rgb_images(rt):
    images = rt.generate(seeds=[1, 2, 3], psi=0.7)
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    assert images.std() > 5  # not blank


def test_bgr_output_is_rgb_reversed(rt):
    rgb = rt.generate(seeds=[4])
    bgr = rt.generate(seeds=[4], bgr=True)
    assert np.array_equal(rgb[..., ::-1], bgr)


def test_seeds_give_the_same_z_as_the_official_scripts(rt):
    z = rt.z_from_seeds([42])
    assert np.allclose(z[0], np.random.RandomState(42).randn(TINY.z_dim).astype(np.float32))


def test_map_matches_pytorch(rt, ref):
    z = np.random.default_rng(0).standard_normal((4, TINY.z_dim), dtype=np.float32)
    assert np.abs(rt.map(z) - ref.map(z)).max() < 1e-5


@pytest.mark.parametrize("psi, cutoff", [(1.0, None), (0.7, None), (0.5, 3), (-0.5, 6)])
def test_truncation_gives_the_same_images_as_pytorch(rt, ref, psi, cutoff):
    a = rt.generate(seeds=[0, 5, 9], psi=psi, cutoff=cutoff)
    b = ref.generate(seeds=[0, 5, 9], psi=psi, cutoff=cutoff)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    fa = rt.synthesize_float(rt.styles(seeds=[3], psi=psi, cutoff=cutoff))
    fb = ref.synthesize_float(ref.styles(seeds=[3], psi=psi, cutoff=cutoff))
    assert np.abs(fa - fb).max() <= 1e-4


@pytest.mark.parametrize("styles", ["coarse", "middle", "6-7", "1-5"])
def test_style_mixing_gives_the_same_images_as_pytorch(rt, ref, styles):
    dst, src = rt.styles(seeds=[1, 2]), rt.styles(seeds=[7, 8])
    mixed = rt.mix(dst, src, styles)
    assert np.abs(rt.synthesize_float(mixed) - ref.synthesize_float(mixed)).max() <= 1e-4
    changed = np.flatnonzero(np.abs(mixed - dst).sum(axis=(0, 2)) > 0)
    assert changed.tolist() == style_layers(styles, rt.meta.layer_resolutions)


def test_named_style_ranges_follow_the_paper():
    res = [4, 4, 8, 8, 16, 16, 32, 32, 64, 64]
    assert style_layers("coarse", res) == [0, 1, 2, 3]
    assert style_layers("middle", res) == [4, 5, 6, 7]
    assert style_layers("fine", res) == [8, 9]
    with pytest.raises(ValueError, match="selects no layers"):
        style_layers("fine", res[:8])


@pytest.mark.parametrize("mode", ["const", "none"])
def test_deterministic_noise_modes_match_pytorch(rt, ref, mode):
    ws = rt.styles(seeds=[11, 12])
    assert np.abs(rt.synthesize_float(ws, mode) - ref.synthesize_float(ws, mode)).max() <= 1e-4


def test_random_noise_is_seedable_and_varies(rt, ref):
    ws = rt.styles(seeds=[3, 3])
    a = rt.synthesize_float(ws, "random", np.random.default_rng(1))
    b = ref.synthesize_float(ws, "random", np.random.default_rng(1))
    assert np.abs(a - b).max() <= 1e-4  # same draws -> same images on both engines
    assert np.abs(a[0] - a[1]).max() > 1e-3  # two draws in a batch differ


def test_explicit_noise_arrays_are_used(rt, ref):
    ws = rt.styles(seeds=[5])
    rng = np.random.default_rng(2)
    noise = [rng.standard_normal((1, 1, r, r)).astype(np.float32) for r in rt.meta.layer_resolutions]
    assert np.abs(rt.synthesize_float(ws, noise) - ref.synthesize_float(ws, noise)).max() <= 1e-4
    assert np.abs(rt.synthesize_float(ws, noise) - rt.synthesize_float(ws, "const")).max() > 1e-3


def test_interpolation_lerps_in_w_and_slerps_in_z():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 512)).astype(np.float32)
    assert np.allclose(lerp(a, b, 0.25), a + 0.25 * (b - a), atol=1e-6)
    mid = slerp(a, b, 0.5)
    # slerp keeps the norm of Gaussian latents typical where lerp shrinks it
    assert abs(np.linalg.norm(mid) - (np.linalg.norm(a) + np.linalg.norm(b)) / 2) < 0.05 * np.linalg.norm(a)
    assert np.linalg.norm(lerp(a, b, 0.5)) < 0.8 * np.linalg.norm(mid)
    assert np.allclose(slerp(a, b, 0.0), a, atol=1e-5) and np.allclose(slerp(a, b, 1.0), b, atol=1e-5)


def test_seed_lists_parse_ranges_and_reject_garbage():
    assert parse_seeds("0-3,7, 10-11") == [0, 1, 2, 3, 7, 10, 11]
    for bad in ("a-b", "5-2", ""):
        with pytest.raises(SeedError):
            parse_seeds(bad)


def _copy(bundle, tmp_path):
    dst = tmp_path / "copy.sgbundle"
    shutil.copytree(bundle, dst)
    return dst


def test_a_bundle_missing_a_file_names_it(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    (b / "synthesis.onnx").unlink()
    with pytest.raises(BundleError, match=r"synthesis\.onnx: missing from the bundle"):
        Generator(b)


def test_a_bundle_of_another_format_version_says_so(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    meta = json.loads((b / "meta.json").read_text())
    meta["format_version"] = 99
    (b / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"meta\.json: bundle format version 99; this runtime reads version 2"):
        Generator(b)


def test_onnx_inputs_that_disagree_with_meta_are_refused(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    meta = json.loads((b / "meta.json").read_text())
    meta["num_layers"] -= 2
    meta["layers"] = meta["layers"][:-2]
    (b / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"synthesis\.onnx: inputs disagree with meta\.json"):
        Generator(b)


def test_a_missing_precision_says_how_to_make_it(tiny_bundle):
    with pytest.raises(BundleError, match="stylegan-export BUNDLE --fp16"):
        Generator(tiny_bundle, precision="fp16")


def test_onnxruntimes_optimised_graph_is_cached_and_gives_the_same_images(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    for cached in b.glob(".*.ort-*.onnx"):
        cached.unlink()
    first = Generator(b, backend="onnxruntime", device="cpu")
    second = Generator(b, backend="onnxruntime", device="cpu")
    assert first.synthesis.describe()["optimized_cache"] == "miss"
    assert second.synthesis.describe()["optimized_cache"] == "hit"
    ws = first.styles(seeds=[1, 2])
    assert np.array_equal(first.synthesize_float(ws), second.synthesize_float(ws))
    (b / "synthesis.onnx").touch()  # a changed source file invalidates the cache
    assert Generator(b, backend="onnxruntime", device="cpu").synthesis.describe()["optimized_cache"] == "miss"


def test_cpu_batches_split_into_calls_that_fit_the_cache_and_give_the_same_images(tiny_bundle):
    from stylegan_edge.runtime.backends.onnxruntime import OnnxRuntimeBackend, SessionSettings, cpu_batch_chunk

    assert cpu_batch_chunk(4 << 20) == 1 and cpu_batch_chunk(256 << 10) == 8 and cpu_batch_chunk(10**9) == 1
    g = Generator(tiny_bundle, backend="onnxruntime", device="cpu")
    # The tiny model's largest map is small, so the default keeps whole batches together.
    largest = max(4 * TINY.layer_channels(i) * TINY.layer_resolution(i) ** 2 for i in range(TINY.num_layers))
    assert g.meta.largest_feature_map_bytes == largest
    assert g.synthesis.settings.max_batch == cpu_batch_chunk(g.meta.largest_feature_map_bytes) > 1
    ws = g.styles(seeds=[1, 2, 3, 4, 5])
    whole = g.synthesize_float(ws, noise="const")
    path = tiny_bundle / "synthesis.onnx"
    g.synthesis = OnnxRuntimeBackend(path, "fp32", "cpu", settings=SessionSettings(max_batch=2))
    assert g.synthesis.describe()["max_batch"] == "2"
    assert np.array_equal(g.synthesize_float(ws, noise="const"), whole)
