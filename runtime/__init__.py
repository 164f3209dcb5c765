"""The torch-free runtime: run a stylegan-edge bundle with numpy and onnxruntime or TensorRT.

    from stylegan_edge.runtime import Generator
    g = Generator("faces64.sgbundle")
    images = g.generate(seeds=[1, 2, 3], psi=0.7)      # uint8 [3, H, W, 3]
"""

from .bundle import Bundle, BundleError, BundleMeta, open_bundle
from .generator import NOISE_MODES, ArgumentError, Generator, GeneratorClosed, style_layers
from .latents import lerp, parse_seeds, seed_to_z, seeds_to_z, slerp

__all__ = [
    "ArgumentError", "Bundle", "BundleError", "BundleMeta", "Generator", "GeneratorClosed", "NOISE_MODES", "lerp",
    "open_bundle", "parse_seeds",
    "seed_to_z", "seeds_to_z", "slerp", "style_layers",
]
