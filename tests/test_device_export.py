"""`stylegan-export BUNDLE --fp16` as a Jetson owner meets it: a runtime-only install (no torch,
onnx, onnxconverter-common or onnxruntime's quantiser) with TensorRT and pycuda (the strict fakes),
and a bundle whose reduced-precision ONNX a workstation made.

The device cases run the command in a subprocess whose import system refuses those packages
(a `builtins.__import__` hook for cached modules plus a `sys.meta_path` finder for new ones, both
raising ModuleNotFoundError as a missing package does). The fake TensorRT's parser reads the ONNX
with the onnx package, as the real parser reads it in C++: imports made from tests/fake_*.py are
let through, and every refused import is recorded with its importer, so the test can show the
project's own code never tried.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from stylegan_edge.cli.common import missing_module_message, one_line_errors
from stylegan_edge.cli.export_cmd import SUPPORTED_OPSETS
from stylegan_edge.cli.main import app
from stylegan_edge.export.precision_files import OnnxMetadataError, onnx_metadata, problems

ROOT = Path(__file__).resolve().parents[1]
RESULT = "@@RESULT@@"
JETSON_BLOCKED = ["torch", "onnx", "onnxscript", "onnxconverter_common", "onnxruntime.quantization", "safetensors"]
FAKE_RELEASE = "10.3.0"  # JetPack 6.1/6.2: strongly typed builds from the bundle's FP16/INT8 files

# Runs in the subprocess: refuse the blocked packages, optionally install the fake TensorRT and
# pycuda, run `stylegan-export ARGV`, then (on success) generate from the bundle on TensorRT.
BOOTSTRAP = r'''
import builtins, json, os, sys
ROOT = os.environ["SG_ROOT"]
sys.path.insert(0, ROOT)
BLOCKED = tuple(json.loads(os.environ["SG_BLOCK"]))
FAKES = os.path.join(ROOT, "tests", "fake_")
refused = []

def blocked(name):
    return any(name == b or name.startswith(b + ".") for b in BLOCKED)

def from_fake():
    f = sys._getframe(2)
    while f is not None:
        if f.f_code.co_filename.startswith(FAKES):
            return True
        f = f.f_back
    return False

def refuse(name, importer):
    refused.append([name, importer])
    raise ModuleNotFoundError(f"No module named {name!r}", name=name)

_import = builtins.__import__

def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and blocked(name) and not from_fake():
        refuse(name, (globals or {}).get("__name__", "?"))
    return _import(name, globals, locals, fromlist, level)

class Refuse:
    def find_spec(self, fullname, path=None, target=None):
        if blocked(fullname) and not from_fake():
            refuse(fullname, "importlib")
        return None

builtins.__import__ = guarded_import
sys.meta_path.insert(0, Refuse())

fake = None
if os.environ.get("SG_FAKE_TRT"):
    from tests.fake_tensorrt import install_fakes

    class Patch:  # the two monkeypatch methods install_fakes uses, applied for good
        setitem = staticmethod(lambda d, k, v: d.__setitem__(k, v))
        setattr = staticmethod(setattr)

    trt, _cuda = install_fakes(Patch(), os.environ["SG_FAKE_TRT"])
    fake = trt.__fake__

from stylegan_edge.cli.export_cmd import main
argv = json.loads(os.environ["SG_ARGV"])
sys.argv = ["stylegan-export", *argv]
try:
    main()
    code = 0
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
result = {"exit": code}
if code == 0 and os.environ.get("SG_GENERATE"):
    from stylegan_edge.runtime import Generator

    g = Generator(argv[0], backend="tensorrt", precision=os.environ["SG_GENERATE"])
    images = g.generate(seeds=[0, 1])
    result["images"] = {"shape": list(images.shape), "dtype": str(images.dtype)}
    result["engine"] = g.synthesis.engine_path.name
    result["build"] = g.describe()["build"]
    result["executions"] = fake.executions
    g.close()
result["refused"] = refused
result["loaded_torch"] = "torch" in sys.modules
print("@@RESULT@@" + json.dumps(result))
'''


def run_device(argv: list[str], *, fake_trt: str | None = FAKE_RELEASE, generate: str | None = None,
               block: list[str] = JETSON_BLOCKED) -> tuple[dict, str, str]:
    env = {**os.environ, "SG_ROOT": str(ROOT), "SG_BLOCK": json.dumps(block), "SG_ARGV": json.dumps(argv),
           "SG_FAKE_TRT": fake_trt or "", "SG_GENERATE": generate or ""}
    env.pop("STYLEGAN_DEBUG", None)
    proc = subprocess.run([sys.executable, "-c", BOOTSTRAP], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    assert lines, f"no result; stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(lines[-1][len(RESULT):]), proc.stdout, proc.stderr


def hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.fixture(scope="module")
def workstation_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """The tiny bundle with the FP16 and INT8 files calibration makes on a workstation."""
    from stylegan_edge.calibration.fp16_analysis import Fp16Thresholds
    from stylegan_edge.calibration.int8 import Int8Settings
    from stylegan_edge.calibration.pipeline import PipelineSettings, prepare_precisions
    from stylegan_edge.calibration.speed import SpeedSettings

    fast = PipelineSettings(
        fp16=Fp16Thresholds(analysis_samples=8), holdout_samples=4,
        int8=Int8Settings(analysis_samples=8, table_rows=3, speed=SpeedSettings(batch=1, rounds=2, seconds=0,
                                                                                 warmup=1)),
    )
    out = tmp_path_factory.mktemp("workstation") / "tiny.sgbundle"
    shutil.copytree(tiny_bundle, out)
    prepare_precisions(out, ["fp16", "int8"], samples=16, settings=fast)
    return out


@pytest.fixture
def bundle(workstation_bundle, tmp_path) -> Path:
    out = tmp_path / "copy.sgbundle"
    shutil.copytree(workstation_bundle, out)
    return out


# --- the device command, in a runtime-only subprocess ------------------------------------------------------
@pytest.mark.slow
def test_device_builds_engines_from_the_bundles_files_without_torch_or_onnx_and_generates(bundle):
    before = hashes(bundle)
    result, out, err = run_device([str(bundle), "--fp16", "--int8", "--fp32"], generate="fp16")
    assert result["exit"] == 0, out + err
    after = hashes(bundle)
    assert {n: after[n] for n in before} == before  # nothing the workstation wrote was touched
    engines = {f"{m}.{p}.engine" for m, p in (("mapping", "fp32"), ("synthesis", "fp32"), ("synthesis", "fp16"),
                                                 ("synthesis", "int8"))}
    assert set(after) - set(before) == engines | {f"{e}.json" for e in engines} | {"timing.cache"}
    # Built from the workstation's reduced-precision ONNX, as it is.
    for precision, source in (("fp16", "synthesis.fp16.onnx"), ("int8", "synthesis.int8-fp16.onnx")):
        sidecar = json.loads((bundle / f"synthesis.{precision}.engine.json").read_text())
        assert sidecar["onnx_file"] == source  # strongly typed (the 10.3 fake): INT8 on the FP16 graph
        assert sidecar["onnx_sha256"] == before[source]
    assert "using precision_plan.json, synthesis.fp16.onnx, synthesis.int8-fp16.onnx, synthesis.int8.onnx" in out
    assert result["images"] == {"shape": [2, 32, 32, 3], "dtype": "uint8"}
    assert result["engine"] == "synthesis.fp16.engine" and result["build"] == "strongly_typed"
    assert result["executions"] >= 2  # mapping and synthesis ran on the (fake) engines
    assert not [r for r in result["refused"] if r[1].startswith("stylegan_edge")], result["refused"]
    assert result["loaded_torch"] is False


@pytest.mark.slow
def test_device_without_tensorrt_is_one_line_naming_tensorrt(bundle):
    before = hashes(bundle)
    result, out, err = run_device([str(bundle), "--fp16"], fake_trt=None,
                                  block=[*JETSON_BLOCKED, "tensorrt", "pycuda"])
    assert result["exit"] == 1
    line = one_error_line(err)
    assert "TensorRT is not installed" in line and f"stylegan-export {bundle} --fp16" in line
    assert hashes(bundle) == before


@pytest.mark.slow
def test_device_with_the_fp16_file_missing_says_where_and_how_to_make_it(bundle):
    (bundle / "synthesis.fp16.onnx").unlink()
    before = hashes(bundle)
    result, out, err = run_device([str(bundle), "--fp16"])
    assert result["exit"] == 1
    line = one_error_line(err)
    assert "synthesis.fp16.onnx is missing" in line
    assert "pip install '.[export]'" in line and f"stylegan-export {bundle} --fp16 --no-engines" in line
    assert hashes(bundle) == before  # no engine built from a plan without its file


@pytest.mark.slow
def test_device_with_files_made_from_another_synthesis_onnx_says_they_are_stale(bundle):
    import onnx

    model = onnx.load(str(bundle / "synthesis.onnx"))
    model.doc_string = f"re-exported {np.random.default_rng().integers(1 << 30)}"  # a new synthesis.onnx
    onnx.save(model, str(bundle / "synthesis.onnx"))
    meta = json.loads((bundle / "meta.json").read_text())
    record = meta.get("files", {}).get("synthesis.onnx")
    if record is not None:  # a re-export records its new graph in meta.json
        data = (bundle / "synthesis.onnx").read_bytes()
        record.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        (bundle / "meta.json").write_text(json.dumps(meta))
    result, out, err = run_device([str(bundle), "--int8"])
    assert result["exit"] == 1
    line = one_error_line(err)
    assert "synthesis.int8.onnx is stale" in line and "pip install '.[export]'" in line
    assert not list(bundle.glob("*.engine"))


# --- the same decisions in-process, where calibration can run ------------------------------------------------
runner = CliRunner()


@pytest.fixture
def calls(monkeypatch):
    """prepare_precisions replaced by a recorder (whether calibration reruns is the question)."""
    from stylegan_edge.calibration import pipeline

    seen: list[list[str]] = []
    monkeypatch.setattr(pipeline, "prepare_precisions", lambda bundle, precisions, **kw: seen.append(precisions))
    return seen


def test_current_files_are_kept_and_recalibrate_redoes_them(bundle, calls):
    before = hashes(bundle)
    result = runner.invoke(app, ["export", str(bundle), "--fp16", "--int8", "--no-engines"])
    assert result.exit_code == 0, result.output
    assert calls == [] and hashes(bundle) == before
    result = runner.invoke(app, ["export", str(bundle), "--fp16", "--no-engines", "--recalibrate"])
    assert result.exit_code == 0, result.output
    assert calls == [["fp16"]]


def test_stale_or_missing_files_are_remade_where_the_export_extras_are(bundle, calls):
    (bundle / "synthesis.int8.onnx").unlink()
    plan = json.loads((bundle / "precision_plan.json").read_text())
    plan["source_sha256"] = "0" * 64
    (bundle / "precision_plan.json").write_text(json.dumps(plan))
    assert [p.file for p in problems(bundle, ["fp16", "int8"])] == ["precision_plan.json", "synthesis.int8.onnx"]
    result = runner.invoke(app, ["export", str(bundle), "--fp16", "--int8", "--no-engines"])
    assert result.exit_code == 0, result.output
    assert calls == [["fp16", "int8"]]
    assert "is stale" in result.output and "is missing" in result.output


@pytest.mark.parametrize("opset", [16, 19, 99])
def test_opsets_the_exporter_does_not_write_are_refused_in_one_line(opset, tmp_path):
    out = tmp_path / "x.sgbundle"
    result = runner.invoke(app, ["export", "tiny", "--out", str(out), "--opset", str(opset)])
    assert result.exit_code == 1, result.output
    line = one_error_line(result.stderr)
    assert f"--opset {opset}" in line and "17 or 18" in line
    assert not out.exists()


def test_the_commands_opsets_are_the_exporters():
    from stylegan_edge.export import onnx_export

    assert SUPPORTED_OPSETS == getattr(onnx_export, "SUPPORTED_OPSETS", SUPPORTED_OPSETS)
    assert onnx_export.ExportConfig().opset in SUPPORTED_OPSETS


def test_calibration_samples_below_one_are_refused(bundle):
    result = runner.invoke(app, ["export", str(bundle), "--fp16", "--calib-samples", "0"])
    assert result.exit_code == 2 and "calib-samples" in result.output
    assert "Traceback" not in result.output


# --- missing modules in any command -------------------------------------------------------------------------
@pytest.mark.parametrize(("module", "extra"), [
    ("torch", "train"), ("onnx", "export"), ("onnxconverter_common", "export"),
    ("onnxruntime.quantization", "export"), ("onnx.reference.ops", "export"), ("cv2", "demo"),
    ("tensorrt", "trt"), ("pycuda.driver", "trt"), ("safetensors", "train"),
])
def test_a_missing_module_in_a_command_is_one_line_naming_the_extra(module, extra):
    @one_line_errors
    def command() -> None:
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)

    probe = typer.Typer(add_completion=False)
    probe.command()(command)
    result = runner.invoke(probe, [])
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert module in line and f"pip install '.[{extra}]'" in line


def test_an_unknown_or_own_missing_module_keeps_its_traceback():
    assert missing_module_message(ModuleNotFoundError("x", name="stylegan_edge.nope")) is None
    assert missing_module_message(ValueError("not an import")) is None
    broken = ImportError("libnvinfer.so.10: cannot open shared object file", name="tensorrt")
    assert "cannot be imported (libnvinfer.so.10" in missing_module_message(broken)


# --- the metadata reader -------------------------------------------------------------------------------------
def test_metadata_reader_agrees_with_onnx_on_random_entries(tmp_path, tiny_bundle):
    import onnx

    rng = np.random.default_rng()
    model = onnx.load(str(tiny_bundle / "mapping.onnx"))
    want = {f"k{i}-{rng.integers(1 << 40)}": "".join(chr(int(c)) for c in rng.integers(32, 0x2FFF, 50))
            for i in range(5)}
    for key, value in want.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert onnx_metadata(path) == {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert set(want.items()) <= set(onnx_metadata(path).items())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(OnnxMetadataError):
        onnx_metadata(path)


def test_reader_and_calibration_agree_on_the_metadata_key(workstation_bundle):
    from stylegan_edge.export import precision_files
    from stylegan_edge.runtime.bundle import PRECISION_METADATA_KEY as METADATA_KEY

    assert precision_files.PRECISION_METADATA_KEY == METADATA_KEY
    info = json.loads(onnx_metadata(workstation_bundle / "synthesis.fp16.onnx")[METADATA_KEY])
    assert info["source_sha256"] == hashlib.sha256((workstation_bundle / "synthesis.onnx").read_bytes()).hexdigest()
