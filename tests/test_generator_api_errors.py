"""The Python API refuses bad arguments in one line naming them (issue 16, causes 8 and 5): a
closed Generator (also closed from another thread), out-of-range cutoff, unknown options,
batch_size 0, wrongly shaped noise, and NaN/inf anywhere a number goes in."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from stylegan_edge.cli.common import USER_ERRORS
from stylegan_edge.cli.main import app
from stylegan_edge.runtime import BundleError, Generator
from stylegan_edge.runtime.generator import ArgumentError, GeneratorClosed
from stylegan_edge.runtime.latents import SeedError, seeds_to_z

runner = CliRunner()


@pytest.fixture(scope="module")
def sealed(sealed_tiny_bundle) -> Path:
    return sealed_tiny_bundle


@pytest.fixture(scope="module")
def g(sealed) -> Generator:
    return Generator(sealed, backend="onnxruntime", device="cpu")


def test_the_api_errors_are_user_errors_the_cli_shows_in_one_line():
    assert issubclass(ArgumentError, BundleError) and issubclass(ArgumentError, ValueError)
    assert issubclass(ArgumentError, USER_ERRORS) and issubclass(GeneratorClosed, USER_ERRORS)


def test_every_call_after_close_says_the_generator_is_closed(sealed):
    g = Generator(sealed, backend="onnxruntime", device="cpu")
    ws = g.styles(seeds=[1])
    g.close()
    g.close()  # twice is fine
    assert g.closed
    for call in (lambda: g.generate(seeds=[1]), lambda: g.map(g.z_from_seeds([1])), lambda: g.synthesize(ws)):
        with pytest.raises(GeneratorClosed, match="^Generator is closed$"):
            call()


def test_close_from_another_thread_during_generate_ends_it_with_one_clear_error(sealed):
    g = Generator(sealed, backend="onnxruntime", device="cpu")
    closed = threading.Event()
    done = []

    def progress(n: int) -> None:
        # Between two batches of the generating thread, another thread closes the generator.
        if not done:
            t = threading.Thread(target=lambda: (g.close(), closed.set()))
            t.start()
            assert closed.wait(10)
        done.append(n)

    with pytest.raises(GeneratorClosed, match="Generator is closed"):
        g.generate(seeds=list(range(6)), batch_size=1, progress=progress)
    assert done == [1]  # the first batch finished, the second was refused


def test_close_waits_for_a_call_in_flight_in_another_thread(sealed):
    g = Generator(sealed, backend="onnxruntime", device="cpu")
    reference = g.generate(seeds=[3, 4])
    started, release = threading.Event(), threading.Event()
    run = g.synthesis.run_with_noise
    results = []

    def slow_run(feeds, noise):
        started.set()
        release.wait(10)
        return run(feeds, noise)

    g.synthesis.run_with_noise = slow_run
    worker = threading.Thread(target=lambda: results.append(g.generate(seeds=[3, 4])))
    worker.start()
    assert started.wait(10)
    closer = threading.Thread(target=g.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # close() waits: freeing the session under the call could crash
    release.set()
    worker.join(10)
    closer.join(10)
    assert not closer.is_alive() and np.array_equal(results[0], reference)
    with pytest.raises(GeneratorClosed):
        g.generate(seeds=[3])


@pytest.mark.parametrize("cutoff", [-1, 99, 2.5, True])
def test_an_out_of_range_cutoff_is_refused(g, cutoff):
    with pytest.raises(ArgumentError, match="cutoff"):
        g.generate(seeds=[1], cutoff=cutoff)


def test_a_cutoff_of_all_layers_is_accepted_and_differs_from_a_partial_one(g):
    full = g.generate(seeds=[1], psi=0.3, cutoff=g.num_layers)
    part = g.generate(seeds=[1], psi=0.3, cutoff=2)
    assert full.shape == part.shape and not np.array_equal(full, part)


def test_an_unknown_generator_option_is_named(sealed):
    with pytest.raises(ArgumentError, match="unknown Generator option 'thredas'"):
        Generator(sealed, backend="onnxruntime", thredas=4)


@pytest.mark.parametrize("batch_size", [0, -3, 1.5])
def test_a_batch_size_below_one_is_refused(g, batch_size):
    with pytest.raises(ArgumentError, match="batch_size"):
        g.generate(seeds=[1, 2], batch_size=batch_size)


def test_a_wrongly_shaped_noise_array_names_its_input(g):
    rng = np.random.default_rng()
    res = g.meta.layer_resolutions
    noise = [rng.standard_normal((1, 1, r, r)).astype(np.float32) for r in res]
    noise[3] = rng.standard_normal((1, 1, res[3] + 1, res[3] + 1)).astype(np.float32)
    ws = g.styles(seeds=[1, 2])
    with pytest.raises(ArgumentError, match=rf"^noise_03: expected \[2,1,{res[3]},{res[3]}\].*got \[1, 1, "):
        g.synthesize(ws, noise)
    with pytest.raises(ArgumentError, match=f"expected {len(res)} noise arrays, got 2"):
        g.synthesize(ws, noise[:2])


def test_a_noise_mode_that_does_not_exist_is_refused(g):
    with pytest.raises(ArgumentError, match="noise must be one of const, random, none"):
        g.generate(seeds=[1], noise="bogus")


@pytest.mark.parametrize("psi", [float("nan"), float("inf"), "0.5"])
def test_a_non_finite_psi_is_refused(g, psi):
    with pytest.raises(ArgumentError, match="psi must be a finite number"):
        g.generate(seeds=[1], psi=psi)


def test_nan_or_inf_in_any_input_array_names_the_argument(g):
    rng = np.random.default_rng()
    z = rng.standard_normal((2, g.z_dim)).astype(np.float32)
    ws = g.styles(z=z)
    bad_z = z.copy()
    bad_z[1, 3] = np.nan
    bad_ws = ws.copy()
    bad_ws[0, 2, 1] = np.inf
    noise = [rng.standard_normal((1, 1, r, r)).astype(np.float32) for r in g.meta.layer_resolutions]
    noise[5][0, 0, 1, 1] = -np.inf
    cases = [
        ("z", lambda: g.generate(z=bad_z)),
        ("z", lambda: g.map(bad_z)),
        ("ws", lambda: g.synthesize(bad_ws)),
        ("ws", lambda: g.truncate(bad_ws, psi=0.5)),
        ("w", lambda: g.broadcast(bad_ws[:, 2])),
        ("ws_src", lambda: g.mix(ws, bad_ws, "coarse")),
        ("noise_05", lambda: g.synthesize(ws, noise)),
    ]
    for name, call in cases:
        with pytest.raises(ArgumentError, match=f"^{name} holds NaN or inf"):
            call()


def test_seeds_outside_32_bits_are_refused():
    with pytest.raises(SeedError, match="seeds are integers 0-4294967295"):
        seeds_to_z([2**32], 8)
    with pytest.raises(SeedError, match="seeds are integers"):
        seeds_to_z([-1], 8)


@pytest.mark.parametrize("args, fragment", [
    (["--psi", "nan"], "psi must be a finite number"),
    # The CLI's own option checks answer first, naming the option as typed.
    (["--cutoff", "-1"], "--cutoff must be >= 0"),
    (["--batch", "0"], "--batch must be in [1, 4096]"),
    (["--seeds", "4294967296"], "seeds must be in [0, 4294967295]"),
    (["--noise", "bogus"], "noise must be one of"),
])
def test_bad_generate_options_are_one_line(sealed, tmp_path, args, fragment):
    out = tmp_path / "o"
    result = runner.invoke(app, ["generate", str(sealed), "--seeds", "0-1", "--out", str(out), *args])
    # tqdm redraws its bar with carriage returns; what a terminal keeps is the text after the last.
    lines = [line.rsplit("\r", 1)[-1].strip() for line in result.stderr.splitlines()]
    lines = [line for line in lines if line and not line.startswith("generating:")]
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.output
    assert not out.exists()
