"""PyTorch as a backend of the runtime's `Generator`: the reference every other backend is
compared against, `--backend torch` for checkpoints on the command line, and the PyTorch rows of
`stylegan bench` (`torch`, and `torch.compile`).

The model runs exactly as trained (training/networks.py), in eval mode, behind the same
protocol as onnxruntime and TensorRT, so truncation, mixing, noise modes and uint8 conversion
are the runtime's own code whichever engine runs the network. torch, the training code and the
export's reference graph are imported inside the functions: the runtime imports no torch (a
Jetson has none), and this module is imported with the other built-in backends.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import BackendUnavailable, BaseBackend
from .registry import BackendSpec

if TYPE_CHECKING:  # annotations only: importing this module must not import torch
    import torch

    from ..generator import Generator as RuntimeGenerator

# The options a checkpoint backend takes (a bundle does not run here: see `open_checkpoint`).
OPTIONS = frozenset({"device"})


class TorchBackend(BaseBackend):
    """Runs a torch module on named numpy inputs (in the module's input order)."""

    name = "torch"

    def __init__(self, module: torch.nn.Module, input_names: list[str], output_names: list[str],
                 device: str = "cpu", compile: bool = False) -> None:
        import torch

        self.module = module.eval().to(device)
        self.device = device
        self.precision = "fp32"
        self.input_names = input_names
        self.output_names = output_names
        self.compiled = compile
        self._fn = torch.compile(self.module) if compile else self.module

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = [torch.from_numpy(np.array(feeds[n], dtype=np.float32)).to(self.device) for n in self.input_names]
        with torch.inference_mode():
            out = self._fn(*args)
        return {self.output_names[0]: out.float().cpu().numpy()}

    def prepare(self, feeds: Mapping[str, np.ndarray]) -> tuple[Callable[[], None], float | None]:
        """A call of the module on `feeds` converted once (the bench times the network, not the
        numpy <-> torch copies), and the seconds its compilation took (None when eager)."""
        import time

        import torch

        args = [torch.from_numpy(np.array(feeds[n], dtype=np.float32)).to(self.device) for n in self.input_names]
        fn = self._fn

        def call() -> None:
            with torch.inference_mode():
                fn(*args)

        setup = None
        if self.compiled:  # torch.compile compiles on the first call
            t0 = time.perf_counter()
            call()
            setup = time.perf_counter() - t0
        return call, setup

    def describe(self) -> dict[str, str]:
        import torch

        d = super().describe()
        d["backend"] = "torch.compile" if self.compiled else "torch"
        d["threads"] = str(torch.get_num_threads())
        return d


def torch_generator(model: str | Path | Any, device: str = "cpu", compile: bool = False) -> RuntimeGenerator:
    """A runtime `Generator` whose engine is the PyTorch model itself (a checkpoint path or an
    in-memory training `Generator`)."""
    from stylegan_edge.export.inference_graph import ReferenceSynthesis
    from stylegan_edge.export.onnx_export import model_meta
    from stylegan_edge.training.checkpoint import load_generator
    from stylegan_edge.training.networks import Generator

    from ..bundle import BundleMeta, noise_input
    from ..generator import Generator as RuntimeGenerator

    G = model if isinstance(model, Generator) else load_generator(model)
    G = G.eval().requires_grad_(False)
    meta = BundleMeta.from_dict(model_meta(G), Path(str(model)))
    # A conditional mapping runs as G.mapping(z, c): the inputs in meta.json's order.
    mapping = TorchBackend(G.mapping, meta.mapping_inputs, ["w"], device, compile)
    synthesis = TorchBackend(ReferenceSynthesis(G.synthesis), meta.synthesis_inputs, ["image"], device, compile)
    const = {}
    if G.cfg.use_noise:
        const = {noise_input(i): t.cpu().numpy() for i, t in enumerate(G.synthesis.make_noise(1, "const"))}
    source = str(model) if not isinstance(model, Generator) else "in-memory generator"
    return RuntimeGenerator.from_backends(meta, mapping, synthesis, const, source)


def _require_torch() -> None:
    """PyTorch and the modules the checkpoint path needs, as one line naming the extra."""
    try:
        import stylegan_edge.export.inference_graph  # noqa: F401
        import stylegan_edge.export.onnx_export  # noqa: F401
        import stylegan_edge.training.checkpoint  # noqa: F401
    except ImportError as e:
        raise BackendUnavailable(f"running a checkpoint needs PyTorch ({e.name} is missing): pip install '.[train]'"
                                 ) from None


def _checkpoint_opener(compile: bool) -> Callable[[Any, str], RuntimeGenerator]:
    def open_checkpoint(model: Any, device: str = "cpu") -> RuntimeGenerator:
        _require_torch()
        return torch_generator(model, device="cuda" if device == "cuda" else "cpu", compile=compile)

    return open_checkpoint


def load_torch_model(model: str | Path, seed: int = 0, presets: bool = True) -> Any:
    """A training `Generator`: a checkpoint file, or (presets=True) a preset name with random
    weights from `seed`."""
    import torch

    from stylegan_edge.training.checkpoint import load_generator
    from stylegan_edge.training.config import get_preset
    from stylegan_edge.training.networks import Generator

    if not presets or Path(model).is_file():
        return load_generator(model)
    torch.manual_seed(seed)
    return Generator(get_preset(str(model))).eval().requires_grad_(False)


def matmul_call(n: int) -> tuple[Callable[[], Any], int]:
    """A PyTorch FP32 product of two n x n matrices, and the threads it runs on."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    return (lambda: torch.mm(a, b)), torch.get_num_threads()


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


# Never picked by `auto`: a bundle holds no PyTorch weights.
BACKENDS = (
    BackendSpec("torch", None, OPTIONS, available=_has_torch, open_checkpoint=_checkpoint_opener(False)),
    BackendSpec("torch.compile", None, OPTIONS, available=_has_torch, open_checkpoint=_checkpoint_opener(True)),
)
