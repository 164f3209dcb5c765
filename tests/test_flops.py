"""The FLOP count (training/flops.py, the README's and `stylegan bench`'s GFLOP figures) against
the multiply-adds counted node by node in the exported ONNX graphs of the model as trained."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import shape_inference

from stylegan_edge.export.onnx_export import ExportConfig, export_bundle
from stylegan_edge.training.config import PRESETS
from stylegan_edge.training.flops import mapping_macs, model_gflops, synthesis_macs

from .conftest import randomized_generator

# Fused (transposed-convolution) upsampling from 16 px, so both upsampling forms are counted.
CFG = dataclasses.replace(PRESETS["tiny"], fused_up_min_res=16)


def _shapes(model: onnx.ModelProto, batch: int) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape with the batch axis fixed, from ONNX shape inference."""
    for value in model.graph.input:
        value.type.tensor_type.shape.dim[0].dim_value = batch
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    shapes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    for init in inferred.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def graph_macs(path, batch: int = 1) -> dict[str, int]:
    """Multiply-adds of the Conv, ConvTranspose, Gemm and MatMul nodes of an ONNX file, per op type."""
    model = onnx.load(path)
    shapes = _shapes(model, batch)
    out: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            w = shapes[node.input[1]]
            groups = next((a.i for a in node.attribute if a.name == "group"), 1)
            if node.op_type == "Conv":
                # each output value: in/groups * kh * kw products
                n = int(np.prod(shapes[node.output[0]])) * w[1] * w[2] * w[3]
            else:
                # each input value is scattered through out/groups * kh * kw products
                n = int(np.prod(shapes[node.input[0]])) * w[1] * w[2] * w[3]
            assert groups >= 1
        elif node.op_type in ("Gemm", "MatMul"):
            a, y = shapes[node.input[0]], shapes[node.output[0]]
            n = int(np.prod(y)) * a[-1]
        else:
            continue
        out[node.op_type] = out.get(node.op_type, 0) + n
    return out


@pytest.fixture(scope="module")
def reference_bundle(tmp_path_factory):
    G = randomized_generator(CFG)
    out = tmp_path_factory.mktemp("flops") / "ref.sgbundle"
    return export_bundle(G, out, ExportConfig(graph="reference"))


def test_synthesis_flop_count_equals_the_reference_graphs_multiply_adds(reference_bundle):
    counted = graph_macs(reference_bundle / "synthesis.onnx")
    macs = synthesis_macs(CFG)
    assert "ConvTranspose" in counted and any(s.conv == "up" and not s.fused for s in CFG.synthesis_layers())
    expected = macs["conv"] + macs["blur"] + macs["style"] + macs["to_rgb"]
    assert sum(counted.values()) == expected, (counted, macs)


def test_mapping_flop_count_equals_the_graphs_multiply_adds(reference_bundle):
    counted = sum(graph_macs(reference_bundle / "mapping.onnx").values())
    # The exported pixel norm sums z^2 as a product with a ones vector (z_dim multiply-adds),
    # which the model's count (a mean) does not include.
    assert counted == mapping_macs(CFG) + CFG.z_dim


def test_gflop_figure_is_twice_the_multiply_adds():
    gflops = model_gflops(CFG)
    assert gflops["synthesis"] == pytest.approx(2 * sum(synthesis_macs(CFG).values()) / 1e9, abs=1e-6)
    assert gflops["total"] == pytest.approx(gflops["synthesis"] + gflops["mapping"], abs=2e-6)
