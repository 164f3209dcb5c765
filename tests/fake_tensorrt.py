"""A strict, recording fake of the `tensorrt` module as one real release has it.

`make_fake_tensorrt("10.3.0", cuda=FakeCuda())` builds a module whose classes, enums, members,
functions and constants are exactly those that release's Python bindings define
(tests/data/trt_api/<version>.json, extracted from the PyPI wheels by
scripts/extract_trt_api.py). A name the release lacks is an AttributeError, on the module, on a
class (so `hasattr(trt.BuilderFlag, "FP16")` is False on 11.x) and on an instance; a name the
release has but this fake does not simulate raises NotImplementedError, so nothing passes
silently. Calls are checked against the release's pybind11 signatures (argument count and
keyword names) and recorded in `trt.calls`, with property reads and writes.

What it simulates: building (network flags, ONNX parsing of real .onnx files into layers named as
the release's parser names them: only the layer an importer registers carries the node's name and
"[ONNX Layer: <node>]" metadata, helper layers are "(Unnamed Layer* N) [Type]"; the parser refuses
what its release's table (tests/data/trt_parser/<release>.json, read from the parser source) says
it refuses AND what it says it silently misreads, so a graph the real parser would turn into a
wrong network fails here loudly; builder flags, the CUDA device a build runs on, FP32 pins, memory pools, optimisation
profiles, timing caches, serialisation) with TensorRT's rules that matter to us (8.x parsers need
EXPLICIT_BATCH; strongly typed networks refuse precision flags and layer precisions; INT8 needs
Q/DQ layers or a calibrator; profiles must cover every input), and running (deserialisation,
the named-tensor API, execution that reads and writes the fake pycuda memory, CUDA-graph
capture through the fake libcuda).

Also: `write_fake_bundle` writes a tiny bundle (meta.json, ONNX graphs that the fake parser
reads, noise_const.npz, optionally the FP16/INT8 ONNX and a precision plan), and
`reference_outputs` is what the fake engine computes, for comparisons.
"""

from __future__ import annotations

import json
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

API_DIR = Path(__file__).parent / "data" / "trt_api"
RELEASES = ("8.6.1", "10.3.0", "10.13.3.9", "11.4.0.106")


def load_api(version: str) -> dict[str, Any]:
    return json.loads((API_DIR / f"{version}.json").read_text())


@dataclass
class Call:
    name: str  # "IBuilderConfig.set_flag", "ILayer.precision=" (write), "ICudaEngine.num_io_tensors" (read)
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


# --- signatures ---------------------------------------------------------------------------------------
def _split_top(s: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def _params(sig: str) -> list[tuple[str, bool]] | None:
    """[(name, has_default)] of a pybind11 signature '(a: T, b: T = 1) -> R'; None: anything goes."""
    depth = 0
    for i, ch in enumerate(sig):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            inner = sig[1:i]
            break
    else:
        return None
    out = []
    for p in _split_top(inner):
        if p.startswith("*"):
            return None
        name = re.split(r"[:=]", p, maxsplit=1)[0].strip()
        out.append((name, "=" in p))
    return out


def _check_call(qual: str, sigs: list[str], args: tuple, kwargs: dict) -> None:
    if not sigs:
        return
    for sig in sigs:
        params = _params(sig)
        if params is None:
            continue
        names = [n for n, _ in params]
        if len(args) > len(params) or any(k not in names for k in kwargs):
            continue
        given = set(names[:len(args)]) | set(kwargs)
        if all(n in given or d for n, d in params):
            return
    if all(_params(s) is None for s in sigs):
        return
    raise TypeError(f"{qual}(): arguments {len(args)} positional, {sorted(kwargs)} keyword match no signature "
                    f"of this release: {[s for s in sigs if _params(s) is not None]}")


# --- strict classes --------------------------------------------------------------------------------------
class _StrictMeta(type):
    """Class-level strictness: a public name the release's class lacks is an AttributeError."""

    def __getattribute__(cls, name: str) -> Any:
        if name.startswith("_"):
            return type.__getattribute__(cls, name)
        api = type.__getattribute__(cls, "_api")
        if name not in api:
            fake = type.__getattribute__(cls, "_fake")
            raise AttributeError(f"tensorrt {fake.version}: {type.__getattribute__(cls, '_qual')} has no {name!r}")
        try:
            return type.__getattribute__(cls, name)
        except AttributeError:
            return _Unsimulated(f"{type.__getattribute__(cls, '_qual')}.{name}")

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        qual = cls.__dict__.get("_qual")
        if qual is not None:  # an API class (not a user subclass such as a custom ILogger)
            cls._fake.record(Call(f"{qual}()", args, kwargs))
            _check_call(f"{qual}.__init__", cls._sigs.get("__init__", []), args, kwargs)
            if not cls._constructible:
                raise NotImplementedError(f"fake tensorrt cannot construct {qual}")
        return super().__call__(*args, **kwargs)


class _Unsimulated:
    def __init__(self, qual: str) -> None:
        self.qual = qual

    def __call__(self, *a: Any, **k: Any) -> Any:
        raise NotImplementedError(f"fake tensorrt has no behaviour for {self.qual}")

    def __repr__(self) -> str:
        return f"<unsimulated {self.qual}>"


class _Strict:
    """Instance-level strictness and recording."""

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("_"):
            return object.__getattribute__(self, name)
        cls = type(self)
        if name not in cls._api:
            raise AttributeError(f"tensorrt {cls._fake.version}: {cls._qual} has no {name!r}")
        try:
            value = object.__getattribute__(self, name)
        except AttributeError:
            raise NotImplementedError(f"fake tensorrt has no behaviour for {cls._qual}.{name}") from None
        if name in cls._props:
            cls._fake.record(Call(f"{cls._qual}.{name}"))
            return value
        if callable(value) and name in cls._sigs:
            return _recorded(cls._fake, f"{cls._qual}.{name}", cls._sigs[name], value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            cls = type(self)
            if cls._props.get(name) != "rw":
                raise AttributeError(f"tensorrt {cls._fake.version}: {cls._qual}.{name} is not a writable property")
            cls._fake.record(Call(f"{cls._qual}.{name}=", (value,)))
        object.__setattr__(self, name, value)


def _recorded(fake: FakeTensorRT, qual: str, sigs: list[str], fn: Any) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        _check_call(qual, sigs, args, kwargs)
        fake.record(Call(qual, args, kwargs))
        return fn(*args, **kwargs)

    return call


def _raw(obj: Any, name: str) -> Any:
    """An attribute read by the simulation itself: neither checked nor recorded."""
    return object.__getattribute__(obj, name)


class _EnumMember:
    def __init__(self, enum: type, name: str, value: int) -> None:
        object.__setattr__(self, "_enum", enum)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_value", value)

    name = property(lambda self: self._name)
    value = property(lambda self: self._value)

    def __int__(self) -> int:
        return self._value

    __index__ = __int__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _EnumMember) and other._enum is self._enum and other._value == self._value

    def __hash__(self) -> int:
        return hash((self._enum._qual, self._value))

    def __repr__(self) -> str:
        return f"<{self._enum._qual.split('.')[-1]}.{self._name}: {self._value}>"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("enum members are read-only")


# --- simulated behaviour, by API class name ---------------------------------------------------------------
DTYPES_NP = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
             "BOOL": np.bool_, "UINT8": np.uint8}
PRECISION_FLAGS = ("FP16", "BF16", "INT8", "FP8", "INT4", "FP4")


class SimDims:
    def __init__(self, shape: Any = ()) -> None:
        object.__setattr__(self, "_shape", tuple(int(d) for d in shape))

    def __len__(self) -> int:
        return len(self._shape)

    def __getitem__(self, i: int) -> int:
        return self._shape[i]

    def __eq__(self, other: object) -> bool:
        return tuple(self) == tuple(other) if hasattr(other, "__len__") else NotImplemented

    def __repr__(self) -> str:
        return f"Dims({list(self._shape)})"


class SimILogger:
    def __init__(self) -> None:
        pass


class SimLogger:
    def __init__(self, min_severity: Any = None) -> None:
        object.__setattr__(self, "_messages", [])

    def log(self, severity: Any, msg: str) -> None:
        self._messages.append((severity, msg))


class SimTensor:
    def __init__(self, name: str, dtype: Any, shape: tuple[int, ...]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_dtype", dtype)
        object.__setattr__(self, "_shape", shape)

    name = property(lambda self: self._name)
    dtype = property(lambda self: self._dtype)
    shape = property(lambda self: self._fake_module().Dims(list(self._shape)))

    def _fake_module(self) -> Any:
        return type(self)._fake.module


class SimLayer:
    def __init__(self, name: str, ltype: Any, outputs: list[Any], node: str | None) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "metadata", f"[ONNX Layer: {node}]" if node is not None else "")
        object.__setattr__(self, "_type", ltype)
        object.__setattr__(self, "_outputs", outputs)
        object.__setattr__(self, "_precision", None)
        object.__setattr__(self, "_output_types", {})
        object.__setattr__(self, "_inputs", [])

    type = property(lambda self: self._type)
    num_outputs = property(lambda self: len(self._outputs))
    num_inputs = property(lambda self: len(self._inputs))
    precision_is_set = property(lambda self: self._precision is not None)

    def _get_precision(self) -> Any:
        return self._precision if self._precision is not None else type(self)._fake.module.DataType.FLOAT

    def _set_precision(self, value: Any) -> None:
        object.__setattr__(self, "_precision", value)

    precision = property(_get_precision, _set_precision)

    def get_output(self, index: int) -> Any:
        return self._outputs[index]

    def get_input(self, index: int) -> Any:
        return self._inputs[index]

    def set_output_type(self, index: int, dtype: Any) -> None:
        self._output_types[index] = dtype

    def get_output_type(self, index: int) -> Any:
        return self._output_types.get(index, self._outputs[index].dtype)


class SimNetwork:
    def __init__(self, flags: int) -> None:
        object.__setattr__(self, "_flags", flags)
        object.__setattr__(self, "_layers", [])
        object.__setattr__(self, "_inputs", [])
        object.__setattr__(self, "_outputs", [])
        object.__setattr__(self, "_onnx", None)

    def _has_flag(self, name: str) -> bool:
        enum = type(self)._fake.module.NetworkDefinitionCreationFlag
        return name in enum._members and bool(self._flags & (1 << enum._members[name]))

    num_layers = property(lambda self: len(self._layers))
    num_inputs = property(lambda self: len(self._inputs))
    num_outputs = property(lambda self: len(self._outputs))
    has_implicit_batch_dimension = property(lambda self: False)
    flags = property(lambda self: self._flags)

    def get_layer(self, index: int) -> Any:
        return self._layers[index]

    def get_input(self, index: int) -> Any:
        return self._inputs[index]

    def get_output(self, index: int) -> Any:
        return self._outputs[index]

    def get_flag(self, flag: Any) -> bool:
        return bool(self._flags & (1 << int(flag)))


class SimParserError:
    def __init__(self, desc: str, node: int = -1, node_name: str = "") -> None:
        object.__setattr__(self, "_desc", desc)
        object.__setattr__(self, "_node", node)
        object.__setattr__(self, "_node_name", node_name)

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def node_name(self) -> str:
        return self._node_name


PARSER_TABLE_DIR = Path(__file__).parent / "data" / "trt_parser"
# Fake release -> its parser-support table (tests/data/trt_parser/README.md says how they were read).
PARSER_TABLES = {"8.6.1": "8.6", "10.3.0": "10.3", "10.13.3.9": "10.13", "11.4.0.106": "11.x"}
ONNX_DTYPES = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 2: "UINT8", 16: "HALF"}
# ONNX element type -> the type names the tables use.
ONNX_TYPE_NAMES = {1: "FLOAT", 10: "FLOAT16", 16: "BFLOAT16", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL",
                   2: "UINT8", 11: "DOUBLE", 17: "FLOAT8E4M3FN", 22: "INT4"}
# TensorRT's default layer names spell the type like this: "(Unnamed Layer* 12) [ElementWise]".
LAYER_TYPE_TEXT = {"ELEMENTWISE": "ElementWise", "MATRIX_MULTIPLY": "Matrix Multiply", "SHUFFLE": "Shuffle",
                   "CAST": "Cast", "SLICE": "Slice", "SHAPE": "Shape", "CONSTANT": "Constant"}


def load_parser_table(release: str) -> dict[str, Any]:
    """The parser-support table of a release ("8.6", "10.3", "10.13", "11.x" or a fake version)."""
    name = PARSER_TABLES.get(release, release)
    return json.loads((PARSER_TABLE_DIR / f"{name}.json").read_text())


@dataclass(frozen=True)
class ParserProblem:
    node_index: int
    node_name: str
    op: str
    reason: str
    misread: bool = False  # the real parser accepts the node silently and computes something else

    def __str__(self) -> str:
        kind = "misread" if self.misread else "refused"
        return f"node {self.node_index} {self.node_name!r} ({self.op}): {kind}: {self.reason}"


def check_onnx_model(model: Any, release: str, native_instancenorm: bool | None = None) -> list[ParserProblem]:
    """What the release's ONNX parser refuses or misreads in `model` (an onnx.ModelProto), per its table.

    Misreadings are reported (and refused by the fake parser) rather than simulated: the real
    parser builds a network that computes something else without a word, so the only safe fake is
    one that says so (e.g. 8.6 ReduceMean with the opset-18 axes input, 8.6 Shape(start, end))."""
    from onnx import numpy_helper

    table = load_parser_table(release)
    ops = table["ops"]
    native = table["native_instancenorm_default"] if native_instancenorm is None else native_instancenorm
    g = model.graph
    problems: list[ParserProblem] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < table["min_opset"]:  # ModelImporter.cpp: opsets below the minimum are refused
        problems.append(ParserProblem(-1, "", "", f"opset {opset} is below {table['min_opset']}"))
    consts = {i.name: i for i in g.initializer}
    dtypes = {i.name: ONNX_TYPE_NAMES.get(i.data_type, "?") for i in g.initializer}
    for vi in [*g.input, *g.value_info]:
        dtypes.setdefault(vi.name, ONNX_TYPE_NAMES.get(vi.type.tensor_type.elem_type, "?"))
    for k, node in enumerate(g.node):
        attrs = {a.name: a for a in node.attribute}
        row = ops.get(node.op_type) if node.domain in ("", "ai.onnx") else None

        def bad(reason: str, misread: bool = False, k: int = k, node: Any = node) -> None:
            problems.append(ParserProblem(k, node.name, node.op_type, reason, misread))

        if node.op_type == "Constant":
            for o in node.output:
                consts[o] = attrs["value"].t if "value" in attrs else None
                dtypes[o] = ONNX_TYPE_NAMES.get(attrs["value"].t.data_type, "?") if "value" in attrs else "?"
            if row is None:
                bad("No importer registered for op: Constant")
            continue
        if row is None:
            bad(f"No importer registered for op: {node.op_type} (domain {node.domain or 'ai.onnx'!r})")
            continue
        # inputs that the importer reads as weights (ASSERT ... is_weights / "must be an initializer")
        needs_const = list(row["initializer_inputs"])
        if node.op_type == "InstanceNormalization" and not native:
            needs_const += row.get("plugin_initializer_inputs", [])
        for i in needs_const:
            if i < len(node.input) and node.input[i] and node.input[i] not in consts:
                bad(f"input {i} ({node.input[i]}) must be an initializer")
        for a in row["ignored_attributes"]:
            if a in attrs:
                bad(f"attribute {a!r} is ignored: {row['misread']}", misread=True)
        for i in row["ignored_inputs"]:
            if i < len(node.input) and node.input[i] and "axes" not in attrs:
                bad(f"input {i} ({node.input[i]}) is ignored: {row['misread']}", misread=True)
        zp = row.get("zero_point_input")
        if zp is not None and zp < len(node.input) and node.input[zp] in consts:
            t = consts[node.input[zp]]
            if t is not None and numpy_helper.to_array(t).any():
                bad("the zero point must be all zeros (symmetric quantization only)")
        data_t = dtypes.get(node.input[0], "?") if node.input else "?"
        if data_t not in ("?", *row["types"]):
            bad(f"input type {data_t} is not supported (supported: {', '.join(row['types'])})")
        if row.get("same_dtype_inputs") and len(node.input) >= 3:
            kinds = {dtypes.get(n, "?") for n in node.input[:3]} - {"?"}
            if len(kinds) > 1:
                bad(f"inputs must be all FLOAT or all FLOAT16, got {sorted(kinds)}")
        # output types, for the checks of later nodes
        if node.op_type == "Cast":
            out_t = ONNX_TYPE_NAMES.get(attrs["to"].i, "?")
        elif node.op_type == "QuantizeLinear":
            zp_t = dtypes.get(node.input[2], "INT8") if len(node.input) > 2 else "INT8"
            out_t = zp_t
        elif node.op_type == "DequantizeLinear":
            out_t = dtypes.get(node.input[1], "FLOAT")
        elif node.op_type == "Shape":
            out_t = "INT64"
        else:
            out_t = data_t
        for o in node.output:
            dtypes.setdefault(o, out_t)
    return problems


class SimOnnxParser:
    def __init__(self, network: Any, logger: Any) -> None:
        fake = type(self)._fake
        flags = 0
        if fake.native_instancenorm_default:
            flags |= 1 << fake.module.OnnxParserFlag._members["NATIVE_INSTANCENORM"]
        object.__setattr__(self, "_network", network)
        object.__setattr__(self, "_logger", logger)
        object.__setattr__(self, "_flags", flags)
        object.__setattr__(self, "_errors", [])

    flags = property(lambda self: self._flags)
    num_errors = property(lambda self: len(self._errors))

    def set_flag(self, flag: Any) -> None:
        object.__setattr__(self, "_flags", self._flags | (1 << int(flag)))

    def clear_flag(self, flag: Any) -> None:
        object.__setattr__(self, "_flags", self._flags & ~(1 << int(flag)))

    def get_flag(self, flag: Any) -> bool:
        return bool(self._flags & (1 << int(flag)))

    def get_error(self, index: int) -> Any:
        return self._errors[index]

    def clear_errors(self) -> None:
        self._errors.clear()

    def parse_from_file(self, model: str) -> bool:
        import onnx

        fake = type(self)._fake
        trt = fake.module
        net = self._network
        if fake.needs_explicit_batch and not net._has_flag("EXPLICIT_BATCH"):
            self._errors.append(trt.ParserError._sim("Network must have explicit batch dimensions"))
            return False
        try:
            m = onnx.load(model, load_external_data=False)
        except Exception as e:  # noqa: BLE001 - reported as the parser would
            self._errors.append(trt.ParserError._sim(f"failed to load {model}: {e}"))
            return False
        native = fake.has_parser_flags and bool(self._flags & (1 << trt.OnnxParserFlag._members["NATIVE_INSTANCENORM"]))
        table = load_parser_table(fake.version)
        problems = check_onnx_model(m, fake.version, native)
        if problems:
            # The real parser stops at the first node it cannot import and reports it by index (and,
            # from 10.0, by name); misreadings are refused here on purpose (see check_onnx_model).
            for p in problems:
                self._errors.append(trt.ParserError._sim(f"In node {p.node_index} ({p.node_name}): {p}",
                                                         p.node_index, p.node_name))
            return False
        opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
        if opset > table["max_opset"]:
            fake.parser_warnings.append(f"opset {opset} is newer than the {table['max_opset']} this parser documents")
        g = m.graph
        types_ = {i.name: ONNX_DTYPES.get(i.data_type, "FLOAT") for i in g.initializer}
        tensors: dict[str, Any] = {}

        def dims(vi: Any) -> tuple[int, ...]:
            return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim)

        inits = {i.name for i in g.initializer}
        for vi in g.input:
            if vi.name in inits:
                continue
            dt = ONNX_DTYPES.get(vi.type.tensor_type.elem_type, "FLOAT")
            types_[vi.name] = dt
            t = trt.ITensor._sim(vi.name, trt.DataType._member(dt), dims(vi))
            tensors[vi.name] = t
            net._inputs.append(t)
        names: set[str] = set()
        counter = [0]

        def unique(base: str) -> str:  # ImporterContext generateUniqueName: "<name>_<shared counter>"
            cand = base
            while cand in names:
                cand = f"{base}_{counter[0]}"
                counter[0] += 1
            names.add(cand)
            return cand

        for node in g.node:
            if node.op_type == "Constant":
                for o in node.output:
                    types_[o] = "FLOAT"
                continue
            base = node.name or f"node_of_{node.output[0]}"
            if node.op_type == "InstanceNormalization" and not native:
                kinds = [["PLUGIN_V2", True]]
            else:
                kinds = table["ops"][node.op_type]["layers"] or [["IDENTITY", True]]
            in_types = [types_.get(i, "FLOAT") for i in node.input if i]
            if node.op_type == "Shape":
                out_t = "INT64" if "INT64" in trt.DataType._members else "INT32"
            elif node.op_type == "Cast":
                to = next(a.i for a in node.attribute if a.name == "to")
                out_t = ONNX_DTYPES.get(to, "FLOAT")
            elif node.op_type == "QuantizeLinear":
                out_t = "INT8"
            elif node.op_type == "DequantizeLinear":
                out_t = "FLOAT"
            else:
                out_t = "HALF" if "HALF" in in_types else "FLOAT"
            # Wiring: helpers before the registered layer take constant operands and feed it; the
            # registered layer takes the node's tensor inputs; later ones chain; the last one
            # produces the node's outputs (the parser names those tensors after the ONNX outputs).
            main = next(i for i, (_, reg) in enumerate(kinds) if reg is not False) if any(
                reg is not False for _, reg in kinds) else 0
            node_inputs = [tensors[i] for i in node.input if i in tensors]
            pre_outputs, prev = [], None
            for k, (kind, registered) in enumerate(kinds):
                last = k == len(kinds) - 1
                index = len(net._layers)
                if registered is True:
                    name, meta = unique(base), (f"[ONNX Layer: {base}]" if fake.has_metadata else "")
                elif registered == "name_only":  # QuantDequantLinearHelper: setName(nodeName), no metadata
                    name, meta = base, ""
                else:
                    name, meta = f"(Unnamed Layer* {index}) [{LAYER_TYPE_TEXT.get(kind, kind.title())}]", ""
                outs = [trt.ITensor._sim(o if last else f"{name}_output", trt.DataType._member(out_t), ())
                        for o in (node.output if last else ["x"])]
                if k < main:
                    ins = []
                elif k == main:
                    ins = node_inputs + pre_outputs
                else:
                    ins = [prev]
                layer = trt.ILayer._sim(name, trt.LayerType._member(kind), outs, None)
                object.__setattr__(layer, "metadata", meta)
                object.__setattr__(layer, "_inputs", ins)
                net._layers.append(layer)
                if k < main:
                    pre_outputs += outs
                prev = outs[0]
            for o, t in zip(node.output, prev_outputs(net._layers[-1])):
                tensors[o] = t
                types_[o] = out_t
        for vi in g.output:
            dt = ONNX_DTYPES.get(vi.type.tensor_type.elem_type, "FLOAT")
            net._outputs.append(trt.ITensor._sim(vi.name, trt.DataType._member(dt), dims(vi)))
        object.__setattr__(net, "_onnx", Path(model).name)
        return True


def prev_outputs(layer: Any) -> list[Any]:
    return list(_raw(layer, "_outputs"))


class SimProfile:
    def __init__(self) -> None:
        object.__setattr__(self, "_shapes", {})

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 - the API's names
        self._shapes[input] = (tuple(min), tuple(opt), tuple(max))

    def get_shape(self, input: str) -> list:  # noqa: A002
        return [type(self)._fake.module.Dims(list(s)) for s in self._shapes[input]]

    def __bool__(self) -> bool:
        return True


class SimHostMemory(bytes):
    nbytes = property(lambda self: len(self))
    dtype = property(lambda self: type(self)._fake.module.DataType.UINT8)


class SimTimingCache:
    def __init__(self, entries: int = 0, origin: str = "") -> None:
        object.__setattr__(self, "_entries", entries)
        object.__setattr__(self, "_origin", origin)

    def serialize(self) -> Any:
        fake = type(self)._fake
        data = json.dumps({"fake_timing_cache": fake.version, "gpu": fake.gpu_key(), "entries": self._entries})
        return fake.module.IHostMemory._sim(data.encode())

    def combine(self, input_cache: Any, ignore_mismatch: bool) -> bool:
        return True

    def reset(self) -> bool:
        object.__setattr__(self, "_entries", 0)
        return True


class SimBuilderConfig:
    def __init__(self) -> None:
        fake = type(self)._fake
        flags = 0
        if "TF32" in fake.module.BuilderFlag._members:  # on by default, as in TensorRT
            flags |= 1 << fake.module.BuilderFlag._members["TF32"]
        object.__setattr__(self, "_flags", flags)
        object.__setattr__(self, "_pools", {})
        object.__setattr__(self, "_profiles", [])
        object.__setattr__(self, "_cache", None)

    flags = property(lambda self: self._flags)

    def set_flag(self, flag: Any) -> None:
        object.__setattr__(self, "_flags", self._flags | (1 << int(flag)))

    def clear_flag(self, flag: Any) -> None:
        object.__setattr__(self, "_flags", self._flags & ~(1 << int(flag)))

    def get_flag(self, flag: Any) -> bool:
        return bool(self._flags & (1 << int(flag)))

    def _flag_names(self) -> list[str]:
        return [n for n, v in type(self)._fake.module.BuilderFlag._members.items() if self._flags & (1 << v)]

    def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
        self._pools[pool.name] = int(pool_size)

    def get_memory_pool_limit(self, pool: Any) -> int:
        return self._pools.get(pool.name, 1 << 40)

    def add_optimization_profile(self, profile: Any) -> int:
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def create_timing_cache(self, serialized_timing_cache: Any) -> Any:
        fake = type(self)._fake
        data = bytes(serialized_timing_cache)
        if not data:
            return fake.module.ITimingCache._sim(0, "")
        try:
            d = json.loads(data)
        except ValueError:
            raise RuntimeError("fake: corrupt timing cache") from None
        origin = f"{d.get('fake_timing_cache')}|{d.get('gpu')}"
        return fake.module.ITimingCache._sim(int(d.get("entries", 0)), origin)

    def set_timing_cache(self, cache: Any, ignore_mismatch: bool) -> bool:
        fake = type(self)._fake
        if cache._origin and cache._origin != f"{fake.version}|{fake.gpu_key()}" and not ignore_mismatch:
            return False
        object.__setattr__(self, "_cache", cache)
        return True

    def get_timing_cache(self) -> Any:
        return self._cache


class SimBuilder:
    def __init__(self, logger: Any) -> None:
        object.__setattr__(self, "_logger", logger)

    max_batch_size = property(lambda self: 1)
    platform_has_fast_fp16 = property(lambda self: True)

    def create_network(self, flags: int = 0) -> Any:
        fake = type(self)._fake
        enum = fake.module.NetworkDefinitionCreationFlag
        if "EXPLICIT_BATCH" in enum._members and flags & (1 << enum._members["EXPLICIT_BATCH"]) \
                and not fake.needs_explicit_batch:
            self._logger.log(fake.module.ILogger.Severity.WARNING, "EXPLICIT_BATCH is deprecated and ignored")
        return fake.module.INetworkDefinition._sim(flags)

    def create_builder_config(self) -> Any:
        return type(self)._fake.module.IBuilderConfig._sim()

    def create_optimization_profile(self) -> Any:
        return type(self)._fake.module.IOptimizationProfile._sim()

    def _fail(self, msg: str) -> None:
        type(self)._fake.build_errors.append(msg)
        self._logger.log(type(self)._fake.module.ILogger.Severity.ERROR, msg)

    def build_serialized_network(self, network: Any, config: Any) -> Any:
        fake = type(self)._fake
        trt = fake.module
        flags = config._flag_names()
        strong = network._has_flag("STRONGLY_TYPED") or fake.always_strongly_typed
        if strong and any(f in PRECISION_FLAGS for f in flags):
            return self._fail(f"strongly typed network: precision builder flags are not allowed ({flags})")
        pinned = [_raw(layer, "name") for layer in network._layers if layer._precision is not None]
        if strong and pinned:
            return self._fail("strongly typed network: layer precisions cannot be set")
        if pinned and not {"OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"} & set(flags):
            self._logger.log(trt.ILogger.Severity.WARNING, "layer precisions are set but not obeyed")
        has_qdq = any(layer._type.name == "QUANTIZE" for layer in network._layers)
        if "INT8" in flags and not has_qdq:
            return self._fail("INT8 without Q/DQ layers needs a calibrator (implicit quantization)")
        if not config._profiles:
            return self._fail("network has dynamic inputs but no optimization profile")
        profile = config._profiles[0]._shapes
        for t in network._inputs:
            if t._name not in profile:
                return self._fail(f"no profile shape for input {t._name}")
            lo, opt, hi = profile[t._name]
            ok = len(lo) == len(opt) == len(hi) == len(t._shape)
            ok = ok and all(a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True))
            ok = ok and all(d < 0 or lo[i] == opt[i] == hi[i] == d for i, d in enumerate(t._shape))
            if not ok:
                return self._fail(f"bad profile for {t._name}: {profile[t._name]} vs network shape {t._shape}")
        if config._cache is not None:
            object.__setattr__(config._cache, "_entries", config._cache._entries + len(network._layers))
        # TensorRT builds on the CUDA runtime's current device: the device of the context current
        # on this thread, else device 0 (the runtime API's default; CUDA Runtime API reference,
        # cudaSetDevice/cudaGetDevice: "device 0 is used" until one is chosen).
        stack = fake.cuda.context_stack if fake.cuda is not None else []
        device = stack[-1].device.ordinal if stack else 0
        fake.build_devices.append(device)
        engine = {
            "fake_engine": fake.version, "gpu": fake.gpu_key(), "onnx": network._onnx, "strongly_typed": strong,
            "flags": flags, "pinned": pinned, "pools": dict(config._pools), "device": device,
            "inputs": [{"name": t._name, "dtype": t._dtype.name, "shape": list(t._shape)} for t in network._inputs],
            "outputs": [{"name": t._name, "dtype": t._dtype.name, "shape": list(t._shape)} for t in network._outputs],
            "profile": {k: [list(s) for s in v] for k, v in profile.items()},
        }
        return trt.IHostMemory._sim(json.dumps(engine).encode())


class SimRuntime:
    def __init__(self, logger: Any) -> None:
        object.__setattr__(self, "_logger", logger)

    def deserialize_cuda_engine(self, serialized_engine: Any) -> Any:
        fake = type(self)._fake
        try:
            d = json.loads(bytes(serialized_engine))
        except ValueError:
            d = {}
        if d.get("fake_engine") != fake.version or d.get("gpu") != fake.gpu_key():
            self._logger.log(fake.module.ILogger.Severity.ERROR, "engine plan is incompatible with this build/GPU")
            return None
        return fake.module.ICudaEngine._sim(d)


class SimEngine:
    def __init__(self, d: dict) -> None:
        object.__setattr__(self, "_d", d)
        object.__setattr__(self, "_io", [*d["inputs"], *d["outputs"]])

    num_io_tensors = property(lambda self: len(self._io))
    num_optimization_profiles = property(lambda self: 1)

    def _t(self, name: str) -> dict:
        for t in self._io:
            if t["name"] == name:
                return t
        raise KeyError(name)

    def get_tensor_name(self, index: int) -> str:
        return self._io[index]["name"]

    def get_tensor_mode(self, name: str) -> Any:
        mode = type(self)._fake.module.TensorIOMode
        return mode.INPUT if any(t["name"] == name for t in self._d["inputs"]) else mode.OUTPUT

    def get_tensor_dtype(self, name: str) -> Any:
        return type(self)._fake.module.DataType._member(self._t(name)["dtype"])

    def get_tensor_shape(self, name: str) -> Any:
        return type(self)._fake.module.Dims(self._t(name)["shape"])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list:
        dims = type(self)._fake.module.Dims
        return [dims(s) for s in self._d["profile"][name]]

    def create_execution_context(self, *args: Any, **kwargs: Any) -> Any:
        return type(self)._fake.module.IExecutionContext._sim(self)


class SimContext:
    def __init__(self, engine: Any) -> None:
        object.__setattr__(self, "_engine", engine)
        object.__setattr__(self, "_shapes", {})
        object.__setattr__(self, "_addresses", {})

    def set_input_shape(self, name: str, shape: Any) -> bool:
        shape = tuple(shape)
        lo, _, hi = self._engine._d["profile"][name]
        if len(shape) != len(lo) or not all(a <= s <= b for a, s, b in zip(lo, shape, hi, strict=True)):
            return False
        self._shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> Any:
        dims = type(self)._fake.module.Dims
        t = self._engine._t(name)
        if name in self._shapes:
            return dims(list(self._shapes[name]))
        if any(i["name"] == name for i in self._engine._d["inputs"]) or len(self._shapes) < len(
                self._engine._d["inputs"]):
            return dims(t["shape"])
        batch = next(iter(self._shapes.values()))[0]
        return dims([batch if d < 0 else d for d in t["shape"]])

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self._engine._t(name)
        self._addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name: str) -> int:
        return self._addresses.get(name, 0)

    def execute_async_v3(self, stream_handle: int) -> bool:
        fake = type(self)._fake
        d = self._engine._d
        if len(self._shapes) != len(d["inputs"]) or len(self._addresses) != len(self._engine._io):
            return False
        if stream_handle == 0:
            fake.default_stream_executions += 1
        shapes = {n: s for n, s in self._shapes.items()}
        addresses = dict(self._addresses)
        out_shapes = {t["name"]: tuple(self.get_tensor_shape(t["name"])) for t in d["outputs"]}

        def run() -> None:
            cuda = fake.cuda
            inputs = {t["name"]: cuda.read_array(addresses[t["name"]], shapes[t["name"]], DTYPES_NP[t["dtype"]])
                      for t in d["inputs"]}
            outs = reference_outputs(inputs, out_shapes)
            for name, arr in outs.items():
                cuda.write(addresses[name], np.ascontiguousarray(arr, DTYPES_NP[self._engine._t(name)["dtype"]])
                           .tobytes())
            fake.executions += 1

        fake.cuda.enqueue(stream_handle, run)
        return True


def reference_outputs(inputs: dict[str, np.ndarray], out_shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """What a fake engine computes: per sample, sum over inputs (sorted by name) of
    (k + 1) * mean(input_k[sample]), broadcast to each output's shape. Order-sensitive, so a
    swapped or misrouted input changes the result."""
    names = sorted(inputs)
    batch = next(iter(inputs.values())).shape[0]
    per_sample = np.zeros(batch, np.float64)
    for k, n in enumerate(names):
        per_sample += (k + 1) * inputs[n].reshape(batch, -1).astype(np.float64).mean(axis=1)
    return {name: np.broadcast_to(per_sample.reshape(-1, *[1] * (len(s) - 1)), s).astype(np.float32)
            for name, s in out_shapes.items()}


SIMULATED = {
    "Dims": SimDims, "ILogger": SimILogger, "Logger": SimLogger, "ITensor": SimTensor, "ILayer": SimLayer,
    "INetworkDefinition": SimNetwork, "ParserError": SimParserError, "OnnxParser": SimOnnxParser,
    "IOptimizationProfile": SimProfile, "IHostMemory": SimHostMemory, "ITimingCache": SimTimingCache,
    "IBuilderConfig": SimBuilderConfig, "Builder": SimBuilder, "Runtime": SimRuntime, "ICudaEngine": SimEngine,
    "IExecutionContext": SimContext,
}
# Classes users construct (the rest come only from factories in the simulation).
CONSTRUCTIBLE = {"Dims", "ILogger", "Logger", "OnnxParser", "Builder", "Runtime"}


class FakeTensorRT:
    """One release's fake module, its recorder and its simulation switches."""

    def __init__(self, version: str, cuda: Any = None) -> None:
        self.version = version
        self.api = load_api(version)
        self.cuda = cuda
        self.calls: list[Call] = []
        self.build_errors: list[str] = []
        self.parser_warnings: list[str] = []
        self.build_devices: list[int] = []  # the CUDA device each build_serialized_network ran on
        self.executions = 0
        self.default_stream_executions = 0
        self.plugins_loaded = False
        self.module = types.ModuleType("tensorrt")
        self.module.__fake__ = self
        self._enums: dict[str, type] = {}
        self._classes: dict[str, type] = {}
        for qual, members in self.api["enums"].items():
            self._enums[qual] = self._make_enum(qual, members)
        for qual in self.api["classes"]:
            self._make_class(qual)
        self._populate_module()
        enums = self.api["enums"]
        self.needs_explicit_batch = "max_batch_size" in self.api["classes"]["Builder"]["properties"]
        self.always_strongly_typed = "FP16" not in enums["BuilderFlag"]
        self.has_parser_flags = "OnnxParserFlag" in enums
        self.native_instancenorm_default = self.has_parser_flags and not self.needs_explicit_batch
        self.has_metadata = "metadata" in self.api["classes"]["ILayer"]["properties"]

    def gpu_key(self) -> str:
        return f"{self.cuda.gpu_name}|{self.cuda.cc}" if self.cuda is not None else "no-gpu"

    # --- recording ---------------------------------------------------------------------------
    def record(self, call: Call) -> None:
        self.calls.append(call)

    def called(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    def call_names(self) -> list[str]:
        return [c.name for c in self.calls]

    # --- construction ------------------------------------------------------------------------
    def _make_enum(self, qual: str, members: dict[str, int]) -> type:
        ns = {"_api": frozenset(members) | {"name", "value"}, "_qual": qual, "_fake": self, "_members": dict(members),
              "__members__": None, "_sigs": {}, "_constructible": False}
        enum = _StrictMeta(qual.split(".")[-1], (), ns)
        by_name = {n: _EnumMember(enum, n, v) for n, v in members.items()}
        for n, m in by_name.items():
            type.__setattr__(enum, n, m)
        type.__setattr__(enum, "__members__", by_name)
        type.__setattr__(enum, "_member", classmethod(lambda cls, n: type.__getattribute__(cls, "__members__")[n]))
        return enum

    def _member_from_repr(self, text: str) -> Any:
        m = re.match(r"<(\w+)\.(\w+): -?\d+>", text)
        if not m:
            return text
        for qual, enum in self._enums.items():
            if qual.split(".")[-1] == m.group(1) and m.group(2) in enum._members:
                return enum.__members__[m.group(2)]
        return text

    def _make_class(self, qual: str) -> type:
        if qual in self._classes:
            return self._classes[qual]
        info = self.api["classes"][qual]
        bases = tuple(self._make_class(b) for b in info["bases"] if b in self.api["classes"])
        sim = SIMULATED.get(qual)
        api = set(info["methods"]) | set(info["static_methods"]) | set(info["properties"]) | set(info["types"]) \
            | set(info["attributes"])
        props = dict(info["properties"])
        sigs = {**info["methods"], **info["static_methods"]}
        for b in bases:
            api |= b._api
            props = {**b._props, **props}
            sigs = {**b._sigs, **sigs}
        api = {n for n in api if not n.startswith("_")}
        ns: dict[str, Any] = {"_api": frozenset(api), "_props": props, "_sigs": sigs, "_qual": qual, "_fake": self,
                              "_constructible": sim is not None and qual in CONSTRUCTIBLE}
        for name, target in info["types"].items():
            if target in self._enums:
                ns[name] = self._enums[target]
        for name, text in info["attributes"].items():
            ns[name] = self._member_from_repr(text)
        if sim is not None:
            cls_bases = (sim, *bases) if bases else (sim, _Strict)
        else:
            cls_bases = bases or (_Strict,)
        cls = _StrictMeta(qual.split(".")[-1], cls_bases, ns)
        if sim is not None:  # how the simulation itself makes instances, unchecked and unrecorded
            type.__setattr__(cls, "_sim", classmethod(lambda c, *args: type.__call__(c, *args)))
        self._classes[qual] = cls
        return cls

    def _populate_module(self) -> None:
        mod, api = self.module, self.api

        def missing(name: str) -> Any:  # PEP 562: only reached for names the module lacks
            raise AttributeError(f"tensorrt {self.version} has no {name!r}")

        mod.__getattr__ = missing
        for entry in api["module_types"]:
            name, _, target = entry.partition("=")
            target = target or name
            setattr(mod, name, self._enums.get(target) or self._classes.get(target))
        for name, value in api["constants"].items():
            setattr(mod, name, self._member_from_repr(value) if isinstance(value, str) else value)
        funcs = {"nptype": self._nptype, "volume": self._volume, "init_libnvinfer_plugins": self._init_plugins}
        for name, sigs in api["functions"].items():
            fn = funcs.get(name, _Unsimulated(name))
            setattr(mod, name, _recorded(self, name, sigs, fn) if name in funcs else fn)

    def _nptype(self, trt_type: Any) -> Any:
        return DTYPES_NP[trt_type.name]

    @staticmethod
    def _volume(iterable: Any) -> int:
        return int(np.prod(list(iterable)))

    def _init_plugins(self, logger: Any, namespace: str) -> bool:
        self.plugins_loaded = True
        return True


def make_fake_tensorrt(version: str, cuda: Any = None) -> types.ModuleType:
    """The fake `tensorrt` module of a release; its recorder is `module.__fake__`."""
    return FakeTensorRT(version, cuda).module


# --- a tiny bundle --------------------------------------------------------------------------------------------
def _vi(name: str, shape: list, elem: int = 1) -> Any:
    from onnx import helper

    return helper.make_tensor_value_info(name, elem, shape)


def _save(path: Path, nodes: list, inputs: list, outputs: list, inits: list | None = None) -> None:
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, path.stem, inputs, outputs, initializer=inits or [])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def write_fake_bundle(
    path: Path, *, num_layers: int = 4, resolutions: tuple[int, ...] = (4, 4, 8, 8), z_dim: int = 8, w_dim: int = 8,
    fp16_onnx: bool = False, int8_onnx: bool = False, fp32_nodes: list[str] | None = None,
    int8_fp16_onnx: bool = False,
) -> Path:
    """A bundle directory that Bundle opens and the fake parser reads (the graphs are structural
    stand-ins: the right inputs, outputs and node names, not a working generator)."""
    from onnx import TensorProto, helper, numpy_helper

    from stylegan_edge.runtime.bundle import BUNDLE_FORMAT_VERSION
    from stylegan_edge.runtime.files import file_record

    path.mkdir(parents=True, exist_ok=True)
    res = resolutions[:num_layers]
    meta = {
        "format": "stylegan-edge-bundle", "format_version": BUNDLE_FORMAT_VERSION, "resolution": max(res),
        "img_channels": 3,
        "z_dim": z_dim, "w_dim": w_dim, "num_layers": num_layers,
        "layers": [{"resolution": r, "channels": 4} for r in res], "use_noise": True,
        "w_avg": [0.0] * w_dim, "truncation": {"psi": 1.0, "cutoff": None}, "opset": 17,
    }
    b = "batch"
    weight = numpy_helper.from_array(np.ones((z_dim, w_dim), np.float32), "fc_w")
    bias = numpy_helper.from_array(np.zeros(w_dim, np.float32), "fc_b")
    _save(path / "mapping.onnx",
          [helper.make_node("Gemm", ["z", "fc_w", "fc_b"], ["h"], name="/mapping/fc0/Gemm"),
           helper.make_node("LeakyRelu", ["h"], ["w"], name="/mapping/fc0/LeakyRelu")],
          [_vi("z", [b, z_dim])], [_vi("w", [b, w_dim])], [weight, bias])

    def synthesis(kind: str) -> tuple[list, list]:
        nodes, inits = [], []
        x = "const"
        inits.append(numpy_helper.from_array(np.ones((1, 4, 4, 4), np.float32), "const"))
        for i, r in enumerate(res):
            p = f"/b{r}/layer{i}"
            if kind == "int8":
                nodes += [helper.make_node("QuantizeLinear", [x, "qs", "qz"], [f"{p}/q"], name=f"{p}/QuantizeLinear"),
                          helper.make_node("DequantizeLinear", [f"{p}/q", "qs", "qz"], [f"{p}/dq"],
                                           name=f"{p}/DequantizeLinear")]
                x = f"{p}/dq"
            nodes += [
                helper.make_node("Conv", [x, "cw"], [f"{p}/c"], name=f"{p}/conv/Conv"),
                helper.make_node("Add", [f"{p}/c", f"noise_{i:02d}"], [f"{p}/n"], name=f"{p}/noise/Add"),
                helper.make_node("LeakyRelu", [f"{p}/n"], [f"{p}/a"], name=f"{p}/act/LeakyRelu"),
                helper.make_node("InstanceNormalization", [f"{p}/a", "s", "bb"], [f"{p}/in"],
                                 name=f"{p}/norm/InstanceNormalization"),
                helper.make_node("Gemm", [f"w_{i:02d}", "aw", "ab"], [f"{p}/style"], name=f"{p}/affine/Gemm"),
                helper.make_node("Mul", [f"{p}/in", f"{p}/style"], [f"{p}/out"], name=f"{p}/style/Mul"),
            ]
            x = f"{p}/out"
        nodes.append(helper.make_node("Conv", [x, "rgb"], ["image"], name="/torgb/Conv"))
        if kind == "fp16":
            nodes.insert(0, helper.make_node("Cast", ["const"], ["const16"], name="/cast_in/Cast",
                                             to=TensorProto.FLOAT16))
        if kind == "int8":
            inits += [numpy_helper.from_array(np.float32(0.05), "qs"), numpy_helper.from_array(np.int8(0), "qz")]
        return nodes, inits

    inputs = [_vi(f"w_{i:02d}", [b, w_dim]) for i in range(num_layers)]
    inputs += [_vi(f"noise_{i:02d}", [b, 1, r, r]) for i, r in enumerate(res)]
    out = [_vi("image", [b, 3, max(res), max(res)])]
    for kind, name, wanted in (("fp32", "synthesis.onnx", True), ("fp16", "synthesis.fp16.onnx", fp16_onnx),
                               ("int8", "synthesis.int8.onnx", int8_onnx),
                               ("int8", "synthesis.int8-fp16.onnx", int8_fp16_onnx)):
        if wanted:
            nodes, inits = synthesis(kind)
            _save(path / name, nodes, inputs, out, inits)
    rng = np.random.default_rng(7)
    np.savez(path / "noise_const.npz",
             **{f"noise_{i:02d}": rng.standard_normal((1, 1, r, r)).astype(np.float32) for i, r in enumerate(res)})
    # Bundle format 2 records every file's size and SHA-256 in meta.json.
    meta["files"] = {n: file_record(path / n) for n in ("mapping.onnx", "synthesis.onnx", "noise_const.npz")}
    (path / "meta.json").write_text(json.dumps(meta))
    if fp32_nodes is not None:
        plan = {"format": "stylegan-edge-precision-plan", "version": 1, "fp32_nodes": fp32_nodes, "layers": []}
        (path / "precision_plan.json").write_text(json.dumps(plan))
    return path


# --- wiring -----------------------------------------------------------------------------------------------------
def install_fakes(monkeypatch: Any, version: str, gpu_name: str = "Orin",
                  compute_capability: tuple[int, int] = (8, 7)) -> tuple[Any, Any]:
    """Put a fake `tensorrt` (one release) and a fake `pycuda` (with libcuda for graphs) where
    the code under test imports them; returns (tensorrt module, FakeCuda)."""
    import sys

    from stylegan_edge.runtime.backends import cuda as cudalib

    from .fake_pycuda import FakeCuda, simulate_tensorrt_runtime

    cuda = FakeCuda(gpu_name, compute_capability)
    trt = make_fake_tensorrt(version, cuda)
    # The execution context's run-time behaviour through the CUDA runtime (lazy initialisation
    # after a shape change, pending runtime errors): see fake_pycuda.simulate_tensorrt_runtime.
    simulate_tensorrt_runtime(trt, cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "pycuda", cuda.package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda.driver)
    monkeypatch.setattr(cudalib, "load_libcuda", lambda: cuda.libcuda)
    # Never the real libcudart that a CUDA build of torch may have loaded into the test process.
    monkeypatch.setattr(cudalib, "load_libcudart", lambda: cuda.libcudart)
    return trt, cuda
