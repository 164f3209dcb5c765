#!/usr/bin/env python3
"""Extract the Python API of several TensorRT releases into small JSON files, without TensorRT.

Why: our engine builder and TensorRT backend must be correct against TensorRT 8.6 (JetPack 6.0),
10.3 (JetPack 6.1/6.2), 10.13 (JetPack 7) and 11.x (desktop), but no machine we develop on has
libnvinfer or a GPU. The strict fake in `tests/fake_tensorrt.py` reads these JSON files and
refuses every name a release lacks, so a test fails when our code uses one.

How it works:

1. `pip download --no-deps --only-binary=:all:` the Python bindings wheel of each release
   (`tensorrt-bindings==8.6.1`, `tensorrt-cu12-bindings==10.3.0 / 10.13.3.9 / 11.4.0.106`, about
   1 MB each; they hold the pybind11 module `tensorrt_bindings/tensorrt.so` and its `__init__.py`
   but not the libraries) into a temporary directory, for the running Python's ABI.
2. The compiled module links against libnvinfer, libnvonnxparser, libnvparsers and
   libnvinfer_plugin, but only calls into them when an object is created (a Builder, a Runtime,
   a parser). Its undefined symbols from those libraries are a dozen plain factory functions
   (`createInferBuilder_INTERNAL`, `getPluginRegistry`, ...; see `nm -D --undefined-only`). We
   compile empty stand-ins for them (gcc, `STUB_SOURCE` below) under each expected soname, so the
   module imports; no NVIDIA code runs and nothing is ever constructed.
3. In a child interpreter (`LD_LIBRARY_PATH` pointing at the stand-ins) we import the package and
   walk it: classes with their bases, methods (with the pybind11 signature lines from each
   docstring, every overload), properties (read-only or read-write), nested types and class
   attributes; enums with their members and values; module functions and constants (the
   `float32`-style DataType aliases, `nptype`, `volume`, `__version__` from `__init__.py`).
4. Cross-check with `strings`: every extracted class, member and method name must occur in the
   compiled module's string table (as a string or the tail of one, since the linker merges
   suffixes) or in the package's Python files. A name that does not is reported and fails the run:
   it would mean the walk produced something the binary does not define.

Limits: only names and signatures, no behaviour (the stand-ins return NULL, so no method can be
called); the wheels are desktop x86_64 builds, and we assume the Jetson (aarch64) bindings of the
same version expose the same names (they are built from the same sources; JetPack 6.0 has
8.6.2, a patch release of the 8.6.1 wheel); signatures are as pybind11 renders them. Needs gcc,
`strings` (binutils), pip with network access to PyPI, and a Python for which every wheel exists
(3.10 or 3.11: 8.6.1 has no wheels past 3.11).

Usage: python scripts/extract_trt_api.py [--out tests/data/trt_api] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

RELEASES = {
    # api name: pip requirement
    "8.6.1": "tensorrt-bindings==8.6.1",
    "10.3.0": "tensorrt-cu12-bindings==10.3.0",
    "10.13.3.9": "tensorrt-cu12-bindings==10.13.3.9",
    "11.4.0.106": "tensorrt-cu12-bindings==11.4.0.106",
}

# The soname majors the modules ask for (readelf -d: NEEDED).
STUB_LIBS = ("libnvinfer", "libnvonnxparser", "libnvparsers", "libnvinfer_plugin")
STUB_MAJORS = ("8", "10", "11")

# Empty stand-ins for every libnvinfer-family symbol the modules import (8.6 to 11.4). The two
# C++ names are 8.6's UFF and Caffe parser factories, spelled mangled so plain C can define them.
STUB_SOURCE = """
void *createInferBuilder_INTERNAL(void) { return 0; }
void *createInferRefitter_INTERNAL(void) { return 0; }
void *createInferRuntime_INTERNAL(void) { return 0; }
void *createNvOnnxParser_INTERNAL(void) { return 0; }
void *createNvOnnxParserRefitter_INTERNAL(void) { return 0; }
void *getBuilderPluginRegistry(void) { return 0; }
void *getPluginRegistry(void) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
int initLibNvInferPlugins(void) { return 0; }
void *_ZN11nvuffparser15createUffParserEv(void) { return 0; }
void _ZN11nvuffparser8FieldMapC1EPKcPKvNS_9FieldTypeEi(void) {}
void *_ZN14nvcaffeparser117createCaffeParserEv(void) { return 0; }
void _ZN14nvcaffeparser123shutdownProtobufLibraryEv(void) {}
"""

# Runs in the child interpreter: prints the API as JSON. Kept as source text so the child needs
# nothing from this repository.
WALKER = r'''
import importlib, inspect, json, re, sys, types

pkg = importlib.import_module("tensorrt_bindings")
PREFIX = re.compile(r"tensorrt_bindings\.tensorrt\.|tensorrt_bindings\.")
SKIP = {"__module__", "__doc__", "__dict__", "__weakref__", "__members__", "__entries"}

def clean(text):
    return PREFIX.sub("", text)

def signatures(obj, name):
    doc = getattr(obj, "__doc__", None) or ""
    sigs = []
    for line in doc.splitlines():
        line = line.strip()
        m = re.match(r"^(?:\d+\. )?" + re.escape(name) + r"(\(.*\)(?: -> .+)?)$", line)
        if m:
            sig = clean(m.group(1))
            sig = re.sub(r"^\(self: [\w.]+(?:, )?", "(", sig)
            sigs.append(sig)
    if not sigs and inspect.isfunction(obj):
        try:
            sigs.append(str(inspect.signature(obj)))
        except (TypeError, ValueError):
            pass
    return sigs

def qualname(t):
    return clean(getattr(t, "__qualname__", t.__name__))

def is_enum(t):
    return isinstance(getattr(t, "__members__", None), dict)

enums, classes = {}, {}

def walk_type(t):
    q = qualname(t)
    if q in enums or q in classes:
        return q
    if is_enum(t):
        enums[q] = {k: int(v) for k, v in t.__members__.items()}
        return q
    info = {"bases": [], "methods": {}, "static_methods": {}, "properties": {}, "types": {}, "attributes": {}}
    classes[q] = info
    for b in t.__bases__:
        if b.__module__.startswith("tensorrt"):
            info["bases"].append(walk_type(b))
    for k, v in t.__dict__.items():
        if k in SKIP or k.startswith("__pybind11"):
            continue
        if isinstance(v, property):
            info["properties"][k] = "ro" if v.fset is None else "rw"
        elif isinstance(v, staticmethod):
            info["static_methods"][k] = signatures(v.__func__, k)
        elif isinstance(v, type):
            info["types"][k] = walk_type(v)
        elif callable(v) and not isinstance(v, type):
            info["methods"][k] = signatures(v, k)
        else:
            info["attributes"][k] = clean(repr(v))
    return q

functions, constants, types_ = {}, {}, []
for name in sorted(dir(pkg)):
    if name.startswith("_") and name != "__version__":
        continue
    v = getattr(pkg, name)
    if isinstance(v, types.ModuleType):
        continue
    if isinstance(v, type):
        q = walk_type(v)
        types_.append(name if name == q else f"{name}={q}")
    elif callable(v):
        functions[name] = signatures(v, name)
    elif isinstance(v, (str, int, float)):
        constants[name] = v
    else:
        constants[name] = clean(repr(v))
submodules = sorted(n for n in dir(pkg) if isinstance(getattr(pkg, n), types.ModuleType)
                    and getattr(getattr(pkg, n), "__name__", "").startswith("tensorrt_bindings."))
print(json.dumps({"version": pkg.__version__, "module_types": types_, "functions": functions,
                  "constants": constants, "submodules": submodules, "enums": enums, "classes": classes}))
'''


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def download(requirement: str, dest: Path) -> Path:
    before = set(dest.glob("*.whl"))
    run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "-d", str(dest),
         requirement])
    new = sorted(set(dest.glob("*.whl")) - before)
    if len(new) != 1:
        raise SystemExit(f"pip download {requirement}: expected one new wheel, got {[p.name for p in new]}")
    return new[0]


def build_stubs(dest: Path) -> Path:
    src = dest / "stub.c"
    src.write_text(STUB_SOURCE)
    for lib in STUB_LIBS:
        for major in STUB_MAJORS:
            name = f"{lib}.so.{major}"
            run(["gcc", "-shared", "-fPIC", "-o", str(dest / name), f"-Wl,-soname,{name}", str(src)])
    return dest


def string_table(paths: list[Path]) -> set[str]:
    """Every printable string of the binaries (and text of the .py files) plus all their suffixes,
    since the linker stores a literal that is the tail of a longer one only once."""
    found: set[str] = set()
    for p in paths:
        if p.suffix == ".py":
            found.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", p.read_text(errors="replace")))
            continue
        for s in run(["strings", "-a", "-n", "2", str(p)]).stdout.splitlines():
            for token in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", s):
                for i in range(len(token)):
                    found.add(token[i:])
    return found


def api_names(api: dict) -> set[str]:
    names = set(api["functions"]) | {n.split("=")[0] for n in api["module_types"]}
    for q, members in api["enums"].items():
        names.add(q.split(".")[-1])
        names.update(members)
    for q, info in api["classes"].items():
        names.add(q.split(".")[-1])
        for key in ("methods", "static_methods", "properties", "types", "attributes"):
            names.update(info[key])
    return {n for n in names if not n.startswith("__")}


def extract(version: str, requirement: str, work: Path, stubs: Path) -> dict:
    wheel = download(requirement, work)
    root = work / wheel.stem
    with zipfile.ZipFile(wheel) as z:
        z.extractall(root)
    env = {**os.environ, "LD_LIBRARY_PATH": f"{stubs}:{os.environ.get('LD_LIBRARY_PATH', '')}", "PYTHONPATH": str(root)}
    api = json.loads(run([sys.executable, "-c", WALKER], env=env, cwd=root).stdout)
    if api["version"] != version:
        raise SystemExit(f"{wheel.name}: reports version {api['version']}, expected {version}")
    files = [p for p in (root / "tensorrt_bindings").rglob("*") if p.suffix in (".so", ".py")]
    table = string_table(files)
    missing = sorted(n for n in api_names(api) if n not in table)
    if missing:
        raise SystemExit(f"{wheel.name}: names not found in the module's strings: {missing[:20]}")
    api = {
        "format": "stylegan-edge-trt-api",
        "format_version": 1,
        "tensorrt_version": version,
        "wheel": wheel.name,
        "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        "method": "import against empty libnvinfer stand-ins; names cross-checked with `strings`",
        **{k: v for k, v in api.items() if k != "version"},
    }
    return api


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "data" / "trt_api")
    ap.add_argument("--keep", type=Path, help="work in this directory and keep the wheels")
    ap.add_argument("--only", nargs="*", choices=sorted(RELEASES), help="extract only these releases")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / "stubs").mkdir(exist_ok=True)
        stubs = build_stubs(work / "stubs")
        for version, requirement in RELEASES.items():
            if args.only and version not in args.only:
                continue
            api = extract(version, requirement, work, stubs)
            path = args.out / f"{version}.json"
            path.write_text(json.dumps(api, indent=1, sort_keys=True) + "\n")
            n_methods = sum(len(c["methods"]) for c in api["classes"].values())
            sys.stderr.write(f"{path}: {len(api['classes'])} classes, {len(api['enums'])} enums, "
                             f"{n_methods} methods\n")


if __name__ == "__main__":
    main()
