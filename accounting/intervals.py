"""Counter readings to consumption per 15-minute bucket (the collector's entry point).

The consumption between two consecutive good readings of a cumulative register is their
difference, spread over the buckets the pair spans in proportion to time. Rollover at the
register width is unwrapped when the advance it implies is plausible (by the configured rate, or
else by the counter's own observed rate); a backwards step, a reset, a lone jump taken back by the
next reading and a step above the plausible rate are flagged and never silently rebased, so
neither a transient zero, nor a garbage read, nor a replaced meter becomes a register-sized spike.
The rules are in :mod:`.kernels`; :mod:`.reference` is their plain-Python twin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import kernels
from .flags import FLAG_BACKWARDS, FLAG_PARTIAL, FLAG_RESET, FLAG_ROLLOVER, FLAG_SPIKE

BUCKET_SECONDS = 900

__all__ = [
    "BUCKET_SECONDS",
    "FLAG_BACKWARDS",
    "FLAG_PARTIAL",
    "FLAG_RESET",
    "FLAG_ROLLOVER",
    "FLAG_SPIKE",
    "BatchIntervals",
    "Intervals",
    "batch_intervals",
    "counter_intervals",
]


@dataclass(frozen=True)
class Intervals:
    bucket: np.ndarray  # int64 epoch seconds of each bucket start
    quantity: np.ndarray  # float64, in the counter's unit
    flags: np.ndarray  # int32 bit set of FLAG_*
    coverage: np.ndarray  # float64 share of the bucket spanned by counted reading pairs
    readings: np.ndarray | None = None  # int32 finite readings whose time falls in the bucket


@dataclass(frozen=True)
class BatchIntervals(Intervals):
    point: np.ndarray = None  # int32 point index of each bucket row


def _limits(rollover: float | None, max_rate: float | None) -> tuple[float, float]:
    wrap = float(rollover) if rollover and math.isfinite(rollover) and rollover > 0 else 0.0
    rate = float(max_rate) if max_rate is not None and math.isfinite(max_rate) and max_rate >= 0 else math.inf
    return wrap, rate


def counter_intervals(
    ts: np.ndarray,
    values: np.ndarray,
    rollover: float | None = None,
    bucket_seconds: int = BUCKET_SECONDS,
    *,
    max_rate: float | None = None,
    prior: np.ndarray | None = None,
) -> Intervals:
    """Consumption per bucket from one counter's readings (ts in epoch seconds, any order).

    ``rollover``: the value at which the register wraps to zero (the site config's
    ``Point.rollover``), None if it cannot. ``max_rate``: the most the counter can plausibly
    advance per second (e.g. rated power in kWh/s with a margin; the site file's ``max_rate`` is
    per hour: ``Point.max_rate_per_second``); a step above ``max_rate * max(dt, bucket_seconds)``
    is flagged FLAG_SPIKE and not counted, and a wrap beyond it is a reset. None: no limit (a lone
    jump is still skipped, and a wrap is believed up to ``ROLLOVER_MAX_SHARE`` of the register, and
    beyond it up to half the register when the counter's own observed rate makes it plausible).

    ``prior``: only when the readings are a window of a longer history (the collector's interval
    builder): the quantities of the clean buckets (no ROLLOVER, RESET or PARTIAL flag; 0 for the
    others) of the buckets up to and including the bucket of the first finite reading, oldest
    first, as computed over the whole history; they give the observed rate its history (see
    :mod:`.kernels`). None: the readings are the whole history.
    """
    ts = np.asarray(ts, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if ts.shape != values.shape or ts.ndim != 1:
        raise ValueError("ts and values must be one-dimensional arrays of the same length")
    if not kernels.is_sorted(np.zeros(len(ts), dtype=np.int8), ts, values):
        order = np.lexsort((values, ts))
        ts, values = ts[order], values[order]
    if np.isfinite(values).sum() < 2:
        empty = np.empty(0)
        return Intervals(empty.astype(np.int64), empty, empty.astype(np.int32), empty, empty.astype(np.int32))
    wrap, rate = _limits(rollover, max_rate)
    prior = np.empty(0) if prior is None else np.ascontiguousarray(prior, dtype=np.float64)
    if prior.ndim != 1 or not np.isfinite(prior).all() or (prior < 0).any():
        raise ValueError("prior must be a one-dimensional array of finite quantities >= 0")
    return Intervals(*kernels.series_intervals(ts, values, wrap, rate, float(bucket_seconds), prior))


def batch_intervals(
    point: np.ndarray,
    ts: np.ndarray,
    values: np.ndarray,
    rollover: np.ndarray | None = None,
    max_rate: np.ndarray | None = None,
    bucket_seconds: int = BUCKET_SECONDS,
) -> BatchIntervals:
    """Buckets of many counters at once; ``point`` holds indices 0..P-1, per-point limits by index.

    Readings may come in any order (they are sorted by point and time first). ``rollover`` and
    ``max_rate`` arrays use 0 / inf (or NaN) for "none".
    """
    point = np.asarray(point)
    npts = int(point.max()) + 1 if len(point) else 0  # rows for every index up to the largest
    ts, values, point, offsets = sort_readings(point, np.asarray(ts), np.asarray(values, dtype=np.float64), npts)
    wrap, rate = point_limits(npts, rollover, max_rate)
    p, bucket, qty, flags, cov, cnt = kernels.batch_intervals(ts, values, offsets, wrap, rate, float(bucket_seconds))
    return BatchIntervals(bucket, qty, flags, cov, cnt, p)


def point_limits(npts: int, rollover: np.ndarray | None, max_rate: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-point rollover (0 = none) and max rate (inf = none) arrays for the kernels."""
    wrap = np.zeros(npts) if rollover is None else np.asarray(rollover, dtype=np.float64).copy()
    wrap[~np.isfinite(wrap) | (wrap < 0)] = 0.0
    rate = np.full(npts, np.inf) if max_rate is None else np.asarray(max_rate, dtype=np.float64).copy()
    rate[~np.isfinite(rate) | (rate < 0)] = np.inf
    if wrap.shape != (npts,) or rate.shape != (npts,):
        raise ValueError(f"rollover and max_rate need one value per point ({npts})")
    return wrap, rate


def sort_readings(
    point: np.ndarray, ts: np.ndarray, values: np.ndarray, npts: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Readings ordered by point, time and value, and the per-point offsets."""
    if not (point.shape == ts.shape == values.shape) or point.ndim != 1:
        raise ValueError("point, ts and values must be one-dimensional arrays of the same length")
    if point.dtype not in (np.int32, np.int64):
        point = point.astype(np.int64)
    if not kernels.is_sorted(point, ts, values):
        order = np.lexsort((values, ts, point))
        point, ts, values = point[order], ts[order], values[order]
    if len(point) and (point[0] < 0 or point[-1] >= npts):
        raise ValueError(f"point indices must be in [0, {npts})")
    # query in the array's own dtype: a mismatch makes numpy cast (copy) the whole array
    offsets = np.searchsorted(point, np.arange(npts + 1, dtype=point.dtype)).astype(np.int64)
    return ts, values, point, offsets
