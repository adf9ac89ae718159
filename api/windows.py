"""Query windows: parsing and aligning [start, end) to whole Beijing-time periods, with bounds.

A window is snapped outwards to whole periods of the requested size (a month query from the
10th reads the whole month from its rollup), and the number of periods is bounded so that no
parameter combination makes the server scan without end.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import HTTPException

BEIJING = timedelta(hours=8)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_PERIODS = {"15min": 31 * 96, "hour": 366 * 24, "day": 3660, "month": 1200, "year": 100}


def aware(ts: datetime) -> datetime:
    """Offset-naive times are taken as UTC."""
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _floor_local(local: datetime, period: str) -> datetime:
    local = local.replace(second=0, microsecond=0)
    if period == "15min":
        return local.replace(minute=local.minute - local.minute % 15)
    local = local.replace(minute=0)
    if period == "hour":
        return local
    local = local.replace(hour=0)
    if period == "day":
        return local
    local = local.replace(day=1)
    return local if period == "month" else local.replace(month=1)


def _next_local(local: datetime, period: str) -> datetime:
    if period == "15min":
        return local + timedelta(minutes=15)
    if period == "hour":
        return local + timedelta(hours=1)
    if period == "day":
        return local + timedelta(days=1)
    if period == "month":
        return local.replace(year=local.year + local.month // 12, month=local.month % 12 + 1)
    return local.replace(year=local.year + 1)


def align(start: datetime, end: datetime, period: str) -> tuple[datetime, datetime]:
    """[start, end) widened to whole Beijing periods; 422 when empty, reversed or too long."""
    start, end = aware(start), aware(end)
    if not (EARLIEST <= start < LATEST and EARLIEST < end <= LATEST):
        raise HTTPException(422, "start and end must lie between 2000-01-01 and 2100-01-01")
    if end <= start:
        raise HTTPException(422, "end must be after start")
    lo = _floor_local(start.astimezone(UTC).replace(tzinfo=None) + BEIJING, period)
    hi_floor = _floor_local(end.astimezone(UTC).replace(tzinfo=None) + BEIJING, period)
    end_local = end.astimezone(UTC).replace(tzinfo=None) + BEIJING
    hi = hi_floor if hi_floor == end_local else _next_local(hi_floor, period)
    if period == "month":
        count = (hi.year - lo.year) * 12 + hi.month - lo.month
    elif period == "year":
        count = hi.year - lo.year
    else:
        count = int((hi - lo).total_seconds()) // {"15min": 900, "hour": 3600, "day": 86400}[period]
    if count > MAX_PERIODS[period]:
        raise HTTPException(
            422, f"window holds more than {MAX_PERIODS[period]} periods of {period}: choose a coarser period"
        )
    return (lo - BEIJING).replace(tzinfo=UTC), (hi - BEIJING).replace(tzinfo=UTC)


def default_window(period: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """Today (Beijing) for 15 min and hours, this month for days, this year for months and years."""
    now = now or datetime.now(UTC)
    local = now.astimezone(UTC).replace(tzinfo=None) + BEIJING
    unit = {"15min": "day", "hour": "day", "day": "month", "month": "year", "year": "year"}[period]
    lo = _floor_local(local, unit)
    hi = _next_local(lo, unit)
    return (lo - BEIJING).replace(tzinfo=UTC), (hi - BEIJING).replace(tzinfo=UTC)


def window(start: datetime | None, end: datetime | None, period: str) -> tuple[datetime, datetime]:
    """The aligned window of a request: defaults filled in, then :func:`align`."""
    d_start, d_end = default_window(period)
    span = d_end - d_start
    if start is None and end is not None:
        d_start = aware(end) - span
    if start is not None and end is None:
        d_end = min(aware(start) + span, LATEST)
    return align(start or d_start, end or d_end, period)
