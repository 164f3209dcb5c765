"""How the synthesis graph's ONNX nodes are named, and the parser every stage reads them with.

Export names each node after the module it came from (export/onnx_export.py
`name_nodes_by_module`): the style layers of export/inference_graph.py's `InferenceSynthesis` are
its `layers` ModuleList, so their nodes are `layers.N/<op>` (`layers.5/InstanceNormalization`,
`layers.5/Conv_1`), and the final 1x1 convolution is its `to_rgb` module (`to_rgb/Conv`).
Calibration groups nodes by layer with this parser (the FP16 analysis, the INT8 quantiser's
layer sets); the precision plan and the TensorRT build then name nodes as export wrote them.
Pure code: no onnx, no torch.
"""

from __future__ import annotations

# The attribute names of InferenceSynthesis that become the node-name scopes.
LAYER_SCOPE = "layers"
TO_RGB_SCOPE = "to_rgb"
_LAYER_PREFIX = LAYER_SCOPE + "."


def style_layer_scope(index: int) -> str:
    """The scope of style layer `index`'s nodes: `layers.5`."""
    return f"{_LAYER_PREFIX}{index}"


def is_style_layer_scope(scope: str) -> bool:
    """Whether `scope` (a node name's part before the first "/") names a style layer."""
    return scope.startswith(_LAYER_PREFIX) and scope[len(_LAYER_PREFIX):].isdigit()


def style_layer_index(node_name: str) -> int | None:
    """`layers.5/Conv_1` -> 5; None for a node outside the style layers (`to_rgb/Conv`, a node
    without a scope)."""
    scope, sep, _ = node_name.partition("/")
    if not sep or not is_style_layer_scope(scope):
        return None
    return int(scope[len(_LAYER_PREFIX):])
