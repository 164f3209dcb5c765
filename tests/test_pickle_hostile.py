"""`stylegan convert` on hostile pickles: deep nesting, shared buffers, lying lengths, absurd build
arguments. None may kill the process or make it allocate far more than the file's own size; each is
one `error:` line and exit code 1.

The files are written opcode by opcode (see pickletools) or by re-pickling the tiny32 fixture with
one change. Claims about memory are measured as the peak RSS of a child process (os.wait4)."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the converter needs PyTorch (pip install '.[train]')")

from stylegan_edge.training.official import (  # noqa: E402
    NetworkRecord,
    OfficialPickleError,
    UnsupportedNetworkError,
    import_official,
    load_official_pickle,
)
from tests.test_official_import import DATA, _Network, _state, repickled, write_official  # noqa: E402

# Peak RSS a child may reach. Reading the module and torch costs ~250 MB; every attack below made
# the old reader grow by gigabytes.
RSS_LIMIT_MB = 900


def _run_child(args: list[str], tmp_path: Path) -> tuple[int, str, float]:
    """Run a Python child; its exit code, stderr and peak RSS in MB."""
    err = tmp_path / "stderr.txt"
    with open(err, "wb") as e:
        p = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=e,
                             env={**os.environ, "STYLEGAN_DEBUG": ""})
        _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, err.read_text(), usage.ru_maxrss / 1024


def _cli_child(pkl: Path, tmp_path: Path) -> tuple[int, str, float, Path]:
    out = tmp_path / "out.safetensors"
    rc, err, rss = _run_child(["-m", "stylegan_edge.cli.main", "convert", str(pkl), "--out", str(out)], tmp_path)
    return rc, err, rss, out


def _read_child(pkl: Path, tmp_path: Path) -> tuple[int, str, float]:
    """The reader alone (no torch import), so the RSS measured is the reader's."""
    code = ("import sys\nfrom stylegan_edge.training.official_pickle import read_official_pickle, OfficialPickleError\n"
            "try:\n    read_official_pickle(sys.argv[1])\nexcept OfficialPickleError as e:\n"
            "    print('error: ' + str(e), file=sys.stderr); sys.exit(1)\n")
    return _run_child(["-c", code, str(pkl)], tmp_path)


def _assert_one_error_line(rc: int, err: str, match: str) -> None:
    lines = err.strip().splitlines()
    assert rc == 1, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    assert "Traceback" not in err and match in lines[0], lines


def _cli_in_process(pkl: Path, tmp_path: Path) -> tuple[int, str, Path]:
    import typer
    from typer.testing import CliRunner

    from stylegan_edge.cli.convert_cmd import convert

    app = typer.Typer()
    app.command()(convert)
    out = tmp_path / "m.safetensors"
    res = CliRunner().invoke(app, [str(pkl), "--out", str(out)])
    return res.exit_code, res.stderr, out


# --- the reader ---------------------------------------------------------------------------------

def test_tuple_nested_a_million_deep_as_a_dict_key_is_one_line_not_a_crash(tmp_path):
    # PROTO 4, EMPTY_DICT, NONE, TUPLE1 x 10**6, NONE, SETITEM, STOP: hashing the key recursed in C.
    pkl = tmp_path / "deep.pkl"
    pkl.write_bytes(b"\x80\x04}N" + b"\x85" * 1_000_000 + b"Ns.")
    rc, err, _, out = _cli_child(pkl, tmp_path)
    _assert_one_error_line(rc, err, "nested more than")
    assert not out.exists()


def test_frozenset_of_deep_tuples_is_refused_before_hashing(tmp_path):
    # EMPTY_TUPLE, TUPLE1 x 200, MARK (below it), FROZENSET
    pkl = tmp_path / "fs.pkl"
    pkl.write_bytes(b"\x80\x04(N" + b"\x85" * 200 + b"\x91.")
    with pytest.raises(OfficialPickleError, match="nested more than") as e:
        load_official_pickle(pkl)
    assert "\n" not in str(e.value)


def test_list_nested_deeply_is_one_line(tmp_path):
    n = 100_000  # EMPTY_LIST x n, then APPEND n-1 times: each list holds the next
    pkl = tmp_path / "lists.pkl"
    pkl.write_bytes(b"\x80\x04" + b"]" * n + b"a" * (n - 1) + b".")
    rc, err, out = _cli_in_process(pkl, tmp_path)
    _assert_one_error_line(rc, err, "nested more than")


def test_nine_byte_pickle_asking_for_a_huge_memo_slot_stays_small(tmp_path):
    # PROTO 4, NONE, LONG_BINPUT 0x0ffffff0, STOP: the C unpickler grows its memo array to that index.
    pkl = tmp_path / "memo.pkl"
    pkl.write_bytes(b"\x80\x04Nr" + struct.pack("<I", 0x0FFFFFF0) + b".")
    assert pkl.stat().st_size == 9
    rc, err, rss = _read_child(pkl, tmp_path)
    _assert_one_error_line(rc, err, "not the (G, D, Gs) tuple")
    assert rss < RSS_LIMIT_MB, f"peak RSS {rss:.0f} MB"


@pytest.mark.parametrize(("name", "body"), [
    ("bytearray8", b"\x80\x05\x96" + struct.pack("<Q", 1 << 40) + b"."),
    ("binbytes8", b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"."),
    ("frame", b"\x80\x04\x95" + struct.pack("<Q", 1 << 40) + b"N."),
    ("binunicode8", b"\x80\x04\x8d" + struct.pack("<Q", 1 << 40) + b"."),
])
def test_length_fields_larger_than_the_file_are_refused_before_allocating(tmp_path, name, body):
    pkl = tmp_path / f"{name}.pkl"
    pkl.write_bytes(body)
    rc, err, rss = _read_child(pkl, tmp_path)
    _assert_one_error_line(rc, err, "truncated")
    assert rss < RSS_LIMIT_MB, f"peak RSS {rss:.0f} MB"


class _SharedBufferArray:
    """Pickles as numpy's _reconstruct + BUILD does, but every instance hands the pickler the same
    bytes object, which it then writes once and refers to by its memo slot."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self):
        shape = (len(self.data) // 4,)
        return np.ndarray.__reduce__(np.zeros(0, np.float32))[0], (np.ndarray, (0,), b"b"), (
            1, shape, np.dtype("<f4"), False, self.data)


def _shared_buffer_pickle(n_arrays: int, nbytes: int) -> bytes:
    data = bytes(nbytes)
    return pickle.dumps([_SharedBufferArray(data) for _ in range(n_arrays)], protocol=4)


def test_many_arrays_sharing_one_buffer_do_not_grow_past_the_file(tmp_path):
    small = pickle.loads(_shared_buffer_pickle(3, 64))  # the construction makes real arrays
    assert [a.shape for a in small] == [(16,)] * 3 and all(isinstance(a, np.ndarray) for a in small)
    nbytes, n = 4 << 20, 600  # a 4 MB file whose arrays were 2.4 GB once each had its copy
    pkl = tmp_path / "shared.pkl"
    pkl.write_bytes(_shared_buffer_pickle(n, nbytes))
    assert pkl.stat().st_size < nbytes + 100_000
    rc, err, rss = _read_child(pkl, tmp_path)
    _assert_one_error_line(rc, err, "more than the file's own size")
    assert rss < RSS_LIMIT_MB, f"peak RSS {rss:.0f} MB"


def test_one_array_referenced_many_times_counts_once(tmp_path):
    a = np.arange(1 << 16, dtype=np.float32)  # 256 KB, pickled once, referenced 600 times by the memo
    pkl = tmp_path / "refs.pkl"
    pkl.write_bytes(pickle.dumps([a] * 600, protocol=4))
    with pytest.raises(OfficialPickleError, match=r"not the \(G, D, Gs\) tuple"):  # read fine, then not networks
        load_official_pickle(pkl)


# --- official-shaped files with hostile build arguments ----------------------------------------

def _changed_everywhere(tmp_path: Path, change: dict, d_change: dict | None = None) -> Path:
    recs = load_official_pickle(DATA / "tiny32.pkl")

    def changed(rec: NetworkRecord, extra: dict) -> _Network:  # G_style passes its arguments on
        comps = {k: changed(c, extra) for k, c in rec.components.items()}
        return _Network(_state(rec, static_kwargs=dict(rec.static_kwargs, **extra), components=comps))

    nets = (changed(recs["G"], change), changed(recs["D"], d_change or {}), changed(recs["Gs"], change))
    return write_official(tmp_path / "x.pkl", nets)


@pytest.mark.parametrize(("change", "named"), [
    ({"latent_size": -1}, "latent_size=-1"),
    ({"latent_size": 1.5}, "latent_size=1.5"),
    ({"mapping_layers": 10**9}, "mapping_layers"),
    ({"fmap_decay": float("nan")}, "fmap_decay"),
    ({"use_noise": [1]}, "use_noise"),
    ({"truncation_psi": float("inf")}, "truncation_psi"),
    ({"mapping_lrmul": "x"}, "mapping_lrmul"),
])
def test_hostile_build_arguments_are_one_line(tmp_path, change, named):
    pkl = _changed_everywhere(tmp_path, change)
    rc, err, out = _cli_in_process(pkl, tmp_path)
    _assert_one_error_line(rc, err, named)
    assert not out.exists()


def test_absurd_resolution_is_one_line(tmp_path):
    pkl = _changed_everywhere(tmp_path, {"resolution": 1 << 40}, {"resolution": 1 << 40})
    rc, err, out = _cli_in_process(pkl, tmp_path)
    _assert_one_error_line(rc, err, "resolution=1099511627776")


def test_self_containing_list_in_build_arguments_is_one_line(tmp_path):
    loop: list = []
    loop.append(loop)
    pkl = repickled(tmp_path, static_kwargs={"truncation_psi": loop})
    rc, err, out = _cli_in_process(pkl, tmp_path)
    _assert_one_error_line(rc, err, "contains itself")
    assert not out.exists()


def test_huge_widths_are_refused_by_shape_before_any_network_is_built(tmp_path):
    # The variables are tiny32's; the arguments claim 2048 features per layer, so the three
    # networks would take about 3.6 GB. The shapes disagree, and nothing of that size is made.
    wide = {"fmap_base": 1 << 16, "fmap_max": 2048}
    pkl = _changed_everywhere(tmp_path, wide, wide)
    assert pkl.stat().st_size < 200_000
    rc, err, rss, out = _cli_child(pkl, tmp_path)
    _assert_one_error_line(rc, err, "the build arguments imply")
    assert rss < RSS_LIMIT_MB, f"peak RSS {rss:.0f} MB"
    assert not out.exists()


def test_variables_sharing_one_array_are_refused(tmp_path):
    recs = load_official_pickle(DATA / "tiny32.pkl")
    big = np.ones(1 << 18, np.float32)  # 1 MB, one object under every name
    variables = [(k, big) for k in recs["Gs"].variables]
    pkl = repickled(tmp_path, variables=variables)
    with pytest.raises(UnsupportedNetworkError, match="arrays are shared") as e:
        import_official(pkl)
    assert "\n" not in str(e.value)
