"""Plain-Python reference of the kernels' rules, written for reading, not speed.

Each function states the rule the way a person checks it by hand: sort the readings, walk them
one by one, spread each counted difference over the 15-minute buckets it spans, and sum by point
and by Beijing-time period. The tests require the numba kernels to agree with these functions on
random inputs (rollovers, resets, glitches, gaps, out-of-order readings, duplicate times). The
rules themselves are described in :mod:`.kernels`.
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
    ROLLOVER_MAX_SHARE,
)

BEIJING = ZoneInfo("Asia/Shanghai")


def counter_buckets(
    readings: list[tuple[float, float]],
    rollover: float | None = None,
    max_rate: float | None = None,
    bucket_seconds: float = 900.0,
) -> dict[int, list]:
    """{bucket start: [quantity, flags, coverage, readings]} from one point's (time, value) readings."""
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
        # a wrap is believed only when the advance it implies is plausible: by the rate where one is
        # known (and at most half the register), else a small share of the register
        wrap_limit = min(0.5 * wrap, plausible) if rate_known else ROLLOVER_MAX_SHARE * wrap
        if wrap > 0 and 0 <= wrapped <= wrap_limit:
            spread(base_t, t, wrapped, FLAG_ROLLOVER)
        else:
            bucket(t)[1] |= FLAG_RESET
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
