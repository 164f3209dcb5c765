"""`Generator`: StyleGAN inference from a bundle on any backend, with no PyTorch.

Owns everything above the engine, once for every backend: seeds to z, truncation with a layer
cutoff, style mixing by layer range, the three noise modes, and conversion to uint8 images.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .backends import Backend, BackendClosed, NoiseRequest, backend_options, open_backend
from .backends.base import NOISE_MODES
from .bundle import LABEL_INPUT, LATENT_INPUT, Bundle, BundleError, BundleMeta, open_bundle
from .images import to_uint8
from .latents import lerp as _lerp
from .latents import seeds_to_z, slerp

# The paper's groups of style layers, by resolution: coarse 4-8 px, middle 16-32 px, fine 64+.
STYLE_RANGES = {"coarse": (4, 8), "middle": (16, 32), "fine": (64, 1 << 30)}


class ArgumentError(BundleError):
    """A bad argument to the Python API; the message is one line naming the argument. A
    BundleError (so the command line shows it as one line) and so a ValueError."""


class GeneratorClosed(BackendClosed):
    """The Generator was closed (perhaps by another thread); nothing more runs on it."""


def finite_array(value: Any, name: str, shape_hint: str = "") -> np.ndarray:
    """`value` as float32, refusing what is not numbers and NaN/inf (which would give black images
    without an error)."""
    try:
        a = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
        raise ArgumentError(f"{name} must be an array of numbers{shape_hint}") from None
    if not np.isfinite(a).all():
        raise ArgumentError(f"{name} holds NaN or inf (or values beyond float32 range)")
    return a


def finite_float(value: Any, name: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(float(value)):
        raise ArgumentError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def bounded_int(value: Any, name: str, lo: int, hi: int | None = None) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ArgumentError(f"{name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ArgumentError(f"{name} must be {'at least ' + str(lo) if hi is None else f'in {lo}..{hi}'}, "
                            f"got {value}")
    return int(value)


# How many class names a message lists before "...".
_NAMES_SHOWN = 12


def class_list(names: Sequence[str], indices: bool = False) -> str:
    """'round, square, long' (or with `indices`, '0 round, 1 square, 2 long': what --class takes),
    at most a dozen, for messages."""
    shown = [f"{i} {n}" if indices and n != str(i) else n for i, n in enumerate(names[:_NAMES_SHOWN])]
    return ", ".join(shown) + (f", ... ({len(names)} in all)" if len(names) > _NAMES_SHOWN else "")


def class_index(label: Any, names: Sequence[str], what: str = "label") -> int:
    """A class given by name or by index -> its index; one-line ArgumentError naming the classes."""
    classes = f"{len(names)} classes: {class_list(names)}"
    if isinstance(label, str):
        if label in names:
            return list(names).index(label)
        raise ArgumentError(f"{what} {label!r} is not a class of this model ({classes})")
    if not isinstance(label, numbers.Integral) or isinstance(label, bool):
        raise ArgumentError(f"{what} must be a class index or name, got {label!r}")
    if not 0 <= label < len(names):
        raise ArgumentError(f"{what} {label} is outside 0..{len(names) - 1}: not a class of this model ({classes})")
    return int(label)


def class_from_text(text: str, names: Sequence[str], what: str = "--class") -> int:
    """A class as a command line gives it: a name, else an index ('3'). Names are tried first,
    so a model whose classes are named '0', '1', ... (the default names) reads the same either way."""
    if text not in names and text.strip().lstrip("-").isdigit():
        return class_index(int(text), names, what)
    return class_index(text, names, what)


def style_layers(spec: str | Sequence[int], layer_resolutions: Sequence[int]) -> list[int]:
    """Layer indices for 'coarse' | 'middle' | 'fine' | 'A-B' (inclusive) | explicit indices."""
    n = len(layer_resolutions)
    if not isinstance(spec, str):
        try:
            layers = sorted({bounded_int(i, "style layer", 0, n - 1) for i in spec})
        except TypeError:
            raise ArgumentError(f"styles must be coarse, middle, fine, A-B or layer indices, got {spec!r}") from None
    elif spec in STYLE_RANGES:
        lo, hi = STYLE_RANGES[spec]
        layers = [i for i, r in enumerate(layer_resolutions) if lo <= r <= hi]
    else:
        try:
            a, b = (int(v) for v in spec.split("-"))
        except ValueError:
            raise ArgumentError(f"style range must be coarse, middle, fine or A-B, got {spec!r}") from None
        if b - a > n:  # also keeps range() small for a hostile spec
            raise ArgumentError(f"style range {spec!r} selects layers beyond 0-{n - 1}")
        layers = list(range(a, b + 1))
    if not layers or min(layers) < 0 or max(layers) >= n:
        raise ArgumentError(f"style range {spec!r} selects no layers within 0-{n - 1}")
    return layers


class Generator:
    """Generate images from a bundle.

    >>> g = Generator("faces64.sgbundle")                      # auto: TensorRT > ORT CUDA > ORT CPU
    >>> imgs = g.generate(seeds=[1, 2, 3], psi=0.7)            # uint8 [3, H, W, 3] RGB
    """

    def __init__(
        self, bundle: str | Path | Bundle, backend: str = "auto", precision: str = "fp32", **options: Any,
    ) -> None:
        if not isinstance(backend, str):
            raise ArgumentError(f"backend must be a name (auto, onnxruntime, tensorrt), got {backend!r}")
        unknown = sorted(set(options) - backend_options(backend))
        if unknown:
            raise ArgumentError(f"unknown Generator option {unknown[0]!r}; backend {backend!r} takes "
                                f"{', '.join(sorted(backend_options(backend)))}")
        b = open_bundle(bundle)
        # The mapping network is a few dense layers: always FP32.
        mapping = open_backend(backend, b, "mapping", "fp32", **options)
        synthesis: Backend | None = None
        try:
            synthesis = open_backend(backend, b, "synthesis", precision, **options)
            const_noise = b.noise_const()
        except BaseException:
            # A failed open leaves no session (or device memory) behind.
            for opened in (mapping, synthesis):
                if opened is not None:
                    opened.close()
            raise
        self._setup(b.meta, mapping, synthesis, const_noise, str(b.path))

    @classmethod
    def from_backends(
        cls, meta: BundleMeta, mapping: Backend, synthesis: Backend, const_noise: dict[str, np.ndarray],
        source: str = "",
    ) -> Generator:
        """A Generator over backends opened elsewhere (the PyTorch reference, tests)."""
        g = cls.__new__(cls)
        g._setup(meta, mapping, synthesis, const_noise, source)
        return g

    def _setup(
        self, meta: BundleMeta, mapping: Backend, synthesis: Backend, const_noise: dict[str, np.ndarray],
        source: str,
    ) -> None:
        self.meta = meta
        self.mapping = mapping
        self.synthesis = synthesis
        self.source = source
        self._directions = None  # the bundle's directions.npz, read on the first edit by name
        self._const_noise = const_noise
        self._noise_cache: dict[tuple[str, int], dict[str, np.ndarray]] = {}
        # close() waits for backend calls in flight (freeing a session or device memory under a
        # running call could crash), then every later call raises GeneratorClosed.
        self._state = threading.Condition()
        self._running = 0
        self._closed = False

    @contextmanager
    def _backend_call(self) -> Iterator[None]:
        with self._state:
            if self._closed:
                raise GeneratorClosed("Generator is closed")
            self._running += 1
        try:
            yield
        except BackendClosed:
            raise GeneratorClosed("Generator is closed") from None
        finally:
            with self._state:
                self._running -= 1
                self._state.notify_all()

    # --- facts ---------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return self.meta.num_layers

    @property
    def resolution(self) -> int:
        return self.meta.resolution

    @property
    def z_dim(self) -> int:
        return self.meta.z_dim

    @property
    def w_avg(self) -> np.ndarray:
        return self.meta.w_avg

    @property
    def label_size(self) -> int:
        """Classes of a class-conditional model; 0 when unconditional."""
        return self.meta.label_size

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.meta.label_names

    def describe(self) -> dict[str, str]:
        return {"model": self.source, **self.synthesis.describe()}

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Free the backends; waits for calls in flight in other threads. Idempotent."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            self._state.wait_for(lambda: self._running == 0)
        self.mapping.close()
        self.synthesis.close()

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- latents ---------------------------------------------------------------------------
    def z_from_seeds(self, seeds: Sequence[int]) -> np.ndarray:
        return seeds_to_z(list(seeds), self.z_dim)

    def _describe_classes(self) -> str:
        return f"{self.label_size} classes: {class_list(self.label_names)}"

    def _check_c(self, c: Any, batch: int) -> np.ndarray:
        """Labels c as [batch, label_size] float32: one row per sample, or one row ([label_size]
        or [1, label_size]) for the whole batch."""
        k = self.label_size
        c = finite_array(c, "c", f" [B, {k}]")
        if c.ndim == 1:
            c = c[None]
        if c.ndim != 2 or c.shape[1] != k or c.shape[0] not in (1, batch):
            raise ArgumentError(f"c must be [{batch}, {k}] (or [{k}] for the whole batch), got {list(c.shape)}")
        return np.ascontiguousarray(np.broadcast_to(c, (batch, k)))

    def labels_to_c(self, batch: int, label: Any = None, labels: Sequence[Any] | None = None,
                    c: np.ndarray | None = None) -> np.ndarray | None:
        """The mapping's labels c [batch, label_size] (float32) from one of: `label` (a class index
        or name, for the whole batch), `labels` (one per sample) or `c` (one-hot rows or any
        mixture). A conditional model needs exactly one; an unconditional one takes none (None)."""
        batch = bounded_int(batch, "batch", 0)
        given = [k for k, v in (("label", label), ("labels", labels), ("c", c)) if v is not None]
        if not self.label_size:
            if given:
                raise ArgumentError(f"{given[0]}= given, but this model is not class-conditional (it takes no labels)")
            return None
        if len(given) != 1:
            if not given:
                raise ArgumentError(f"this model is class-conditional ({self._describe_classes()}): "
                                    "give a class with label=, labels= (one per sample) or c=")
            raise ArgumentError(f"give one of label=, labels= or c=, not {' and '.join(g + '=' for g in given)}")
        if c is not None:
            return self._check_c(c, batch)
        if label is not None:
            indices = [class_index(label, self.label_names, "label")] * batch
        else:
            if isinstance(labels, (str, bytes)):
                raise ArgumentError(f"labels must be a list of {batch} class indices or names, one per sample")
            try:
                items = list(labels)  # type: ignore[arg-type]
            except TypeError:
                raise ArgumentError(f"labels must be a list of {batch} class indices or names, one per sample, "
                                    f"got {labels!r}") from None
            if len(items) != batch:
                raise ArgumentError(f"labels has {len(items)} entries for {batch} samples (one per sample)")
            indices = [class_index(v, self.label_names, f"labels[{i}]") for i, v in enumerate(items)]
        out = np.zeros((batch, self.label_size), np.float32)
        out[np.arange(batch), indices] = 1.0
        return out

    def _check_z(self, z: Any) -> np.ndarray:
        z = finite_array(z, "z", f" [B, {self.z_dim}]")
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ArgumentError(f"z must be [B, {self.z_dim}], got {list(z.shape)}")
        return z

    def map(self, z: np.ndarray, c: np.ndarray | None = None) -> np.ndarray:
        """z [B, z_dim] (and, for a class-conditional model, labels c [B, label_size]: one-hot or
        any mixture; see `labels_to_c`) -> w [B, w_dim]."""
        z = np.ascontiguousarray(self._check_z(z))
        feeds = {LATENT_INPUT: z}
        labels = self.labels_to_c(len(z), c=c)
        if labels is not None:
            feeds[LABEL_INPUT] = labels
        with self._backend_call():
            return self.mapping.run(feeds)["w"]

    def broadcast(self, w: np.ndarray) -> np.ndarray:
        """w [B, w_dim] -> W+ [B, L, w_dim] (the same style for every layer)."""
        w = finite_array(w, "w", f" [B, {self.meta.w_dim}]")
        if w.ndim != 2 or w.shape[1] != self.meta.w_dim:
            raise ArgumentError(f"w must be [B, {self.meta.w_dim}], got {list(w.shape)}")
        return np.repeat(w[:, None, :], self.num_layers, axis=1)

    def _check_ws(self, ws: Any, name: str = "ws") -> np.ndarray:
        ws = finite_array(ws, name, f" [B, {self.num_layers}, {self.meta.w_dim}]")
        if ws.ndim != 3 or ws.shape[1:] != (self.num_layers, self.meta.w_dim):
            raise ArgumentError(f"{name} must be [B, {self.num_layers}, {self.meta.w_dim}], got {list(ws.shape)}")
        return ws

    def truncate(self, ws: np.ndarray, psi: float | None = None, cutoff: int | None = None) -> np.ndarray:
        """w_avg + psi (w - w_avg) on the first `cutoff` layers (None: the bundle's default)."""
        ws = self._check_ws(ws)
        psi = self.meta.truncation_psi if psi is None else finite_float(psi, "psi")
        cutoff = self.meta.truncation_cutoff if cutoff is None else bounded_int(cutoff, "cutoff", 0, self.num_layers)
        if psi == 1.0:
            return ws
        n = self.num_layers if cutoff is None else cutoff
        coefs = np.ones((self.num_layers, 1), np.float32)
        coefs[:n] = psi
        return (self.w_avg + coefs * (ws - self.w_avg)).astype(np.float32)

    def mix(self, ws_dst: np.ndarray, ws_src: np.ndarray, layers: str | Sequence[int]) -> np.ndarray:
        """Copy the styles of `layers` ('coarse', 'middle', 'fine', 'A-B') from src into dst."""
        idx = style_layers(layers, self.meta.layer_resolutions)
        out = np.array(self._check_ws(ws_dst, "ws_dst"), copy=True)
        src = self._check_ws(ws_src, "ws_src")
        if len(src) != len(out):
            raise ArgumentError(f"ws_src has {len(src)} styles, ws_dst {len(out)}")
        out[:, idx] = src[:, idx]
        return out

    def edit(self, ws: np.ndarray, direction: str | np.ndarray, strength: float,
             layers: str | Sequence[int] = "coarse") -> np.ndarray:
        """Move W+ styles along an attribute direction on `layers`: a name from the bundle's
        `directions.npz` (see `stylegan metrics --ls --directions-out`) or a [w_dim] vector."""
        from .directions import edit as edit_styles
        from .directions import load_directions

        if isinstance(direction, str):
            if self._directions is None:
                self._directions = load_directions(Path(self.source))
            direction = self._directions[direction]
        return edit_styles(ws, direction, strength, layers, self.meta.layer_resolutions)

    def interpolate_z(self, z0: np.ndarray, z1: np.ndarray, t: float | np.ndarray) -> np.ndarray:
        return slerp(z0, z1, t)

    def interpolate_w(self, w0: np.ndarray, w1: np.ndarray, t: float | np.ndarray) -> np.ndarray:
        return _lerp(w0, w1, t)

    # --- noise -------------------------------------------------------------------------------
    def noise(self, batch: int, mode: str, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """Host noise arrays by input name for a noise mode."""
        if not isinstance(mode, str) or mode not in NOISE_MODES:
            raise ArgumentError(f"noise must be one of {', '.join(NOISE_MODES)} or a list of arrays, got {mode!r}")
        batch = bounded_int(batch, "batch", 1)
        names, res = self.meta.noise_inputs, self.meta.layer_resolutions
        if mode == "random":
            rng = rng or np.random.default_rng()
            return {n: rng.standard_normal((batch, 1, r, r), dtype=np.float32) for n, r in zip(names, res)}
        key = (mode, batch)
        if key not in self._noise_cache:
            if mode == "const":
                arrays = {n: np.ascontiguousarray(np.broadcast_to(self._const_noise[n], (batch, 1, r, r)))
                          for n, r in zip(names, res)}
            else:
                arrays = {n: np.zeros((batch, 1, r, r), np.float32) for n, r in zip(names, res)}
            self._noise_cache = {k: v for k, v in self._noise_cache.items() if k[0] != mode}
            self._noise_cache[key] = arrays
        return self._noise_cache[key]

    def _noise_request(
        self, batch: int, noise: str | Sequence[np.ndarray], rng: np.random.Generator | None,
    ) -> NoiseRequest:
        if isinstance(noise, str):
            if noise not in NOISE_MODES:
                raise ArgumentError(f"noise must be one of {', '.join(NOISE_MODES)} or a list of arrays, got {noise!r}")
            rng = rng or np.random.default_rng()
            return NoiseRequest(noise if self.meta.use_noise else "none", batch,
                                lambda: self.noise(batch, noise, rng), rng)
        if isinstance(noise, np.ndarray) or not isinstance(noise, Sequence):
            raise ArgumentError(f"noise must be one of {', '.join(NOISE_MODES)} or a list of arrays, "
                                f"got {type(noise).__name__}")
        if len(noise) != len(self.meta.noise_inputs):
            raise ArgumentError(f"expected {len(self.meta.noise_inputs)} noise arrays, got {len(noise)}")
        feeds = {}
        for n, a, r in zip(self.meta.noise_inputs, noise, self.meta.layer_resolutions):
            a = finite_array(a, n, f" [B, 1, {r}, {r}]")
            # [1, 1, r, r] (or [r, r]) is shared by the batch; [B, 1, r, r] is per image.
            if a.shape not in ((r, r), (1, r, r), (1, 1, r, r), (batch, 1, r, r)):
                raise ArgumentError(f"{n}: expected [{batch},1,{r},{r}] (or [1,1,{r},{r}]), got {list(a.shape)}")
            feeds[n] = np.ascontiguousarray(np.broadcast_to(a, (batch, 1, r, r)))
        return NoiseRequest("explicit", batch, lambda: feeds, None)

    # --- synthesis -------------------------------------------------------------------------
    def synthesize_float(
        self, ws: np.ndarray, noise: str | Sequence[np.ndarray] = "const", rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """W+ styles [B, L, w_dim] (or [B, w_dim]) -> float32 images [B, C, R, R] in ~[-1, 1]."""
        ws = finite_array(ws, "ws", f" [B, {self.num_layers}, {self.meta.w_dim}]")
        if ws.ndim == 2:
            ws = self.broadcast(ws)
        ws = self._check_ws(ws)
        if len(ws) == 0:
            raise ArgumentError("ws holds no styles (batch of 0)")
        feeds = {name: np.ascontiguousarray(ws[:, i]) for i, name in enumerate(self.meta.w_inputs)}
        request = self._noise_request(ws.shape[0], noise, rng)
        with self._backend_call():
            return self.synthesis.run_with_noise(feeds, request)["image"]

    def synthesize(
        self, ws: np.ndarray, noise: str | Sequence[np.ndarray] = "const", rng: np.random.Generator | None = None,
        bgr: bool = False,
    ) -> np.ndarray:
        """W+ styles -> uint8 images [B, H, W, 3] (RGB, or BGR for OpenCV)."""
        return to_uint8(self.synthesize_float(ws, noise, rng), bgr=bgr)

    def styles(
        self, seeds: Sequence[int] | None = None, z: np.ndarray | None = None, psi: float | None = None,
        cutoff: int | None = None, label: Any = None, labels: Sequence[Any] | None = None,
        c: np.ndarray | None = None,
    ) -> np.ndarray:
        """Truncated W+ styles [B, L, w_dim] for seeds or z (and, for a class-conditional model,
        one of label=, labels= or c=; see `labels_to_c`)."""
        if (seeds is None) == (z is None):
            raise ArgumentError("give exactly one of seeds= or z=")
        # Options first: a bad psi or cutoff is refused before any work.
        if psi is not None:
            finite_float(psi, "psi")
        if cutoff is not None:
            bounded_int(cutoff, "cutoff", 0, self.num_layers)
        z = self.z_from_seeds(seeds) if seeds is not None else z
        z = self._check_z(z)
        # Labels are checked (and made one-hot) before the mapping runs.
        return self.truncate(self.broadcast(self.map(z, self.labels_to_c(len(z), label, labels, c))), psi, cutoff)

    def check_options(
        self, psi: float | None = None, cutoff: int | None = None, noise: Any = "const", batch_size: int = 1,
        noise_seed: int | None = None,
    ) -> None:
        """Refuse bad `generate` options (ArgumentError naming the option) before any work, so a
        caller can check them before it starts a progress bar."""
        if psi is not None:
            finite_float(psi, "psi")
        if cutoff is not None:
            bounded_int(cutoff, "cutoff", 0, self.num_layers)
        if isinstance(noise, str) and noise not in NOISE_MODES:
            raise ArgumentError(f"noise must be one of {', '.join(NOISE_MODES)} or a list of arrays, got {noise!r}")
        bounded_int(batch_size, "batch_size", 1)
        if noise_seed is not None:
            bounded_int(noise_seed, "noise_seed", 0)

    def generate(
        self, seeds: Sequence[int] | None = None, z: np.ndarray | None = None, psi: float | None = None,
        cutoff: int | None = None, noise: str = "const", bgr: bool = False, noise_seed: int | None = None,
        batch_size: int = 16, progress: Callable[[int], None] | None = None, label: Any = None,
        labels: Sequence[Any] | None = None, c: np.ndarray | None = None,
    ) -> np.ndarray:
        """Images for seeds or z: uint8 [B, H, W, 3]. Large requests run in batches. A
        class-conditional model takes one of `label` (index or name, the whole batch), `labels`
        (one per sample) or `c` ([B, label_size] one-hot rows or mixtures)."""
        self.check_options(psi, cutoff, noise, batch_size, noise_seed)
        ws = self.styles(seeds, z, psi, cutoff, label=label, labels=labels, c=c)
        rng = np.random.default_rng(noise_seed)
        out = []
        for i in range(0, len(ws), batch_size):
            out.append(self.synthesize(ws[i : i + batch_size], noise, rng, bgr=bgr))
            if progress:
                progress(len(out[-1]))
        if not out:
            raise BundleError("nothing to generate: no seeds or latents given")
        return np.concatenate(out)
