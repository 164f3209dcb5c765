"""PyTorch as a backend of the runtime's `Generator`: the reference every other backend is
compared against, and the `--backend torch` of the command line.

The model runs exactly as trained (training/networks.py), in eval mode, behind the same
protocol as onnxruntime and TensorRT, so truncation, mixing, noise modes and uint8 conversion
are the runtime's own code whichever engine runs the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from stylegan_edge.runtime.backends.base import BaseBackend
from stylegan_edge.runtime.bundle import BundleMeta, noise_input
from stylegan_edge.runtime.generator import Generator as RuntimeGenerator
from stylegan_edge.training.checkpoint import load_generator
from stylegan_edge.training.networks import Generator

from .inference_graph import ReferenceSynthesis
from .onnx_export import model_meta


class TorchBackend(BaseBackend):
    """Runs a torch module on named numpy inputs (in the module's input order)."""

    name = "torch"

    def __init__(self, module: torch.nn.Module, input_names: list[str], output_names: list[str],
                 device: str = "cpu", compile: bool = False) -> None:
        self.module = module.eval().to(device)
        self.device = device
        self.precision = "fp32"
        self.input_names = input_names
        self.output_names = output_names
        self.compiled = compile
        self._fn = torch.compile(self.module) if compile else self.module

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.array(feeds[n], dtype=np.float32)).to(self.device) for n in self.input_names]
        with torch.inference_mode():
            out = self._fn(*args)
        return {self.output_names[0]: out.float().cpu().numpy()}

    def describe(self) -> dict[str, str]:
        d = super().describe()
        d["backend"] = "torch.compile" if self.compiled else "torch"
        d["threads"] = str(torch.get_num_threads())
        return d


def torch_generator(model: str | Path | Generator, device: str = "cpu", compile: bool = False) -> RuntimeGenerator:
    """A runtime `Generator` whose engine is the PyTorch model itself."""
    G = model if isinstance(model, Generator) else load_generator(model)
    G = G.eval().requires_grad_(False)
    meta = BundleMeta.from_dict(model_meta(G), Path(str(model)))
    mapping = TorchBackend(G.mapping, ["z"], ["w"], device, compile)
    synthesis = TorchBackend(ReferenceSynthesis(G.synthesis), meta.synthesis_inputs, ["image"], device, compile)
    const = {}
    if G.cfg.use_noise:
        const = {noise_input(i): t.cpu().numpy() for i, t in enumerate(G.synthesis.make_noise(1, "const"))}
    source = str(model) if not isinstance(model, Generator) else "in-memory generator"
    return RuntimeGenerator.from_backends(meta, mapping, synthesis, const, source)
