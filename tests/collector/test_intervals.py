"""The interval builder against the accounting core run over a whole history, whatever order the
readings arrive in; its crash safety; the rollups by hour and Beijing day and month."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
from fleet import counter_names, make_site, reading, register, telemetry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbonwatch.accounting.intervals import counter_intervals
from carbonwatch.collector import intervals as builder_module
from carbonwatch.collector.intervals import IntervalBuilder, baseline_index, build_intervals
from carbonwatch.collector.metrics import CollectorMetrics
from carbonwatch.collector.registry import Registry
from carbonwatch.collector.rollups import refresh_continuous_aggregates
from carbonwatch.collector.validate import Message, parse_message
from carbonwatch.collector.writer import prepare, write_batch

T0 = datetime(2026, 1, 31, 15, 0, tzinfo=UTC)  # 23:00 Beijing: days and a month turn over soon after
ROLLOVER = 100_000.0


@pytest.fixture
def site(db_url):
    s = make_site(gateways=1, points=8)
    register(db_url, s)
    return s


@pytest.fixture
def conn(db_url):
    with psycopg.connect(db_url, autocommit=True) as c:
        prepare(c)
        yield c


def deliver(conn, db_url, site, readings, seq=0):
    registry = Registry(db_url)
    msg = telemetry(site, 0, seq, readings)
    write_batch(conn, [parse_message(Message(msg[0], msg[1], 1, 1), registry, 600.0)])


def stored(conn, point):
    rows = conn.execute(
        """SELECT extract(epoch FROM i.bucket)::int8, i.quantity, i.flags, i.coverage
           FROM intervals_15m i JOIN points p ON p.id = i.point_id WHERE p.point = %s ORDER BY 1""",
        (point,),
    ).fetchall()
    return rows


def reference(ts, values, rollover=None):
    order = np.argsort(ts)
    iv = counter_intervals(np.asarray(ts)[order], np.asarray(values)[order], rollover)
    return list(zip(iv.bucket.tolist(), iv.quantity.tolist(), iv.flags.tolist(), iv.coverage.tolist(), strict=True))


def assert_same(got, want):
    assert [g[0] for g in got] == [w[0] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g[1] == pytest.approx(w[1], rel=1e-9, abs=1e-6), g[0]
        assert g[2] == w[2], g[0]
        assert g[3] == pytest.approx(w[3], abs=1e-6), g[0]


def test_baseline_skips_readings_below_an_earlier_one():
    assert baseline_index(np.array([])) == 0
    assert baseline_index(np.array([5.0, 6.0, 7.0])) == 2
    assert baseline_index(np.array([5.0, 6.0, 0.0])) == 1  # a transient zero is no baseline
    assert baseline_index(np.array([5.0, 0.0, 0.0, 6.0, 0.0])) == 3


@st.composite
def histories(draw):
    """A counter read at irregular times, with transient drops and (sometimes) a register rollover."""
    n = draw(st.integers(min_value=3, max_value=60))
    # runs of fast polls (many readings in one bucket) between longer gaps
    gap = st.one_of(st.integers(min_value=1, max_value=30), st.integers(min_value=1, max_value=3 * 3600))
    gaps = draw(st.lists(gap, min_size=n, max_size=n))
    incs = draw(st.lists(st.floats(min_value=0, max_value=2000, allow_nan=False), min_size=n, max_size=n))
    rollover = draw(st.sampled_from([None, ROLLOVER]))
    start = draw(st.floats(min_value=0, max_value=99_000 if rollover else 1e7))
    glitch = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    ts, values, total, run = [], [], start, 0
    t = T0.timestamp()
    for i in range(n):
        t += gaps[i]
        total += incs[i]
        v = total % rollover if rollover else total
        if glitch[i] and i > 0 and run < 2:  # short runs of transient zeros, as meters produce
            v, run = 0.0, run + 1
        else:
            run = 0
        ts.append(round(t, 3))
        values.append(round(v, 3))
    chunks = draw(st.integers(min_value=1, max_value=min(6, n)))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    return ts, values, rollover, chunks, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(histories())
def test_intervals_match_a_whole_history_computation_whatever_the_arrival_order(db_url, site, conn, history):
    ts, values, rollover, chunks, seed = history
    point = counter_names(site, 0)[0]
    conn.execute("UPDATE points SET rollover = %s WHERE point = %s", (rollover, point))
    for table in ("readings", "intervals_15m", "interval_dirty"):
        conn.execute(f"DELETE FROM {table}")
    rng = random.Random(seed)
    idx = list(range(len(ts)))
    rng.shuffle(idx)  # late data: readings arrive in random groups, in random order
    for k in range(chunks):
        part = sorted(idx[k::chunks])
        rs = [reading(point, datetime.fromtimestamp(ts[i], UTC), values[i]) for i in part]
        deliver(conn, db_url, site, rs, seq=k)
        if rng.random() < 0.7:  # sometimes several deliveries queue up before a build
            build_intervals(conn)
    build_intervals(conn)
    assert conn.execute("SELECT count(*) FROM interval_dirty").fetchone()[0] == 0
    assert_same(stored(conn, point), reference(ts, values, rollover))


def test_a_crash_during_the_build_leaves_the_work_queued(db_url, site, conn, monkeypatch):
    point = counter_names(site, 0)[0]
    ts = [T0 + timedelta(minutes=5 * k) for k in range(12)]
    deliver(conn, db_url, site, [reading(point, t, 100.0 + 3 * k) for k, t in enumerate(ts)])
    queued = conn.execute("SELECT count(*) FROM interval_dirty").fetchone()[0]
    assert queued > 0

    def crash(*args, **kwargs):
        raise SystemExit("killed mid-build")

    monkeypatch.setattr(builder_module, "counter_intervals", crash)
    with pytest.raises(SystemExit):
        build_intervals(conn)
    assert conn.execute("SELECT count(*) FROM interval_dirty").fetchone()[0] == queued
    assert stored(conn, point) == []

    monkeypatch.undo()
    build_intervals(conn)  # the next start picks the queue up
    assert_same(stored(conn, point), reference([t.timestamp() for t in ts], [100.0 + 3 * k for k in range(12)]))


def test_one_failing_point_is_postponed_and_the_others_are_built(db_url, site, conn, monkeypatch):
    bad, good = counter_names(site, 0)[:2]
    marker = 12_345.0  # the bad point's rollover value tells the patched core which point it is computing
    conn.execute("UPDATE points SET rollover = %s WHERE point = %s", (marker, bad))
    deliver(conn, db_url, site, [reading(p, T0 + timedelta(minutes=m), 1.0 + m) for p in (bad, good) for m in (0, 20)])
    real = builder_module.counter_intervals

    def failing_for_one_point(ts, values, rollover=None, bucket_seconds=900):
        if rollover == marker:
            raise ValueError("corrupt history")
        return real(ts, values, rollover, bucket_seconds)

    monkeypatch.setattr(builder_module, "counter_intervals", failing_for_one_point)
    metrics = CollectorMetrics()
    IntervalBuilder(db_url, metrics)._cycle(conn)
    assert len(stored(conn, good)) == 2
    assert stored(conn, bad) == []
    queued = conn.execute(
        "SELECT p.point, d.attempts, d.not_before > now() FROM interval_dirty d JOIN points p ON p.id = d.point_ids[1]"
    ).fetchall()
    assert queued == [(bad, 1, True)]  # postponed with back-off, alone
    assert metrics.interval_failures._value.get() == 1


def test_rollups_sum_intervals_by_hour_and_beijing_day_and_month(db_url, site, conn):
    point = counter_names(site, 0)[0]
    # 15-minute readings from 2026-01-31 15:00 UTC (23:00 Beijing) for 26 hours: they cross
    # Beijing midnight (16:00 UTC) twice and the January/February month boundary once.
    ts = [T0 + timedelta(minutes=15 * k, seconds=7) for k in range(26 * 4)]
    vals = [5000.0 + 2.5 * k + (k % 3) for k in range(len(ts))]
    deliver(conn, db_url, site, [reading(point, t, v) for t, v in zip(ts, vals, strict=True)])
    build_intervals(conn)
    refresh_continuous_aggregates(conn, None, None)  # TimescaleDB: materialise now; plain: already current

    iv = stored(conn, point)
    beijing = timedelta(hours=8)

    def sums(key):
        out = defaultdict(lambda: [0.0, 0, 0, 0.0])
        for bucket, q, f, c in iv:
            k = key(datetime.fromtimestamp(bucket, UTC))
            out[k][0] += q
            out[k][1] |= f
            out[k][2] += 1
            out[k][3] += c
        return out

    levels = {
        "energy_1h": sums(lambda t: t.replace(minute=0)),
        "energy_1d": sums(lambda t: ((t + beijing).replace(hour=0, minute=0)) - beijing),
        "energy_1mon": sums(lambda t: ((t + beijing).replace(day=1, hour=0, minute=0)) - beijing),
    }
    assert len(levels["energy_1d"]) == 3 and len(levels["energy_1mon"]) == 2
    for table, want in levels.items():
        got = conn.execute(
            f"SELECT r.bucket, r.quantity, r.flags, r.intervals, r.coverage FROM {table} r "
            "JOIN points p ON p.id = r.point_id WHERE p.point = %s ORDER BY 1",
            (point,),
        ).fetchall()
        assert [g[0] for g in got] == sorted(want), table
        for bucket, q, f, n, c in got:
            w = want[bucket]
            assert (q, f, n, c) == (pytest.approx(w[0], rel=1e-12), w[1], w[2], pytest.approx(w[3], rel=1e-6)), table
    total = sum(q for _, q, _, _ in iv)
    assert total == pytest.approx(vals[-1] - vals[0], rel=1e-12)


def test_late_intervals_rewrite_the_rollups(db_url, site, conn):
    point = counter_names(site, 0)[0]
    early = [T0 + timedelta(hours=h) for h in (0, 1, 30)]
    deliver(conn, db_url, site, [reading(point, t, 100.0 * i) for i, t in enumerate(early)])
    build_intervals(conn)
    refresh_continuous_aggregates(conn, None, None)
    # A reading that arrives late, between two others, moves consumption between days.
    deliver(conn, db_url, site, [reading(point, T0 + timedelta(hours=20), 110.0)], seq=1)
    build_intervals(conn)
    refresh_continuous_aggregates(conn, None, None)
    days = conn.execute(
        "SELECT r.quantity FROM energy_1d r JOIN points p ON p.id = r.point_id WHERE p.point = %s ORDER BY bucket",
        (point,),
    ).fetchall()
    hours_total = conn.execute(
        "SELECT sum(quantity) FROM energy_1h r JOIN points p ON p.id = r.point_id WHERE p.point = %s", (point,)
    ).fetchone()[0]
    assert sum(d[0] for d in days) == pytest.approx(200.0) == pytest.approx(hours_total)
    assert len(days) == 3
