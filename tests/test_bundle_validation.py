"""Bundles are checked at the boundary (issue 16, cause 3): every way a bundle's files can be
damaged or disagree is one `error:` line naming the file and the field, exit code 1, no
traceback, no image written, and nothing huge allocated."""

from __future__ import annotations

import io
import json
import shutil
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from stylegan_edge.cli.main import app
from stylegan_edge.runtime import Bundle, BundleError, Generator
from stylegan_edge.runtime.files import file_record

from .bundles import RECORDED, seal

runner = CliRunner()


@pytest.fixture(scope="module")
def sealed(sealed_tiny_bundle) -> Path:
    return sealed_tiny_bundle


@pytest.fixture
def bundle(sealed, tmp_path) -> Path:
    """A fresh copy to damage."""
    dst = tmp_path / "b.sgbundle"
    shutil.copytree(sealed, dst, ignore=shutil.ignore_patterns(".*"))
    return dst


def edit_meta(bundle: Path, change) -> None:
    meta = json.loads((bundle / "meta.json").read_text())
    change(meta)
    (bundle / "meta.json").write_text(json.dumps(meta))


def generate_fails(bundle: Path, tmp_path: Path, *fragments: str) -> str:
    """`stylegan generate` on the bundle: one error line holding each fragment, exit 1, no image."""
    out = tmp_path / "images"
    result = runner.invoke(app, ["generate", str(bundle), "--seeds", "0-1", "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for f in fragments:
        assert f in lines[0], lines[0]
    assert not out.exists() or not list(out.iterdir())
    return lines[0]


def test_a_sealed_bundle_generates_and_verifies(sealed, tmp_path):
    result = runner.invoke(app, ["generate", str(sealed), "--seeds", "0-1", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["seed0000.png", "seed0001.png"]
    result = runner.invoke(app, ["verify", str(sealed)])
    assert result.exit_code == 0, result.output
    assert "synthesis.onnx: loads in onnxruntime" in result.stdout and result.stdout.strip().endswith("ok")


def test_file_record_is_the_size_and_sha256(tmp_path):
    p = tmp_path / "f.bin"
    data = np.random.default_rng().bytes(5000)
    p.write_bytes(data)
    import hashlib

    assert file_record(p) == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": 5000}


# --- meta.json -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, fragment", [
    (b"[1, 2, 3]", "meta.json holds a list"),
    (b"\xff\xfe\x00garbage\x81", "not UTF-8"),
    (b"{\"format\": ", "not valid JSON"),
    (b"[" * 100000 + b"]" * 100000, "meta.json"),
])
def test_a_meta_json_that_is_not_an_object_is_one_line(bundle, tmp_path, content, fragment):
    (bundle / "meta.json").write_bytes(content)
    generate_fails(bundle, tmp_path, "meta.json", fragment)


@pytest.mark.parametrize("change, fragments", [
    (lambda m: m.pop("z_dim"), ["missing field 'z_dim'"]),
    (lambda m: m.update(resolution="32"), ["'resolution' must be an integer"]),
    (lambda m: m.update(w_dim=-1), ["'w_dim' is -1, outside"]),
    (lambda m: m.update(resolution=10**12), ["'resolution' is 1000000000000, outside"]),
    (lambda m: m.update(num_layers=True), ["'num_layers' must be an integer"]),
    (lambda m: m.update(layers=m["layers"][:-1]), ["'layers' must be a list of num_layers="]),
    (lambda m: m["layers"][2].update(channels=0), ["layers[2].'channels' is 0"]),
    (lambda m: m.update(w_avg=[float("nan")] + m["w_avg"][1:]), ["'w_avg' holds NaN"]),
    (lambda m: m.update(w_avg=m["w_avg"][:-1]), ["'w_avg' must be a list of w_dim="]),
    (lambda m: m["truncation"].update(psi=float("inf")), ["truncation.'psi' is inf"]),
    (lambda m: m["truncation"].update(cutoff=-1), ["truncation.'cutoff' is -1"]),
    (lambda m: m.update(use_noise="yes"), ["'use_noise' must be true or false"]),
    (lambda m: m["files"]["synthesis.onnx"].update(bytes=-5), ["files['synthesis.onnx'].'bytes' is -5"]),
    (lambda m: m["files"].update({"../x": m["files"]["mapping.onnx"]}), ["'files' names '../x'"]),
])
def test_a_meta_json_field_of_the_wrong_type_or_range_is_one_line_naming_it(bundle, tmp_path, change, fragments):
    edit_meta(bundle, change)
    generate_fails(bundle, tmp_path, "meta.json", *fragments)


def test_a_bundle_of_format_version_1_says_how_to_re_export(bundle, tmp_path):
    edit_meta(bundle, lambda m: m.update(format_version=1))
    generate_fails(bundle, tmp_path, "meta.json: bundle format version 1", "stylegan-export CHECKPOINT")


def test_a_bundle_without_file_records_is_refused(bundle, tmp_path):
    edit_meta(bundle, lambda m: m.pop("files"))
    generate_fails(bundle, tmp_path, "meta.json: missing field 'files'")


# --- integrity ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", RECORDED)
def test_a_truncated_file_is_refused_by_its_recorded_size(bundle, tmp_path, name):
    data = (bundle / name).read_bytes()
    (bundle / name).write_bytes(data[: len(data) // 2])
    generate_fails(bundle, tmp_path, f"{name}: {len(data) // 2} bytes, meta.json records {len(data)}")


@pytest.mark.parametrize("name", RECORDED)
def test_a_bit_flip_is_refused_by_the_recorded_sha256(bundle, tmp_path, name):
    data = bytearray((bundle / name).read_bytes())
    i = int(np.random.default_rng().integers(len(data)))
    data[i] ^= 1 << int(np.random.default_rng().integers(8))
    (bundle / name).write_bytes(bytes(data))
    generate_fails(bundle, tmp_path, f"{name}: SHA-256 differs from meta.json's record")
    result = runner.invoke(app, ["verify", str(bundle)])
    assert result.exit_code == 1 and "SHA-256 differs" in result.stderr and "Traceback" not in result.output


def test_a_recorded_file_that_is_missing_is_named(bundle, tmp_path):
    (bundle / "noise_const.npz").unlink()
    generate_fails(bundle, tmp_path, "noise_const.npz: missing from the bundle")


# --- ONNX graphs (records updated with the damage, as a hand-edited bundle would be) ---------------------------
@pytest.mark.parametrize("damage", ["empty", "garbage", "truncated", "bitflips"])
@pytest.mark.parametrize("name", ["mapping.onnx", "synthesis.onnx"])
def test_a_corrupt_onnx_graph_is_one_line_naming_it_in_every_command(bundle, tmp_path, damage, name):
    rng = np.random.default_rng()
    data = bytearray((bundle / name).read_bytes())
    if damage == "empty":
        data = bytearray()
    elif damage == "garbage":
        data = bytearray(rng.bytes(4096))
    elif damage == "truncated":
        data = data[: len(data) // 3]
    else:  # flip bytes in the first part (the graph's structure, not only weights)
        for i in rng.integers(0, min(len(data), 400), 40):
            data[i] ^= 0xFF
    (bundle / name).write_bytes(bytes(data))
    seal(bundle)
    generate_fails(bundle, tmp_path, name)
    for cmd in (["mix", str(bundle), "--out", str(tmp_path / "m.png")], ["verify", str(bundle)]):
        result = runner.invoke(app, cmd)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1 and name in lines[0], result.output
        assert not (tmp_path / "m.png").exists()


def test_meta_sizes_that_disagree_with_the_graphs_name_the_input(bundle, tmp_path):
    z_dim = json.loads((bundle / "meta.json").read_text())["z_dim"]
    edit_meta(bundle, lambda m: m.update(z_dim=z_dim + 3))
    generate_fails(bundle, tmp_path, "mapping.onnx: input z is [?,", f"meta.json implies [B,{z_dim + 3}]")


def test_a_noise_resolution_that_disagrees_with_the_graph_names_the_input(bundle, tmp_path):
    def change(m):
        m["layers"][3]["resolution"] //= 2

    edit_meta(bundle, change)
    with pytest.raises(BundleError, match=r"synthesis\.onnx: input noise_03 is \[\?,1,\d+,\d+\], meta\.json implies"):
        Generator(bundle, backend="onnxruntime")


def test_a_graph_from_the_other_file_is_refused(bundle, tmp_path):
    shutil.copy(bundle / "mapping.onnx", bundle / "synthesis.onnx")
    seal(bundle)
    generate_fails(bundle, tmp_path, "synthesis.onnx: inputs disagree with meta.json")


# --- noise_const.npz ------------------------------------------------------------------------------------------
def npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def const_arrays(bundle: Path) -> dict[str, np.ndarray]:
    with np.load(bundle / "noise_const.npz") as d:
        return {k: d[k] for k in d.files}


@pytest.mark.parametrize("damage, fragment", [
    ("empty", "not a readable .npz"),
    ("garbage", "not a readable .npz"),
    ("missing key", "no array noise_02"),
    ("extra key", "unexpected array 'bogus'"),
    ("wrong shape", "noise_01 is [1, 1, 3, 3], meta.json implies [1, 1, 4, 4]"),
    ("int dtype", "noise_00 has dtype int32, not a float"),
    ("object dtype", "noise_00 has dtype object"),
    ("nan", "noise_04 holds NaN or inf"),
])
def test_a_damaged_noise_const_is_one_line(bundle, tmp_path, damage, fragment):
    arrays = const_arrays(bundle)
    path = bundle / "noise_const.npz"
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng().bytes(3000))
    else:
        if damage == "missing key":
            del arrays["noise_02"]
        elif damage == "extra key":
            arrays["bogus"] = arrays["noise_00"]
        elif damage == "wrong shape":
            arrays["noise_01"] = arrays["noise_01"][..., :3, :3]
        elif damage == "int dtype":
            arrays["noise_00"] = arrays["noise_00"].astype(np.int32)
        elif damage == "object dtype":
            arrays["noise_00"] = np.full(arrays["noise_00"].shape, None, dtype=object)
        elif damage == "nan":
            arrays["noise_04"] = arrays["noise_04"].copy()
            arrays["noise_04"].flat[3] = np.nan
        if damage == "object dtype":
            buf = io.BytesIO()
            np.savez(buf, allow_pickle=True, **arrays)
            path.write_bytes(buf.getvalue())
        else:
            path.write_bytes(npz(arrays))
    seal(bundle)
    generate_fails(bundle, tmp_path, "noise_const.npz", fragment)


def _huge_header_npz(arrays: dict[str, np.ndarray], name: str, shape: tuple[int, ...], data: bytes) -> bytes:
    """An .npz whose member `name` has a .npy header claiming `shape` over `data`."""
    from numpy.lib import format as npy

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, a in arrays.items():
            member = io.BytesIO()
            if k == name:
                npy.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": shape})
                member.write(data)
            else:
                np.save(member, a)
            zf.writestr(k + ".npy", member.getvalue())
    return buf.getvalue()


def test_a_noise_header_claiming_1e10_elements_is_refused_before_allocating(bundle, tmp_path):
    arrays = const_arrays(bundle)
    (bundle / "noise_const.npz").write_bytes(_huge_header_npz(arrays, "noise_00", (1, 1, 100000, 100000), b"\0" * 64))
    seal(bundle)
    b = Bundle(bundle)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(BundleError, match=r"noise_const\.npz: noise_00 is \[1, 1, 100000, 100000\]"):
            b.noise_const()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20 and time.perf_counter() - t0 < 2.0
    generate_fails(bundle, tmp_path, "noise_00 is [1, 1, 100000, 100000]")


def test_a_noise_array_shorter_than_its_header_is_truncated(bundle, tmp_path):
    arrays = const_arrays(bundle)
    shape = arrays["noise_05"].shape
    (bundle / "noise_const.npz").write_bytes(_huge_header_npz(arrays, "noise_05", shape, b"\0" * 8))
    seal(bundle)
    generate_fails(bundle, tmp_path, "noise_05 is truncated")

