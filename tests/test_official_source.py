"""The embedded build source of official StyleGAN1 pickles, read with `ast` and compared with
NVIDIA's networks_stylegan.py (training/official_source.py).

NVIDIA's file cannot be part of the project, so most tests build a reference from our synthetic
twin (tests/data/official/twin_networks_stylegan.py: the same interface, our own bodies) with the
same function the reference script uses. The packaged reference is checked for its stock values,
and the real files run through it when STYLEGAN_OFFICIAL_CHECKOUTS names checkouts."""

from __future__ import annotations

import ast
import builtins
import hashlib
import json
import os
from pathlib import Path

import pytest

from stylegan_edge.training.official_pickle import OfficialPickleError, read_official_pickle
from stylegan_edge.training.official_source import (
    MAX_SOURCE_CHARS,
    MAX_STATEMENTS,
    REFERENCE_FILE,
    OfficialSourceError,
    SourceReference,
    load_reference,
    read_build_source,
    reference_from_source,
)

DATA = Path(__file__).parent / "data" / "official"
TWIN = (DATA / "twin_networks_stylegan.py").read_text(encoding="utf-8")
OFFICIAL_SHA = {  # training/networks_stylegan.py at the commits in the packaged reference
    "NVlabs/stylegan": "a4c4a6d1cedd350ac2a01125bc256679f0288dd6a316f36d48e19e66025499e5",
    "NVlabs/stylegan2": "abffc1b9c091875f7be10c0fe67968cf827dbdbfdcd99b9532a3c03ee826109f",
}


@pytest.fixture(scope="module")
def ref():
    return reference_from_source(TWIN, "twin")


def _in_function(text: str, func: str, old: str, new: str) -> str:
    """`text` with the first `old` after `def func(` replaced (the twin repeats some lines)."""
    start = text.index(f"\ndef {func}(")
    at = text.index(old, start)
    return text[:at] + new + text[at + len(old):]


def _line(text: str, needle: str, after: str = "") -> int:
    return text[: text.index(needle, text.index(after) if after else 0)].count("\n") + 1


def _refusal(text: str, ref) -> str:
    with pytest.raises(OfficialSourceError) as info:
        read_build_source(text, ref)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- stock and edited values --------------------------------------------------------------------

def test_stock_twin_gives_stock_facts(ref):
    facts = read_build_source(TWIN, ref)
    assert facts.origin == "twin" and not facts.stand_in and facts.edited == ()
    assert (facts.fused_up_min_res, facts.fused_down_min_res) == (128, 128)
    assert facts.defaults["G_mapping"]["mapping_lrmul"] == 0.01
    assert facts.defaults["G_synthesis"]["blur_filter"] == [1, 2, 1]
    assert set(facts.defaults) == {"G_style", "G_mapping", "G_synthesis", "D_basic"}
    # G_style's `components=dnnlib.EasyDict()` is not a value: kept out of the defaults, not refused.
    assert "components" not in facts.defaults["G_style"]


@pytest.mark.parametrize(("func", "old", "new", "param", "value"), [
    ("G_mapping", "mapping_lrmul=0.01", "mapping_lrmul=0.1", "mapping_lrmul", 0.1),
    ("G_mapping", "mapping_nonlinearity='lrelu'", "mapping_nonlinearity='relu'", "mapping_nonlinearity", "relu"),
    ("G_mapping", "label_size=0", "label_size=10", "label_size", 10),
    ("G_synthesis", "fmap_base=8192", "fmap_base=16384", "fmap_base", 16384),
    ("G_synthesis", "blur_filter=[1, 2, 1]", "blur_filter=None", "blur_filter", None),
    ("G_synthesis", "use_noise=True", "use_noise=False", "use_noise", False),
    ("G_style", "truncation_psi=0.7", "truncation_psi=0.5", "truncation_psi", 0.5),
    ("G_style", "truncation_cutoff=8", "truncation_cutoff=-1", "truncation_cutoff", -1),
    ("D_basic", "blur_filter=[1, 2, 1]", "blur_filter=(1, 3, 3, 1)", "blur_filter", [1, 3, 3, 1]),
    ("D_basic", "mbstd_group_size=4", "mbstd_group_size=2", "mbstd_group_size", 2),
])
def test_edited_default_is_read(ref, func, old, new, param, value):
    facts = read_build_source(_in_function(TWIN, func, old, new), ref)
    stock = read_build_source(TWIN, ref)
    assert facts.defaults[func][param] == value
    assert facts.edited == (f"{func}.{param}={value!r}",)
    # Only that one value moved, in that one function.
    assert {f: {k: v for k, v in d.items() if (f, k) != (func, param)} for f, d in facts.defaults.items()} == \
        {f: {k: v for k, v in d.items() if (f, k) != (func, param)} for f, d in stock.defaults.items()}
    assert (facts.fused_up_min_res, facts.fused_down_min_res) == (128, 128)


def test_int_and_float_defaults_are_told_apart(ref):
    # 1 and 1.0 are different source text: fmap_decay=1 is an edit the converter may want to see.
    facts = read_build_source(_in_function(TWIN, "G_synthesis", "fmap_decay=1.0", "fmap_decay=1"), ref)
    assert facts.edited == ("G_synthesis.fmap_decay=1",)


def test_generator_threshold_edit_is_read(ref):
    text = _in_function(TWIN, "upscale2d_conv2d", "* 2 >= 128", "* 2 >= 64")
    facts = read_build_source(text, ref)
    assert (facts.fused_up_min_res, facts.fused_down_min_res) == (64, 128)
    assert facts.edited == ("upscale2d_conv2d threshold 64",)


def test_discriminator_threshold_edit_is_read(ref):
    text = _in_function(TWIN, "conv2d_downscale2d", ">= 128", ">= 32")
    facts = read_build_source(text, ref)
    assert (facts.fused_up_min_res, facts.fused_down_min_res) == (128, 32)
    assert facts.edited == ("conv2d_downscale2d threshold 32",)


def test_threshold_that_is_not_a_whole_number_is_refused(ref):
    text = _in_function(TWIN, "conv2d_downscale2d", ">= 128", ">= 128.0")
    message = _refusal(text, ref)
    assert f"in conv2d_downscale2d (line {_line(text, '>= 128.0')})" in message


def test_changed_threshold_comparison_is_refused(ref):
    text = _in_function(TWIN, "upscale2d_conv2d", "* 2 >= 128", "* 2 > 128")
    message = _refusal(text, ref)
    assert f"in upscale2d_conv2d (line {_line(text, '* 2 > 128')}): an edited operation" in message


# --- refused differences ------------------------------------------------------------------------

@pytest.mark.parametrize(("func", "old", "new", "where"), [
    ("G_mapping", "x = tf.concat([x, tf.matmul(labels_in, embed)], axis=1)",
     "x = tf.concat([x, tf.matmul(labels_in, embed)], axis=0)", "G_mapping"),
    ("G_synthesis", "x = epilogue(x, res * 2 - 4)", "x = epilogue(x, res * 2 - 3)", "G_synthesis.block"),
    ("G_style", "dlatents = avg + (dlatents - avg) * coefs", "dlatents = avg + (dlatents - avg) * coefs * 2",
     "G_style"),
    ("leaky_relu", "return tf.maximum(x, x * alpha)", "return tf.minimum(x, x * alpha)", "leaky_relu"),
    ("D_basic", "if mbstd_group_size > 1:", "if mbstd_group_size > 2:", "D_basic"),
])
def test_edited_operation_is_refused_at_its_line(ref, func, old, new, where):
    text = _in_function(TWIN, func, old, new)
    message = _refusal(text, ref)
    assert message.startswith("build_module_src departs from NVIDIA's networks_stylegan.py")
    assert f"in {where} (line {_line(text, new, after=f'def {func}(')}): an edited operation" in message


def test_added_statement_is_refused_at_its_line(ref):
    text = _in_function(TWIN, "G_mapping", "    x = latents_in\n", "    x = latents_in\n    x = x * 2\n")
    message = _refusal(text, ref)
    assert f"in G_mapping (line {_line(text, 'x = x * 2')}): an added statement" in message


def test_added_layer_in_loop_is_refused(ref):
    # An extra layer inside the synthesis loop: the kind of edit that silently changes the network.
    old = "        x = block(res, x)\n"
    text = _in_function(TWIN, "G_synthesis", old, old + "        x = block(res, x)\n")
    message = _refusal(text, ref)
    assert f"in G_synthesis (line {_line(text, old, after='def G_synthesis(') + 1}): an added statement" in message


def test_removed_statement_is_refused(ref):
    old = "    if dlatent_broadcast is not None:\n        x = tf.tile(x[:, None], [1, dlatent_broadcast, 1])\n"
    text = _in_function(TWIN, "G_mapping", old, "")
    message = _refusal(text, ref)
    # Named after the last statement that is still there (the mapping loop's body).
    assert "in G_mapping (line" in message and "missing after this line" in message
    assert f"(line {_line(text, 'x = act(apply_bias(dense(x, width')})" in message


def test_moved_statement_into_other_branch_is_refused(ref):
    # The same statement under `else` instead of the `if`: same text, different network.
    old = "    if const_input_layer:\n"
    text = _in_function(TWIN, "G_synthesis", old, "    if not const_input_layer:\n")
    message = _refusal(text, ref)
    assert f"in G_synthesis (line {_line(text, 'if not const_input_layer')})" in message


def test_changed_helper_default_is_refused(ref):
    text = _in_function(TWIN, "leaky_relu", "alpha=0.2", "alpha=0.3")
    message = _refusal(text, ref)
    assert f"in leaky_relu (line {_line(text, 'def leaky_relu')}): a changed signature or helper default" in message


def test_added_build_parameter_is_refused(ref):
    text = _in_function(TWIN, "G_mapping", "    dtype='float32',\n", "    dtype='float32',\n    extra=1,\n")
    message = _refusal(text, ref)
    assert f"in G_mapping (line {_line(text, 'def G_mapping(')})" in message


@pytest.mark.parametrize(("func", "old", "new", "param"), [
    ("G_mapping", "mapping_lrmul=0.01", "mapping_lrmul=1 / 100", "mapping_lrmul"),
    ("G_synthesis", "fmap_base=8192", "fmap_base=int('8192')", "fmap_base"),
    ("G_synthesis", "blur_filter=[1, 2, 1]", "blur_filter=[1, 2, x]", "blur_filter"),
    ("G_style", "components=dnnlib.EasyDict()", "components=dict()", "components"),
])
def test_non_literal_default_is_refused_naming_it(ref, func, old, new, param):
    text = _in_function(TWIN, func, old, new)
    message = _refusal(text, ref)
    assert f"in {func} (line {_line(text, new, after=f'def {func}(')})" in message
    assert f"default of {param}" in message


def test_comments_docstrings_and_formatting_are_not_differences(ref):
    text = TWIN.replace('"""A synthetic twin', '"""Another docstring entirely.\n\nA synthetic twin', 1)
    text = _in_function(text, "G_mapping", "    x = latents_in\n",
                        '    """Added docstring."""\n    # a comment\n\n    x = (latents_in)  # why not\n')
    text = _in_function(text, "G_mapping", "mapping_nonlinearity='lrelu'",
                        'mapping_nonlinearity = ("lrelu")')
    text = _in_function(text, "G_style", "return tf.identity(images, name='images_out')",
                        'return tf.identity(\n        images,\n        name="images_out",\n    )')
    text = _in_function(text, "leaky_relu", "    return", "    pass\n    return")
    facts = read_build_source(text, ref)
    assert facts.edited == () and facts.defaults == read_build_source(TWIN, ref).defaults


def test_origin_with_fewest_differences_is_chosen(ref):
    other_text = _in_function(TWIN, "G_mapping", "    x = latents_in\n", "    x = latents_in\n    x = x * 2\n")
    other = reference_from_source(other_text, "twin-b")
    both = SourceReference((ref, other))
    assert read_build_source(other_text, both).origin == "twin-b"
    assert read_build_source(TWIN, both).origin == "twin"
    edited = _in_function(other_text, "G_mapping", "mapping_lrmul=0.01", "mapping_lrmul=0.1")
    assert read_build_source(edited, both).edited == ("G_mapping.mapping_lrmul=0.1",)


def test_reference_survives_json(ref):
    again = SourceReference.from_json(json.loads(json.dumps(SourceReference((ref,)).to_json())))
    text = _in_function(TWIN, "G_synthesis", "blur_filter=[1, 2, 1]", "blur_filter=(1, 2, 1)")
    # A tuple default reads as the list JSON keeps: not an edit.
    assert read_build_source(text, again).edited == ()
    assert read_build_source(TWIN, again) == read_build_source(TWIN, ref)


# --- stand-ins, unrelated text, hostile text ----------------------------------------------------

@pytest.mark.parametrize("repo", ["NVlabs/stylegan", "NVlabs/stylegan2"])
def test_stand_in_marker_with_known_sha_is_stock(ref, repo):
    marker = f"# {repo} training/networks_stylegan.py, sha256 {ref.sha256}: not included in this test fixture\n"
    facts = read_build_source(marker, ref)
    assert facts.stand_in and facts.edited == () and facts.origin == "twin"
    assert facts.defaults == read_build_source(TWIN, ref).defaults
    assert ref.sha256 == hashlib.sha256(TWIN.encode("utf-8")).hexdigest()


def test_stand_in_marker_with_unknown_sha_is_refused(ref):
    marker = f"# NVlabs/stylegan training/networks_stylegan.py, sha256 {'0' * 64}: not included in this test fixture\n"
    assert "not a known NVIDIA networks_stylegan.py" in _refusal(marker, ref)


@pytest.mark.parametrize(("text", "says"), [
    ("print('hello')\n", "defines no G_style"),
    ("def G_style(:\n", "not Python that parses (line 1"),
    ("# omitted\n", "defines no G_style"),
    ("x = 1\x00\n", "not Python that parses"),
    ("(" * 500 + ")" * 500 + "\n", "not Python that parses"),
    ("a = " + "-" * 20000 + "1\n", "not Python that parses"),
    ("x = 1\n" * (MAX_STATEMENTS + 1), f"more than {MAX_STATEMENTS} statements"),
    ("#" * (MAX_SOURCE_CHARS + 1), "characters, far more than"),
])
def test_unrelated_or_broken_text_is_refused_in_one_line(ref, text, says):
    assert says in _refusal(text, ref)


def test_refusal_is_an_official_pickle_error(ref):
    with pytest.raises(OfficialPickleError):
        read_build_source("print(1)\n", ref)


def test_hostile_source_is_never_run(ref, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    calls = []
    real_compile = builtins.compile

    def only_ast(source, filename, mode, flags=0, *args, **kwargs):
        # ast.parse is compile(..., PyCF_ONLY_AST): a tree, nothing run. Anything else fails.
        if not flags & ast.PyCF_ONLY_AST:
            calls.append("compile")
            raise AssertionError("compile to run code")
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    def refuse(*_args, **_kwargs):
        calls.append("exec/eval")
        raise AssertionError("exec/eval called")

    monkeypatch.setattr(builtins, "compile", only_ast)
    monkeypatch.setattr(builtins, "exec", refuse)
    monkeypatch.setattr(builtins, "eval", refuse)
    side_effect = f"open({str(marker)!r}, 'w').write('x')"
    at_import = TWIN + f"\n{side_effect}\n"
    in_default = _in_function(TWIN, "G_style", "truncation_psi=0.7", f"truncation_psi={side_effect}")
    in_body = _in_function(TWIN, "G_mapping", "    x = latents_in\n", f"    x = latents_in\n    {side_effect}\n")
    in_threshold = _in_function(TWIN, "upscale2d_conv2d", "* 2 >= 128", f"* 2 >= {side_effect}")
    for text in (at_import, in_default, in_body, in_threshold):
        _refusal(text, ref)
    assert calls == [] and not marker.exists()


# --- the packaged reference and the real fixtures -----------------------------------------------

def test_packaged_reference_has_official_stock_values():
    reference = load_reference()
    assert {o.repo: o.sha256 for o in reference.origins} == OFFICIAL_SHA
    for origin in reference.origins:
        marker = f"# {origin.repo} training/networks_stylegan.py, sha256 {origin.sha256}: not included in this " \
                 "test fixture\n"
        facts = read_build_source(marker)
        assert facts.stand_in and facts.origin == f"{origin.repo} training/networks_stylegan.py"
        assert (facts.fused_up_min_res, facts.fused_down_min_res) == (128, 128)
        assert facts.defaults["G_mapping"]["mapping_lrmul"] == 0.01
        assert facts.defaults["G_style"]["truncation_psi"] == 0.7
        assert facts.defaults["G_style"]["truncation_cutoff"] == 8
        assert facts.defaults["G_synthesis"]["fmap_base"] == 8192
        assert facts.defaults["D_basic"]["fmap_base"] == 8192
        assert facts.defaults["G_synthesis"]["blur_filter"] == [1, 2, 1]
        assert facts.defaults["D_basic"]["blur_filter"] == [1, 2, 1]
        assert len(origin.commit) == 40 and origin.path == "training/networks_stylegan.py"


def test_packaged_reference_holds_no_source_text():
    raw = (Path(__file__).parent.parent / "training" / REFERENCE_FILE).read_text(encoding="utf-8")
    for fragment in ("tf.", "get_variable", "def ", "return", "np.sqrt", "# "):
        assert fragment not in raw


def test_twin_matches_official_interface():
    """The twin keeps the official signatures: its literal defaults equal the packaged stock ones."""
    official = load_reference().origins[0]
    assert reference_from_source(TWIN, "twin").defaults == official.defaults
    assert reference_from_source(TWIN, "twin").thresholds == official.thresholds


def test_existing_fixture_stand_in_reads_as_stock():
    G, D, Gs = read_official_pickle(DATA / "tiny32.pkl")
    for rec in (G, D, Gs):
        facts = read_build_source(rec.build_module_src)
        assert facts.stand_in and facts.origin == "NVlabs/stylegan training/networks_stylegan.py"


def _checkouts() -> list[Path]:
    value = os.environ.get("STYLEGAN_OFFICIAL_CHECKOUTS", "")
    return [Path(p) for p in value.split(":") if p]


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)


def _replace_node(text: str, node: ast.AST, new: str) -> str:
    """`text` with one single-line node's source replaced (offsets are UTF-8 bytes)."""
    lines = text.split("\n")
    raw = lines[node.lineno - 1].encode("utf-8")
    lines[node.lineno - 1] = (raw[: node.col_offset] + new.encode("utf-8") + raw[node.end_col_offset:]).decode("utf-8")
    return "\n".join(lines)


@pytest.mark.skipif(not _checkouts(), reason="STYLEGAN_OFFICIAL_CHECKOUTS (colon-separated checkouts of "
                    "NVlabs/stylegan and NVlabs/stylegan2) is not set; NVIDIA's files are not in the project")
def test_real_official_files_through_packaged_reference():
    for checkout in _checkouts():
        path = checkout / "training" / "networks_stylegan.py"
        data = path.read_bytes()
        text = data.decode("utf-8-sig")  # as inspect.getsource hands it to the pickle
        facts = read_build_source(text)
        origin = next(o for o in load_reference().origins if o.sha256 == hashlib.sha256(data).hexdigest())
        assert facts.origin == origin.origin and facts.edited == () and not facts.stand_in
        assert facts.defaults == origin.defaults
        assert (facts.fused_up_min_res, facts.fused_down_min_res) == (128, 128)

        # Edits made through the tree, so that no official text is spelled out here.
        tree = ast.parse(text)
        mapping = _function(tree, "G_mapping")
        names = [a.arg for a in mapping.args.args]
        lrmul = mapping.args.defaults[names.index("mapping_lrmul") - (len(names) - len(mapping.args.defaults))]
        edited = read_build_source(_replace_node(text, lrmul, "0.1"))
        assert edited.defaults["G_mapping"]["mapping_lrmul"] == 0.1
        assert edited.edited == ("G_mapping.mapping_lrmul=0.1",)

        # An operation in the mapping's body: the first binary operation after the signature.
        op = next(n for stmt in mapping.body for n in ast.walk(stmt)
                  if isinstance(n, ast.BinOp) and n.lineno == n.end_lineno)
        segment = ast.get_source_segment(text, op)
        with pytest.raises(OfficialSourceError) as info:
            read_build_source(_replace_node(text, op, f"({segment}) * 2"))
        assert f"in G_mapping (line {op.lineno}): an edited operation" in str(info.value)
