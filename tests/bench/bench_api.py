"""The dashboard's two heavy questions over HTTP, against the same questions answered from raw readings.

Data: the collector query benchmark's generator (one year of 15-minute intervals for 1,000
electricity counters in 20 Shanxi enterprises, with rollups), plus the raw counter readings those
intervals come from (a reading at every bucket end, 35 million rows). A real uvicorn serves the
API on loopback; httpx asks, one request at a time:

- province overview ``/api/v1/provinces/140000/overview?year=2025`` (province token), and
- enterprise drill-down ``/api/v1/enterprises/{code}/overview?year=2025`` (enterprise token).

Baseline, in the same run: the same figures from the raw readings (counter differences by window
function in SQL, then the same accounting core), measured in-process without HTTP. The baseline's
totals must equal the API's, or the benchmark fails.

Usage: ``python tests/bench/bench_api.py [--quick]``. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_collector_queries import ADMIN_URL, YEAR_START, _with_db, build_year

from carbonwatch.api.app import create_app
from carbonwatch.api.auth import create_token
from carbonwatch.api.figures import account_rows
from carbonwatch.collector.db import migrate
from carbonwatch.embedded import free_port

from support import UvicornThread

# per-bucket counter differences from raw readings; a difference belongs to the bucket it closes
_DIFFS = """
    SELECT r.point_id, r.ts - interval '15 minutes' AS bucket,
           r.value - lag(r.value) OVER (PARTITION BY r.point_id ORDER BY r.ts) AS d
    FROM readings r WHERE r.point_id = ANY(%(points)s) AND r.ts >= %(start)s AND r.ts <= %(end)s"""
_ATTRS = (  # api.figures.FACTOR_COLUMNS
    "p.carrier, p.unit, p.direction, p.use, p.renewable, p.new_since_base_year, e.province, "
    "p.fuel_ncv, p.fuel_carbon_content, p.fuel_oxidation_rate, p.fuel_source"
)
_GROUP = ", ".join(str(i) for i in range(1, 14))  # key, bucket and the attributes
RAW_PROVINCE = f"""
    SELECT e.city, date_trunc('month', x.bucket, 'Asia/Shanghai'), {_ATTRS}, sum(x.d), 0
    FROM ({_DIFFS}) x JOIN points p ON p.id = x.point_id JOIN enterprises e ON e.code = p.enterprise
    WHERE x.d IS NOT NULL GROUP BY {_GROUP}"""
RAW_ENTERPRISE = f"""
    SELECT p.point, date_trunc('day', x.bucket, 'Asia/Shanghai'), {_ATTRS}, sum(x.d), 0
    FROM ({_DIFFS}) x JOIN points p ON p.id = x.point_id JOIN enterprises e ON e.code = p.enterprise
    WHERE x.d IS NOT NULL GROUP BY {_GROUP}"""


def add_readings(url: str, end) -> int:
    """The counter readings behind the intervals: 1000 at the year's start, then the running sum."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE readings SET (autovacuum_enabled = false)")
        conn.execute(
            """INSERT INTO readings (point_id, ts, value)
               SELECT id, %s, 1000 FROM points
               UNION ALL
               SELECT point_id, bucket + interval '15 minutes',
                      1000 + sum(quantity) OVER (PARTITION BY point_id ORDER BY bucket)
               FROM intervals_15m""",
            (YEAR_START,),
        )
        conn.execute("ALTER TABLE readings SET (autovacuum_enabled = true)")
        conn.execute("VACUUM ANALYZE readings")
        return conn.execute("SELECT count(*) FROM readings").fetchone()[0]


def raw_province(conn: psycopg.Connection, points: list[int], end) -> dict:
    rows = conn.execute(RAW_PROVINCE, {"points": points, "start": YEAR_START, "end": end}).fetchall()
    by_city = account_rows(rows, "year")
    monthly = account_rows([("140000", *r[1:]) for r in rows], "month", carriers=True)
    return {"tce": float(by_city.tce.sum()), "co2": float(by_city.co2_location_t.sum()), "months": len(monthly.labels)}


def raw_enterprise(conn: psycopg.Connection, points: list[int], end) -> dict:
    rows = conn.execute(RAW_ENTERPRISE, {"points": points, "start": YEAR_START, "end": end}).fetchall()
    by_point = account_rows(rows, "year", signed=False)
    daily = account_rows([("e", *r[1:]) for r in rows], "day")
    return {"tce": float(daily.tce.sum()), "points": len(by_point.keys), "days": len(daily.labels)}


def timed(fn, runs: int) -> tuple[list[float], object]:
    out, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        out.append((time.perf_counter() - t) * 1000)
    return out, result


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small run for CI")
    ap.add_argument("--enterprises", type=int, help="default 20 (quick: 2)")
    ap.add_argument("--days", type=int, help="days of data (default 365, quick 20)")
    ap.add_argument("--requests", type=int, help="requests per question (default 50, quick 8)")
    args = ap.parse_args()
    enterprises = args.enterprises or (2 if args.quick else 20)
    days = args.days or (20 if args.quick else 365)
    requests = args.requests or (8 if args.quick else 50)
    raw_runs = 2 if args.quick else 3
    end = YEAR_START + timedelta(days=days)

    name = f"cw_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(ADMIN_URL, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
        t = time.perf_counter()
        points, intervals = build_year(url, enterprises, 50, end)
        readings = add_readings(url, end)
        print(f"{intervals:,} intervals and {readings:,} readings of {len(points):,} points over {days} days "
              f"in {time.perf_counter() - t:.0f} s")  # fmt: skip
        with psycopg.connect(url, autocommit=True) as conn:
            code = conn.execute("SELECT code FROM enterprises ORDER BY code LIMIT 1").fetchone()[0]
            ent_points = [r[0] for r in conn.execute("SELECT id FROM points WHERE enterprise = %s", (code,))]
            province_token = create_token(conn, "province", "140000", "bench")
            enterprise_token = create_token(conn, "enterprise", code, "bench")

            raw_p_ms, raw_p = timed(lambda: raw_province(conn, points, end), raw_runs)
            raw_e_ms, raw_e = timed(lambda: raw_enterprise(conn, ent_points, end), raw_runs)

        with UvicornThread(create_app(url), free_port()) as server, httpx.Client(base_url=server.url) as http:
            questions = {
                "province_overview": ("/api/v1/provinces/140000/overview", province_token),
                "enterprise_drilldown": (f"/api/v1/enterprises/{code}/overview", enterprise_token),
            }
            api_ms, bodies = {}, {}
            for label, (path, token) in questions.items():

                def ask(path=path, token=token):
                    r = http.get(path, params={"year": 2025}, headers={"Authorization": f"Bearer {token}"}, timeout=60)
                    r.raise_for_status()
                    return r.json()

                timed(ask, 3)  # warm: pool, plans, numba-free paths
                api_ms[label], bodies[label] = timed(ask, requests)

        # the baseline must answer the same question
        prov, ent = bodies["province_overview"]["totals"], bodies["enterprise_drilldown"]["totals"]
        for what, a, b in (("province tce", prov["tce"], raw_p["tce"]), ("province CO2", prov["co2_location_t"],
                           raw_p["co2"]), ("enterprise tce", ent["tce"], raw_e["tce"])):  # fmt: skip
            if abs(a - b) > 1e-6 * max(1.0, abs(a)):
                raise SystemExit(f"baseline disagrees on {what}: API {a} vs raw {b}")
        raw_median = {
            "province_overview": statistics.median(raw_p_ms),
            "enterprise_drilldown": statistics.median(raw_e_ms),
        }
        result = {}
        for label, times in api_ms.items():
            p50, p95 = pct(times, 0.5), pct(times, 0.95)
            result[label] = {
                "p50_ms": round(p50, 2),
                "p95_ms": round(p95, 2),
                "raw_median_ms": round(raw_median[label], 1),
                "raw_over_api_p95": round(raw_median[label] / p95, 1),
            }
            print(f"{label:22s} API p50 {p50:8.2f} ms  p95 {p95:8.2f} ms   raw readings {raw_median[label]:10.1f} ms"
                  f"   raw/p95 {raw_median[label] / p95:7.1f}x")  # fmt: skip
        print(
            json.dumps(
                {
                    "benchmark": "api",
                    "quick": args.quick,
                    "points": len(points),
                    "days": days,
                    "intervals": intervals,
                    "readings": readings,
                    "requests": requests,
                    "results": result,
                    "goal": {"p95_ms": 100, "raw_over_api": 50},
                }
            )
        )
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
