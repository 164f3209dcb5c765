"""Make the official-format StyleGAN1 test fixtures with NVIDIA's own, unmodified code.

Writes tiny `(G, D, Gs)` pickles exactly as `training/misc.py:save_pkl` of NVlabs/stylegan does
(`pickle.dump` of the official `dnnlib.tflib.Network` objects), plus golden outputs that the
official `Gs.run` / `D.run` compute for fixed inputs, into tests/data/official/. The test suite
reads these with no TensorFlow.

Nothing from NVlabs/stylegan is copied here: the script imports a checkout that the user passes
in (`git clone https://github.com/NVlabs/stylegan`), and runs it under TensorFlow 2's
`tf.compat.v1`. The official code was written for TensorFlow 1.x; three things keep it running
under TensorFlow 2, all applied here at run time, none by editing an official file:

1. `import tensorflow as tf` in the official modules resolves to a proxy of `tf.compat.v1`
   (with v2 behaviour disabled), so `tf.get_variable`, `tf.Session`, ... are the TF1 API.
2. The proxy's `get_variable` turns booleans inside a shape into ints: the official noise
   variables have shape `[1, use_noise, res, res]` with `use_noise=True`, which TF1 read as 1 and
   TF2's protobuf refuses.
3. TensorFlow's CPU kernels only take NHWC: the proxy's `nn.conv2d`, `nn.conv2d_transpose`,
   `nn.depthwise_conv2d` and `nn.avg_pool` transpose an NCHW call to NHWC and the result back.
   Transposes move values without arithmetic, so the numbers are those of the NCHW op.

The session is made by the official `tflib.init_tf` with `allow_soft_placement=True` (the official
`Network.run` pins its graph to `/gpu:0`).

One change of content, not of format: a real pickle carries the whole official source text in
each network's `build_module_src`. That text is NVIDIA's (CC BY-NC) and is not ours to commit, so
the fixtures carry a one-line stand-in naming the file and its SHA-256 instead. It is set through
the official `network._import_module_src` cache before the networks are built (the networks are
still built from the real module), and one string object serves every network, as a real file's
clones share theirs. The golden outputs come from the networks that the official loader rebuilds
from the written file: the official `network.import_handler` hook (meant for legacy pickles) puts
the real source back while loading, since the stand-in cannot be executed.

Two virtual environments (tensorflow-cpu from PyPI; 2.18 and later need numpy 2, 2.17 numpy 1):

    python3.11 -m venv /tmp/venv-tf-np2 && /tmp/venv-tf-np2/bin/pip install tensorflow-cpu tensorboard
    python3.11 -m venv /tmp/venv-tf-np1 && /tmp/venv-tf-np1/bin/pip install "tensorflow-cpu==2.17.1" "numpy<2"
    /tmp/venv-tf-np2/bin/python scripts/make_official_fixtures.py /path/to/stylegan
    /tmp/venv-tf-np1/bin/python scripts/make_official_fixtures.py /path/to/stylegan

Each run also writes `malicious_system.pkl`, an official-looking file whose build arguments hide
an `os.system` call (made here, not by the official code). Each run makes the fixtures whose
numpy major version matches its own (the numpy-1.x one is the file "written the way the 2019
release was": numpy 1.x array pickling, protocol 4) and merges their description into
tests/data/official/manifest.json. Each fixture is built in its own process, so each has a fresh
TensorFlow graph and seed.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import pickle
import platform
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "data" / "official"

# Build arguments as the official training loop passes them (num_channels, resolution and
# label_size from the dataset, the rest as G_args / D_args), with small widths.
FIXTURES: dict[str, dict[str, Any]] = {
    # The default architecture at 32 px: nearest upsampling + conv, noise, constant input.
    # Written with pickle.HIGHEST_PROTOCOL (5), as the official save_pkl does under Python 3.8+.
    "tiny32": dict(
        numpy_major=2, protocol=pickle.HIGHEST_PROTOCOL, seed=1, n_latents=2, n_d_images=8,
        G_kwargs=dict(
            num_channels=3, resolution=32, label_size=0, latent_size=10, dlatent_size=8,
            mapping_layers=3, mapping_fmaps=12, fmap_base=32, fmap_max=4,
        ),
        D_kwargs=dict(num_channels=3, resolution=32, label_size=0, fmap_base=32, fmap_max=4),
    ),
    # The same architecture written the way the 2019 release files were: numpy 1.x, protocol 4.
    "tiny32_np1_p4": dict(
        numpy_major=1, protocol=4, seed=2, n_latents=2, n_d_images=8,
        G_kwargs=dict(
            num_channels=3, resolution=32, label_size=0, latent_size=10, dlatent_size=8,
            mapping_layers=3, mapping_fmaps=12, fmap_base=32, fmap_max=4,
        ),
        D_kwargs=dict(num_channels=3, resolution=32, label_size=0, fmap_base=32, fmap_max=4),
    ),
    # 128 px: the official fused_scale='auto' switches to the fused transposed convolution in G
    # (and the fused strided convolution in D) at 128 px. One grey channel and no noise keep the
    # file and its golden images small; noise and RGB are covered at 32 px.
    "tiny128": dict(
        numpy_major=2, protocol=4, seed=3, n_latents=1, n_d_images=2,
        G_kwargs=dict(
            num_channels=1, resolution=128, label_size=0, latent_size=8, dlatent_size=8,
            mapping_layers=2, mapping_fmaps=8, fmap_base=128, fmap_max=4, use_noise=False,
        ),
        D_kwargs=dict(num_channels=1, resolution=128, label_size=0, fmap_base=128, fmap_max=4),
    ),
    # The build arguments the released files leave at their defaults, changed: the paper's
    # "traditional" input (a dense layer from w) instead of the constant, no mapping layers
    # (w = normalised z), fused resampling at every resolution, fmap_decay 0.5, two
    # minibatch-stddev features in groups of 2, truncation defaults of its own, and the 'linear'
    # / 'fixed' structures (the same network at lod 0). Written with protocol 3.
    "tiny16_variants": dict(
        numpy_major=2, protocol=3, seed=4, n_latents=2, n_d_images=8,
        G_kwargs=dict(
            num_channels=3, resolution=16, label_size=0, latent_size=6, dlatent_size=6, mapping_layers=0,
            fmap_base=12, fmap_decay=0.5, fmap_max=8, const_input_layer=False, fused_scale=True,
            structure="linear", truncation_psi=0.5, truncation_cutoff=4, dlatent_avg_beta=0.99,
        ),
        D_kwargs=dict(
            num_channels=3, resolution=16, label_size=0, fmap_base=12, fmap_decay=0.5, fmap_max=8,
            fused_scale=True, mbstd_group_size=2, mbstd_num_features=2, structure="fixed",
        ),
    ),
}

TRUNC_PSI, TRUNC_CUTOFF = 0.7, 8


# --- running the official code under TensorFlow 2 -------------------------------------------

def _tf1_proxy() -> types.ModuleType:
    """A module that the official `import tensorflow as tf` gets: tf.compat.v1 plus two fixes."""
    import tensorflow as real_tf

    v1 = real_tf.compat.v1
    v1.disable_v2_behavior()

    def get_variable(name, shape=None, *args, **kwargs):
        if shape is not None:
            shape = [int(d) if isinstance(d, bool) else d for d in shape]
        return v1.get_variable(name, shape, *args, **kwargs)

    def nhwc(x):
        return v1.transpose(x, [0, 2, 3, 1])

    def nchw(x):
        return v1.transpose(x, [0, 3, 1, 2])

    def hw_last(s):  # [1, 1, sh, sw] (NCHW order) -> [1, sh, sw, 1]
        return [s[0], s[2], s[3], s[1]]

    def conv2d(input, filter, strides, padding, data_format="NHWC", **kw):  # noqa: A002
        if data_format != "NCHW":
            return v1.nn.conv2d(input, filter, strides=strides, padding=padding, data_format=data_format, **kw)
        y = v1.nn.conv2d(nhwc(input), filter, strides=hw_last(strides), padding=padding, data_format="NHWC", **kw)
        return nchw(y)

    def conv2d_transpose(value, filter, output_shape, strides, padding="SAME", data_format="NHWC", **kw):  # noqa: A002
        if data_format != "NCHW":
            return v1.nn.conv2d_transpose(value, filter, output_shape, strides, padding=padding,
                                          data_format=data_format, **kw)
        shape = [output_shape[0], output_shape[2], output_shape[3], output_shape[1]]
        y = v1.nn.conv2d_transpose(nhwc(value), filter, shape, hw_last(strides), padding=padding,
                                   data_format="NHWC", **kw)
        return nchw(y)

    def depthwise_conv2d(input, filter, strides, padding, data_format=None, **kw):  # noqa: A002
        if data_format != "NCHW":
            return v1.nn.depthwise_conv2d(input, filter, strides, padding, data_format=data_format, **kw)
        return nchw(v1.nn.depthwise_conv2d(nhwc(input), filter, hw_last(strides), padding, data_format="NHWC", **kw))

    def avg_pool(value, ksize, strides, padding, data_format="NHWC", **kw):
        if data_format != "NCHW":
            return v1.nn.avg_pool(value, ksize, strides, padding, data_format=data_format, **kw)
        return nchw(v1.nn.avg_pool(nhwc(value), hw_last(ksize), hw_last(strides), padding, data_format="NHWC", **kw))

    nn = types.ModuleType("tensorflow.nn")
    nn.__getattr__ = lambda name: getattr(v1.nn, name)  # type: ignore[method-assign]
    nn.conv2d, nn.conv2d_transpose = conv2d, conv2d_transpose
    nn.depthwise_conv2d, nn.avg_pool = depthwise_conv2d, avg_pool

    tf = types.ModuleType("tensorflow")
    tf.__getattr__ = lambda name: getattr(v1, name)  # type: ignore[method-assign]
    tf.get_variable, tf.nn = get_variable, nn
    return tf


def _import_official(checkout: Path) -> tuple[Any, str]:
    """The official `dnnlib.tflib`, and the version of the TensorFlow that runs it."""
    import tensorflow as real_tf  # the real package, loaded before the alias hides it

    version = real_tf.__version__

    sys.modules["tensorflow"] = _tf1_proxy()
    sys.path.insert(0, str(checkout))
    import dnnlib.tflib as tflib
    import dnnlib.tflib.network as network
    import training.networks_stylegan as networks_stylegan

    # What the fixtures carry as build_module_src, and how loading gets the real text back
    # (see the module docstring).
    real_src = inspect.getsource(networks_stylegan)
    digest = hashlib.sha256(Path(networks_stylegan.__file__).read_bytes()).hexdigest()
    stand_in = f"# NVlabs/stylegan training/networks_stylegan.py, sha256 {digest}: not included in this test fixture\n"
    network._import_module_src[networks_stylegan] = stand_in

    @network.import_handler
    def _real_source(state: dict) -> dict:
        if state["build_module_src"] == stand_in:
            state = dict(state, build_module_src=real_src)
        return state

    return tflib, version


# --- one fixture ------------------------------------------------------------------------------

def _random_value(name: str, shape: tuple[int, ...], rng: np.random.RandomState, mapping_lrmul: float) -> np.ndarray:
    """Random values at the official initialisation's scale, and for every variable: noise
    strengths and biases start at zero officially, which would leave their arithmetic untested."""
    leaf = name.split("/")[-1]
    std = 1.0
    if name.startswith("G_mapping/"):
        # Stored as value / lrmul; the network multiplies by lrmul at run time.
        std = (1.0 if leaf == "weight" else 0.3) / mapping_lrmul
    elif name.endswith("Noise/weight"):
        std = 0.5
    elif "ToRGB" in name and leaf == "weight":
        std = 0.5  # keeps most pixels inside [-1, 1], so the uint8 conversion is exercised
    elif leaf == "bias":
        std = 0.3
    elif leaf == "dlatent_avg":
        std = 0.5
    return (rng.randn(*shape) * std).astype(np.float32)


def _randomize(tflib: Any, net: Any, rng: np.random.RandomState) -> None:
    values = {}
    for name, var in net.vars.items():
        shape = tuple(d.value for d in var.shape)
        # 0.01: the official default mapping_lrmul, which every fixture keeps.
        values[var] = np.float32(0) if name.endswith("lod") else _random_value(name, shape, rng, 0.01)
    tflib.set_vars(values)


def _make_one(checkout: Path, name: str, out_dir: Path) -> dict[str, Any]:
    spec = FIXTURES[name]
    tflib, tf_version = _import_official(checkout)
    tflib.init_tf({"rnd.np_random_seed": spec["seed"], "allow_soft_placement": True})
    rng = np.random.RandomState(spec["seed"])

    G = tflib.Network("G", func_name="training.networks_stylegan.G_style", **spec["G_kwargs"])
    D = tflib.Network("D", func_name="training.networks_stylegan.D_basic", **spec["D_kwargs"])
    _randomize(tflib, G, rng)
    _randomize(tflib, D, rng)
    Gs = G.clone("Gs")
    _randomize(tflib, Gs, rng)  # its own values, so a converter that swaps G and Gs fails

    pkl_path = out_dir / f"{name}.pkl"
    with open(pkl_path, "wb") as f:
        pickle.dump((G, D, Gs), f, protocol=spec["protocol"])

    # Golden outputs from the networks as the official loader rebuilds them from the file.
    with open(pkl_path, "rb") as f:
        G2, D2, Gs2 = pickle.load(f)
    del G2
    z = rng.randn(spec["n_latents"], Gs2.input_shape[1]).astype(np.float32)
    to_u8 = dict(func=tflib.convert_images_to_uint8, nchw_to_nhwc=True)
    golden: dict[str, np.ndarray] = {"z": z}
    golden["w"] = Gs2.components.mapping.run(z, None)
    golden["img_psi1"] = Gs2.run(z, None, truncation_psi=1.0, randomize_noise=False)
    golden["img_psi1_u8"] = Gs2.run(z, None, truncation_psi=1.0, randomize_noise=False, output_transform=to_u8)
    trunc = dict(truncation_psi=TRUNC_PSI, truncation_cutoff=TRUNC_CUTOFF, randomize_noise=False)
    golden["img_trunc"] = Gs2.run(z, None, **trunc)
    golden["img_trunc_u8"] = Gs2.run(z, None, output_transform=to_u8, **trunc)
    golden["trunc_psi"] = np.float32(TRUNC_PSI)
    golden["trunc_cutoff"] = np.int64(TRUNC_CUTOFF)
    c, r = spec["D_kwargs"]["num_channels"], spec["D_kwargs"]["resolution"]
    d_u8 = rng.randint(0, 256, size=(spec["n_d_images"], c, r, r)).astype(np.uint8)
    golden["d_images_u8"] = d_u8
    # Real images enter D as the official training loop maps [0, 255] to [-1, 1].
    golden["d_scores"] = D2.run(d_u8.astype(np.float32) * np.float32(2 / 255) - np.float32(1), None)
    golden_path = out_dir / f"{name}_golden.npz"
    np.savez(golden_path, **golden)

    return {
        "pickle": pkl_path.name,
        "golden": golden_path.name,
        "protocol": spec["protocol"],
        "numpy": np.__version__,
        "tensorflow": tf_version,
        "python": platform.python_version(),
        "seed": spec["seed"],
        "G_static_kwargs": spec["G_kwargs"],
        "D_static_kwargs": spec["D_kwargs"],
        "truncation": {"psi": TRUNC_PSI, "cutoff": TRUNC_CUTOFF},
        "official_sources_sha256": {
            rel: hashlib.sha256((checkout / rel).read_bytes()).hexdigest()
            for rel in ("training/networks_stylegan.py", "dnnlib/tflib/network.py", "dnnlib/tflib/tfutil.py")
        },
        "official_commit": _git_head(checkout),
        "sizes": {"pickle": pkl_path.stat().st_size, "golden": golden_path.stat().st_size},
    }


def _git_head(checkout: Path) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


# --- a hostile file ---------------------------------------------------------------------------

MARKER_ENV = "STYLEGAN_EDGE_TEST_MARKER"


def _write_malicious(out_dir: Path) -> Path:
    """An official-looking (G, D, Gs) whose Gs build arguments hide `os.system`: a plain
    `pickle.load` runs `touch "$STYLEGAN_EDGE_TEST_MARKER"`. The converter must refuse it."""
    import os

    class Network:  # pickles as the official class does: NEWOBJ, then BUILD with the state dict
        def __init__(self, state: dict) -> None:
            self.state = state

        def __getstate__(self) -> dict:
            return self.state

    class Payload:
        def __reduce__(self):
            return os.system, (f'touch "${MARKER_ENV}"',)

    module = types.ModuleType("dnnlib.tflib.network")
    Network.__module__, Network.__qualname__ = module.__name__, "Network"
    module.Network = Network

    def net(name: str, func: str, **kwargs: Any) -> Network:
        return Network(dict(
            version=3, name=name, static_kwargs=kwargs, components={}, build_module_src="# omitted\n",
            build_func_name=func, variables=[("lod", np.float32(0))],
        ))

    saved = {k: sys.modules.get(k) for k in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")}
    sys.modules.update({k: types.ModuleType(k) for k in saved})
    sys.modules["dnnlib.tflib.network"] = module
    try:
        data = pickle.dumps(
            (net("G", "G_style"), net("D", "D_basic"), net("Gs", "G_style", resolution=Payload())), protocol=4,
        )
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    path = out_dir / "malicious_system.pkl"
    path.write_bytes(data)
    return path


# --- driver -----------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", type=Path, help="path of a checkout of NVlabs/stylegan")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture folder (default: tests/data/official)")
    ap.add_argument("--fixtures", nargs="*", help="names to make (default: those for this numpy version)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    checkout = args.checkout.resolve()
    if not (checkout / "training" / "networks_stylegan.py").is_file():
        sys.exit(f"{checkout}: not a checkout of NVlabs/stylegan (no training/networks_stylegan.py)")
    args.out.mkdir(parents=True, exist_ok=True)

    if args.worker:  # child process: one fixture, its description as JSON on the last line
        print("FIXTURE " + json.dumps(_make_one(checkout, args.worker, args.out)))
        return

    major = int(np.__version__.split(".")[0])
    names = args.fixtures or [n for n, s in FIXTURES.items() if s["numpy_major"] == major]
    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    for name in names:
        if FIXTURES[name]["numpy_major"] != major:
            sys.exit(f"{name} needs numpy {FIXTURES[name]['numpy_major']}.x; this Python has numpy {np.__version__}")
        cmd = [sys.executable, __file__, str(checkout), "--out", str(args.out), "--worker", name]
        res = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("FIXTURE ")]
        if res.returncode or not lines:
            sys.stderr.write(res.stderr[-4000:])
            sys.exit(f"{name}: the official code failed (exit {res.returncode})")
        entry = json.loads(lines[-1][len("FIXTURE "):])
        manifest[name] = entry
        sizes = entry["sizes"]
        print(f"{name}: {entry['pickle']} ({sizes['pickle']} B), {entry['golden']} ({sizes['golden']} B)")
    bad = _write_malicious(args.out)
    manifest["malicious_system"] = {
        "pickle": bad.name,
        "what": f"(G, D, Gs) whose Gs static_kwargs hold os.system('touch \"${MARKER_ENV}\"'); must be refused",
    }
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=2, sort_keys=True) + "\n")
    print(f"malicious_system: {bad.name} ({bad.stat().st_size} B)")


if __name__ == "__main__":
    main()
