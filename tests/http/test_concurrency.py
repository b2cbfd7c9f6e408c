"""The adaptive limit on a simulated clock: it finds capacity, backs off on rejections and on queueing."""

import pytest

from stages.http.concurrency import AdaptiveLimit


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def simulate(limit: AdaptiveLimit, clock: Clock, capacity, seconds: float, latency=0.05) -> int:
    """A server that answers `capacity(t)` requests per round trip and rejects the rest; returns rejections."""
    rejected = 0
    while clock.now < seconds:
        clock.now += latency
        asked = int(limit.limit)
        room = capacity(clock.now)
        for _ in range(min(asked, room)):
            limit.on_success(latency, in_flight=asked)
        for _ in range(max(0, asked - room)):
            limit.on_rejection()
            rejected += 1
    return rejected


def test_finds_capacity_that_grows_and_backs_off_when_it_shrinks():
    clock = Clock()
    limit = AdaptiveLimit(minimum=1, maximum=64, start=4, clock=clock)
    capacity = lambda t: 4 if t < 20 else (16 if t < 30 else 8)  # noqa: E731
    rejected = simulate(limit, clock, capacity, 20)
    assert 4 <= limit.limit <= 5 and rejected <= 15, (limit.limit, rejected)  # probes rarely at a full endpoint
    simulate(limit, clock, capacity, 23)
    assert limit.limit >= 14, limit.history[-5:]  # 4 -> 16 replicas found within a few seconds
    simulate(limit, clock, capacity, 40)
    assert 7 <= limit.limit <= 9
    summary = limit.summary()
    assert summary["max"] >= 16 and summary["min"] == 4 and summary["changes"] == len(limit.history) - 1


def test_queueing_latency_cuts_the_limit_before_any_rejection():
    clock = Clock()
    limit = AdaptiveLimit(minimum=2, maximum=64, start=32, clock=clock)
    for _ in range(20):
        clock.now += 0.05
        limit.on_success(0.05, in_flight=32)
    for _ in range(100):
        clock.now += 0.3
        limit.on_success(0.3, in_flight=int(limit.limit))  # latency six times its floor: the server queues
    assert limit.limit < 16 and limit.rejections == 0


def test_a_fixed_limit_never_moves_and_bad_ranges_are_refused():
    clock = Clock()
    limit = AdaptiveLimit(minimum=8, maximum=8, start=8, clock=clock)
    simulate(limit, clock, lambda t: 4, 5)
    assert limit.limit == 8 and limit.history == [(0.0, 8)] and limit.rejections > 0
    with pytest.raises(ValueError, match="min"):
        AdaptiveLimit(minimum=4, maximum=2, start=3)
