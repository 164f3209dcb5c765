"""Importing NVIDIA's StyleGAN1 pickles: exactness against the official code, and safety.

The fixtures in tests/data/official/ were written by the unmodified official code (NVlabs/stylegan
under TensorFlow 2's compat.v1; scripts/make_official_fixtures.py made them, manifest.json says
with what), with golden outputs of the official `Gs.run(..., randomize_noise=False)` and `D.run`.
No TensorFlow is needed here.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the converter needs PyTorch (pip install '.[train]')")

from stylegan_edge.training.checkpoint import load_discriminator, load_generator, read_checkpoint  # noqa: E402
from stylegan_edge.training.official import (  # noqa: E402
    NetworkRecord,
    OfficialPickleError,
    UnsupportedNetworkError,
    convert_official_pickle,
    import_official,
    load_official_pickle,
)

DATA = Path(__file__).parent / "data" / "official"
FIXTURES = ["tiny32", "tiny32_np1_p4", "tiny128", "tiny16_variants"]
FLOAT_TOL = 1e-4  # images in [-1, 1], float32
U8_TOL = 1  # levels, after the official uint8 conversion


def golden(name: str) -> dict[str, np.ndarray]:
    with np.load(DATA / f"{name}_golden.npz") as g:
        return dict(g)


def official_uint8(img: np.ndarray) -> np.ndarray:
    """tflib.convert_images_to_uint8(drange=[-1, 1], nchw_to_nhwc=True): x*127.5 + 128, clipped, truncated."""
    return np.clip(img * np.float32(127.5) + np.float32(128.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def render(G, z: np.ndarray, psi: float, cutoff: int | None) -> np.ndarray:
    with torch.no_grad():
        ws = G.broadcast(G.map(torch.from_numpy(z)))
        return G.synthesis(G.truncate(ws, psi, cutoff), noise_mode="const").numpy()


@pytest.fixture(scope="module", params=FIXTURES)
def imported(request):
    return request.param, import_official(DATA / f"{request.param}.pkl")


# --- exactness ----------------------------------------------------------------------------------

@pytest.mark.parametrize("setting", ["psi1", "trunc"])
def test_converted_generator_reproduces_official_images(imported, setting):
    name, imp = imported
    g = golden(name)
    psi, cutoff = (1.0, None) if setting == "psi1" else (float(g["trunc_psi"]), int(g["trunc_cutoff"]))
    img = render(imp.G_ema, g["z"], psi, cutoff)
    want = g[f"img_{setting}"]
    assert img.shape == want.shape
    assert np.abs(img - want).max() <= FLOAT_TOL
    diff = np.abs(official_uint8(img).astype(int) - g[f"img_{setting}_u8"].astype(int))
    assert diff.max() <= U8_TOL


def test_converted_mapping_reproduces_official_dlatents(imported):
    name, imp = imported
    g = golden(name)
    with torch.no_grad():
        w = imp.G_ema.broadcast(imp.G_ema.map(torch.from_numpy(g["z"]))).numpy()
    assert np.abs(w - g["w"]).max() <= 1e-5 * max(1.0, np.abs(g["w"]).max())


def test_converted_discriminator_reproduces_official_scores(imported):
    name, imp = imported
    g = golden(name)
    # The official training loop maps real images from [0, 255] to [-1, 1] this way.
    images = g["d_images_u8"].astype(np.float32) * np.float32(2 / 255) - np.float32(1)
    with torch.no_grad():
        scores = imp.D(torch.from_numpy(images)).numpy()
    assert np.abs(scores - g["d_scores"]).max() <= 1e-4 * max(1.0, np.abs(g["d_scores"]).max())


@pytest.fixture(scope="module", params=["tiny32", "tiny128"])
def official_bundle(request, tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="the bundle check runs on onnxruntime")
    from stylegan_edge.export.onnx_export import export_bundle
    from stylegan_edge.runtime import Generator as BundleGenerator

    imp = import_official(DATA / f"{request.param}.pkl")
    path = export_bundle(imp.G_ema, tmp_path_factory.mktemp("official") / f"{request.param}.sgbundle")
    return request.param, BundleGenerator(path, backend="onnxruntime")


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["psi1", "trunc"])
def test_exported_bundle_reproduces_official_images_on_onnxruntime(official_bundle, setting):
    name, g = official_bundle
    gold = golden(name)
    psi, cutoff = (1.0, None) if setting == "psi1" else (float(gold["trunc_psi"]), int(gold["trunc_cutoff"]))
    ws = g.truncate(g.broadcast(g.map(gold["z"])), psi, cutoff)
    assert np.abs(g.synthesize_float(ws, noise="const") - gold[f"img_{setting}"]).max() <= FLOAT_TOL
    # The runtime rounds (x + 1) * 127.5; the official conversion truncates x * 127.5 + 128: the same
    # but for values on a half level.
    diff = np.abs(g.synthesize(ws, noise="const").astype(int) - gold[f"img_{setting}_u8"].astype(int))
    assert diff.max() <= U8_TOL


def test_truncation_golden_differs_from_untruncated():
    """Guards the fixtures themselves: psi 0.7 must change the image, or the test above proves nothing."""
    g = golden("tiny128")
    assert np.abs(g["img_trunc"] - g["img_psi1"]).max() > 0.05


def test_fused_upsampling_is_the_official_transposed_convolution():
    """At 128 px the official code switches to the fused kernel; nearest upsampling + the same
    3x3 kernel (what it equals only with the kernel rotated 180 degrees) misses the golden."""
    imp = import_official(DATA / "tiny128.pkl")
    ups = [layer.conv for layer in imp.G_ema.synthesis.layers if hasattr(layer.conv, "fused")]
    assert [u.fused for u in ups] == [False, False, False, False, True]  # 8, 16, 32, 64 px; 128 px
    g = golden("tiny128")
    ups[-1].fused = False
    wrong = render(imp.G_ema, g["z"], 1.0, None)
    assert np.abs(wrong - g["img_psi1"]).max() > 1e-2


def test_checkpoint_written_by_convert_reproduces_official_images(tmp_path):
    out = convert_official_pickle(DATA / "tiny32.pkl", tmp_path / "tiny32.safetensors")
    G = load_generator(out)
    g = golden("tiny32")
    img = render(G, g["z"], float(g["trunc_psi"]), int(g["trunc_cutoff"]))
    assert np.abs(img - g["img_trunc"]).max() <= FLOAT_TOL
    images = g["d_images_u8"].astype(np.float32) * np.float32(2 / 255) - np.float32(1)
    with torch.no_grad():
        scores = load_discriminator(out)(torch.from_numpy(images)).numpy()
    assert np.abs(scores - g["d_scores"]).max() <= 1e-4 * max(1.0, np.abs(g["d_scores"]).max())


def test_checkpoint_records_its_source(tmp_path):
    src = DATA / "tiny32.pkl"
    out = convert_official_pickle(src, tmp_path / "m.safetensors")
    tensors, meta = read_checkpoint(out)
    import hashlib

    assert meta["source"] == "tiny32.pkl"
    assert meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert any(k.startswith("G.") for k in tensors) and any(k.startswith("D.") for k in tensors)


def test_g_and_gs_go_to_their_own_slots():
    recs = load_official_pickle(DATA / "tiny32.pkl")
    imp = import_official(DATA / "tiny32.pkl")
    for rec, module in ((recs["Gs"], imp.G_ema), (recs["G"], imp.G)):
        want = rec.all_variables()["G_mapping/Dense0/weight"].T
        assert np.array_equal(module.mapping.layers[0].weight.detach().numpy(), want)
    assert not np.array_equal(recs["G"].variables["dlatent_avg"], recs["Gs"].variables["dlatent_avg"])


def test_configuration_comes_from_static_kwargs_and_official_defaults():
    cfg = import_official(DATA / "tiny32.pkl").config
    # static_kwargs: resolution 32, latent 10, dlatent 8, 3 mapping layers of 12, fmap_base 32, fmap_max 4
    assert (cfg.resolution, cfg.z_dim, cfg.w_dim, cfg.img_channels) == (32, 10, 8, 3)
    assert (cfg.mapping_layers, cfg.mapping_width, cfg.fmap_base, cfg.fmap_max) == (3, 12, 32, 4)
    # official defaults: mapping lrmul 0.01, truncation psi 0.7 on 8 layers, fused from 128 px
    assert (cfg.mapping_lrmul, cfg.truncation_psi, cfg.truncation_cutoff) == (0.01, 0.7, 8)
    assert (cfg.fused_up_min_res, cfg.w_avg_beta, cfg.mbstd_group_size) == (128, 0.995, 4)
    cfg128 = import_official(DATA / "tiny128.pkl").config
    assert (cfg128.img_channels, cfg128.use_noise) == (1, False)


def test_build_arguments_beyond_the_released_files_are_read():
    imp = import_official(DATA / "tiny16_variants.pkl")
    cfg = imp.config
    assert (cfg.use_mapping, cfg.const_input, cfg.fused_up_min_res) == (False, False, 8)
    assert (cfg.fmap_decay, cfg.mbstd_group_size, cfg.mbstd_features) == (0.5, 2, 2)
    assert (cfg.truncation_psi, cfg.truncation_cutoff, cfg.w_avg_beta) == (0.5, 4, 0.99)
    assert [cfg.layer_channels(i) for i in (0, 2, 4)] == [8, 6, 4]


def test_lower_resolution_torgb_layers_are_reported_and_left_out():
    imp = import_official(DATA / "tiny32.pkl")
    assert sorted({n.rsplit("/", 1)[0] for n in imp.ignored}) == [
        "G_synthesis/ToRGB_lod1", "G_synthesis/ToRGB_lod2", "G_synthesis/ToRGB_lod3",
    ]
    assert "left out 3 progressive-growing ToRGB layers" in imp.summary()


# --- where our model and the official one differ (networks.py; fixes proposed to the lead) -----

def _official_trainables(rec: NetworkRecord, ignored: tuple[str, ...]) -> int:
    """Trainable official parameters: all but lod, dlatent_avg, the noise images, and the
    lower-resolution ToRGB/FromRGB layers that a finished network does not use."""
    skip = re.compile(r"(.*/)?(lod|dlatent_avg|noise\d+)$")
    return sum(v.size for k, v in rec.all_variables().items() if not skip.fullmatch(k) and k not in ignored)


@pytest.mark.parametrize(
    "name",
    [
        "tiny32",
        "tiny128",
        "tiny16_variants",
    ],
)
def test_generator_has_exactly_the_official_parameters(name):
    recs = load_official_pickle(DATA / f"{name}.pkl")
    imp = import_official(DATA / f"{name}.pkl")
    ours = sum(p.numel() for p in imp.G_ema.parameters())
    assert ours == _official_trainables(recs["Gs"], imp.ignored)


def test_discriminator_has_exactly_the_official_parameters():
    recs = load_official_pickle(DATA / "tiny32.pkl")
    ignored = tuple(k for k in recs["D"].variables if re.match(r"FromRGB_lod[1-9]", k))
    ours = sum(p.numel() for p in import_official(DATA / "tiny32.pkl").D.parameters())
    assert ours == _official_trainables(recs["D"], ignored)


def test_discriminator_without_minibatch_stddev_has_the_official_conv():
    import dataclasses

    from stylegan_edge.training.config import PRESETS
    from stylegan_edge.training.networks import Discriminator

    cfg = dataclasses.replace(PRESETS["tiny"], mbstd_group_size=1)
    # Official D_basic: 4x4/Conv/weight is [3, 3, nf(1), nf(1)] when mbstd_group_size <= 1.
    assert Discriminator(cfg).conv.weight.shape[1] == cfg.channels(1)


# --- the file format: numpy 1.x and 2.x, protocols 3 to 5 --------------------------------------

def test_fixtures_cover_both_numpy_spellings_and_the_2019_protocol():
    np1 = (DATA / "tiny32_np1_p4.pkl").read_bytes()
    np2 = (DATA / "tiny32.pkl").read_bytes()
    assert np1[:2] == b"\x80\x04" and b"numpy.core.multiarray" in np1 and b"numpy._core" not in np1
    assert np2[:2] == b"\x80\x05" and b"numpy._core.numeric" in np2  # protocol 5: _frombuffer


class _Network:
    """Pickles as the official Network does (NEWOBJ, then BUILD with its state dict)."""

    def __init__(self, state: dict) -> None:
        self.state = state

    def __getstate__(self) -> dict:
        return self.state


@contextlib.contextmanager
def _as_official_network():
    """Make `_Network` pickle under the official name dnnlib.tflib.network.Network."""
    names = ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")
    saved = {k: sys.modules.get(k) for k in names}
    module = types.ModuleType("dnnlib.tflib.network")
    module.Network = _Network
    old = (_Network.__module__, _Network.__qualname__)
    _Network.__module__, _Network.__qualname__ = module.__name__, "Network"
    sys.modules.update({k: types.ModuleType(k) for k in names[:2]})
    sys.modules["dnnlib.tflib.network"] = module
    try:
        yield
    finally:
        _Network.__module__, _Network.__qualname__ = old
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _state(rec: NetworkRecord, **changes: Any) -> dict:
    state = dict(
        version=rec.version, name=rec.name, static_kwargs=dict(rec.static_kwargs),
        components={k: _Network(_state(c)) for k, c in rec.components.items()},
        build_module_src=rec.build_module_src, build_func_name=rec.build_func_name,
        variables=list(rec.variables.items()),
    )
    state.update(changes)
    return state


def write_official(path: Path, obj: Any, protocol: int = 4) -> Path:
    with _as_official_network():
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def repickled(tmp_path: Path, protocol: int = 4, **gs_changes: Any) -> Path:
    """The tiny32 fixture written again (by this numpy), with changes to Gs's state."""
    recs = load_official_pickle(DATA / "tiny32.pkl")
    nets = (_Network(_state(recs["G"])), _Network(_state(recs["D"])), _Network(_state(recs["Gs"], **gs_changes)))
    return write_official(tmp_path / f"p{protocol}.pkl", nets, protocol)


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_every_pickle_protocol_from_3_to_5_loads(tmp_path, protocol):
    path = repickled(tmp_path, protocol)
    assert path.read_bytes()[1] == protocol
    g = golden("tiny32")
    img = render(import_official(path).G_ema, g["z"], 1.0, None)
    assert np.abs(img - g["img_psi1"]).max() <= FLOAT_TOL


def test_protocol_2_is_refused_with_one_line(tmp_path):
    path = tmp_path / "p2.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(OfficialPickleError, match="protocol 2") as e:
        load_official_pickle(path)
    assert "\n" not in str(e.value)


# --- hostile files ------------------------------------------------------------------------------

def test_malicious_fixture_is_refused_and_its_command_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("STYLEGAN_EDGE_TEST_MARKER", str(marker))
    with pytest.raises(OfficialPickleError, match=r"refused to load posix\.system") as e:
        import_official(DATA / "malicious_system.pkl")
    assert "\n" not in str(e.value) and "nothing in it was run" in str(e.value)
    assert not marker.exists()


class _Exec:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


class _Eval:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return eval, (self.code,)


class _System:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return os.system, (self.cmd,)


@pytest.mark.parametrize("payload", [_Exec, _Eval, _System])
def test_pickled_calls_are_refused_and_run_nothing(tmp_path, payload):
    marker = tmp_path / "pwned"
    code = f"touch {marker}" if payload is _System else f"open({str(marker)!r}, 'w').close()"
    path = repickled(tmp_path, static_kwargs={"resolution": payload(code)})
    with pytest.raises(OfficialPickleError, match="refused to load (builtins|posix)"):
        load_official_pickle(path)
    assert not marker.exists()


def test_the_payload_is_live_under_plain_pickle(tmp_path):
    """The control for the test above: a plain pickle.load of the same file does run it."""
    marker = tmp_path / "pwned"
    path = repickled(tmp_path, static_kwargs={"resolution": _Exec(f"open({str(marker)!r}, 'w').close()")})
    with _as_official_network():
        pickle.loads(path.read_bytes())
    assert marker.exists()


def test_build_module_source_is_never_executed(tmp_path):
    """The official __setstate__ executes build_module_src; the converter keeps it as text, and
    (issue 15) reads it without running it: a source that is not NVIDIA's build module is refused."""
    marker = tmp_path / "pwned"
    src = f"open({str(marker)!r}, 'w').close()\n"
    path = repickled(tmp_path, build_module_src=src)
    with pytest.raises(OfficialPickleError, match="build_module_src") as e:
        import_official(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    assert load_official_pickle(path)["Gs"].build_module_src == src
    assert not marker.exists()


def test_attributes_set_on_allowed_names_do_not_reach_the_reader(tmp_path):
    """BUILD on what find_class returned must not change the shared reconstructor."""
    from stylegan_edge.training import official_pickle

    before = official_pickle._reconstruct.__defaults__
    path = tmp_path / "build.pkl"
    # PROTO 4, STACK_GLOBAL numpy._core.multiarray._reconstruct, BUILD (None, {'__defaults__': (1,)}), STOP
    path.write_bytes(
        b"\x80\x04\x8c\x16numpy._core.multiarray\x8c\x0c_reconstruct\x93"
        b"N}\x8c\x0c__defaults__K\x01\x85s\x86b."
    )
    with pytest.raises(OfficialPickleError, match="an object of type function"):
        load_official_pickle(path)
    assert official_pickle._reconstruct.__defaults__ == before


def test_object_arrays_are_refused(tmp_path):
    path = repickled(tmp_path, variables=[("lod", np.array([{"a": 1}], dtype=object))])
    with pytest.raises(OfficialPickleError, match="refused to load|not a plain numeric type") as e:
        load_official_pickle(path)
    assert "\n" not in str(e.value)


class _LyingArray:
    """Pickles as numpy does, but claims a shape four times larger than its bytes."""

    def __init__(self, protocol: int) -> None:
        self.protocol = protocol

    def __reduce_ex__(self, protocol: int):
        ctor, args, *state = np.ones((3, 3, 4, 4), np.float32).__reduce_ex__(self.protocol)
        if state and state[0] is not None:  # _reconstruct + (version, shape, dtype, fortran, data)
            v, _, dt, fortran, data = state[0]
            return ctor, args, (v, (3, 3, 4, 16), dt, fortran, data)
        buf, dt, _, order = args  # protocol 5: _frombuffer(buffer, dtype, shape, order)
        return ctor, (buf, dt, (3, 3, 4, 16), order)


@pytest.mark.parametrize("protocol", [4, 5])
def test_array_whose_bytes_do_not_match_its_shape_is_refused(tmp_path, protocol):
    path = repickled(tmp_path, protocol, variables=[("lod", _LyingArray(protocol))])
    with pytest.raises(OfficialPickleError, match="shape \\[3, 3, 4, 16\\] float32 with 576 bytes") as e:
        load_official_pickle(path)
    assert "\n" not in str(e.value)


def test_truncated_file_is_one_line(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes((DATA / "tiny32.pkl").read_bytes()[:20000])
    with pytest.raises(OfficialPickleError, match="not a readable pickle") as e:
        load_official_pickle(path)
    assert "\n" not in str(e.value)


def test_not_a_network_tuple_is_one_line(tmp_path):
    path = tmp_path / "dict.pkl"
    path.write_bytes(pickle.dumps({"G": 1}, protocol=4))
    with pytest.raises(OfficialPickleError, match=r"not the \(G, D, Gs\) tuple"):
        load_official_pickle(path)


# --- networks we do not implement ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"nonlinearity": "relu"}, "nonlinearity"),
        ({"mapping_nonlinearity": "relu"}, "mapping_nonlinearity"),
        ({"normalize_latents": False}, "normalize_latents"),
        ({"dtype": "float16"}, "dtype"),
        ({"blur_filter": None}, "blur_filter"),  # G without blur, D with: one config cannot hold both
        ({"blur_filter": [1, 3, 3, 1]}, "blur_filter"),
        ({"use_wscale": False}, "use_wscale"),
        ({"label_size": 10}, "label_size"),  # G conditional, D not
        ({"structure": "spiral"}, "structure"),
        ({"fused_scale": "always"}, "fused_scale"),
    ],
)
def test_unsupported_build_arguments_give_one_line(tmp_path, change, named):
    recs = load_official_pickle(DATA / "tiny32.pkl")

    def changed(rec: NetworkRecord) -> _Network:  # G_style passes its arguments on to its components
        comps = {k: changed(c) for k, c in rec.components.items()}
        return _Network(_state(rec, static_kwargs=dict(rec.static_kwargs, **change), components=comps))

    nets = (changed(recs["G"]), _Network(_state(recs["D"])), changed(recs["Gs"]))
    path = write_official(tmp_path / "x.pkl", nets)
    with pytest.raises(UnsupportedNetworkError, match=named) as e:
        import_official(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def _changed_g(tmp_path: Path, change: dict, d_change: dict | None = None) -> Path:
    """tiny32 with build arguments changed in G and Gs (and their components), and in D."""
    recs = load_official_pickle(DATA / "tiny32.pkl")

    def changed(rec: NetworkRecord, extra: dict) -> _Network:
        comps = {k: changed(c, extra) for k, c in rec.components.items()}
        return _Network(_state(rec, static_kwargs=dict(rec.static_kwargs, **extra), components=comps))

    nets = (changed(recs["G"], change), changed(recs["D"], d_change or {}), changed(recs["Gs"], change))
    return write_official(tmp_path / "x.pkl", nets)


@pytest.mark.parametrize(
    ("change", "d_change", "fields"),
    [
        # Table 1's switches, which our networks implement (official layer_epilogue order).
        ({"use_pixel_norm": True}, {}, {"use_pixel_norm": True}),
        ({"use_instance_norm": False}, {}, {"use_instance_norm": False}),
        ({"blur_filter": None}, {"blur_filter": None}, {"use_blur": False}),
        # G fused everywhere, D by its own 'auto' threshold: the two thresholds are told apart.
        ({"fused_scale": True}, {}, {"fused_up_min_res": 8, "d_fused_min_res": 128}),
        ({}, {"fused_scale": False}, {"fused_up_min_res": 128, "d_fused_min_res": 64}),
    ],
)
def test_build_arguments_our_networks_implement_convert(tmp_path, change, d_change, fields):
    cfg = import_official(_changed_g(tmp_path, change, d_change)).config
    assert {k: getattr(cfg, k) for k in fields} == fields


def test_lod_outside_the_networks_range_gives_one_line(tmp_path):
    recs = load_official_pickle(DATA / "tiny32.pkl")
    for bad in (np.float32(3.5), np.float32(-1), np.float32("nan"), np.ones(2, np.float32)):
        variables = dict(recs["Gs"].variables, lod=bad)
        path = repickled(tmp_path, variables=list(variables.items()))
        with pytest.raises(UnsupportedNetworkError, match=r"lod=.*a level of detail is a number in \[0, 3\]") as e:
            import_official(path)
        assert "\n" not in str(e.value)


def test_other_build_function_gives_one_line(tmp_path):
    path = repickled(tmp_path, build_func_name="G_paper")
    with pytest.raises(UnsupportedNetworkError, match="G_paper, not the official StyleGAN G_style"):
        import_official(path)


def test_network_in_the_middle_of_progressive_growing_converts_at_its_lod(tmp_path):
    # Issue 15: such snapshots convert (tests/test_official_v4.py checks one against Gs.run); Gs's
    # lod set here alone, so G and D stay finished networks.
    recs = load_official_pickle(DATA / "tiny32.pkl")
    variables = dict(recs["Gs"].variables, lod=np.float32(1.5))
    path = repickled(tmp_path, variables=list(variables.items()))
    imp = import_official(path)
    assert imp.config.progressive and imp.lod == imp.G_ema.lod == 1.5
    assert imp.G.lod == imp.D.lod_value == 0.0 and imp.ignored == ()
    assert "lod 1.5" in imp.summary() and "\n" not in imp.summary()


def test_unknown_variable_gives_one_line(tmp_path):
    recs = load_official_pickle(DATA / "tiny32.pkl")
    variables = dict(recs["Gs"].variables, extra=np.ones(3, np.float32))
    path = repickled(tmp_path, variables=list(variables.items()))
    with pytest.raises(UnsupportedNetworkError, match="variable extra"):
        import_official(path)


# --- command line -------------------------------------------------------------------------------

def _cli():
    import typer
    from typer.testing import CliRunner

    from stylegan_edge.cli.convert_cmd import convert

    app = typer.Typer()
    app.command()(convert)
    return CliRunner(), app


def test_cli_converts_and_prints_one_line(tmp_path):
    runner, app = _cli()
    out = tmp_path / "m.safetensors"
    res = runner.invoke(app, [str(DATA / "tiny32.pkl"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.is_file()
    assert len(res.stdout.strip().splitlines()) == 1 and "32 px" in res.stdout


def test_cli_refuses_a_malicious_file_with_one_line_and_exit_1(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("STYLEGAN_EDGE_TEST_MARKER", str(marker))
    runner, app = _cli()
    out = tmp_path / "m.safetensors"
    res = runner.invoke(app, [str(DATA / "malicious_system.pkl"), "--out", str(out)])
    assert res.exit_code == 1
    assert len(res.stderr.strip().splitlines()) == 1 and "refused" in res.stderr
    assert not out.exists() and not marker.exists()
