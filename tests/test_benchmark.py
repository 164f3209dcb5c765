"""The bench's timing harness."""

from __future__ import annotations

from stylegan_edge.runtime.benchmark import time_round_robin


def test_round_robin_takes_turns_and_times_every_function():
    order: list[str] = []
    fns = [lambda: order.append("a"), lambda: order.append("b")]
    times = time_round_robin(fns, warmup=1, iters=4, min_seconds=0.0, per_turn=2)
    assert [len(t) for t in times] == [4, 4] and all((t >= 0).all() for t in times)
    # warm-up once each, then turns of one untimed and two timed calls: a a a b b b a a a b b b
    assert "".join(order) == "ab" + "aaabbb" * 2


def test_the_machine_record_names_the_cpus_vector_instructions(monkeypatch, tmp_path):
    from stylegan_edge.runtime import benchmark

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(
        cpuinfo if str(path) == "/proc/cpuinfo" else path, *a, **k))
    assert benchmark.cpu_vector_flags() == ["avx", "avx2", "fma", "avx512f", "avx512_vnni"]
    assert benchmark.machine_info()["cpu_flags"] == ["avx", "avx2", "fma", "avx512f", "avx512_vnni"]
