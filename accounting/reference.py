"""Plain-Python reference of the kernels' rules, written for reading, not speed.

Each function states the rule the way a person checks it by hand: sort the readings, walk them
one by one, spread each counted difference over the 15-minute buckets it spans, and sum by point
and by Beijing-time period. The tests require the numba kernels to agree with these functions on
random inputs (rollovers, also after long gaps, resets, glitches, gaps, out-of-order readings,
duplicate times). The rules themselves are described in :mod:`.kernels`; a wrap beyond 1/16 of
the register with no configured rate is judged by the counter's observed rate (``observed_rate``
below: the largest clean 15-minute bucket of the day before, and 4x that rate over the gap).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from .flags import (
    FLAG_BACKWARDS,
    FLAG_PARTIAL,
    FLAG_RESET,
    FLAG_ROLLOVER,
    FLAG_SPIKE,
    FULL_COVERAGE,
    RATE_WINDOW_BUCKETS,
    ROLLOVER_MAX_SHARE,
    ROLLOVER_RATE_MULTIPLE,
)

BEIJING = ZoneInfo("Asia/Shanghai")


def counter_buckets(
    readings: list[tuple[float, float]],
    rollover: float | None = None,
    max_rate: float | None = None,
    bucket_seconds: float = 900.0,
    prior: list[float] | None = None,
) -> dict[int, list]:
    """{bucket start: [quantity, flags, coverage, readings]} from one point's (time, value) readings.

    ``prior``: when the readings are a window of a longer history, the quantities of the clean
    buckets (0 for others) up to and including the first reading's bucket, as the whole history
    has them (the last element is that bucket): they stand in for those buckets when the observed
    rate of a wrap is taken (see :mod:`.kernels`)."""
    # by time, and at equal times by value, whatever order the readings came in
    series = sorted((float(t), float(v)) for t, v in readings if math.isfinite(v))
    out: dict[int, list] = {}
    if not series:
        return out
    size = float(bucket_seconds)
    first = math.floor(series[0][0] / size)
    last = math.floor(series[-1][0] / size)
    for b in range(first, last + 1):
        out[b] = [0.0, 0, 0.0, 0]
    for t, _ in series:
        out[math.floor(t / size)][3] += 1

    def bucket(t: float) -> list:
        return out[math.floor(t / size)]

    def spread(t0: float, t1: float, d: float, flag: int) -> None:
        if t1 <= t0:
            cell = bucket(t0)
            cell[0] += d
            cell[1] |= flag
            return
        b = math.floor(t0 / size)
        while b * size < t1:
            lo, hi = max(t0, b * size), min(t1, (b + 1) * size)
            cell = out[b]
            cell[0] += d * ((hi - lo) / (t1 - t0))
            cell[2] += hi - lo  # seconds covered; the share is taken at the end
            cell[1] |= flag
            b += 1

    prior = list(prior or [])
    own_from = first + 1 if prior else first  # the first bucket's own sum lacks what came before a window

    def observed_rate(base_b: int) -> float:
        """The counter's own rate when a drop from bucket ``base_b`` is judged: the largest
        quantity of a clean bucket (complete, neither ROLLOVER nor RESET) among the
        RATE_WINDOW_BUCKETS buckets before it, per second (0 when there is none)."""
        best = 0.0
        for k in range(base_b - RATE_WINDOW_BUCKETS, base_b):
            if prior and first - len(prior) < k <= first:
                best = max(best, prior[k - first - 1])
            elif k >= own_from:
                qty, flags, cov, _ = out[k]
                if not flags & (FLAG_ROLLOVER | FLAG_RESET) and cov / size >= FULL_COVERAGE:
                    best = max(best, qty)
        return best / size

    # no limit when none is given (or it is not a finite number >= 0), as in intervals._limits
    rate_known = max_rate is not None and math.isfinite(max_rate) and max_rate >= 0
    limit_rate = max_rate if rate_known else math.inf
    wrap = rollover or 0.0
    base_t, base_v = series[0]
    for i in range(1, len(series)):
        t, v = series[i]
        nxt = series[i + 1][1] if i + 1 < len(series) else None
        d = v - base_v
        plausible = limit_rate * max(t - base_t, size)
        falls_back = nxt is not None and base_v <= nxt < v
        if d >= 0:
            if d > plausible:  # a spike by the rate: skipped if it falls back, else the new level is not counted
                bucket(t)[1] |= FLAG_SPIKE
                if not falls_back:
                    base_t, base_v = t, v
            elif falls_back and nxt - base_v < v - nxt:  # a lone jump the next reading takes back
                bucket(t)[1] |= FLAG_SPIKE
            else:
                spread(base_t, t, d, 0)
                base_t, base_v = t, v
            continue
        persists = nxt is not None and v <= nxt < base_v
        if not persists:
            bucket(t)[1] |= FLAG_BACKWARDS
            continue
        wrapped = v + wrap - base_v
        # a wrap is believed only when the advance it implies is plausible: by the configured rate
        # where there is one (and at most half the register); else always up to a small share of the
        # register, and beyond it up to a few times the counter's own observed rate (and half the register)
        span = max(t - base_t, size)
        if rate_known:
            wrap_ok = wrap > 0 and 0 <= wrapped <= min(0.5 * wrap, plausible)
        elif wrap > 0 and 0 <= wrapped <= ROLLOVER_MAX_SHARE * wrap:
            wrap_ok = True
        else:
            observed = observed_rate(math.floor(base_t / size))
            wrap_ok = wrap > 0 and 0 <= wrapped <= min(0.5 * wrap, ROLLOVER_RATE_MULTIPLE * observed * span)
        if wrap_ok:
            spread(base_t, t, wrapped, FLAG_ROLLOVER)
        for b in range(math.floor(base_t / size), math.floor(t / size) + 1):  # the step's buckets, either way
            out[b][1] |= FLAG_ROLLOVER if wrap_ok else FLAG_RESET
        base_t, base_v = t, v
    for cell in out.values():
        cell[2] /= size
        if cell[2] < FULL_COVERAGE:
            cell[1] |= FLAG_PARTIAL
    return {b * int(size): cell for b, cell in out.items()}


def period_label(epoch_seconds: float, period: str) -> str:
    """The Beijing-time period a moment falls in, computed with the tz database."""
    local = datetime.fromtimestamp(epoch_seconds, tz=UTC).astimezone(BEIJING)
    if period == "15min":
        local = local - timedelta(minutes=local.minute % 15, seconds=local.second, microseconds=local.microsecond)
        return local.strftime("%Y-%m-%dT%H:%M")
    fmt = {"hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}[period]
    return local.strftime(fmt)


def rollup(
    points: list[int],
    times: list[float],
    values: list[float],
    rollover: dict[int, float | None],
    max_rate: dict[int, float | None],
    period: str = "day",
    bucket_seconds: float = 900.0,
) -> dict[tuple[int, str], list]:
    """{(point, period label): [quantity, coverage, flags, buckets with a reading]} from readings in any order."""
    by_point: dict[int, list] = defaultdict(list)
    for p, t, v in zip(points, times, values, strict=True):
        by_point[p].append((t, v))
    out: dict[tuple[int, str], list] = {}
    for p, readings in by_point.items():
        buckets = counter_buckets(readings, rollover.get(p), max_rate.get(p), bucket_seconds)
        for start, (qty, flags, cov, count) in buckets.items():
            cell = out.setdefault((p, period_label(start, period)), [0.0, 0.0, 0, 0])
            cell[0] += qty
            cell[1] += cov
            cell[2] |= flags
            cell[3] += count > 0
    return out
