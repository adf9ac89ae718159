"""Storage on whichever path this PostgreSQL offers (TimescaleDB or plain): late data, rollups,
completeness; and the TimescaleDB policies where the extension exists."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
from fleet import counter_names, make_site, point_names, publish, reading, register, telemetry

from carbonwatch.accounting.intervals import counter_intervals
from carbonwatch.collector.db import timescaledb_installed
from carbonwatch.collector.registry import Registry
from carbonwatch.collector.rollups import refresh_continuous_aggregates
from carbonwatch.collector.validate import Message, parse_message
from carbonwatch.collector.writer import prepare, write_batch

from support import CollectorThread, wait_until

BEIJING = timedelta(hours=8)


def beijing_day(t: datetime) -> datetime:
    return (t + BEIJING).replace(hour=0, minute=0, second=0, microsecond=0) - BEIJING


@pytest.mark.timeout(180)
def test_a_week_of_buffer_drained_after_live_data_lands_everywhere(db_url, broker):
    site = make_site(gateways=1, points=4)  # three counters and a power gauge
    register(db_url, site)
    names = point_names(site, 0)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    live_start, backlog_start = now - timedelta(hours=2), beijing_day(now) - timedelta(days=8)
    rng = random.Random(7)
    values = {n: 10_000.0 * (i + 1) for i, n in enumerate(names)}
    history: dict[str, list[tuple[float, float]]] = defaultdict(list)

    def step(t: datetime) -> list[dict]:
        out = []
        for n in names:
            values[n] += rng.uniform(0, 5) if n.endswith("kwh") else 0
            history[n].append((t.timestamp(), values[n]))
            out.append(reading(n, t, round(values[n], 6)))
        return out

    backlog = [step(backlog_start + timedelta(minutes=5 * k)) for k in range(7 * 288)]  # a week, every 5 min
    live = [step(live_start + timedelta(minutes=k)) for k in range(120)]
    for n in names:
        history[n] = [(t, round(v, 6)) for t, v in history[n]]
    # The gateway was cut off for a week: its live readings arrive first, then its buffer drains
    # oldest first, 100 polls per message (the agent's sequence numbers run on).
    messages = [telemetry(site, 0, 10_000 + k, live[k]) for k in range(len(live))]
    for k, i in enumerate(range(0, len(backlog), 100)):
        messages.append(telemetry(site, 0, k, [r for poll in backlog[i : i + 100] for r in poll]))

    with CollectorThread(db_url, broker.port, interval_period=0.5) as collector:
        publish(broker.port, messages)
        wait_until(lambda: collector.committed_messages >= len(messages), 90, what="the backlog committed")
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM interval_dirty").fetchone()[0] == 0  # built before the stop
        refresh_continuous_aggregates(conn, None, None)
        for name in counter_names(site, 0):
            ts, vs = map(np.array, zip(*history[name], strict=True))
            want = counter_intervals(ts, vs)
            got = conn.execute(
                "SELECT extract(epoch FROM i.bucket)::int8, i.quantity, i.flags FROM intervals_15m i "
                "JOIN points p ON p.id = i.point_id WHERE p.point = %s ORDER BY 1",
                (name,),
            ).fetchall()
            assert [g[0] for g in got] == want.bucket.tolist()
            assert [g[1] for g in got] == pytest.approx(want.quantity.tolist(), rel=1e-9, abs=1e-9)
            assert [g[2] for g in got] == want.flags.tolist()
            by_day = defaultdict(float)
            for b, q in zip(want.bucket.tolist(), want.quantity.tolist(), strict=True):
                by_day[beijing_day(datetime.fromtimestamp(b, UTC))] += q
            days = conn.execute(
                "SELECT r.bucket, r.quantity FROM energy_1d r JOIN points p ON p.id = r.point_id "
                "WHERE p.point = %s ORDER BY 1",
                (name,),
            ).fetchall()
            assert [d[0] for d in days] == sorted(by_day)
            assert [d[1] for d in days] == pytest.approx([by_day[d] for d in sorted(by_day)], rel=1e-9)
            month_total = conn.execute(
                "SELECT sum(r.quantity) FROM energy_1mon r JOIN points p ON p.id = r.point_id WHERE p.point = %s",
                (name,),
            ).fetchone()[0]
            assert month_total == pytest.approx(vs[-1] - vs[0], rel=1e-9)

        # Completeness: every Beijing day of the backlog is whole (96 of 96); the live day is not.
        rows = conn.execute(
            "SELECT period_start, expected, received FROM cw_completeness(%s, %s, "
            "(SELECT array_agg(id) FROM points WHERE point = %s), 'day') ORDER BY 1",
            (backlog_start, backlog_start + timedelta(days=7), names[0]),
        ).fetchall()
    assert [r[0] for r in rows] == [backlog_start + timedelta(days=d) for d in range(7)]
    assert all(r[1:] == (96, 96) for r in rows)


def slot_reference(readings, since, lo, hi, now):
    """Expected and received 15-minute slots of one point over [lo, hi), as cw_completeness defines them."""
    a = math.ceil(max(lo, since) / 900) * 900
    b = math.floor(min(hi, now) / 900) * 900
    expected = max(0, (b - a) // 900)
    received = len({int(t // 900) for t, q in readings if q == 0 and a <= t // 900 * 900 < b})
    return expected, received


def test_completeness_counts_slots_as_the_national_rule_asks(db_url):
    site = make_site(gateways=1, points=4)
    register(db_url, site)
    name = point_names(site, 0)[0]
    registry = Registry(db_url)
    rng = random.Random(3)
    start = datetime(2026, 1, 20, 3, 7, tzinfo=UTC)
    # Forty days around the January/February boundary: most slots read once or twice, some
    # missed, some read only with failed reads.
    readings = []
    for k in range(40 * 96):
        t = start + timedelta(minutes=15 * k)
        if rng.random() < 0.1:
            continue
        for _ in range(rng.choice([1, 1, 2])):
            readings.append((t + timedelta(seconds=rng.uniform(0, 899)), 2 if rng.random() < 0.05 else 0))
    with psycopg.connect(db_url, autocommit=True) as conn:
        prepare(conn)
        for i in range(0, len(readings), 500):
            chunk = readings[i : i + 500]
            rs = [reading(name, t, None if q else 1.0, "bad" if q else "good") for t, q in chunk]
            msg = telemetry(site, 0, i, rs)
            write_batch(conn, [parse_message(Message(msg[0], msg[1], 1, 1), registry, 600.0)])
        registered = start - timedelta(days=1, hours=5, minutes=3)  # expected from registration on
        conn.execute("UPDATE points SET registered_at = %s", (registered,))
        pid = conn.execute("SELECT id FROM points WHERE point = %s", (name,)).fetchone()[0]
        since = min(registered.timestamp(), min(t.timestamp() for t, _ in readings))
        now = conn.execute("SELECT extract(epoch FROM now())::float8").fetchone()[0]
        epoch_readings = [(t.timestamp(), q) for t, q in readings]
        windows = [
            (start - timedelta(days=3), start + timedelta(days=45)),
            (datetime(2026, 1, 31, 16, 0, 1, tzinfo=UTC), datetime(2026, 2, 3, 11, 52, tzinfo=UTC)),
            (datetime(2026, 2, 10, tzinfo=UTC), datetime(2026, 2, 10, 0, 14, tzinfo=UTC)),
        ]
        for lo, hi in windows:
            got = conn.execute("SELECT expected, received FROM cw_completeness(%s, %s, %s)", (lo, hi, [pid])).fetchone()
            assert got == slot_reference(epoch_readings, since, lo.timestamp(), hi.timestamp(), now), (lo, hi)
            for period in ("day", "month"):
                rows = conn.execute(
                    "SELECT period_start, expected, received FROM cw_completeness(%s, %s, %s, %s) ORDER BY 1",
                    (lo, hi, [pid], period),
                ).fetchall()
                assert sum(r[1] for r in rows) == got[0] and sum(r[2] for r in rows) == got[1], (lo, hi, period)
                ends = [r[0] for r in rows[1:]] + [hi]
                for (p_start, expected, received), p_end in zip(rows, ends, strict=True):
                    want = slot_reference(epoch_readings, since, p_start.timestamp(), p_end.timestamp(), now)
                    assert (expected, received) == want, (p_start, period)
        months = conn.execute(
            "SELECT period_start FROM cw_completeness(%s, %s, %s, 'month') ORDER BY 1",
            (datetime(2026, 1, 20, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC), [pid]),
        ).fetchall()
        assert [m[0] for m in months] == [
            datetime(2026, 1, 20, tzinfo=UTC),
            datetime(2026, 1, 31, 16, tzinfo=UTC),  # 1 February, 00:00 Beijing time
            datetime(2026, 2, 28, 16, tzinfo=UTC),
        ]


def test_timescale_path_has_policies_and_continuous_aggregates(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        if not timescaledb_installed(conn):
            pytest.skip("the timescaledb extension is not installed on this PostgreSQL; plain path tested instead")
        jobs = conn.execute(
            "SELECT proc_name, hypertable_name FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL"
        ).fetchall()
        caggs = conn.execute(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
        ).fetchall()
    procs = {(p, h) for p, h in jobs}
    assert {("policy_compression", "readings"), ("policy_retention", "readings")} <= procs
    assert {("policy_compression", "intervals_15m"), ("policy_retention", "intervals_15m")} <= procs
    assert sum(1 for p, _ in jobs if p == "policy_refresh_continuous_aggregate") == 3
    assert sorted(caggs) == [("energy_1d", False), ("energy_1h", False), ("energy_1mon", False)]
