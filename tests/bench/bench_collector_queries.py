"""Dashboard queries on the rollups: a province overview and an enterprise drill-down over a year.

A fresh database holds a year of 15-minute energy intervals for 1,000 points (20 enterprises of
50 points in one province, 35 million rows), the hour/day/month rollups built from them by the
collector's own rollup code (continuous aggregates on TimescaleDB), and completeness bitmaps.
Each query runs warm several times; the median is reported. The baseline is the same province
overview computed from the 15-minute table, in the same run.

Usage: ``python tests/bench/bench_collector_queries.py [--quick]``. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collector"))

from fleet import make_site, register

from carbonwatch.collector.db import migrate
from carbonwatch.collector.rollups import refresh_continuous_aggregates, refresh_rollups

ADMIN_URL = os.environ.get("CARBONWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BEIJING = timedelta(hours=8)
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC) - BEIJING  # 2025-01-01 00:00 Beijing time

QUERIES = {
    # Every enterprise of a province: energy by carrier over the year, and its completeness.
    "province_year_by_enterprise": """
        SELECT e.code, e.name, p.carrier, sum(m.quantity) AS quantity, bit_or(m.flags) AS flags
        FROM energy_1mon m JOIN points p ON p.id = m.point_id JOIN enterprises e ON e.code = p.enterprise
        WHERE e.province = %(province)s AND m.bucket >= %(start)s AND m.bucket < %(end)s
        GROUP BY 1, 2, 3 ORDER BY 1, 3""",
    "province_year_by_month": """
        SELECT m.bucket, p.carrier, sum(m.quantity)
        FROM energy_1mon m JOIN points p ON p.id = m.point_id JOIN enterprises e ON e.code = p.enterprise
        WHERE e.province = %(province)s AND m.bucket >= %(start)s AND m.bucket < %(end)s
        GROUP BY 1, 2 ORDER BY 1, 2""",
    "province_year_completeness": """
        SELECT p.enterprise, sum(c.received)::float8 / nullif(sum(c.expected), 0) AS ratio,
               count(*) FILTER (WHERE c.received < 0.9 * c.expected) AS points_below_90pct
        FROM cw_completeness(%(start)s, %(end)s,
                             (SELECT array_agg(p.id) FROM points p JOIN enterprises e ON e.code = p.enterprise
                              WHERE e.province = %(province)s)) c
        JOIN points p ON p.id = c.point_id GROUP BY 1 ORDER BY 1""",
    # One enterprise: every point, every Beijing day of the year.
    "enterprise_year_by_point_and_day": """
        SELECT p.point, d.bucket, d.quantity, d.flags, d.coverage
        FROM energy_1d d JOIN points p ON p.id = d.point_id
        WHERE p.enterprise = %(enterprise)s AND d.bucket >= %(start)s AND d.bucket < %(end)s
        ORDER BY 1, 2""",
    "enterprise_year_completeness_by_month": """
        SELECT point_id, period_start, expected, received
        FROM cw_completeness(%(start)s, %(end)s,
                             (SELECT array_agg(id) FROM points WHERE enterprise = %(enterprise)s), 'month')""",
    "enterprise_year_completeness_by_day": """
        SELECT point_id, period_start, expected, received
        FROM cw_completeness(%(start)s, %(end)s,
                             (SELECT array_agg(id) FROM points WHERE enterprise = %(enterprise)s), 'day')""",
    # One point's hourly profile over a month.
    "point_month_by_hour": """
        SELECT h.bucket, h.quantity FROM energy_1h h
        WHERE h.point_id = %(point)s AND h.bucket >= %(start)s AND h.bucket < %(start)s + interval '31 days'
        ORDER BY 1""",
}
BASELINE = """
    SELECT e.code, e.name, p.carrier, sum(i.quantity), bit_or(i.flags)
    FROM intervals_15m i JOIN points p ON p.id = i.point_id JOIN enterprises e ON e.code = p.enterprise
    WHERE e.province = %(province)s AND i.bucket >= %(start)s AND i.bucket < %(end)s
    GROUP BY 1, 2, 3 ORDER BY 1, 3"""


def _with_db(url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)


def median_ms(conn: psycopg.Connection, sql: str, params: dict, runs: int) -> tuple[float, int]:
    """Median time to run ``sql`` and fetch every row (binary results, as an API would read them)."""
    cur = conn.cursor(binary=True)
    cur.execute(sql, params).fetchall()  # warm
    times, rows = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        rows = len(cur.execute(sql, params).fetchall())
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), rows


def build_year(url: str, enterprises: int, points_per_enterprise: int, end: datetime) -> tuple[list[int], int]:
    """Enterprises of 50 electricity counters in Shanxi, 15-minute intervals from YEAR_START to ``end``, the
    hour/day/month rollups and completeness bitmaps; returns the point ids and the interval count."""
    for n in range(enterprises):
        gateways = max(1, points_per_enterprise // 25)
        register(url, make_site(gateways=gateways, points=points_per_enterprise // gateways, n=n + 1, gauges=False))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE points SET registered_at = %s", (YEAR_START,))
        points = [r[0] for r in conn.execute("SELECT id FROM points ORDER BY id")]
        conn.execute(
            """INSERT INTO intervals_15m (point_id, bucket, quantity, flags, coverage)
               SELECT p, b, 1 + (p %% 7) + random(), (random() < 0.001)::int * 2, 1
               FROM unnest(%s::int4[]) AS p,
                    generate_series(%s, %s - interval '15 minutes', interval '15 minutes') AS b
               ORDER BY 1, 2""",
            (points, YEAR_START, end),
        )
        # Every point misses the last 76 slots of each month's bitmap (about 97% complete).
        conn.execute(
            """INSERT INTO completeness_1mon (point_id, bucket, slots)
               SELECT p, m, (repeat('1', 2900) || repeat('0', 76))::bit(2976)
               FROM unnest(%s::int4[]) AS p,
                    generate_series(%s::timestamp, %s::timestamp - interval '1 day', interval '1 month') g,
                    LATERAL (SELECT g AT TIME ZONE 'Asia/Shanghai' AS m) x""",
            (points, YEAR_START.replace(tzinfo=None) + BEIJING, end.replace(tzinfo=None) + BEIJING),
        )
        (rows,) = conn.execute("SELECT count(*) FROM intervals_15m").fetchone()
        refresh_rollups(conn, points, [YEAR_START] * len(points), [end] * len(points))
        refresh_continuous_aggregates(conn, None, None)
        conn.execute("VACUUM ANALYZE")
    return points, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small run for CI (well under a minute)")
    ap.add_argument("--enterprises", type=int, help="default 20 (quick: 4)")
    ap.add_argument("--points", type=int, default=50, help="points per enterprise")
    ap.add_argument("--days", type=int, help="days of data (default 365, quick 60)")
    args = ap.parse_args()
    enterprises = args.enterprises or (4 if args.quick else 20)
    days = args.days or (60 if args.quick else 365)
    end = YEAR_START + timedelta(days=days)

    name = f"cw_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(ADMIN_URL, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
        t = time.perf_counter()
        points, rows = build_year(url, enterprises, args.points, end)
        print(f"{rows:,} intervals of {len(points):,} points over {days} days, with rollups, "
              f"in {time.perf_counter() - t:.0f} s")  # fmt: skip
        with psycopg.connect(url, autocommit=True) as conn:
            enterprise = conn.execute("SELECT code FROM enterprises ORDER BY code LIMIT 1").fetchone()[0]
            params = {"province": "140000", "start": YEAR_START, "end": end, "enterprise": enterprise,
                      "point": points[0]}  # fmt: skip
            runs = 3 if args.quick else 7
            results = {}
            for label, sql in QUERIES.items():
                ms, n = median_ms(conn, sql, params, runs)
                results[label] = round(ms, 2)
                print(f"{label:40s} {ms:8.2f} ms  ({n} rows)")
            base_ms, _ = median_ms(conn, BASELINE, params, max(1, runs // 2))
            print(f"{'baseline: province year from 15-minute rows':40s} {base_ms:8.2f} ms")
        slowest = max(results.values())
        print(
            json.dumps(
                {
                    "benchmark": "collector_queries",
                    "quick": args.quick,
                    "points": len(points),
                    "days": days,
                    "intervals": rows,
                    "median_ms": results,
                    "slowest_ms": slowest,
                    "baseline_province_year_from_intervals_ms": round(base_ms, 2),
                    "ratio_baseline_to_rollup": round(base_ms / results["province_year_by_enterprise"], 1),
                    "goal_ms": 100,
                }
            )
        )
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
