"""A backend added through the registry alone: the Python API and `stylegan bench` use it, a
failing one is a bench row carrying its error, and bench leaves no temporary bundle behind."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the toy backend wraps onnxruntime")

from typer.testing import CliRunner  # noqa: E402

from stylegan_edge.cli.main import app  # noqa: E402
from stylegan_edge.runtime import ArgumentError, Generator  # noqa: E402
from stylegan_edge.runtime.backends import (  # noqa: E402
    BackendUnavailable,
    BaseBackend,
    backend_names,
    open_backend,
    register_backend,
    unregister_backend,
)
from stylegan_edge.runtime.backends.onnxruntime import open_onnxruntime  # noqa: E402


class ToyBackend(BaseBackend):
    """onnxruntime underneath, the synthesis output scaled by `gain`, and a count of its calls."""

    name = "toy"

    def __init__(self, inner: BaseBackend, gain: float, fail_runs: bool = False) -> None:
        self.inner, self.gain, self.fail_runs = inner, gain, fail_runs
        self.input_names, self.output_names = inner.input_names, inner.output_names
        self.calls = 0

    def run(self, feeds):
        self.calls += 1
        if self.fail_runs:
            raise RuntimeError("toy engine fell over")
        out = self.inner.run(feeds)
        return {k: v * self.gain if k == "image" else v for k, v in out.items()}

    def close(self) -> None:
        self.inner.close()


def open_toy(bundle, model, precision="fp32", gain=1.0):
    return ToyBackend(open_onnxruntime(bundle, model, precision, device="cpu"), gain)


def open_crashing_toy(bundle, model, precision="fp32"):
    return ToyBackend(open_onnxruntime(bundle, model, precision, device="cpu"), 1.0, fail_runs=True)


def open_broken_toy(bundle, model, precision="fp32"):
    raise BackendUnavailable("toy-broken needs a device this machine lacks")


@pytest.fixture
def toys():
    register_backend("toy", open_toy, options={"gain"})
    register_backend("toy-broken", open_broken_toy)
    register_backend("toy-crash", open_crashing_toy)
    yield
    for name in ("toy", "toy-broken", "toy-crash"):
        unregister_backend(name)


@pytest.fixture
def fast_matmul(monkeypatch):
    # The machine's matmul rate takes seconds to measure and is not what these tests are about.
    import stylegan_edge.runtime.benchmark as benchmark

    monkeypatch.setattr(benchmark, "numpy_matmul_gflops", lambda: 50.0)


def _bench(*args: str):
    return CliRunner().invoke(app, ["bench", *map(str, args), "--iters", "2", "--warmup", "1", "--min-seconds", "0",
                                    "--batch", "1", "--no-overhead", "--no-tune-allocator"])


def test_a_registered_backend_runs_the_generator_and_takes_its_option(toys, tiny_bundle):
    seeds = [int(s) for s in np.random.default_rng().integers(0, 2**31, size=2)]
    with Generator(tiny_bundle, backend="onnxruntime", device="cpu") as ref, \
            Generator(tiny_bundle, backend="toy") as toy, Generator(tiny_bundle, backend="toy", gain=0.0) as dark:
        assert toy.describe()["backend"] == "toy"
        assert np.array_equal(toy.generate(seeds=seeds, psi=0.7), ref.generate(seeds=seeds, psi=0.7))
        assert toy.synthesis.calls == 1 and toy.mapping.calls == 1
        flat = dark.generate(seeds=seeds, psi=0.7)  # gain 0: every pixel is the image range's middle
        assert flat.min() == flat.max() and not np.array_equal(flat, ref.generate(seeds=seeds, psi=0.7))


def test_an_unknown_option_of_a_registered_backend_is_named(toys, tiny_bundle):
    with pytest.raises(ArgumentError, match="unknown Generator option 'colour'.*gain"):
        Generator(tiny_bundle, backend="toy", colour="blue")


def test_a_name_cannot_be_registered_twice_and_unregistered_names_are_unknown(toys, tiny_bundle):
    with pytest.raises(ValueError, match="'toy' is already registered"):
        register_backend("toy", open_toy)
    unregister_backend("toy")
    assert "toy" not in backend_names()
    from stylegan_edge.runtime.bundle import open_bundle

    with pytest.raises(BackendUnavailable, match="unknown backend 'toy'"):
        open_backend("toy", open_bundle(tiny_bundle), "mapping")


def test_auto_still_picks_onnxruntime_on_a_machine_without_tensorrt(tiny_bundle):
    with Generator(tiny_bundle) as g:
        assert g.describe()["backend"] == "onnxruntime"


def test_bench_times_a_registered_backend_and_shows_failures_as_rows(toys, fast_matmul, tiny_bundle, tmp_path):
    out = tmp_path / "bench.json"
    result = _bench(tiny_bundle, "--backends", "toy,toy-broken,toy-crash,onnxruntime", "--json", out)
    assert result.exit_code == 0, result.output
    assert "| toy | fp32 | 1 |" in result.output and "| onnxruntime | fp32 | 1 |" in result.output
    assert "error: toy-broken needs a device this machine lacks |" in result.output
    assert "error: toy engine fell over |" in result.output
    rows = {r["backend"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["toy"]["median_ms"] > 0 and "error" not in rows["toy"]
    assert rows["toy-broken"]["median_ms"] is None and "lacks" in rows["toy-broken"]["error"]
    assert rows["toy-crash"]["median_ms"] is None and "fell over" in rows["toy-crash"]["error"]


def test_bench_removes_its_temporary_bundle_on_success_and_on_failure(toys, fast_matmul, tiny_checkpoint, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where TemporaryDirectory creates its folders
    result = _bench(tiny_checkpoint, "--backends", "toy")
    assert result.exit_code == 0, result.output
    assert "exporting" in result.output and "| toy | fp32 | 1 |" in result.output
    assert not list(tmp_path.glob("stylegan-bench-*"))

    import stylegan_edge.runtime.benchmark as benchmark

    def broken_overhead(*args, **kwargs):
        raise RuntimeError("overhead measurement broke")

    monkeypatch.setattr(benchmark, "runtime_overhead", broken_overhead)
    result = CliRunner().invoke(app, ["bench", str(tiny_checkpoint), "--backends", "toy", "--iters", "1", "--warmup",
                                      "0", "--min-seconds", "0", "--batch", "1", "--no-tune-allocator"])
    assert isinstance(result.exception, RuntimeError) and "exporting" in result.output
    assert not list(tmp_path.glob("stylegan-bench-*"))


def test_looking_up_backends_imports_no_torch_tensorrt_or_pycuda():
    code = (
        "import sys; import stylegan_edge.runtime\n"
        "assert not [m for m in sys.modules if m.startswith('stylegan_edge.runtime.backends.')"
        " and m.rsplit('.', 1)[1] in ('onnxruntime', 'tensorrt', 'torch')]\n"
        "from stylegan_edge.runtime.backends import backend_names, available_backends\n"
        "assert {'onnxruntime', 'tensorrt', 'torch'} <= set(backend_names()), backend_names()\n"
        "available_backends()\n"
        "print(sorted(m for m in ('torch', 'tensorrt', 'pycuda') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
