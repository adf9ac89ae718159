"""Counter readings to consumption per 15-minute bucket.

The consumption between two consecutive good readings of a cumulative register is their
difference; it is spread over the buckets the pair spans in proportion to time. A counter
that wraps at its register width is unwrapped; a backwards step is flagged and skipped
without moving the baseline, so a transient zero never becomes a huge spike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BUCKET_SECONDS = 900

FLAG_ROLLOVER = 1
FLAG_BACKWARDS = 2
FLAG_RESET = 4
FLAG_SPIKE = 8
FLAG_PARTIAL = 16


@dataclass(frozen=True)
class Intervals:
    bucket: np.ndarray  # int64 epoch seconds of each bucket start
    quantity: np.ndarray  # float64, in the counter's unit
    flags: np.ndarray  # int32 bit set of FLAG_*
    coverage: np.ndarray  # float64 share of the bucket spanned by reading pairs


def counter_intervals(
    ts: np.ndarray, values: np.ndarray, rollover: float | None = None, bucket_seconds: int = BUCKET_SECONDS
) -> Intervals:
    """Consumption per bucket from readings sorted by time (ts in epoch seconds)."""
    ts = np.asarray(ts, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if len(ts) < 2:
        empty = np.empty(0)
        return Intervals(empty.astype(np.int64), empty, empty.astype(np.int32), empty)
    first = int(np.floor(ts[0] / bucket_seconds))
    last = int(np.floor(ts[-1] / bucket_seconds))
    n = last - first + 1
    qty = np.zeros(n)
    cov = np.zeros(n)
    flags = np.zeros(n, dtype=np.int32)
    base_t, base_v = ts[0], values[0]
    for i in range(1, len(ts)):
        t, v = ts[i], values[i]
        delta = v - base_v
        flag = 0
        if delta < 0:
            if rollover and base_v > rollover / 2 and v < rollover / 2:
                delta += rollover
                flag = FLAG_ROLLOVER
            else:
                # Skip the reading, keep the baseline: the next good reading counts from it.
                flags[int(np.floor(t / bucket_seconds)) - first] |= FLAG_BACKWARDS
                continue
        _spread(qty, cov, flags, first, bucket_seconds, base_t, t, delta, flag)
        base_t, base_v = t, v
    flags[cov < 0.999] |= FLAG_PARTIAL
    buckets = (np.arange(first, last + 1, dtype=np.int64)) * bucket_seconds
    return Intervals(buckets, qty, flags, cov)


def _spread(qty, cov, flags, first, size, t0, t1, delta, flag) -> None:
    if t1 <= t0:
        return
    b = int(np.floor(t0 / size))
    while b * size < t1:
        lo, hi = max(t0, b * size), min(t1, (b + 1) * size)
        share = (hi - lo) / (t1 - t0)
        qty[b - first] += delta * share
        cov[b - first] += (hi - lo) / size
        flags[b - first] |= flag
        b += 1
