"""Plausibility of cumulative counters, judged at the edge where the read happens.

A cumulative register never goes backwards, except when it wraps at its register width. A
counter that reads less than its previous reading is stored as it was read but flagged
``uncertain`` with a ``counter_backwards`` event: a transient 0 (a busy meter, a wrong
register), or a replaced meter that restarted from zero. Nothing is rebased: the accounting
core decides what the step means. A wrap of an unsigned register (the previous reading in the
top tenth of the range, the new one in the bottom tenth) is a ``counter_rollover``: the
reading is good and the event says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from carbonwatch.contracts.payload import EventKind, Quality
from carbonwatch.contracts.site import Kind, Point

ROLLOVER_BAND = 0.1  # fraction of the register range at each end that marks a wrap


@dataclass(frozen=True)
class CounterJudgement:
    quality: Quality
    event: EventKind | None = None
    previous: float | None = None


class CounterGuard:
    """Remembers each counter's last reading (in memory: the first reading after a start is good)."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def judge(self, point: Point, value: float) -> CounterJudgement:
        if point.kind is not Kind.COUNTER:
            return CounterJudgement(Quality.GOOD)
        previous = self._last.get(point.id)
        self._last[point.id] = value
        if previous is None or value >= previous:
            return CounterJudgement(Quality.GOOD)
        limit = point.rollover
        if limit is not None:
            band = ROLLOVER_BAND * limit
            low = point.offset
            if previous >= low + limit - band and value < low + band:
                return CounterJudgement(Quality.GOOD, EventKind.COUNTER_ROLLOVER, previous)
        return CounterJudgement(Quality.UNCERTAIN, EventKind.COUNTER_BACKWARDS, previous)
