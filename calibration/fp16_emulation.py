"""FP16 by emulation on the CPU: what a mixed FP16 model computes, reproduced in float32.

onnxruntime's CPU provider has almost no FP16 kernels. It runs an FP16 model by computing each
node in float32 and, between two such nodes, drops the cast back to FP16, so activations are
never rounded to FP16: running `synthesis.fp16.onnx` there measures only the rounding of the
weights, and an activation past 65504 does not overflow. That is fine for checking that the
file runs, but not for measuring its fidelity.

`emulate_fp16` therefore rewrites a copy of an FP16 model, for measurement only: every FP16
initializer becomes float32 with the same (FP16) value, and every value the FP16 model stores
as FP16 is rounded through an explicit Cast to float16 and back (onnxruntime keeps such pairs).
This is FP16 storage with float32 arithmetic, which is exact for element-wise operations and
matches GPU convolutions that accumulate in float32; overflow becomes inf exactly as on a GPU.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .graph import value_types


def _f32_tensor(t: onnx.TensorProto) -> onnx.TensorProto:
    return numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name)


def emulate_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A float32 copy of a mixed FP16 model that rounds every FP16 value to FP16."""
    types = value_types(model)
    graph = onnx.GraphProto()
    graph.CopyFrom(model.graph)
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT16:
            init.CopyFrom(_f32_tensor(init))

    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type == "Cast":
            to = next(a.i for a in node.attribute if a.name == "to")
            if to == TensorProto.FLOAT16:
                nodes += _round(node.input[0], node.output[0])
            else:
                nodes.append(node)
            continue
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        for attr in copy.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT16:
                attr.t.CopyFrom(_f32_tensor(attr.t))
        rounded = []
        for i, out in enumerate(node.output):
            if out and types.get(out) == TensorProto.FLOAT16:
                copy.output[i] = f"{out}/unrounded"
                rounded.append(out)
        nodes.append(copy)
        for out in rounded:
            nodes += _round(f"{out}/unrounded", out)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    out_model = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return out_model


def _round(src: str, dst: str) -> list[onnx.NodeProto]:
    """Cast src to FP16 and back into dst (node names from the value's, which are unique)."""
    return [
        helper.make_node("Cast", [src], [f"{dst}/fp16"], to=TensorProto.FLOAT16, name=f"{dst}/to_fp16"),
        helper.make_node("Cast", [f"{dst}/fp16"], [dst], to=TensorProto.FLOAT, name=f"{dst}/from_fp16"),
    ]
