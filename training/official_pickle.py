"""Reading NVIDIA's StyleGAN1 pickles as data: nothing in the file is run.

An official file is a pickle of `(G, D, Gs)`, each a `dnnlib.tflib.network.Network` (of
NVlabs/stylegan, state versions 2 and 3, or of NVlabs/stylegan2, version 4) whose state holds its
build arguments, sub-networks, variables and the whole source of its build module. The
official `Network.__setstate__` executes that source, so `pickle.load` of such a file runs code
from the file. Here a restricted unpickler resolves only the few names such a file needs: the
`Network` class, which becomes an inert record of its state, and numpy's array and dtype
reconstructors, whose arrays are built here from their raw bytes after a size check. Any other
name is refused before anything is called.

numpy 1.x pickles arrays through `numpy.core.multiarray._reconstruct` (protocols 2 to 4) and
`numpy.core.numeric._frombuffer` (protocol 5); numpy 2.x moved both under `numpy._core`. Both
spellings are read.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stylegan_edge.runtime.errors import StyleganError


class OfficialPickleError(StyleganError, ValueError):
    """An official-pickle file that is refused or cannot be read; the message is one line."""


READ_PROTOCOLS = (3, 4, 5)
# Network state versions: 2 and 3 from NVlabs/stylegan's dnnlib, 4 from NVlabs/stylegan2's, which
# also builds the StyleGAN1 networks (training/networks_stylegan.py). Version 4's state has the
# same keys and meaning as 3 (dnnlib/tflib/network.py __getstate__ of both repositories: only
# the number differs), so one reader serves all three.
STATE_VERSIONS = (2, 3, 4)
_NUMPY_CORE = ("numpy.core", "numpy._core")  # numpy 1.x, numpy 2.x
# Numeric dtypes only: an object array would carry arbitrary Python objects.
_DTYPE_CODES = frozenset(
    f"{kind}{size}" for kind, sizes in (("b", (1,)), ("i", (1, 2, 4, 8)), ("u", (1, 2, 4, 8)), ("f", (2, 4, 8)))
    for size in sizes
)
_MAX_DIMS = 8
# Official files nest their containers a handful of levels deep (a network's state dict, its
# variable list, a (name, array) tuple); a hostile file can nest a million. Python hashes nested
# tuples by C recursion with no depth check, so a deep one used as a dict key overflows the C
# stack (SIGSEGV) while the file is still being read: depth is bounded as each tuple is built,
# and again on the walk that turns the stand-ins into plain data.
MAX_DEPTH = 64


@dataclass(frozen=True)
class NetworkRecord:
    """The pickled state of one official `Network`, as plain data.

    `variables` are the network's own (`lod`, `dlatent_avg`, ...), in file order;
    `all_variables()` adds its components' under their network names, as the official
    `Network.vars` lists them (`G_synthesis/4x4/Const/const`, ...). `build_module_src` is kept as
    text and never executed.
    """

    name: str
    build_func_name: str
    static_kwargs: dict[str, Any]
    components: dict[str, NetworkRecord]
    variables: dict[str, np.ndarray]
    version: int
    build_module_src: str = field(repr=False)

    def all_variables(self) -> dict[str, np.ndarray]:
        out = dict(self.variables)
        for comp in self.components.values():
            out.update((f"{comp.name}/{k}", v) for k, v in comp.all_variables().items())
        return out


class _ArrayBudget:
    """Bytes of array data the file may make: every array is copied out of bytes the file
    itself holds, so their sum (each array object once, however often it is referenced) cannot
    exceed the file's size; many arrays built from one shared buffer would."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def charge(self, nbytes: int) -> None:
        if self.used + nbytes > self.limit:
            raise _MalformedError(
                f"arrays of more than {self.limit} bytes in all (one buffer read as many arrays?), "
                f"more than the file's own size"
            )
        self.used += nbytes


class _BoundedFile:
    """The file for the unpickler: a length field that claims more bytes than remain is refused
    before anything of that size is allocated."""

    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)
        self._size = len(data)

    def remaining(self) -> int:
        return self._size - self._f.tell()

    def read(self, n: int = -1) -> bytes:
        if n > self.remaining():
            raise pickle.UnpicklingError(f"pickle data was truncated: {n} bytes wanted, {self.remaining()} left")
        return self._f.read(n)

    def readline(self) -> bytes:
        return self._f.readline()


# --- stand-ins that the unpickler hands out instead of real classes and functions ------------

class _RefusedError(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class _MalformedError(Exception):
    """A name we allow, used in a way no official file uses it."""


class _NetworkStub:
    """What `dnnlib.tflib.network.Network` resolves to: it only keeps the state it is given."""

    def __setstate__(self, state: Any) -> None:
        if hasattr(self, "_state"):
            raise _MalformedError("a network's state is set twice")
        self._state = state


class _DtypeStub:
    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(code, str) or code not in _DTYPE_CODES:
            raise _MalformedError(f"array dtype {code!r} is not a plain numeric type")
        self.code, self.byteorder = code, "="

    def __setstate__(self, state: Any) -> None:
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags)
        if not isinstance(state, tuple) or len(state) < 5 or any(s is not None for s in state[2:5]):
            raise _MalformedError("a structured or sub-array dtype")
        if state[1] not in ("<", ">", "|", "="):
            raise _MalformedError(f"dtype byte order {state[1]!r}")
        self.byteorder = state[1]

    def resolve(self) -> np.dtype:
        dt = np.dtype(self.code)
        return dt.newbyteorder(self.byteorder) if self.byteorder in "<>" else dt


class _NdarrayToken:
    """What `numpy.ndarray` resolves to: only a marker for `_reconstruct`."""


class _ArrayStub:
    """An array being read: `_reconstruct` makes an empty one, its BUILD gives the bytes."""

    def __init__(self, budget: _ArrayBudget, array: np.ndarray | None = None) -> None:
        self.budget, self.array = budget, array

    def __setstate__(self, state: Any) -> None:
        if self.array is not None:
            raise _MalformedError("an array's state is set twice")
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]  # (version, shape, dtype, is_fortran, data)
        if not isinstance(state, tuple) or len(state) != 4:
            raise _MalformedError("an array state that is not (shape, dtype, is_fortran, data)")
        shape, dtype, fortran, data = state
        self.array = _array_from_bytes(self.budget, data, dtype, shape, "F" if fortran else "C")


def _array_from_bytes(budget: _ArrayBudget, data: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if not isinstance(dtype, _DtypeStub):
        raise _MalformedError("an array whose dtype is not a numpy dtype")
    if isinstance(data, pickle.PickleBuffer):
        data = data.raw()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _MalformedError("an array whose data is not raw bytes (an object array?)")
    if (
        not isinstance(shape, tuple) or len(shape) > _MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise _MalformedError(f"an array shape {shape!r}")
    if order not in ("C", "F"):
        raise _MalformedError(f"an array order {order!r}")
    dt = dtype.resolve()
    count = math.prod(shape)
    if len(data) != count * dt.itemsize:
        raise _MalformedError(f"an array of shape {list(shape)} {dt} with {len(data)} bytes of data")
    budget.charge(count * dt.itemsize)  # before the copy below allocates it
    return np.frombuffer(data, dtype=dt, count=count).reshape(shape, order=order).copy()


def _reconstruct(budget: _ArrayBudget, cls: Any, shape: Any, typecode: Any) -> _ArrayStub:
    if not (isinstance(cls, type) and issubclass(cls, _NdarrayToken)):
        raise _MalformedError("_reconstruct of something other than numpy.ndarray")
    return _ArrayStub(budget)


def _frombuffer(budget: _ArrayBudget, buf: Any, dtype: Any, shape: Any, order: Any) -> _ArrayStub:
    return _ArrayStub(budget, _array_from_bytes(budget, buf, dtype, shape, order))


def _scalar(budget: _ArrayBudget, dtype: Any, data: Any = None) -> _ArrayStub:
    return _ArrayStub(budget, _array_from_bytes(budget, data, dtype, (), "C"))


_ALLOWED: dict[tuple[str, str], Any] = {
    ("dnnlib.tflib.network", "Network"): _NetworkStub,
    ("numpy", "ndarray"): _NdarrayToken,
    ("numpy", "dtype"): _DtypeStub,
    **{(f"{core}.multiarray", "_reconstruct"): _reconstruct for core in _NUMPY_CORE},
    **{(f"{core}.multiarray", "scalar"): _scalar for core in _NUMPY_CORE},
    **{(f"{core}.numeric", "_frombuffer"): _frombuffer for core in _NUMPY_CORE},
}


class _RestrictedUnpickler(pickle._Unpickler):
    """Python's own pure-Python unpickler, for three things its C twin cannot give: the memo is a
    dict (the C memo is an array, so a 9-byte file asking for memo slot 2**28 allocates gigabytes),
    counted lengths are checked against the bytes left (`_BoundedFile`) before a buffer of that
    size is made, and each tuple's nesting depth is known as it is built."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, data: bytes) -> None:
        self._source = _BoundedFile(data)
        super().__init__(self._source)
        self._budget = _ArrayBudget(len(data))
        self._depths: dict[int, tuple[Any, int]] = {}  # id -> (the object, kept alive; depth)

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED.get((module, name))
        if target is None:
            raise _RefusedError(f"{module}.{name}")
        # A fresh object for every lookup: the BUILD opcode can set attributes on whatever
        # find_class returned, and that must not reach the shared definitions above.
        if isinstance(target, type):
            return type(target.__name__, (target,), {})
        budget = self._budget
        return lambda *args: target(budget, *args)

    def persistent_load(self, pid: Any) -> Any:
        raise _RefusedError("a persistent reference")

    # -- nesting depth of the hashable containers, checked as each is built ---------------------

    def _depth_of(self, obj: Any) -> int:
        if type(obj) not in (tuple, frozenset) or not obj:
            return 0
        known = self._depths.get(id(obj))
        if known is None or known[0] is not obj:  # every non-empty tuple is made by the methods below
            raise _MalformedError("a tuple the reader did not build")
        return known[1]

    def _built(self) -> None:
        top = self.stack[-1]
        depth = 1 + max((self._depth_of(x) for x in top), default=0)
        if depth > MAX_DEPTH:
            raise _MalformedError(f"tuples or sets nested more than {MAX_DEPTH} deep")
        self._depths[id(top)] = (top, depth)

    def _load_tuple(self) -> None:
        pickle._Unpickler.load_tuple(self)
        self._built()

    def _load_tuple1(self) -> None:
        pickle._Unpickler.load_tuple1(self)
        self._built()

    def _load_tuple2(self) -> None:
        pickle._Unpickler.load_tuple2(self)
        self._built()

    def _load_tuple3(self) -> None:
        pickle._Unpickler.load_tuple3(self)
        self._built()

    def _load_frozenset(self) -> None:
        items = self.pop_mark()
        depth = 1 + max((self._depth_of(x) for x in items), default=0)  # checked before hashing them
        if depth > MAX_DEPTH:
            raise _MalformedError(f"tuples or sets nested more than {MAX_DEPTH} deep")
        self.append(frozenset(items))
        self._depths[id(self.stack[-1])] = (self.stack[-1], depth)

    def _load_bytearray8(self) -> None:
        (n,) = struct.unpack("<Q", self.read(8))
        if n > self._budget.limit:  # the file's size; checked before bytearray(n) allocates it
            raise pickle.UnpicklingError(f"pickle data was truncated: {n} bytes wanted, the file has fewer")
        b = bytearray(n)
        self.readinto(b)
        self.append(b)

    for _op, _fn in (
        (pickle.TUPLE, _load_tuple), (pickle.TUPLE1, _load_tuple1), (pickle.TUPLE2, _load_tuple2),
        (pickle.TUPLE3, _load_tuple3), (pickle.FROZENSET, _load_frozenset), (pickle.BYTEARRAY8, _load_bytearray8),
    ):
        dispatch[_op[0]] = _fn
    del _op, _fn


# --- from stand-ins to plain data -------------------------------------------------------------

class _Walk:
    """One pass from stand-ins to plain data: shared objects are converted once (`done`); a
    container met again while it is still being converted contains itself, which no official file
    does and which would send every later walk (comparisons, JSON) round forever; nesting is
    bounded so the walk's own recursion stays far from Python's limit."""

    def __init__(self) -> None:
        self.done: dict[int, tuple[Any, Any]] = {}  # id -> (the original, kept alive; its conversion)
        self.open: set[int] = set()


def _resolve(obj: Any, walk: _Walk, depth: int = 0) -> Any:
    """Replace the stand-ins by arrays and records."""
    key = id(obj)
    if key in walk.done:
        return walk.done[key][1]
    if key in walk.open:
        raise _MalformedError(f"a {type(obj).__name__} that contains itself")
    if depth > MAX_DEPTH:
        raise _MalformedError(f"containers nested more than {MAX_DEPTH} deep")
    walk.open.add(key)
    d = depth + 1
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise _MalformedError("an array whose data never came")
        out: Any = obj.array if obj.array.ndim else obj.array[()]
    elif isinstance(obj, _DtypeStub):
        out = obj.resolve()
    elif isinstance(obj, _NetworkStub):
        out = _record(getattr(obj, "_state", None), walk, d)
    elif isinstance(obj, dict):
        out = {_resolve(k, walk, d): _resolve(v, walk, d) for k, v in obj.items()}
    elif isinstance(obj, list):
        out = [_resolve(v, walk, d) for v in obj]
    elif isinstance(obj, tuple):
        out = tuple(_resolve(v, walk, d) for v in obj)
    elif isinstance(obj, (set, frozenset)):
        out = type(obj)(_resolve(v, walk, d) for v in obj)
    elif obj is None or isinstance(obj, (str, bytes, bytearray, int, float, complex)):
        out = obj  # built by the unpickler itself
    else:
        raise _MalformedError(f"an object of type {type(obj).__name__}")
    walk.open.discard(key)
    walk.done[key] = (obj, out)
    return out


def _record(state: Any, walk: _Walk, depth: int) -> NetworkRecord:
    if not isinstance(state, dict):
        raise _MalformedError("a network with no state dict")
    state = _resolve(state, walk, depth)
    version = state.get("version")
    if type(version) is not int or version not in STATE_VERSIONS:
        raise _MalformedError(
            f"a network state of version {version!r} (official files have {', '.join(map(str, STATE_VERSIONS))})"
        )
    name, func = state.get("name"), state.get("build_func_name")
    kwargs, comps = state.get("static_kwargs"), state.get("components", {})
    src, variables = state.get("build_module_src"), state.get("variables")
    if not isinstance(name, str) or not isinstance(func, str) or not isinstance(src, str):
        raise _MalformedError("a network without a name, build function name or build module text")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise _MalformedError(f"network {name}: static_kwargs is not a dict of names")
    if not isinstance(comps, dict) or not all(isinstance(c, NetworkRecord) for c in comps.values()):
        raise _MalformedError(f"network {name}: components are not networks")
    if not isinstance(variables, (list, tuple)):
        raise _MalformedError(f"network {name}: variables are not a list")
    own: dict[str, np.ndarray] = {}
    for item in variables:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise _MalformedError(f"network {name}: a variable entry that is not (name, value)")
        value = item[1]
        if not isinstance(value, (np.ndarray, np.generic)) or value.dtype.kind not in "biuf":
            raise _MalformedError(f"network {name}: variable {item[0]} is not a numeric array")
        own[item[0]] = np.asarray(value)
    return NetworkRecord(
        name=name, build_func_name=func, static_kwargs=kwargs, components=dict(comps),
        variables=own, version=version, build_module_src=src,
    )


# --- the entry point --------------------------------------------------------------------------

def read_official_pickle(path: str | Path) -> tuple[NetworkRecord, NetworkRecord, NetworkRecord]:
    """The `(G, D, Gs)` records of an official file; every failure is one OfficialPickleError line."""
    path = Path(path)
    if not path.is_file():
        raise OfficialPickleError(f"{path}: no such file")
    data = path.read_bytes()
    if len(data) < 2 or data[0] != pickle.PROTO[0]:
        raise OfficialPickleError(
            f"{path}: not a pickle of protocol 2 or later, so not an official StyleGAN network file"
        )
    if data[1] not in READ_PROTOCOLS:
        raise OfficialPickleError(
            f"{path}: written with pickle protocol {data[1]}; official StyleGAN files use protocol 4, "
            f"and protocols {READ_PROTOCOLS[0]} to {READ_PROTOCOLS[-1]} are read"
        )
    try:
        obj = _resolve(_RestrictedUnpickler(data).load(), _Walk())
    except _RefusedError as e:
        raise OfficialPickleError(
            f"{path}: refused to load {e.what}: an official StyleGAN pickle holds only networks and numeric "
            "arrays, so this file is not one (nothing in it was run)"
        ) from None
    except _MalformedError as e:
        raise OfficialPickleError(f"{path}: not an official StyleGAN network file: it holds {e}") from None
    except Exception as e:  # noqa: BLE001 - any other failure of a damaged file is one line too
        detail = (str(e).strip() or type(e).__name__).splitlines()[0]
        raise OfficialPickleError(f"{path}: not a readable pickle ({type(e).__name__}: {detail})") from None
    if not (isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, NetworkRecord) for n in obj)):
        raise OfficialPickleError(
            f"{path}: holds {_describe(obj)}, not the (G, D, Gs) tuple of networks that official StyleGAN files hold"
        )
    return obj


def _describe(obj: Any) -> str:
    if isinstance(obj, tuple):
        return f"a tuple of {len(obj)} ({', '.join(type(o).__name__ for o in obj[:4])})"
    return f"a {type(obj).__name__}"
