"""Synthetic history for the demo: days of 15-minute intervals for every energy point, with their rollups.

A fresh demo would otherwise show empty charts until it has run for days. The shape is a plant's:
a steady process load with a daily swing, PV generation in daylight only (Beijing time), a small
export. Written through the collector's own rollup code, so every view reads it like live data.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import psycopg

from carbonwatch.collector.rollups import refresh_continuous_aggregates, refresh_rollups

BUCKET = timedelta(minutes=15)
# quantity per 15 minutes at the daily mean, per unit of the point
_BASE = {"kWh": 1000.0, "MWh": 1.0, "Nm3": 90.0, "m3": 90.0, "t": 2.0, "GJ": 20.0}


def _quantity(direction: str | None, unit: str, bucket: datetime, rng: random.Random) -> float:
    base = _BASE.get(unit, 10.0)
    hour = ((bucket + timedelta(hours=8)).hour + bucket.minute / 60) % 24  # Beijing time
    if direction == "generation":
        daylight = max(0.0, math.sin((hour - 6) / 13 * math.pi)) if 6 <= hour <= 19 else 0.0
        return base * 0.8 * daylight * rng.uniform(0.7, 1.0)
    swing = 1 + 0.25 * math.sin((hour - 8) / 24 * 2 * math.pi)
    share = 0.03 if direction == "export" else 1.0
    return base * share * swing * rng.uniform(0.9, 1.1)


def seed_history(conn: psycopg.Connection, days: float, end: datetime | None = None, seed: int = 1) -> int:
    """Intervals for ``days`` before ``end`` (default: the start of the current 15 minutes), committed;
    returns rows written."""
    end = end or datetime.now(UTC)
    step = int(BUCKET.total_seconds())
    end = datetime.fromtimestamp(int(end.timestamp()) // step * step, UTC)
    start = end - timedelta(days=days)
    rng = random.Random(seed)
    points = conn.execute(
        "SELECT id, unit, direction FROM points WHERE active AND kind = 'counter' AND carrier IS NOT NULL ORDER BY id"
    ).fetchall()
    rows = []
    for pid, unit, direction in points:
        b = start
        while b < end:
            rows.append((pid, b, _quantity(direction, unit, b, rng)))
            b += BUCKET
    with conn.transaction():
        with conn.cursor().copy("COPY intervals_15m (point_id, bucket, quantity) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        ids = [p[0] for p in points]
        refresh_rollups(conn, ids, [start] * len(ids), [end] * len(ids))
    # TimescaleDB refreshes its aggregates outside any transaction: commit what we wrote first.
    autocommit = conn.autocommit
    if not autocommit:
        conn.commit()
        conn.autocommit = True
    try:
        refresh_continuous_aggregates(conn, start, end)
    finally:
        conn.autocommit = autocommit
    return len(rows)
