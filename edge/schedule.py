"""Timing for the agent: wall-clock-aligned schedules, back-off with jitter, stoppable waits."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random


def next_aligned(now: float, interval: float) -> float:
    """The next wall-clock instant that is a whole multiple of ``interval`` seconds."""
    return (math.floor(now / interval) + 1) * interval


class Backoff:
    """Exponential back-off with jitter, so a fleet of gateways does not reconnect in step.

    The step doubles from ``initial`` up to ``maximum``; each delay is the current step times a
    random factor between 0.5 and 1.5, and never more than ``maximum``.
    """

    def __init__(self, initial: float = 1.0, maximum: float = 300.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._current = initial

    def next_delay(self) -> float:
        delay = min(self._current * random.uniform(0.5, 1.5), self.maximum)
        self._current = min(self._current * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._current = self.initial


async def wait_or_stop(stop: asyncio.Event, timeout: float) -> bool:
    """Sleep up to ``timeout`` seconds; return True at once if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, timeout))
    return stop.is_set()
