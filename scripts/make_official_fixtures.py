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

A run with the NVlabs/stylegan checkout also writes `malicious_system.pkl`, an official-looking
file whose build arguments hide an `os.system` call (made here, not by the official code). Each
run makes the fixtures of its checkout whose numpy major version matches its own (the numpy-1.x
one is the file "written the way the 2019 release was": numpy 1.x array pickling, protocol 4) and
merges their description into tests/data/official/manifest.json. Each fixture is built in its
own process, so each has a fresh TensorFlow graph and seed.

Version-4 fixtures (network state version 4, as written by NVlabs/stylegan2's dnnlib, which many
people used to train the StyleGAN1 architecture: its `training/networks_stylegan.py` is the
StyleGAN1 file with a new licence header). Pass a checkout of NVlabs/stylegan2 instead (recognised
by its `dnnlib/tflib/custom_ops.py`); `--commit` names the commit when the checkout is an extracted
`git archive` with no `.git`:

    /tmp/venv-tf-np2/bin/python scripts/make_official_fixtures.py /path/to/stylegan2 --commit <sha>

Two more run-time patches serve that dnnlib, again without editing a file: its `tfutil` imports
`tensorflow.contrib` (TensorFlow 1.x only; used by the optimizer, never by a network build), which
gets an empty stand-in module, and `custom_ops` (CUDA plugins that networks_stylegan never uses)
imports `tensorflow.python.client.device_lib`, which is loaded from the real package first.

Some version-4 fixtures carry an EDITED source, as people edit the defaults of their copy instead
of passing arguments. The edits are data (`SourceEdits`: parameter defaults, the fused-resolution
thresholds, an operation) applied by one function (`apply_edits`) to two texts: the real official
file, from which the networks are built and the goldens computed, and the synthetic twin
`tests/data/official/twin_networks_stylegan.py` (our own text with the official function names,
signatures and threshold expressions), whose edited text is what the pickle carries as
`build_module_src`, so no NVIDIA text is committed. Loading puts the real edited text back through
the same import hook as the stand-in.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
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
        official="stylegan", numpy_major=2, protocol=pickle.HIGHEST_PROTOCOL, seed=1, n_latents=2, n_d_images=8,
        G_kwargs=dict(
            num_channels=3, resolution=32, label_size=0, latent_size=10, dlatent_size=8,
            mapping_layers=3, mapping_fmaps=12, fmap_base=32, fmap_max=4,
        ),
        D_kwargs=dict(num_channels=3, resolution=32, label_size=0, fmap_base=32, fmap_max=4),
    ),
    # The same architecture written the way the 2019 release files were: numpy 1.x, protocol 4.
    "tiny32_np1_p4": dict(
        official="stylegan", numpy_major=1, protocol=4, seed=2, n_latents=2, n_d_images=8,
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
        official="stylegan", numpy_major=2, protocol=4, seed=3, n_latents=1, n_d_images=2,
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
        official="stylegan", numpy_major=2, protocol=3, seed=4, n_latents=2, n_d_images=8,
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



@dataclasses.dataclass(frozen=True)
class SourceEdits:
    """Text edits of networks_stylegan.py, as data so that the real file and the twin get the same.

    defaults: function -> parameter -> new literal default.
    thresholds: 'upscale2d_conv2d' / 'conv2d_downscale2d' -> the new number on the right of the
        `>=` in their fused_scale='auto' expression (stock 128).
    ops: (function, old, new): the one occurrence of `old` inside that function's text becomes `new`.
    """

    defaults: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    thresholds: dict[str, int] = dataclasses.field(default_factory=dict)
    ops: tuple[tuple[str, str, str], ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "thresholds": self.thresholds,
                "ops": [{"function": f, "old": o, "new": n} for f, o, n in self.ops]}


# What people edit in their copy: the mapping's lrmul (0.01 -> 0.1 gives a w ten times larger per
# layer), the sizes, the truncation defaults, and the resolution from which resampling is fused
# (G from output 16 px, D only at input 32 px, so both fused and separate blocks occur at 32 px).
# The training loop passes only num_channels, resolution and label_size (from the dataset), so
# everything else comes from these defaults. dlatent_size is a default of two functions that must
# agree, as a user who changes it learns.
EDITED_DEFAULTS = SourceEdits(
    defaults={
        "G_style": {"truncation_psi": 0.5, "truncation_cutoff": 4},
        "G_mapping": {"latent_size": 12, "dlatent_size": 10, "mapping_layers": 2, "mapping_fmaps": 14,
                      "mapping_lrmul": 0.1},
        "G_synthesis": {"dlatent_size": 10, "fmap_base": 64, "fmap_max": 6},
        "D_basic": {"fmap_base": 64, "fmap_max": 6},
    },
    thresholds={"upscale2d_conv2d": 16, "conv2d_downscale2d": 32},
)
# An edited operation in the generator: the style modulation's `x * (scale + 1)` becomes
# `x * (scale + 2)`. The converter must refuse the file, naming the function. (`+ 1)` occurs once
# in style_mod in both the official text and the twin, so one edit serves both.)
EDITED_OP = SourceEdits(ops=(("style_mod", "+ 1)", "+ 2)"),))

_COND_G = dict(
    num_channels=3, resolution=32, label_size=3, latent_size=10, dlatent_size=8,
    mapping_layers=3, mapping_fmaps=12, fmap_base=32, fmap_max=4,
)
_COND_D = dict(num_channels=3, resolution=32, label_size=3, fmap_base=32, fmap_max=4)

FIXTURES.update({
    # Class-conditional (label_size 3): G_mapping's LabelConcat embedding and D's label switch.
    # Goldens for every label (one-hot labels_in, as the official training loop feeds them) and
    # for one mixture of labels.
    "v4_cond": dict(
        official="stylegan2", numpy_major=2, protocol=pickle.HIGHEST_PROTOCOL, seed=31, n_latents=2,
        n_d_images=8, G_kwargs=_COND_G, D_kwargs=_COND_D,
    ),
    # Defaults and fused thresholds edited in the embedded source; static_kwargs carry only what
    # the dataset gives. Goldens also at the file's own truncation defaults (no arguments to run).
    "v4_edited_defaults": dict(
        official="stylegan2", numpy_major=2, protocol=pickle.HIGHEST_PROTOCOL, seed=12, n_latents=2,
        n_d_images=4, edits=EDITED_DEFAULTS, mapping_lrmul=0.1, golden_defaults=True,
        G_kwargs=dict(num_channels=3, resolution=32, label_size=0),
        D_kwargs=dict(num_channels=3, resolution=32, label_size=0),
    ),
    # A snapshot taken while growing: lod 1.4 at 32 px, so the official graph blends the 16 px
    # and 8 px ToRGB outputs (and D its FromRGB inputs). Gs.run runs the default 'recursive' graph.
    "v4_midgrowth": dict(
        official="stylegan2", numpy_major=2, protocol=pickle.HIGHEST_PROTOCOL, seed=13, n_latents=2,
        n_d_images=4, lod=1.4,
        G_kwargs=dict(
            num_channels=3, resolution=32, label_size=0, latent_size=8, dlatent_size=8,
            mapping_layers=2, mapping_fmaps=8, fmap_base=32, fmap_max=4,
        ),
        D_kwargs=dict(num_channels=3, resolution=32, label_size=0, fmap_base=32, fmap_max=4),
    ),
    # An edited operation: must be refused, so no golden.
    "v4_edited_op": dict(
        official="stylegan2", numpy_major=2, protocol=pickle.HIGHEST_PROTOCOL, seed=14, n_latents=0,
        n_d_images=0, edits=EDITED_OP, no_golden=True,
        G_kwargs=dict(
            num_channels=3, resolution=16, label_size=0, latent_size=8, dlatent_size=8,
            mapping_layers=2, mapping_fmaps=8, fmap_base=16, fmap_max=4,
        ),
        D_kwargs=dict(num_channels=3, resolution=16, label_size=0, fmap_base=16, fmap_max=4),
    ),
})

TRUNC_PSI, TRUNC_CUTOFF = 0.7, 8
TWIN = REPO / "tests" / "data" / "official" / "twin_networks_stylegan.py"


# --- editing a networks_stylegan.py text ------------------------------------------------------

class EditError(ValueError):
    pass


def _offsets(text: str) -> list[int]:
    starts, pos = [], 0
    for line in text.splitlines(keepends=True):
        starts.append(pos)
        pos += len(line)
    starts.append(pos)
    return starts


def _span(text: str, starts: list[int], node: ast.AST) -> tuple[int, int]:
    """Character span of an ast node (ast columns count UTF-8 bytes)."""
    def at(lineno: int, col: int) -> int:
        line = text[starts[lineno - 1]:starts[lineno]]
        return starts[lineno - 1] + len(line.encode("utf-8")[:col].decode("utf-8"))
    return at(node.lineno, node.col_offset), at(node.end_lineno, node.end_col_offset)


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def apply_edits(text: str, edits: SourceEdits, what: str) -> tuple[str, dict[str, int]]:
    """`text` with `edits` applied, and for each op edit the 1-based line where the new text sits
    (key 'function:old'). Every edit must hit exactly one place, or EditError names it."""
    tree = ast.parse(text.lstrip("\ufeff"))
    bom = len(text) - len(text.lstrip("\ufeff"))
    body = text[bom:]
    starts = _offsets(body)
    funcs = _functions(tree)
    repl: list[tuple[int, int, str, str | None]] = []  # start, end, new text, op key

    def func(name: str) -> ast.FunctionDef:
        if name not in funcs:
            raise EditError(f"{what}: no top-level function {name}")
        return funcs[name]

    for fname, params in edits.defaults.items():
        args = func(fname).args
        positional = args.posonlyargs + args.args
        by_name = dict(zip([a.arg for a in positional[len(positional) - len(args.defaults):]], args.defaults))
        by_name.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None})
        for pname, value in params.items():
            if pname not in by_name:
                raise EditError(f"{what}: {fname} has no parameter {pname} with a default")
            a, b = _span(body, starts, by_name[pname])
            repl.append((a, b, repr(value), None))
    for fname, value in edits.thresholds.items():
        # The threshold is the one `min(...) ... >= number` (the asserts compare with numbers too).
        hits = [n.comparators[0] for n in ast.walk(func(fname)) if isinstance(n, ast.Compare)
                and len(n.ops) == 1 and isinstance(n.ops[0], ast.GtE) and isinstance(n.comparators[0], ast.Constant)
                and any(isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == "min"
                        for c in ast.walk(n.left))]
        if len(hits) != 1:
            raise EditError(f"{what}: {fname} has {len(hits)} 'min(...) >= number' comparisons, expected 1")
        a, b = _span(body, starts, hits[0])
        repl.append((a, b, repr(int(value)), None))
    for fname, old, new in edits.ops:
        a, b = _span(body, starts, func(fname))
        a = starts[func(fname).lineno - 1]  # from the start of the def line
        n = body.count(old, a, b)
        if n != 1:
            raise EditError(f"{what}: {old!r} occurs {n} times in {fname}, expected once")
        i = body.index(old, a, b)
        repl.append((i, i + len(old), new, f"{fname}:{old}"))

    lines: dict[str, int] = {}
    shift = 0
    out = body
    for a, b, new, _key in sorted(repl, key=lambda r: r[0], reverse=True):
        out = out[:a] + new + out[b:]
    for a, b, new, key in sorted(repl, key=lambda r: r[0]):
        if key is not None:
            lines[key] = out.count("\n", 0, a + shift) + 1
        shift += len(new) - (b - a)
    ast.parse(out)  # still Python
    return text[:bom] + out, lines


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


def official_repo(checkout: Path) -> str:
    """Which official repository a checkout is: stylegan2's dnnlib has the CUDA plugin builder."""
    return "NVlabs/stylegan2" if (checkout / "dnnlib" / "tflib" / "custom_ops.py").is_file() else "NVlabs/stylegan"


def _import_official(checkout: Path, edits: SourceEdits | None = None) -> tuple[Any, str, str]:
    """The official `dnnlib.tflib`, the version of the TensorFlow that runs it, and the module
    path whose `G_style` / `D_basic` to build (the official module, or one made from its edited text)."""
    import tensorflow as real_tf  # the real package, loaded before the alias hides it

    version = real_tf.__version__
    repo = official_repo(checkout)
    if repo == "NVlabs/stylegan2":
        # See the module docstring: what stylegan2's dnnlib imports that TensorFlow 2 lacks or hides.
        import tensorflow.python.client.device_lib  # noqa: F401
    proxy = _tf1_proxy()
    if repo == "NVlabs/stylegan2":
        # `import tensorflow.contrib` finds the module in sys.modules and then reads the attribute.
        proxy.contrib = sys.modules["tensorflow.contrib"] = types.ModuleType("tensorflow.contrib")

    sys.modules["tensorflow"] = proxy
    sys.path.insert(0, str(checkout))
    import dnnlib.tflib as tflib
    import dnnlib.tflib.network as network
    import training.networks_stylegan as networks_stylegan

    # What the fixtures carry as build_module_src, and how loading gets the real text back
    # (see the module docstring).
    real_src = inspect.getsource(networks_stylegan)
    if edits is None:
        digest = hashlib.sha256(Path(networks_stylegan.__file__).read_bytes()).hexdigest()
        carried = f"# {repo} training/networks_stylegan.py, sha256 {digest}: not included in this test fixture\n"
        network._import_module_src[networks_stylegan] = carried
        module_name = "training.networks_stylegan"
    else:
        real_src, _ = apply_edits(real_src, edits, "networks_stylegan.py")
        carried, _ = apply_edits(TWIN.read_text(encoding="utf-8"), edits, TWIN.name)
        # Built the way the official loader builds from a pickle's text: a fresh module, exec'd.
        module_name = "_edited_networks_stylegan"
        module = types.ModuleType(module_name)
        sys.modules[module_name] = module
        exec(compile(real_src, "<edited networks_stylegan.py>", "exec"), module.__dict__)  # noqa: S102
        network._import_module_src[module] = carried

    @network.import_handler
    def _real_source(state: dict) -> dict:
        if state["build_module_src"] == carried:
            state = dict(state, build_module_src=real_src)
        return state

    return tflib, version, module_name


# --- one fixture ------------------------------------------------------------------------------

def _random_value(name: str, shape: tuple[int, ...], rng: np.random.RandomState, mapping_lrmul: float) -> np.ndarray:
    """Random values at the official initialisation's scale, and for every variable: noise
    strengths and biases start at zero officially, which would leave their arithmetic untested."""
    leaf = name.split("/")[-1]
    std = 1.0
    if "LabelConcat" in name:
        std = 1.0  # the label embedding is used raw: no equalised-lr scale, no lrmul
    elif name.startswith("G_mapping/"):
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


def _randomize(tflib: Any, net: Any, rng: np.random.RandomState, mapping_lrmul: float, lod: float) -> None:
    values = {}
    for name, var in net.vars.items():
        shape = tuple(d.value for d in var.shape)
        values[var] = np.float32(lod) if name.endswith("lod") else _random_value(name, shape, rng, mapping_lrmul)
    tflib.set_vars(values)


def _one_hot(labels: np.ndarray, label_size: int) -> np.ndarray:
    return np.eye(label_size, dtype=np.float32)[labels]


def _generator_goldens(tflib: Any, Gs: Any, z: np.ndarray, c: np.ndarray | None, suffix: str,
                       defaults: bool) -> dict[str, np.ndarray]:
    """Gs.run at psi 1, at psi 0.7 / cutoff 8, and (defaults) with no truncation arguments, which
    takes the file's own G_style defaults; noise from the variables (randomize_noise=False)."""
    to_u8 = dict(func=tflib.convert_images_to_uint8, nchw_to_nhwc=True)
    psi1 = dict(truncation_psi=1.0, randomize_noise=False)
    trunc = dict(truncation_psi=TRUNC_PSI, truncation_cutoff=TRUNC_CUTOFF, randomize_noise=False)
    out = {
        "w": Gs.components.mapping.run(z, c),
        "img_psi1": Gs.run(z, c, **psi1),
        "img_psi1_u8": Gs.run(z, c, output_transform=to_u8, **psi1),
        "img_trunc": Gs.run(z, c, **trunc),
        "img_trunc_u8": Gs.run(z, c, output_transform=to_u8, **trunc),
    }
    if defaults:
        out["img_default"] = Gs.run(z, c, randomize_noise=False)
        out["img_default_u8"] = Gs.run(z, c, randomize_noise=False, output_transform=to_u8)
    return {k + suffix: v for k, v in out.items()}


def _make_one(checkout: Path, name: str, out_dir: Path, commit: str | None) -> dict[str, Any]:
    spec = FIXTURES[name]
    edits: SourceEdits | None = spec.get("edits")
    tflib, tf_version, module_name = _import_official(checkout, edits)
    tflib.init_tf({"rnd.np_random_seed": spec["seed"], "allow_soft_placement": True})
    rng = np.random.RandomState(spec["seed"])
    lrmul, lod = spec.get("mapping_lrmul", 0.01), spec.get("lod", 0.0)

    G = tflib.Network("G", func_name=f"{module_name}.G_style", **spec["G_kwargs"])
    D = tflib.Network("D", func_name=f"{module_name}.D_basic", **spec["D_kwargs"])
    _randomize(tflib, G, rng, lrmul, lod)
    _randomize(tflib, D, rng, lrmul, lod)
    Gs = G.clone("Gs")
    _randomize(tflib, Gs, rng, lrmul, lod)  # its own values, so a converter that swaps G and Gs fails

    pkl_path = out_dir / f"{name}.pkl"
    with open(pkl_path, "wb") as f:
        pickle.dump((G, D, Gs), f, protocol=spec["protocol"])

    entry: dict[str, Any] = {
        "pickle": pkl_path.name,
        "protocol": spec["protocol"],
        "numpy": np.__version__,
        "tensorflow": tf_version,
        "python": platform.python_version(),
        "seed": spec["seed"],
        "G_static_kwargs": spec["G_kwargs"],
        "D_static_kwargs": spec["D_kwargs"],
        "official_repo": official_repo(checkout),
        "official_sources_sha256": {
            rel: hashlib.sha256((checkout / rel).read_bytes()).hexdigest()
            for rel in ("training/networks_stylegan.py", "dnnlib/tflib/network.py", "dnnlib/tflib/tfutil.py")
        },
        "official_commit": commit or _git_head(checkout),
    }
    with open(pkl_path, "rb") as f:
        G2, D2, Gs2 = pickle.load(f)
    del G2
    # Facts of the written file, as the official loader sees them, for the tests to pin.
    entry["state_version"] = Gs2.__getstate__()["version"]
    entry["lod"] = float(tflib.run(Gs2.find_var("lod")))
    entry["label_size"] = int(Gs2.input_shapes[1][1])
    if edits is not None:
        entry["source_edits"] = edits.describe()
        entry["build_module_src"] = f"{TWIN.name} with source_edits applied (the networks were built from " \
                                    "the official file with the same edits)"
        # The fixture is stale when the twin changes: rerun the script.
        entry["twin_sha256"] = hashlib.sha256(TWIN.read_bytes()).hexdigest()
        if edits.ops:
            _, twin_lines = apply_edits(TWIN.read_text(encoding="utf-8"), edits, TWIN.name)
            real_text = (checkout / "training" / "networks_stylegan.py").read_text(encoding="utf-8")
            _, real_lines = apply_edits(real_text, edits, "networks_stylegan.py")
            fname, old, _new = edits.ops[0]
            entry["expected_refusal"] = {
                "function": fname,
                "line": twin_lines[f"{fname}:{old}"],  # in the pickle's build_module_src (the edited twin)
                "line_in_official_file": real_lines[f"{fname}:{old}"],
            }
    else:
        entry["build_module_src"] = "one-line stand-in naming the official file and its sha256"
    if spec.get("no_golden"):
        entry["sizes"] = {"pickle": pkl_path.stat().st_size}
        return entry

    # Golden outputs from the networks as the official loader rebuilds them from the file.
    z = rng.randn(spec["n_latents"], Gs2.input_shape[1]).astype(np.float32)
    golden: dict[str, np.ndarray] = {"z": z}
    label_size = entry["label_size"]
    defaults = bool(spec.get("golden_defaults"))
    if label_size == 0:
        golden.update(_generator_goldens(tflib, Gs2, z, None, "", defaults))
    else:
        # Every label (one-hot, the same z), then one mixture of labels (rows sum to 1).
        golden["label_size"] = np.int64(label_size)
        for k in range(label_size):
            c = _one_hot(np.full(len(z), k), label_size)
            golden.update(_generator_goldens(tflib, Gs2, z, c, f"_label{k}", defaults))
        c_mix = rng.dirichlet(np.ones(label_size), size=len(z)).astype(np.float32)
        golden["c_mix"] = c_mix
        golden.update(_generator_goldens(tflib, Gs2, z, c_mix, "_mix", defaults))
    golden["trunc_psi"] = np.float32(TRUNC_PSI)
    golden["trunc_cutoff"] = np.int64(TRUNC_CUTOFF)
    if defaults:
        style = edits.defaults.get("G_style", {}) if edits is not None else {}
        golden["default_trunc_psi"] = np.float32(style.get("truncation_psi", 0.7))
        golden["default_trunc_cutoff"] = np.int64(style.get("truncation_cutoff", 8))

    c, r = spec["D_kwargs"]["num_channels"], spec["D_kwargs"]["resolution"]
    d_u8 = rng.randint(0, 256, size=(spec["n_d_images"], c, r, r)).astype(np.uint8)
    golden["d_images_u8"] = d_u8
    # Real images enter D as the official training loop maps [0, 255] to [-1, 1].
    d_in = d_u8.astype(np.float32) * np.float32(2 / 255) - np.float32(1)
    if label_size == 0:
        golden["d_scores"] = D2.run(d_in, None)
    else:
        d_labels = _one_hot(rng.randint(0, label_size, size=len(d_u8)), label_size)
        golden["d_labels"] = d_labels
        golden["d_scores"] = D2.run(d_in, d_labels)
        # [n, label_size]: the score of each image under each label (the label switch's inputs).
        golden["d_scores_per_label"] = np.concatenate(
            [D2.run(d_in, _one_hot(np.full(len(d_u8), k), label_size)) for k in range(label_size)], axis=1)
    golden_path = out_dir / f"{name}_golden.npz"
    np.savez(golden_path, **golden)

    entry.update({
        "golden": golden_path.name,
        "truncation": {"psi": TRUNC_PSI, "cutoff": TRUNC_CUTOFF},
        "sizes": {"pickle": pkl_path.stat().st_size, "golden": golden_path.stat().st_size},
    })
    if defaults:
        entry["truncation_defaults"] = {"psi": float(golden["default_trunc_psi"]),
                                        "cutoff": int(golden["default_trunc_cutoff"])}
    return entry


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
    ap.add_argument("checkout", type=Path, help="path of a checkout of NVlabs/stylegan or NVlabs/stylegan2")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture folder (default: tests/data/official)")
    ap.add_argument("--fixtures", nargs="*", help="names to make (default: those for this checkout and numpy)")
    ap.add_argument("--commit", help="the checkout's commit, recorded in the manifest (default: git rev-parse HEAD)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    checkout = args.checkout.resolve()
    if not (checkout / "training" / "networks_stylegan.py").is_file():
        sys.exit(f"{checkout}: not a checkout of NVlabs/stylegan or stylegan2 (no training/networks_stylegan.py)")
    args.out.mkdir(parents=True, exist_ok=True)

    if args.worker:  # child process: one fixture, its description as JSON on the last line
        print("FIXTURE " + json.dumps(_make_one(checkout, args.worker, args.out, args.commit)))
        return

    major = int(np.__version__.split(".")[0])
    repo = official_repo(checkout)
    short = repo.split("/")[1]
    names = args.fixtures or [n for n, s in FIXTURES.items() if s["numpy_major"] == major and s["official"] == short]
    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    for name in names:
        if name not in FIXTURES:
            sys.exit(f"{name}: no such fixture ({', '.join(FIXTURES)})")
        if FIXTURES[name]["numpy_major"] != major:
            sys.exit(f"{name} needs numpy {FIXTURES[name]['numpy_major']}.x; this Python has numpy {np.__version__}")
        if FIXTURES[name]["official"] != short:
            sys.exit(f"{name} is made with NVlabs/{FIXTURES[name]['official']}; {checkout} is {repo}")
        if FIXTURES[name].get("edits") is not None and not TWIN.is_file():
            sys.exit(f"{name} needs the synthetic twin {TWIN}")
        cmd = [sys.executable, __file__, str(checkout), "--out", str(args.out), "--worker", name]
        if args.commit:
            cmd += ["--commit", args.commit]
        res = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("FIXTURE ")]
        if res.returncode or not lines:
            sys.stderr.write(res.stderr[-4000:])
            sys.exit(f"{name}: the official code failed (exit {res.returncode})")
        entry = json.loads(lines[-1][len("FIXTURE "):])
        manifest[name] = entry
        sizes = entry["sizes"]
        print(f"{name}: " + ", ".join(f"{entry[k]} ({sizes[k]} B)" for k in ("pickle", "golden") if k in sizes))
        # After each fixture, so that a later failure keeps the ones made.
        manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=2, sort_keys=True) + "\n")
    if repo == "NVlabs/stylegan":  # the hostile file is written once, with the version-3 fixtures
        bad = _write_malicious(args.out)
        manifest["malicious_system"] = {
            "pickle": bad.name,
            "what": f"(G, D, Gs) whose Gs static_kwargs hold os.system('touch \"${MARKER_ENV}\"'); must be refused",
        }
        print(f"malicious_system: {bad.name} ({bad.stat().st_size} B)")
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
