"""What an official pickle's embedded build source says, read with `ast` and never run.

An official StyleGAN1 network is built from the Python source stored in its pickle
(`build_module_src`, a copy of `training/networks_stylegan.py`), not from the reader's own copy.
People edit that copy: the defaults of the build functions (`mapping_lrmul`, `fmap_base`,
`blur_filter`, ...) and the resolution from which the up/down-sampling convolution is fused (the
`'auto'` expressions in `upscale2d_conv2d` and `conv2d_downscale2d`). Those are parameters, and
are read here. Any other difference changes what the network computes in a way the converter
cannot know, and is refused in one line naming the function and the line of the user's file.

The comparison is by normalised statements: the module's statements in pre-order, each compound
statement without its body, docstrings and `pass` dropped, the build functions' defaults and the
two threshold constants replaced by placeholders, each hashed together with where it sits (its
function and block). The packaged reference (`official_source_reference.json`, made by
`scripts/make_official_source_reference.py` from NVlabs/stylegan and NVlabs/stylegan2) holds
those hashes and the stock values, and no NVIDIA source text. `difflib` aligns a file's hashes
with each known origin's; the origin with the fewest differences is the one it is compared with.

Nothing here calls exec, eval or compile-to-run: `ast.parse` only builds a tree.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from .official_pickle import OfficialPickleError


class OfficialSourceError(OfficialPickleError):
    """An embedded build source that departs from NVIDIA's, or cannot be read; one-line message."""


BUILD_FUNCTIONS = ("G_style", "G_mapping", "G_synthesis", "D_basic")
# The function holding each fused-scale 'auto' threshold, and which SourceFacts field it sets.
THRESHOLD_FUNCTIONS = {"upscale2d_conv2d": "fused_up_min_res", "conv2d_downscale2d": "fused_down_min_res"}
REFERENCE_FILE = "official_source_reference.json"
REFERENCE_FORMAT = 1
# NVIDIA's file is ~30 kB and ~400 statements; a far larger text is not an edited copy of it, and
# would only cost time (hashing and aligning are linear-ish, but a hostile file sets the n).
MAX_SOURCE_CHARS = 1 << 18
MAX_STATEMENTS = 5000
# Deeper than any expression in NVIDIA's file by far; bounds the recursion of the serialiser.
_MAX_NODE_DEPTH = 100
_HASH_CHARS = 16  # 64 bits per statement: collisions between a few hundred statements are moot
# config.py accepts fused thresholds up to 1 << 16; no network has a larger resolution, so a larger
# threshold means "never fused" just as 1 << 16 does.
_MAX_THRESHOLD = 1 << 16
_SUBJECT = "build_module_src"
_STAND_IN = re.compile(
    r"# NVlabs/stylegan2? training/networks_stylegan\.py, sha256 ([0-9a-f]{64}): not included in this test fixture\n?"
)
_BLOCK_TYPES = (ast.stmt, ast.excepthandler, ast.match_case)
_PLACEHOLDER_DEFAULT = "<default>"
_PLACEHOLDER_THRESHOLD = "<threshold>"


@dataclass(frozen=True)
class OriginEntry:
    """One official file as the reference knows it: the normalised statement hashes (with the
    qualified name of the function each sits in), the stock literal defaults of the build
    functions, the hashes of their non-literal defaults (G_style's `components`), and the stock
    fused thresholds. `sha256` is of the file's bytes (what the fixtures' stand-in names);
    `text_sha256` of the text as `inspect.getsource` gives it (a byte-order mark dropped)."""

    origin: str
    statements: tuple[tuple[str, str], ...]
    defaults: dict[str, dict[str, Any]]
    fixed_defaults: dict[str, dict[str, str]]
    thresholds: dict[str, int]
    text_sha256: str
    sha256: str
    repo: str = ""
    commit: str = ""
    path: str = ""

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["statements"] = [list(s) for s in self.statements]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OriginEntry:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["statements"] = tuple((str(q), str(h)) for q, h in data["statements"])
        return cls(**kwargs)


@dataclass(frozen=True)
class SourceReference:
    """The known official files, in order of preference when two match equally well."""

    origins: tuple[OriginEntry, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": REFERENCE_FORMAT,
            "what": "normalised statement hashes and stock values of NVIDIA's StyleGAN1 networks_stylegan.py "
                    "(no source text); see training/official_source.py",
            "origins": [o.to_json() for o in self.origins],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SourceReference:
        if data.get("format") != REFERENCE_FORMAT:
            raise OfficialSourceError(
                f"source reference has format {data.get('format')!r}, expected {REFERENCE_FORMAT}"
            )
        return cls(tuple(OriginEntry.from_json(o) for o in data["origins"]))


@dataclass(frozen=True)
class SourceFacts:
    """What a build source sets: `defaults` are the literal defaults of the build functions as this
    text has them; the fused thresholds are the OUTPUT resolution from which G fuses and the INPUT
    resolution from which D fuses; `edited` lists what differs from the official file."""

    origin: str
    defaults: dict[str, dict[str, Any]]
    fused_up_min_res: int
    fused_down_min_res: int
    edited: tuple[str, ...]
    stand_in: bool


# --- normalisation ------------------------------------------------------------------------------

class _TooDeepError(Exception):
    pass


class _TooManyError(Exception):
    pass


class _NotLiteralError(Exception):
    pass


@dataclass
class _Statement:
    where: str  # the function it belongs to (a def statement: the function it defines)
    digest: str
    line: int
    kind: str  # "def NAME" for function definitions, else the statement's type


@dataclass
class _Parsed:
    statements: list[_Statement] = field(default_factory=list)
    # function -> parameter -> default node (build functions only)
    default_nodes: dict[str, dict[str, ast.expr]] = field(default_factory=dict)
    threshold_nodes: dict[str, ast.expr] = field(default_factory=dict)


def _canon(node: Any, replace: dict[int, str], depth: int = 0) -> str:
    """A serialisation of an AST that does not depend on the Python version's `ast.dump` format
    (3.13 drops empty fields, 3.12 added `type_params`): empty fields and `kind` are left out."""
    if depth > _MAX_NODE_DEPTH:
        raise _TooDeepError
    if id(node) in replace:
        return replace[id(node)]
    if isinstance(node, list):
        return "[" + ",".join(_canon(v, replace, depth + 1) for v in node) + "]"
    if isinstance(node, ast.AST):
        parts = []
        for name in node._fields:
            value = getattr(node, name, None)
            if name in ("kind", "type_comment") or value is None or (isinstance(value, list) and not value):
                continue
            parts.append(f"{name}={_canon(value, replace, depth + 1)}")
        return f"{type(node).__name__}({','.join(parts)})"
    return f"{type(node).__name__}:{node!r}"


def _block_fields(node: ast.AST) -> list[str]:
    return [
        name for name in node._fields
        if isinstance(getattr(node, name, None), list) and getattr(node, name)
        and all(isinstance(v, _BLOCK_TYPES) for v in getattr(node, name))
    ]


def _is_noise(stmt: ast.AST) -> bool:
    """Docstrings (any bare string statement) and `pass` change nothing a network computes."""
    if isinstance(stmt, ast.Pass):
        return True
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[tuple[str, ast.expr]]:
    """(parameter, default) for each parameter with a default, in signature order."""
    positional = fn.args.posonlyargs + fn.args.args
    pairs = list(zip([a.arg for a in positional[len(positional) - len(fn.args.defaults):]], fn.args.defaults))
    pairs += [(a.arg, d) for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults) if d is not None]
    return pairs


def _threshold_node(fn: ast.AST) -> ast.expr | None:
    """The constant of `fused_scale = <expression> >= N` in a fused-convolution helper."""
    for node in ast.walk(fn):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "fused_scale" and isinstance(node.value, ast.Compare)
                and len(node.value.comparators) == 1):
            return node.value.comparators[0]
    return None


def _walk(body: list[Any], context: str, where: str, parsed: _Parsed, replace: dict[int, str]) -> None:
    for stmt in body:
        if _is_noise(stmt):
            continue
        inner, kind = where, type(stmt).__name__
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inner = f"{where}.{stmt.name}" if where else stmt.name
            kind = f"def {stmt.name}"
            if not where and isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if stmt.name in BUILD_FUNCTIONS and stmt.name not in parsed.default_nodes:
                    parsed.default_nodes[stmt.name] = dict(_parameters(stmt))
                    for _, node in _parameters(stmt):
                        replace[id(node)] = _PLACEHOLDER_DEFAULT
                if stmt.name in THRESHOLD_FUNCTIONS and stmt.name not in parsed.threshold_nodes:
                    node = _threshold_node(stmt)
                    if node is not None:
                        parsed.threshold_nodes[stmt.name] = node
                        replace[id(node)] = _PLACEHOLDER_THRESHOLD
        blocks = _block_fields(stmt)
        header = {id(getattr(stmt, name)): "<block>" for name in blocks}
        text = f"{context}|{_canon(stmt, {**replace, **header})}"
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HASH_CHARS]
        parsed.statements.append(_Statement(inner, digest, getattr(stmt, "lineno", 0), kind))
        if len(parsed.statements) > MAX_STATEMENTS:
            raise _TooManyError
        for name in blocks:
            step = stmt.name if inner != where else f"{type(stmt).__name__}.{name}"
            _walk(getattr(stmt, name), f"{context}/{step}", inner, parsed, replace)


def _parse(text: str) -> _Parsed:
    if not isinstance(text, str):
        raise OfficialSourceError(f"{_SUBJECT} is a {type(text).__name__}, not text")
    if len(text) > MAX_SOURCE_CHARS:
        raise OfficialSourceError(
            f"{_SUBJECT} is {len(text)} characters, far more than NVIDIA's networks_stylegan.py; not read"
        )
    try:
        tree = ast.parse(text.removeprefix("\ufeff"), mode="exec")
        parsed = _Parsed()
        _walk(tree.body, "", "", parsed, {})
    except SyntaxError as e:
        raise OfficialSourceError(f"{_SUBJECT} is not Python that parses (line {e.lineno}: {e.msg})") from None
    except _TooManyError:
        raise OfficialSourceError(
            f"{_SUBJECT} holds more than {MAX_STATEMENTS} statements, far more than NVIDIA's networks_stylegan.py; "
            "not read"
        ) from None
    except (ValueError, RecursionError, MemoryError, _TooDeepError):
        raise OfficialSourceError(f"{_SUBJECT} is not Python that parses, or nests deeper than any StyleGAN source") \
            from None
    defined = {s.where for s in parsed.statements if s.kind.startswith("def ") and "." not in s.where}
    missing = [f for f in (*BUILD_FUNCTIONS, *THRESHOLD_FUNCTIONS) if f not in defined]
    if missing:
        raise OfficialSourceError(
            f"{_SUBJECT} is not NVIDIA's StyleGAN networks_stylegan.py: it defines no {missing[0]}"
        )
    return parsed


def _literal(node: ast.expr, depth: int = 0) -> Any:
    """Numbers, strings, bools, None, and lists/tuples of numbers (one level of nesting, as a 2-D
    blur filter would need), as plain Python values (tuples as lists, as JSON keeps them)."""
    if isinstance(node, ast.Constant) and (node.value is None or type(node.value) in (bool, int, float, str)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)) and depth < 2:
        items = [_literal(item, depth + 1) for item in node.elts]
        for item, value in zip(node.elts, items):
            if not (type(value) in (int, float) or (depth == 0 and isinstance(item, (ast.List, ast.Tuple)))):
                raise _NotLiteralError
        return items
    raise _NotLiteralError


def _default_hash(node: ast.expr) -> str:
    return hashlib.sha256(_canon(node, {}).encode("utf-8")).hexdigest()[:_HASH_CHARS]


def _read_defaults(parsed: _Parsed, fixed: dict[str, dict[str, str]] | None) -> tuple[dict, dict]:
    """Literal defaults of the build functions, and the hashes of the others. With `fixed` (the
    stock non-literal defaults), a non-literal default must be one of them, unchanged."""
    literal: dict[str, dict[str, Any]] = {}
    other: dict[str, dict[str, str]] = {}
    for func, params in parsed.default_nodes.items():
        literal[func], other[func] = {}, {}
        for name, node in params.items():
            stock = None if fixed is None else fixed.get(func, {}).get(name)
            try:
                value = _literal(node)
            except _NotLiteralError:
                digest = _default_hash(node)
                if fixed is not None and stock != digest:
                    raise OfficialSourceError(
                        f"{_SUBJECT} departs from NVIDIA's networks_stylegan.py in {func} (line {node.lineno}): the "
                        f"default of {name} is not a literal value (a number, string, bool, None or a list of "
                        "numbers), and only literal defaults are read"
                    ) from None
                other[func][name] = digest
                continue
            if stock is not None:
                raise OfficialSourceError(
                    f"{_SUBJECT} departs from NVIDIA's networks_stylegan.py in {func} (line {node.lineno}): the "
                    f"default of {name} is edited, and only the literal defaults of the build functions are read"
                )
            literal[func][name] = value
    return literal, other


def _read_thresholds(parsed: _Parsed) -> dict[str, int]:
    out = {}
    for func, node in parsed.threshold_nodes.items():
        if not (isinstance(node, ast.Constant) and type(node.value) is int and node.value >= 0):
            raise OfficialSourceError(
                f"{_SUBJECT} departs from NVIDIA's networks_stylegan.py in {func} (line {node.lineno}): the fused "
                "resolution threshold is not a whole number, and only a number there is read"
            )
        out[func] = node.value
    return out


# --- the reference ------------------------------------------------------------------------------

def reference_from_source(
    text: str, origin: str, *, repo: str = "", commit: str = "", path: str = "", sha256: str | None = None,
) -> OriginEntry:
    """One origin's reference entry from its source text (what the script stores per official
    file, and what tests build from the synthetic twin). `sha256`: of the file's bytes; default,
    of `text` as UTF-8."""
    parsed = _parse(text)
    defaults, fixed = _read_defaults(parsed, None)
    thresholds = _read_thresholds(parsed)
    missing = [f for f in (*BUILD_FUNCTIONS, *THRESHOLD_FUNCTIONS) if f not in defaults and f not in thresholds]
    if missing:
        raise OfficialSourceError(f"{origin}: no {missing[0]} with defaults or a fused threshold to read")
    body = text.removeprefix("\ufeff").encode("utf-8")
    return OriginEntry(
        origin=origin,
        statements=tuple((s.where, s.digest) for s in parsed.statements),
        defaults=defaults,
        fixed_defaults={k: v for k, v in fixed.items() if v},
        thresholds=thresholds,
        text_sha256=hashlib.sha256(body).hexdigest(),
        sha256=sha256 if sha256 is not None else hashlib.sha256(text.encode("utf-8")).hexdigest(),
        repo=repo, commit=commit, path=path,
    )


@functools.lru_cache(maxsize=1)
def load_reference() -> SourceReference:
    """The packaged reference of NVIDIA's files (cached)."""
    try:
        raw = resources.files(__package__).joinpath(REFERENCE_FILE).read_text(encoding="utf-8")
        return SourceReference.from_json(json.loads(raw))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise OfficialSourceError(f"the packaged {REFERENCE_FILE} cannot be read ({type(e).__name__}); "
                                  "reinstall stylegan-edge") from None


def _as_reference(reference: SourceReference | OriginEntry | Iterable[OriginEntry] | None) -> SourceReference:
    if reference is None:
        return load_reference()
    if isinstance(reference, SourceReference):
        return reference
    if isinstance(reference, OriginEntry):
        return SourceReference((reference,))
    return SourceReference(tuple(reference))


# --- reading a build source ---------------------------------------------------------------------

def _fused_min_res(threshold: int) -> int:
    # G fuses where min(in) * 2 >= N, i.e. output resolution >= N; D where input resolution >= N.
    return min(threshold, _MAX_THRESHOLD)


def _stock_facts(entry: OriginEntry, stand_in: bool) -> SourceFacts:
    return SourceFacts(
        origin=entry.origin,
        defaults={f: dict(v) for f, v in entry.defaults.items()},
        fused_up_min_res=_fused_min_res(entry.thresholds["upscale2d_conv2d"]),
        fused_down_min_res=_fused_min_res(entry.thresholds["conv2d_downscale2d"]),
        edited=(),
        stand_in=stand_in,
    )


def _place(where: str) -> str:
    return f"in {where}" if where else "at module level"


def _departure(entry: OriginEntry, parsed: _Parsed) -> tuple[int, str | None]:
    """(number of differing statements, the one-line description of the first), against one origin."""
    ref = [h for _, h in entry.statements]
    mine = [s.digest for s in parsed.statements]
    # The user's statements are `a` and the reference's `b`: SequenceMatcher indexes `b`, so a
    # hostile file of a million statements costs a dictionary lookup each, not a scan of the reference.
    matcher = difflib.SequenceMatcher(a=mine, b=ref, autojunk=False)
    ops = [op for op in matcher.get_opcodes() if op[0] != "equal"]
    if not ops:
        return 0, None
    count = sum(max(i2 - i1, j2 - j1) for _, i1, i2, j1, j2 in ops)
    tag, i1, _, j1, _ = ops[0]
    if tag == "insert":  # the user's file lacks the reference's statement j1
        place = _place(entry.statements[j1][0])
        if i1 == 0:
            return count, f"{place} (line 1): a statement of NVIDIA's is missing at the start of the file"
        line = parsed.statements[i1 - 1].line
        return count, f"{place} (line {line}): a statement of NVIDIA's is missing after this line"
    stmt = parsed.statements[i1]
    if tag == "delete":
        what = "an added statement"
    elif stmt.kind.startswith("def ") and entry.statements[j1][0] == stmt.where:
        what = "a changed signature or helper default"
    else:
        what = "an edited operation"
    return count, f"{_place(stmt.where)} (line {stmt.line}): {what}"


def read_build_source(
    text: str, reference: SourceReference | OriginEntry | Iterable[OriginEntry] | None = None,
) -> SourceFacts:
    """The facts of an embedded build source, or OfficialSourceError (one line) for a source that
    departs from every known official file other than in the build functions' literal defaults
    and the fused thresholds. `reference` None: the packaged reference of NVIDIA's files."""
    ref = _as_reference(reference)
    if not ref.origins:
        raise OfficialSourceError("the source reference holds no official file to compare with")
    if isinstance(text, str):
        marker = _STAND_IN.fullmatch(text)
        if marker:
            for entry in ref.origins:
                if entry.sha256 == marker.group(1):
                    return _stock_facts(entry, stand_in=True)
            raise OfficialSourceError(
                f"{_SUBJECT} is a fixture's stand-in for a file with sha256 {marker.group(1)[:12]}..., which is not "
                "a known NVIDIA networks_stylegan.py"
            )
    parsed = _parse(text)
    body_sha = hashlib.sha256(text.removeprefix("\ufeff").encode("utf-8")).hexdigest()
    # The origin with the fewest differing statements; on a tie the one whose text this is, then
    # the reference's order (NVIDIA's two files differ only in their licence comment).
    scored = [(_departure(e, parsed), e.text_sha256 != body_sha, i, e) for i, e in enumerate(ref.origins)]
    (count, first), _, _, entry = min(scored, key=lambda s: (s[0][0], s[1], s[2]))
    if first is not None:
        raise OfficialSourceError(
            f"{_SUBJECT} departs from NVIDIA's networks_stylegan.py {first}; only default values and the "
            "fused-resolution threshold are read"
        )
    defaults, _ = _read_defaults(parsed, entry.fixed_defaults)
    thresholds = _read_thresholds(parsed)
    edited = [
        f"{func}.{name}={value!r}"
        for func in BUILD_FUNCTIONS
        for name, value in defaults.get(func, {}).items()
        if name not in entry.defaults.get(func, {}) or not _same(value, entry.defaults[func][name])
    ]
    edited += [f"{func} threshold {thresholds[func]}" for func in THRESHOLD_FUNCTIONS
               if thresholds[func] != entry.thresholds[func]]
    return SourceFacts(
        origin=entry.origin,
        defaults=defaults,
        fused_up_min_res=_fused_min_res(thresholds["upscale2d_conv2d"]),
        fused_down_min_res=_fused_min_res(thresholds["conv2d_downscale2d"]),
        edited=tuple(edited),
        stand_in=False,
    )


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same kind: 1 and 1.0 and True are different source text, but JSON turns
    tuples into lists, so lists compare by items."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b
