"""Outputs are all or nothing: a full disk, a read-only folder or an I/O error while `generate`,
`truncation` or a report writes is one `error:` line naming the file, exit code 1, and no file
(partial or temporary) is left under the final name.

Tests run as root, where chmod stops nothing: a full disk is RLIMIT_FSIZE in a child process (with
SIGXFSZ ignored, so the write fails with EFBIG), and a read-only filesystem or an I/O error is a
monkeypatched os call raising what the kernel would."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("onnxruntime", reason="the bundle commands run on onnxruntime")

from stylegan_edge.cli.main import app  # noqa: E402
from stylegan_edge.runtime import files  # noqa: E402
from stylegan_edge.runtime.images import OutputWriteError, save_png, write_text_output  # noqa: E402


def _error_lines(stderr: str) -> list[str]:
    """The `error:` lines; the progress bar (tqdm, redrawn with \\r) shares stderr."""
    return [line.strip() for line in re.split(r"[\r\n]", stderr) if line.strip().startswith("error:")]


def _assert_one_error(res, named: str) -> None:
    err = _error_lines(res.stderr)
    assert res.exit_code == 1, (res.exit_code, res.output)
    assert len(err) == 1, res.output
    assert named in err[0], err[0]
    assert "Traceback" not in res.output


@pytest.fixture
def bundle(tiny_bundle) -> Path:
    """The tiny bundle, opened once so that onnxruntime's optimised-graph cache inside it exists:
    the faults below are aimed at the command's outputs, not at that cache."""
    from stylegan_edge.runtime import Generator

    Generator(tiny_bundle, backend="onnxruntime", device="cpu").close()
    return tiny_bundle


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _fail_with(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


# --- read-only folder, I/O error at fsync --------------------------------------------------------

@pytest.mark.parametrize(("call", "code"), [("replace", errno.EROFS), ("fsync", errno.EIO)])
def test_generate_on_a_read_only_or_failing_disk_is_one_line(bundle, tmp_path, monkeypatch, call, code):
    out = tmp_path / "imgs"
    monkeypatch.setattr(files.os, call, _fail_with(code))
    res = CliRunner().invoke(app, ["generate", str(bundle), "--seeds", "0-2", "--out", str(out)])
    _assert_one_error(res, str(out / "seed0000.png"))
    assert os.strerror(code) in res.stderr
    assert _left(out) == []  # no PNG under its name, no temporary file either


def test_truncation_on_a_read_only_folder_is_one_line(bundle, tmp_path, monkeypatch):
    out = tmp_path / "t.png"
    monkeypatch.setattr(files.os, "replace", _fail_with(errno.EROFS))
    res = CliRunner().invoke(app, ["truncation", str(bundle), "--seeds", "0", "--out", str(out)])
    _assert_one_error(res, f"{out}: cannot write (Read-only file system)")
    assert _left(tmp_path) == []


def test_a_read_only_output_folder_that_cannot_be_created_is_one_line(bundle, tmp_path, monkeypatch):
    out = tmp_path / "new" / "imgs"

    def mkdir(self, *a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", mkdir)
    res = CliRunner().invoke(app, ["generate", str(bundle), "--seeds", "0", "--out", str(out)])
    _assert_one_error(res, "Read-only file system")
    assert not (tmp_path / "new").exists()


def test_an_earlier_file_survives_a_failed_overwrite(tmp_path, monkeypatch):
    import numpy as np

    path = tmp_path / "x.png"
    save_png(np.zeros((4, 4, 3), np.uint8), path)
    before = path.read_bytes()
    monkeypatch.setattr(files.os, "replace", _fail_with(errno.EROFS))
    with pytest.raises(OutputWriteError, match="x.png"):
        save_png(np.full((4, 4, 3), 200, np.uint8), path)
    assert path.read_bytes() == before and _left(tmp_path) == ["x.png"]


def test_json_report_on_a_full_disk_is_one_error_naming_it(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    monkeypatch.setattr(files.os, "fsync", _fail_with(errno.ENOSPC))
    with pytest.raises(OutputWriteError) as e:
        write_text_output(path, "{}\n")
    assert e.value.filename == str(path) and "No space left" in str(e.value)
    assert _left(tmp_path) == []


# --- a full disk, for real: RLIMIT_FSIZE in a child ----------------------------------------------

_CHILD = textwrap.dedent("""
    import resource, signal, sys
    from stylegan_edge.cli.main import app
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    sys.argv = ["stylegan", *sys.argv[2:]]
    app()
""")


@pytest.mark.parametrize("command", ["generate", "truncation"])
def test_full_disk_is_one_line_and_leaves_no_partial_png(bundle, tmp_path, command):
    out = tmp_path / "out"
    target = out if command == "generate" else out / "t.png"
    # A 32 px PNG of noise-like faces is a few kB; 300 bytes is a disk that fills during the write.
    args = [command, str(bundle), "--seeds", "0-1", "--out", str(target)]
    res = subprocess.run([sys.executable, "-c", _CHILD, "300", *args], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "STYLEGAN_DEBUG": ""})
    err = _error_lines(res.stderr)
    assert res.returncode == 1, res.stderr[-2000:]
    assert len(err) == 1 and "File too large" in err[0], res.stderr[-2000:]
    assert ("seed0000.png" if command == "generate" else "t.png") in err[0]
    assert "Traceback" not in res.stderr
    assert _left(out) == []  # no truncated PNG under its final name, and no temporary left behind
