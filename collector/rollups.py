"""Energy rollups per point: hour, Beijing-time day, Beijing-time month.

On TimescaleDB ``energy_1h``, ``energy_1d`` and ``energy_1mon`` are continuous aggregates that
the extension's policies keep up to date; on plain PostgreSQL they are tables with the same
columns, rewritten here for the ranges the interval builder has just recomputed (hours from
``intervals_15m``, days from hours, months from days), in the builder's transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg
from psycopg import sql

TZ = "Asia/Shanghai"
# (table, source, bucket of a source row, start of the period holding x, start of the next one)
_LEVELS = (
    (
        "energy_1h",
        "intervals_15m",
        f"date_trunc('hour', {{x}}, '{TZ}')",  # explicit zone: the session's could be half-hour-offset
        f"date_trunc('hour', {{x}}, '{TZ}') + interval '1 hour'",
    ),
    (
        "energy_1d",
        "energy_1h",
        f"date_trunc('day', {{x}}, '{TZ}')",
        f"date_trunc('day', {{x}}, '{TZ}') + interval '24 hours'",  # no daylight saving in China
    ),
    (
        "energy_1mon",
        "energy_1d",
        f"date_trunc('month', {{x}}, '{TZ}')",
        f"(date_trunc('month', {{x}}, '{TZ}') AT TIME ZONE '{TZ}' + interval '1 month') AT TIME ZONE '{TZ}'",
    ),
)
_SPANS = "unnest(%(p)s::int4[], %(lo)s::timestamptz[], %(hi)s::timestamptz[]) AS s(point_id, lo, hi)"
_SUMS = "sum(quantity), bit_or(flags), {count}, sum({coverage})"


def _statements() -> list[str]:
    out = []
    for table, source, bucket, after in _LEVELS:
        # periods touched by [lo, hi): from the one holding lo to the one holding the last instant before hi
        last = "(s.hi - interval '1 microsecond')"
        ranges = f"SELECT s.point_id, {bucket.format(x='s.lo')} AS lo, {after.format(x=last)} AS hi FROM {_SPANS}"
        first = source == "intervals_15m"
        sums = _SUMS.format(
            count="count(*)::integer" if first else "sum(intervals)::integer",
            coverage="coverage::double precision" if first else "coverage",
        )
        out.append(
            f"DELETE FROM {table} e USING ({ranges}) r "
            "WHERE e.point_id = r.point_id AND e.bucket >= r.lo AND e.bucket < r.hi"
        )
        out.append(
            f"INSERT INTO {table} (point_id, bucket, quantity, flags, intervals, coverage) "
            f"SELECT i.point_id, {bucket.format(x='i.bucket')}, {sums} "
            f"FROM {source} i JOIN ({ranges}) r ON i.point_id = r.point_id AND i.bucket >= r.lo AND i.bucket < r.hi "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        )
    return out


_STATEMENTS = _statements()


def rollups_are_tables(conn: psycopg.Connection) -> bool:
    """True on plain PostgreSQL (rollups maintained here), False where they are continuous aggregates."""
    row = conn.execute("SELECT relkind FROM pg_class WHERE oid = 'energy_1h'::regclass").fetchone()
    return row[0] == "r"


def refresh_rollups(conn: psycopg.Connection, points: list[int], lo: list[datetime], hi: list[datetime]) -> None:
    """Rewrite the hour, day and month rows covering ``[lo, hi)`` of each point (plain PostgreSQL)."""
    if not points or not rollups_are_tables(conn):
        return
    params = {"p": points, "lo": lo, "hi": hi}
    for statement in _STATEMENTS:
        conn.execute(statement, params)


def refresh_continuous_aggregates(conn: psycopg.Connection, start: datetime | None, end: datetime | None) -> None:
    """Materialise the TimescaleDB rollups over [start, end) now, level by level, instead of
    waiting for their policies (tests, backfills). Needs an autocommit connection; no-op on plain
    PostgreSQL, where the rollups are never behind."""
    if rollups_are_tables(conn):
        return

    def bound(t: datetime | None, shift: timedelta) -> sql.Composable:
        # a typed literal: the arguments are "any"
        return sql.SQL("NULL") if t is None else sql.Literal(t + shift)

    # TimescaleDB refreshes whole buckets inside the window only: widen it by one bucket each side
    # so a window shorter than a month still materialises the months it touches.
    for view, width in (
        ("energy_1h", timedelta(hours=1)),
        ("energy_1d", timedelta(days=1)),
        ("energy_1mon", timedelta(days=31)),
    ):
        conn.execute(
            sql.SQL("CALL refresh_continuous_aggregate({}, {}, {})").format(
                sql.Literal(view), bound(start, -width), bound(end, width)
            )
        )
