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
