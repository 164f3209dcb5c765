"""Each cross-stage contract (bundle file names, the precision plan, node names, the engine
sidecar) is written in one module: the grep of the acceptance check, done on the parsed source."""

from __future__ import annotations

import ast
import json
import random
import re
from pathlib import Path

import pytest

from stylegan_edge.runtime import bundle as bundle_module
from stylegan_edge.runtime import engine_meta, node_names, precision_plan
from stylegan_edge.runtime.engine_meta import EngineMeta, GpuInfo
from stylegan_edge.runtime.node_names import TO_RGB_SCOPE, style_layer_index, style_layer_scope
from stylegan_edge.runtime.precision_plan import (
    LayerDecision,
    PrecisionPlan,
    PrecisionPlanError,
    read_fp32_nodes,
    recorded_plan_source,
)

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("calibration", "cli", "export", "runtime", "training")

# constant -> (its home, its value, how a string literal that spells it looks)
CONTRACTS = {
    "PLAN_FILE": ("runtime/bundle.py", "precision_plan.json", re.compile(r"precision_plan\.json")),
    "FP16_FILE": ("runtime/bundle.py", "synthesis.fp16.onnx", re.compile(r"synthesis\.fp16\.onnx")),
    "INT8_FILE": ("runtime/bundle.py", "synthesis.int8.onnx", re.compile(r"synthesis\.int8\.onnx")),
    "INT8_FP16_FILE": ("runtime/bundle.py", "synthesis.int8-fp16.onnx", re.compile(r"synthesis\.int8-fp16\.onnx")),
    "TIMING_CACHE_FILE": ("runtime/bundle.py", "timing.cache", re.compile(r"timing\.cache")),
    "PRECISION_METADATA_KEY": ("runtime/bundle.py", "stylegan_edge.precision",
                               re.compile(r"stylegan_edge\.precision$")),
    "ENGINE_SUFFIX": ("runtime/bundle.py", ".engine", re.compile(r"\.engine$")),
    "SIDECAR_SUFFIX": ("runtime/bundle.py", ".json", re.compile(r"\.engine\.json")),
    # "layers." opening a node-name scope; not "synthesis.layers." (a checkpoint key), "num_layers" nor
    # a sentence ending in "style layers."
    "LAYER_SCOPE": ("runtime/node_names.py", "layers", re.compile(r"(?<![\w. ])layers\.(\d|N|$)")),
    "PLAN_FORMAT": ("runtime/precision_plan.py", "stylegan-edge-precision-plan",
                    re.compile(r"stylegan-edge-precision-plan")),
    "SIDECAR_FORMAT": ("runtime/engine_meta.py", "stylegan-edge-engine", re.compile(r"^stylegan-edge-engine$")),
}
# Helpers that had drifted apart while written twice.
ONE_DEFINITION = {"tool_version": "runtime/version.py", "import_tensorrt": "runtime/backends/tensorrt.py",
                  "open_session": "runtime/backends/onnxruntime.py", "sidecar_path": "runtime/engine_meta.py",
                  "style_layer_index": "runtime/node_names.py"}


def _sources() -> dict[str, ast.Module]:
    files = sorted(f for pkg in PACKAGES for f in (ROOT / pkg).rglob("*.py"))
    assert len(files) > 50, "the package sources were not found"
    return {f.relative_to(ROOT).as_posix(): ast.parse(f.read_text(), str(f)) for f in files}


def _literals(tree: ast.Module) -> list[str]:
    """Every string literal except docstrings (prose may name a file), f-string pieces included."""
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def _module_assignments(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, ast.AnnAssign) else []
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


@pytest.fixture(scope="module")
def sources() -> dict[str, ast.Module]:
    return _sources()


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_each_contract_is_defined_in_one_module(name, sources):
    home, _, _ = CONTRACTS[name]
    defined = sorted(path for path, tree in sources.items() if name in _module_assignments(tree))
    assert defined == [home]


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_no_other_module_spells_a_contract_string(name, sources):
    home, _, spelled = CONTRACTS[name]
    spelling = sorted(path for path, tree in sources.items() if any(spelled.search(s) for s in _literals(tree)))
    assert set(spelling) <= {home}, f"{name}'s string is spelled outside {home}: {spelling}"


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_contract_values_are_the_bundle_format(name):
    home, value, _ = CONTRACTS[name]
    module = {"runtime/bundle.py": bundle_module, "runtime/node_names.py": node_names,
              "runtime/precision_plan.py": precision_plan, "runtime/engine_meta.py": engine_meta}[home]
    assert getattr(module, name) == value


@pytest.mark.parametrize("name", sorted(ONE_DEFINITION))
def test_shared_helpers_are_defined_once(name, sources):
    defined = sorted(path for path, tree in sources.items() for node in tree.body
                     if isinstance(node, ast.FunctionDef) and node.name == name)
    assert defined == [ONE_DEFINITION[name]]


def test_file_names_compose_as_the_bundle_holds_them():
    b = bundle_module
    assert b.sidecar_filename(b.engine_filename("synthesis", "fp16")) == "synthesis.fp16.engine.json"
    assert engine_meta.sidecar_path(Path("x") / "mapping.fp32.engine") == Path("x") / "mapping.fp32.engine.json"
    assert b.strongly_typed_onnx_filename("synthesis", "int8") == b.INT8_FP16_FILE


def test_node_names_round_trip():
    rng = random.Random()
    for index in rng.sample(range(1000), 20):
        op = rng.choice(["Conv", "Conv_3", "InstanceNormalization", "Mul_12"])
        assert style_layer_index(f"{style_layer_scope(index)}/{op}") == index
    for name in (f"{TO_RGB_SCOPE}/Conv", "layers.x/Conv", "layers.5", "syn.layers.5/Conv", "layers./Conv", "Conv"):
        assert style_layer_index(name) is None, name


def test_exported_graph_names_parse_into_every_style_layer(tiny_bundle):
    onnx = pytest.importorskip("onnx")
    meta = json.loads((tiny_bundle / "meta.json").read_text())
    names = [n.name for n in onnx.load(str(tiny_bundle / "synthesis.onnx")).graph.node]
    assert {style_layer_index(n) for n in names} - {None} == set(range(meta["num_layers"]))
    assert any(n.partition("/")[0] == TO_RGB_SCOPE for n in names)


def _plan(rng: random.Random) -> PrecisionPlan:
    layers = [LayerDecision(style_layer_scope(i), 4 << (i // 2), rng.choice([16, 32]), rng.uniform(1, 500),
                            rng.uniform(1, 500), False, rng.uniform(30, 60), i == 1, "error" if i == 1 else "ok", "")
              for i in range(rng.randint(2, 6))]
    fp32 = [f"{style_layer_scope(1)}/Conv", f"{style_layer_scope(0)}/InstanceNormalization"]
    return PrecisionPlan("synthesis.onnx", f"{rng.getrandbits(256):064x}", {"max_abs": rng.uniform(1e3, 2e4)},
                         fp32, layers, measured={"psnr_db": rng.uniform(30, 60)})


def test_precision_plan_reads_back_what_it_wrote(tmp_path):
    plan = _plan(random.Random())
    path = plan.write(tmp_path)
    assert path == tmp_path / "precision_plan.json"
    assert PrecisionPlan.read(tmp_path) == plan
    assert read_fp32_nodes(tmp_path) == frozenset(plan.fp32_nodes)
    assert recorded_plan_source(path) == plan.source_sha256
    assert PrecisionPlan.read(tmp_path).fp32_layers == [style_layer_scope(1)]


def test_precision_plan_without_a_file_is_none_for_the_builder_and_an_error_for_calibration(tmp_path):
    assert read_fp32_nodes(tmp_path) is None
    with pytest.raises(PrecisionPlanError, match="no precision plan"):
        PrecisionPlan.read(tmp_path)


@pytest.mark.parametrize("content", ['{"format": "other"}', '{"format": "stylegan-edge-precision-plan", "version": 2}',
                                     "not json", b"\xff\xfe"])
def test_malformed_precision_plan_is_one_line_naming_the_file(tmp_path, content):
    path = tmp_path / "precision_plan.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for read in (PrecisionPlan.read, read_fp32_nodes):
        with pytest.raises(PrecisionPlanError) as e:
            read(tmp_path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_sidecar_keeps_its_build_path_key_in_place():
    meta = EngineMeta(model="synthesis", precision="fp16", engine_file="synthesis.fp16.engine", engine_sha256="e" * 64,
                      engine_bytes=random.randint(1, 1 << 30), tensorrt_version="10.3.0", gpu=GpuInfo("Orin", "8.7"),
                      onnx_file="synthesis.fp16.onnx", onnx_sha256="o" * 64, build_mode="weak_typed")
    d = meta.to_dict()
    keys = list(d)
    assert "build_mode" not in d and d["build_path"] == "weak_typed"
    assert keys[keys.index("onnx_sha256") + 1] == "build_path"  # where version 1 sidecars have it
    assert EngineMeta.from_dict(json.loads(json.dumps(d)), Path("s.json")) == meta


def test_noise_modes_are_one_tuple_shared_by_training_and_runtime(sources):
    from stylegan_edge.runtime.backends.base import NOISE_MODES
    from stylegan_edge.training import networks

    defined = sorted(path for path, tree in sources.items() if "NOISE_MODES" in _module_assignments(tree))
    assert defined == ["runtime/backends/base.py"]
    assert networks.NOISE_MODES is NOISE_MODES


def test_onnxruntime_sessions_are_made_in_one_place(sources):
    makers = sorted(path for path, tree in sources.items() for node in ast.walk(tree)
                    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "InferenceSession")
    assert makers == ["runtime/backends/onnxruntime.py"]


def test_the_layer_structure_is_computed_in_one_function(sources):
    """Only ModelConfig.synthesis_layers walks the resolutions to make style layers: nobody else
    spells the `2 * log2 - 2` layer arithmetic or the parity rule of which layer upsamples."""
    parity = re.compile(r"%\s*2\s*==\s*1|i\s*//\s*2\s*\+\s*2|layer\s*//\s*2")
    spelled = sorted(path for path, tree in sources.items()
                     if parity.search(ast.unparse(tree)) and path != "training/config.py")
    assert spelled == []
