"""Shared fixtures: a tiny generator with every parameter non-trivial, its checkpoint, and its
exported bundle (exported once per test session: the exporter takes seconds)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="these fixtures need PyTorch (pip install '.[train]')")

from stylegan_edge.training.config import PRESETS, ModelConfig  # noqa: E402
from stylegan_edge.training.networks import Generator  # noqa: E402

TINY = PRESETS["tiny"]


def randomized_generator(cfg: ModelConfig, seed: int = 0) -> Generator:
    """A generator whose zero-initialised parameters (noise strengths, biases, w_avg) are
    random too, so that tests exercise every term."""
    torch.manual_seed(seed)
    G = Generator(cfg).eval().requires_grad_(False)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if "noise_strength" in name or name.endswith("bias"):
                p.normal_(0.0, 0.3)
            elif name == "synthesis.const":
                # Trained constants vary across the 4x4 map; the all-ones initial value makes the
                # first instance norm divide rounding noise by its (zero) spread.
                p.normal_(1.0, 0.5)
        G.w_avg.normal_(0.0, 0.5)
    return G


@pytest.fixture(scope="session")
def tiny_G() -> Generator:
    return randomized_generator(TINY)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_G, tmp_path_factory) -> Path:
    from stylegan_edge.training.checkpoint import save_model

    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_model(path, tiny_G)
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tiny_G, tmp_path_factory) -> Path:
    from stylegan_edge.export.onnx_export import export_bundle

    out = tmp_path_factory.mktemp("bundle") / "tiny.sgbundle"
    return export_bundle(tiny_G, out, source={"test": "tiny"})


@pytest.fixture(scope="session")
def sealed_tiny_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """A copy of the tiny bundle whose meta records every file (tests that edit a graph re-seal
    their own copy with tests/bundles.py `seal`)."""
    import shutil

    from .bundles import seal

    dst = tmp_path_factory.mktemp("sealed") / "tiny.sgbundle"
    shutil.copytree(tiny_bundle, dst, ignore=shutil.ignore_patterns(".*"))
    return seal(dst)


@pytest.fixture(scope="session")
def tiny_fused_cfg() -> ModelConfig:
    """Tiny widths at 128 px, so the fused (transposed) upsampling path is exercised."""
    return dataclasses.replace(TINY, resolution=128, fmap_base=256, fmap_max=16)
