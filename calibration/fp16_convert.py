"""FP32 synthesis ONNX -> mixed-precision FP16 ONNX, with onnxconverter-common.

`convert_float_to_float16(keep_io_types=True, node_block_list=...)` keeps the graph's inputs and
outputs float32, stores weights and computes every other node in FP16, and inserts the casts
around the nodes of the block list (the precision plan's `fp32_nodes`). Our graphs have no Cast
nodes of their own, which avoids the converter's known trouble with existing casts.

The result is checked here: the full ONNX checker, float32 inputs and outputs, and float32
inputs for every InstanceNormalization (TensorRT 11 computes a normalisation in its input
type, and its sums of squares overflow FP16 once |x| passes about 256).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import onnx
from onnx import TensorProto

from .errors import CalibrationError
from .graph import NORM_OP, value_types

FP16_MAX = 65504.0


def convert_fp16(model: onnx.ModelProto, fp32_nodes: Iterable[str], check: bool = True) -> onnx.ModelProto:
    """The mixed FP16 model: `fp32_nodes` (ONNX node names) stay FP32, the rest is FP16.

    check=False skips `check_fp16_model` (for measuring models we would never ship, such as
    everything in FP16).
    """
    from onnxconverter_common import float16

    names = {n.name for n in model.graph.node}
    block = list(dict.fromkeys(fp32_nodes))
    unknown = [n for n in block if n not in names]
    if unknown:
        raise CalibrationError(f"precision plan names nodes the graph lacks: {unknown[:3]} (made for another model?)")
    model = _unshare_initializers(_without_initializer_value_info(model), set(block))
    with warnings.catch_warnings():
        # The converter warns for every weight it rounds; the plan already measured that.
        warnings.simplefilter("ignore")
        # max_finite_val: saturate only what FP16 cannot hold (the default, 1e4, would also
        # clip representable weights); the plan keeps layers with larger weights in FP32.
        out = float16.convert_float_to_float16(
            model, keep_io_types=True, node_block_list=block, max_finite_val=FP16_MAX,
        )
    if check:
        check_fp16_model(out)
    return out


def _without_initializer_value_info(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy without value_info entries for initializers (the dynamo exporter writes them).

    The converter treats such an entry as an activation: it retypes it to FP16 and casts it back
    before a blocked node, so a blocked node's weights would be rounded (and saturated) to FP16.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name for i in out.graph.initializer}
    keep = [v for v in out.graph.value_info if v.name not in inits]
    del out.graph.value_info[:]
    out.graph.value_info.extend(keep)
    return out


def _unshare_initializers(model: onnx.ModelProto, block: set[str]) -> onnx.ModelProto:
    """Give blocked nodes their own copy of a float initializer that converted nodes also use.

    The exporter merges equal constants (an untrained model's style bias and the norm's scale
    are both ones); the converter keeps an initializer FP32 when any blocked node reads it, and
    the FP16 node that shares it then gets a float32 input it cannot take.
    """
    inits = {i.name: i for i in model.graph.initializer if i.data_type == TensorProto.FLOAT}
    readers: dict[str, set[bool]] = {}
    for node in model.graph.node:
        for name in node.input:
            if name in inits:
                readers.setdefault(name, set()).add(node.name in block)
    shared = {name for name, kinds in readers.items() if len(kinds) == 2}
    for name in sorted(shared):
        copy = onnx.TensorProto()
        copy.CopyFrom(inits[name])
        copy.name = f"{name}/fp32"
        model.graph.initializer.append(copy)
        for node in model.graph.node:
            if node.name in block:
                for i, inp in enumerate(node.input):
                    if inp == name:
                        node.input[i] = copy.name
    return model


def check_fp16_model(model: onnx.ModelProto) -> None:
    """Checker, float32 I/O, float32 InstanceNormalization inputs; raise CalibrationError if not."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise CalibrationError(f"the FP16 model fails the ONNX checker: {str(e).splitlines()[0]}") from None
    for v in [*model.graph.input, *model.graph.output]:
        if v.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise CalibrationError(f"the FP16 model's input/output {v.name} is not float32")
    types = value_types(model)
    for node in model.graph.node:
        if node.op_type == NORM_OP and types.get(node.input[0]) != TensorProto.FLOAT:
            raise CalibrationError(f"{node.name} receives a non-float32 input in the FP16 model")


def fp16_node_count(model: onnx.ModelProto) -> int:
    """Nodes that produce a float16 value (Casts excluded)."""
    types = value_types(model)
    return sum(1 for n in model.graph.node
               if n.op_type != "Cast" and any(types.get(o) == TensorProto.FLOAT16 for o in n.output))
