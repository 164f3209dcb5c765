"""Every graph the project writes, against what each supported TensorRT ONNX parser honours.

The tables (tests/data/trt_parser/<release>.json) are read from the parser source at each release
tag; `check_onnx_model` and the fake parser (tests/fake_tensorrt.py) enforce them: a node the
release refuses, or silently misreads (8.6: ReduceMean's opset-18 axes input, Shape's start/end),
is a problem. The graphs are made by the project's own exporter and calibration pipeline on the
tiny preset, once per module.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from .conftest import TINY, randomized_generator
from .fake_tensorrt import PARSER_TABLES, check_onnx_model, load_parser_table, make_fake_tensorrt

RELEASES = tuple(PARSER_TABLES)  # the fake releases: 8.6.1, 10.3.0, 10.13.3.9, 11.4.0.106
GRAPHS = ("mapping.onnx", "synthesis.onnx", "synthesis.fp16.onnx", "synthesis.int8.onnx")
# Opset 19 (Q/DQ with FP16 scales): for the strongly typed builds of 10.x and 11.x only.
STRONGLY_TYPED_GRAPHS = ("synthesis.int8-fp16.onnx",)


def _export(tmp: Path, cfg, interleave: str) -> Path:
    from stylegan_edge.export.inference_graph import GraphOptions
    from stylegan_edge.export.onnx_export import ExportConfig, export_bundle

    return export_bundle(randomized_generator(cfg), tmp / f"{interleave}.sgbundle",
                         ExportConfig(options=GraphOptions(interleave=interleave)))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """Both interleave forms with their FP16 and INT8 files; the no-noise and latent-input
    ablations as FP32 graphs."""
    from stylegan_edge.calibration.fp16_analysis import Fp16Thresholds
    from stylegan_edge.calibration.int8 import Int8Settings
    from stylegan_edge.calibration.pipeline import PipelineSettings, prepare_precisions
    from stylegan_edge.calibration.speed import SpeedSettings

    fast = PipelineSettings(
        fp16=Fp16Thresholds(analysis_samples=4), holdout_samples=2,
        int8=Int8Settings(analysis_samples=4, table_rows=2, speed=SpeedSettings(batch=1, rounds=1, seconds=0,
                                                                                warmup=0)),
    )
    tmp = tmp_path_factory.mktemp("parser_support")
    out = {}
    for interleave in ("convtranspose", "depthtospace"):
        path = _export(tmp, TINY, interleave)
        prepare_precisions(path, ["fp16", "int8"], samples=8, log=lambda _m: None, settings=fast)
        out[interleave] = path
    for name, cfg in (("no-noise", dataclasses.replace(TINY, use_noise=False)),
                      ("latent-input", dataclasses.replace(TINY, const_input=False))):
        out[name] = _export(tmp / name, cfg, "convtranspose")
    return out


CASES = [(kind, graph) for kind in ("convtranspose", "depthtospace") for graph in GRAPHS] + [
    (kind, graph) for kind in ("no-noise", "latent-input") for graph in GRAPHS[:2]]
TYPED_CASES = [(kind, graph) for kind in ("convtranspose", "depthtospace") for graph in STRONGLY_TYPED_GRAPHS]
STRONG_RELEASES = RELEASES[1:]  # 8.6 has no strongly typed networks and builds INT8 from synthesis.int8.onnx


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("kind, graph", CASES)
def test_every_graph_the_project_writes_is_read_as_onnx_means_it(bundles, kind, graph, release):
    model = onnx.load(str(bundles[kind] / graph), load_external_data=False)
    problems = check_onnx_model(model, release)
    assert not problems, f"{kind}/{graph} on TensorRT {release}: " + "; ".join(map(str, problems[:5]))


@pytest.mark.parametrize("release", STRONG_RELEASES)
@pytest.mark.parametrize("kind, graph", TYPED_CASES)
def test_the_strongly_typed_int8_graph_is_read_as_onnx_means_it(bundles, kind, graph, release):
    model = onnx.load(str(bundles[kind] / graph), load_external_data=False)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert load_parser_table(release)["min_opset"] <= opset <= load_parser_table(release)["max_opset"]
    problems = check_onnx_model(model, release)
    assert not problems, f"{kind}/{graph} on TensorRT {release}: " + "; ".join(map(str, problems[:5]))


@pytest.mark.parametrize("release", RELEASES)
def test_every_graph_is_within_the_opsets_the_release_documents(bundles, release):
    table = load_parser_table(release)
    for kind, graph in CASES:
        model = onnx.load(str(bundles[kind] / graph), load_external_data=False)
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        assert table["min_opset"] <= opset <= table["max_opset"], f"{kind}/{graph}: opset {opset}"


@pytest.mark.parametrize("release", RELEASES)
def test_graphs_import_only_the_opset_domains_they_use(bundles, release):
    for kind, graph in CASES + TYPED_CASES:
        model = onnx.load(str(bundles[kind] / graph), load_external_data=False)
        used = {n.domain or "" for n in model.graph.node}
        declared = {o.domain or "" for o in model.opset_import}
        assert declared <= used | {""}, f"{kind}/{graph} declares unused domains {sorted(declared - used - {''})}"


# --- the old forms the 8.6 parser misreads ------------------------------------------------------
def _model(nodes: list, inputs: list, outputs: list, inits: list, opset: int) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _shape_start_end() -> onnx.ModelProto:
    """The learned constant broadcast to the batch as the exporter used to write it."""
    x = helper.make_tensor_value_info("w", TensorProto.FLOAT, ["batch", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 4, 4])
    const = numpy_helper.from_array(np.random.default_rng().standard_normal((1, 4, 4, 4)).astype(np.float32), "c")
    rest = numpy_helper.from_array(np.array([4, 4, 4], np.int64), "rest")
    nodes = [helper.make_node("Shape", ["w"], ["b"], name="/Shape", start=0, end=1),
             helper.make_node("Concat", ["b", "rest"], ["target"], name="/Concat", axis=0),
             helper.make_node("Expand", ["c", "target"], ["y"], name="/Expand")]
    return _model(nodes, [x], [y], [const, rest], 17)


def _reduce_mean_axes_input() -> onnx.ModelProto:
    """The mapping's pixel norm as opset 18 writes it: axes as an input."""
    x = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 8])
    y = helper.make_tensor_value_info("m", TensorProto.FLOAT, ["batch", 1])
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [helper.make_node("Mul", ["z", "z"], ["sq"], name="/Mul"),
             helper.make_node("ReduceMean", ["sq", "axes"], ["m"], name="/ReduceMean", keepdims=1)]
    return _model(nodes, [x], [y], [axes], 18)


def _parse(version: str, path: Path) -> tuple[bool, list[str]]:
    trt = make_fake_tensorrt(version)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and hasattr(trt.Builder, "max_batch_size"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    builder = trt.Builder(trt.Logger())
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt.Logger())
    ok = parser.parse_from_file(str(path))
    return ok, [parser.get_error(i).desc() for i in range(parser.num_errors)]


@pytest.mark.parametrize("make, node, words", [
    (_shape_start_end, "/Shape", "start"), (_reduce_mean_axes_input, "/ReduceMean", "every axis")])
def test_tensorrt86_refuses_the_forms_it_misreads_and_10x_reads_them(tmp_path, make, node, words):
    path = tmp_path / "old.onnx"
    onnx.save(make(), str(path))
    ok, errors = _parse("8.6.1", path)
    assert not ok and node in errors[0] and "misread" in errors[0] and words in errors[0]
    for version in ("10.3.0", "10.13.3.9", "11.4.0.106"):
        assert _parse(version, path) == (True, []), version


def test_tensorrt86_reads_reduce_mean_with_an_axes_attribute(tmp_path):
    model = _reduce_mean_axes_input()
    node = model.graph.node[1]
    del node.input[1]
    node.attribute.append(helper.make_attribute("axes", [1]))
    del model.graph.initializer[:]
    model.opset_import[0].version = 17
    path = tmp_path / "ok.onnx"
    onnx.save(model, str(path))
    assert _parse("8.6.1", path) == (True, [])


def test_real_tensorrt_names_only_registered_layers_and_the_fake_does_too(tmp_path):
    """Gemm: the matrix product carries the node's name and metadata, the bias add is unnamed
    (onnx-tensorrt release/8.6-GA builtin_op_importers.cpp Gemm: registerLayer(matmul) only)."""
    x = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 8])
    y = helper.make_tensor_value_info("h", TensorProto.FLOAT, ["batch", 8])
    rng = np.random.default_rng()
    inits = [numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "B")]
    path = tmp_path / "gemm.onnx"
    onnx.save(_model([helper.make_node("Gemm", ["z", "W", "B"], ["h"], name="/fc/Gemm", transB=1)], [x], [y],
                     inits, 17), str(path))
    for version in RELEASES:
        trt = make_fake_tensorrt(version)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if version == "8.6.1" else 0
        network = trt.Builder(trt.Logger()).create_network(flags)
        assert trt.OnnxParser(network, trt.Logger()).parse_from_file(str(path))
        layers = [network.get_layer(i) for i in range(network.num_layers)]
        assert [(la.name, la.metadata) for la in layers] == [
            ("/fc/Gemm", "[ONNX Layer: /fc/Gemm]"), ("(Unnamed Layer* 1) [ElementWise]", "")]
        assert layers[1].get_input(0).name == layers[0].get_output(0).name


def test_the_fake_bundle_of_the_other_tests_passes_every_table(tmp_path):
    from .fake_tensorrt import write_fake_bundle

    bundle = write_fake_bundle(tmp_path / "b.sgbundle", fp16_onnx=True, int8_onnx=True)
    for release in RELEASES:
        for graph in GRAPHS:
            # The build path sets NATIVE_INSTANCENORM (export/trt_plan.py); the stand-in norms
            # read scale and bias that are not initializers, which only the plugin path refuses.
            model = onnx.load(str(bundle / graph))
            assert check_onnx_model(model, release, native_instancenorm=True) == [], (release, graph)

