"""Reporting periods in Beijing time (Asia/Shanghai, UTC+8 with no daylight saving since 1991).

Readings and buckets are UTC epoch seconds; days, months and years for reporting and dual
control start at 00:00 Beijing time. A 15-minute bucket never straddles a Beijing hour, day,
month or year, so every bucket belongs to exactly one period. The tests check the fixed offset
against the tz database.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BEIJING_OFFSET_SECONDS = 8 * 3600
PERIODS = ("15min", "hour", "day", "month", "year")
_UNIT = {"15min": "m", "hour": "h", "day": "D", "month": "M", "year": "Y"}  # 15min: bucket starts are minutes


@dataclass(frozen=True)
class PeriodMap:
    """Maps bucket numbers (epoch // bucket_seconds) in [origin, origin + len(index)) to periods."""

    period: str
    origin: int  # first bucket number covered
    index: np.ndarray  # int32 period index per bucket (-1: outside the window)
    labels: list[str]  # period labels, e.g. "2025-01-01" for a day
    starts: np.ndarray  # int64 UTC epoch second at which each period starts
    buckets: np.ndarray  # int64 number of buckets in each period (full length, for completeness)
    years: np.ndarray  # int32 Beijing calendar year of each period (for the factor year)


def local_datetimes(epoch_seconds: np.ndarray, unit: str = "s") -> np.ndarray:
    """Beijing wall-clock times as datetime64 (no tz attached) for UTC epoch seconds."""
    return (
        (np.asarray(epoch_seconds, dtype=np.int64) + BEIJING_OFFSET_SECONDS)
        .astype("datetime64[s]")
        .astype(f"datetime64[{unit}]")
    )


def period_map(
    first_bucket: int,
    last_bucket: int,
    period: str = "day",
    bucket_seconds: int = 900,
    start: int | None = None,
    end: int | None = None,
) -> PeriodMap:
    """Periods of the buckets first..last, optionally only those in [start, end) UTC epoch seconds."""
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r} (use {', '.join(PERIODS)})")
    if (86400 % bucket_seconds) or (BEIJING_OFFSET_SECONDS % bucket_seconds):
        raise ValueError("bucket_seconds must divide a day and the 8-hour Beijing offset")
    nums = np.arange(first_bucket, last_bucket + 1, dtype=np.int64)
    bstart = nums * bucket_seconds
    keep = np.ones(len(nums), dtype=bool)
    if start is not None:
        keep &= bstart >= start
    if end is not None:
        keep &= bstart < end
    local = local_datetimes(bstart)
    pkey = local.astype(f"datetime64[{_UNIT[period]}]")
    uniq, inverse = np.unique(pkey[keep], return_inverse=True)
    index = np.full(len(nums), -1, dtype=np.int32)
    index[keep] = inverse.astype(np.int32)
    pstart_local = uniq.astype("datetime64[s]")
    if period == "15min":
        pend_local = pstart_local + np.timedelta64(bucket_seconds, "s")
    else:
        pend_local = (uniq + np.timedelta64(1, _UNIT[period])).astype("datetime64[s]")
    starts = pstart_local.astype(np.int64) - BEIJING_OFFSET_SECONDS
    ends = pend_local.astype(np.int64) - BEIJING_OFFSET_SECONDS
    labels = [_label(u, period) for u in uniq]
    years = uniq.astype("datetime64[Y]").astype(np.int64).astype(np.int32) + 1970
    return PeriodMap(period, first_bucket, index, labels, starts, (ends - starts) // bucket_seconds, years)


def _label(value: np.datetime64, period: str) -> str:
    text = str(value)
    return text[:16] if period == "15min" else text


def bucket_years(bucket_starts: np.ndarray) -> np.ndarray:
    """Beijing calendar year of each bucket start (UTC epoch seconds)."""
    return local_datetimes(bucket_starts, "Y").astype(np.int64).astype(np.int32) + 1970
