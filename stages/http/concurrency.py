"""How many teacher requests to keep in flight when the endpoint's capacity is unknown and changes.

An endpoint behind one URL (autoscaling HF Endpoint replicas, vLLM data parallel, TGI behind a load
balancer) says it is full in one of two ways: it rejects (429/503, or a timeout) or it queues (latency
climbs). The limit follows both, TCP-style:
- additive-increase, multiplicative-decrease: on a rejection the limit drops by `decrease` (once per
  round trip, however many requests were rejected in it);
- a latency guard (as in TCP Vegas and Netflix's gradient limiter): when the smoothed latency exceeds
  `latency_tolerance` x its floor, the limit drops too, before the server starts rejecting;
- probing that learns: the limit rises only while every permit is in use, one step at a time; a probe
  that survives doubles the next step (so capacity that grows from 4 to 16 replicas is found in a few
  round trips), a probe that is rejected halves the probing rate (so a full endpoint sees a rejection
  every couple of seconds, not every round trip).
Why not a pure gradient method: a server that rejects instead of queueing (like the capacity benchmark's
and many gateways) gives no latency signal at all, so rejections must count too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class AdaptiveLimit:
    minimum: int
    maximum: int
    start: int
    decrease: float = 0.9  # multiplicative decrease on a rejection or a latency climb
    latency_tolerance: float = 2.0  # smoothed latency / floor latency that counts as queueing
    probe_s: float = 0.25  # shortest time between two upward probes
    max_probe_s: float = 2.0  # longest (after repeated rejected probes)
    clock: Callable[[], float] = time.monotonic
    limit: float = field(init=False)
    history: list[tuple[float, int]] = field(init=False)  # (seconds since start, limit) at each change

    def __post_init__(self):
        if not 1 <= self.minimum <= self.start <= self.maximum:
            raise ValueError(f"need 1 <= min ({self.minimum}) <= start ({self.start}) <= max ({self.maximum})")
        self.limit = float(self.start)
        self._started = self.clock()
        self.history = [(0.0, self.start)]
        self._floor = self._smoothed = None
        self._step, self._interval = 1.0, self.probe_s
        self._last_probe = self._last_cut = self._started
        self._ceiling = self.maximum + 1  # the lowest limit the endpoint has rejected lately
        self.rejections = 0

    @property
    def fixed(self) -> bool:
        return self.minimum == self.maximum

    def _set(self, value: float) -> None:
        value = min(float(self.maximum), max(float(self.minimum), value))
        if int(value) != int(self.limit):
            self.history.append((round(self.clock() - self._started, 3), int(value)))
        self.limit = value

    def _round_trip(self) -> float:
        return self._smoothed or self.probe_s

    def on_success(self, latency_s: float, in_flight: int) -> None:
        """A request answered; `in_flight` counts it (whether every permit was in use when it finished)."""
        self._floor = latency_s if self._floor is None else min(self._floor, latency_s)
        self._smoothed = latency_s if self._smoothed is None else 0.9 * self._smoothed + 0.1 * latency_s
        if self.fixed:
            return
        now = self.clock()
        if self._smoothed > self.latency_tolerance * self._floor:
            if now - self._last_cut >= self._round_trip():
                self._last_cut = now
                self._set(self.limit * self.decrease)
            return
        held = self._last_cut < self._last_probe  # no rejection since the last probe
        if held and int(self.limit) >= self._ceiling and now - self._last_probe >= 2 * self._round_trip():
            # a limit the endpoint rejected before now holds for two round trips: capacity grew, probe eagerly
            self._ceiling, self._interval = self.maximum + 1, self.probe_s
        if in_flight >= int(self.limit) and now - self._last_probe >= self._interval:
            if held and int(self.limit) + 1 < self._ceiling:  # still below the known ceiling: grow faster
                self._step, self._interval = min(self._step * 2, 64.0), self.probe_s
            else:
                self._step = 1.0
            self._last_probe = now
            self._set(min(self.limit + self._step, max(self.limit + 1, self._ceiling - 1.0)))

    def on_rejection(self) -> None:
        """The endpoint said it is full (429/503) or did not answer in time."""
        self.rejections += 1
        if self.fixed:
            return
        now = self.clock()
        if now - self._last_cut < self._round_trip():
            return  # one cut per round trip, however many requests that round trip rejected
        self._last_cut = now
        self._ceiling = min(self._ceiling, int(self.limit))
        self._step = 1.0
        self._interval = min(self.max_probe_s, self._interval * 2)
        self._set(self.limit - max(1.0, self.limit * (1 - self.decrease)))  # at least one fewer

    def summary(self) -> dict:
        """A few figures for the metrics: limit range, time-weighted mean, changes and rejections."""
        end = round(self.clock() - self._started, 3)
        points = self.history + [(end, int(self.limit))]
        spans = [(b[0] - a[0], a[1]) for a, b in zip(points, points[1:])]
        total = sum(d for d, _ in spans)
        mean = sum(d * v for d, v in spans) / total if total else float(self.start)
        return {
            "min": min(v for _, v in self.history),
            "max": max(v for _, v in self.history),
            "mean": round(mean, 2),
            "final": int(self.limit),
            "changes": len(self.history) - 1,
            "rejections": self.rejections,
        }


class Gate:
    """At most `limit.limit` requests in flight; the limit may change while requests wait."""

    def __init__(self, limit: AdaptiveLimit):
        self.limit, self.in_flight = limit, 0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> Gate:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < int(self.limit.limit))
            self.in_flight += 1
        return self

    async def __aexit__(self, *exc) -> None:
        async with self._changed:
            self.in_flight -= 1
            # wake as many waiters as there are free permits, not all of them: each wakes, re-checks and mostly
            # sleeps again, which at hundreds of waiters cost more than the requests themselves
            self._changed.notify(max(1, int(self.limit.limit) - self.in_flight))
