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

from carbonwatch.accounting.flags import FLAG_PARTIAL, FLAG_RESET, FLAG_ROLLOVER, FLAG_SPIKE
from carbonwatch.accounting.intervals import counter_intervals
from carbonwatch.collector import intervals as builder_module
from carbonwatch.collector.intervals import IntervalBuilder, baseline_index, build_intervals
from carbonwatch.collector.metrics import CollectorMetrics
from carbonwatch.collector.registry import Registry
from carbonwatch.collector.rollups import refresh_continuous_aggregates
from carbonwatch.collector.validate import Message, parse_message
from carbonwatch.collector.writer import write_batch
from carbonwatch.contracts.site import Site

T0 = datetime(2026, 1, 31, 15, 0, tzinfo=UTC)  # 23:00 Beijing: days and a month turn over soon after
ROLLOVER = 100_000.0


@pytest.fixture
def site(db_url):
    s = make_site(gateways=1, points=8)
    register(db_url, s)
    return s


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


def reference(ts, values, rollover=None, max_rate_per_hour=None):
    order = np.argsort(ts)
    rate = None if max_rate_per_hour is None else max_rate_per_hour / 3600.0
    iv = counter_intervals(np.asarray(ts)[order], np.asarray(values)[order], rollover, max_rate=rate)
    return list(zip(iv.bucket.tolist(), iv.quantity.tolist(), iv.flags.tolist(), iv.coverage.tolist(), strict=True))


def assert_same(got, want):
    assert [g[0] for g in got] == [w[0] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g[1] == pytest.approx(w[1], rel=1e-9, abs=1e-6), g[0]
        assert g[2] == w[2], g[0]
        assert g[3] == pytest.approx(w[3], abs=1e-6), g[0]


def test_baseline_skips_readings_below_an_earlier_one():
    assert baseline_index(np.array([])) == 0
    assert baseline_index(np.array([5.0, 6.0, 7.0]), complete=True) == 2
    assert baseline_index(np.array([5.0, 6.0, 0.0, 7.0])) == 1  # a transient zero is no baseline
    assert baseline_index(np.array([5.0, 0.0, 0.0, 6.0, 6.5, 0.0])) == 3


def test_baseline_is_confirmed_by_the_reading_after_it():
    # the last reading before new ones may turn out a lone jump once its successor arrives
    assert baseline_index(np.array([5.0, 6.0, 7.0])) == 1
    assert baseline_index(np.array([5.0, 6.0, 7.0]), 3, complete=False) == 1
    assert baseline_index(np.array([5.0, 6.0, 7.0, 8.0]), 3) == 2  # the next one (8) is loaded and confirms it
    # a garbage read taken back by the next reading is no baseline, nor is the reading just before it
    assert baseline_index(np.array([100.0, 101.0, 42_949_672.95, 102.0, 103.0]), 4) == 1
    assert baseline_index(np.array([5.0, 6.0, 0.0])) == 1  # a drop below every reading confirms 6
    assert baseline_index(np.array([5.0, 9.0, 6.0]), complete=True) == 0  # 9 may be a lone jump: not 9
    assert baseline_index(np.array([7.0])) == 0  # nothing qualifies: the earliest loaded


@st.composite
def histories(draw):
    """A counter read at irregular times, with transient drops, garbage reads, (sometimes) a register
    rollover, (sometimes) a steady load whose wraps after long gaps its observed rate judges, and
    (sometimes) a rate limit."""
    # a steady load on a wrapping register with no rate limit: bursts of 10-15 polls 30-60 s apart (less
    # than a bucket) between long gaps that carry wraps beyond 1/16 of the register. A window starting a
    # few readings before a gap then often holds no complete bucket of its own, and the observed rate
    # that judges the wrap across the gap comes from the stored buckets of the gaps before.
    steady = draw(st.booleans())
    fast = st.integers(min_value=1, max_value=30)
    if steady:
        gaps = []
        for _ in range(draw(st.integers(min_value=2, max_value=5))):
            gaps += [draw(st.integers(min_value=1800, max_value=4 * 3600))]
            gaps += draw(st.lists(st.integers(min_value=30, max_value=60), min_size=9, max_size=14))
        n = len(gaps)
        rate = draw(st.sampled_from([2.0, 5.0]))
        incs = [g * rate * draw(st.sampled_from([1.0] * 4 + [0.0, 3.0])) for g in gaps]
        rollover = ROLLOVER
    else:
        n = draw(st.integers(min_value=3, max_value=60))
        # runs of fast polls (many readings in one bucket) between longer gaps
        gap = st.one_of(fast, st.integers(min_value=1, max_value=3 * 3600))
        gaps = draw(st.lists(gap, min_size=n, max_size=n))
        incs = draw(st.lists(st.floats(min_value=0, max_value=2000, allow_nan=False), min_size=n, max_size=n))
        rollover = draw(st.sampled_from([None, ROLLOVER]))
    start = draw(st.floats(min_value=0, max_value=99_000 if rollover else 1e7))
    kinds = ["ok"] * (12 if steady else 4) + ["zero", "spike"]
    glitch = draw(st.lists(st.sampled_from(kinds), min_size=n, max_size=n))
    ts, values, total, run = [], [], start, 0
    t = T0.timestamp()
    for i in range(n):
        t += gaps[i]
        total += incs[i]
        v = total % rollover if rollover else total
        if glitch[i] != "ok" and i > 0 and run < 2:  # short runs of transient zeros and garbage reads
            v, run = (0.0 if glitch[i] == "zero" else 42_949_672.95), run + 1
        else:
            run = 0
        ts.append(round(t, 3))
        values.append(round(v, 3))
    # a rate limit in kWh per hour (the site file's max_rate), or none
    limits = [None] * 3 + [36_000_000.0] if steady else [None, 3600.0, 720_000.0, 36_000_000.0]
    max_rate = draw(st.sampled_from(limits))
    chunks = draw(st.integers(min_value=1, max_value=min(10 if steady else 6, n)))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    arrival = draw(st.sampled_from(["shuffled", "runs in order", "runs in any order"]))
    return ts, values, rollover, max_rate, chunks, seed, arrival


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(histories())
def test_intervals_match_a_whole_history_computation_whatever_the_arrival_order(db_url, site, conn, history):
    ts, values, rollover, max_rate, chunks, seed, arrival = history
    point = counter_names(site, 0)[0]
    conn.execute(
        "UPDATE points SET rollover = %s, max_rate_per_hour = %s WHERE point = %s", (rollover, max_rate, point)
    )
    for table in ("readings", "intervals_15m", "interval_dirty"):
        conn.execute(f"DELETE FROM {table}")
    rng = random.Random(seed)
    idx = list(range(len(ts)))
    if arrival == "shuffled":  # late data: readings arrive in random groups, in random order
        rng.shuffle(idx)
        parts = [sorted(idx[k::chunks]) for k in range(chunks)]
    else:  # runs of consecutive readings, as a gateway sends them (or drains its buffer after an outage)
        # often starting after a long gap: the window then starts just before the gap, and the
        # observed rate of a wrap across it comes from intervals built before
        after_gaps = [i for i in range(1, len(ts)) if ts[i] - ts[i - 1] >= 1800]
        cuts = set(rng.sample(after_gaps, min(len(after_gaps), chunks - 1)))
        cuts |= set(rng.sample(range(1, len(ts)), chunks - 1 - len(cuts)))
        cuts = sorted(cuts)
        parts = [idx[a:b] for a, b in zip([0, *cuts], [*cuts, len(ts)], strict=True)]
        if arrival == "runs in any order":
            rng.shuffle(parts)
    delivered: list[int] = []
    for k, part in enumerate(parts):
        rs = [reading(point, datetime.fromtimestamp(ts[i], UTC), values[i]) for i in part]
        deliver(conn, db_url, site, rs, seq=k)
        delivered += part
        # sometimes several deliveries queue up before a build; runs in order are built as they come (live)
        if arrival == "runs in order" or rng.random() < 0.7:
            build_intervals(conn)
            # after every build, what is stored is what the readings so far give
            so_far = ([ts[i] for i in delivered], [values[i] for i in delivered])
            assert_same(stored(conn, point), reference(*so_far, rollover, max_rate))
    build_intervals(conn)
    assert conn.execute("SELECT count(*) FROM interval_dirty").fetchone()[0] == 0
    assert_same(stored(conn, point), reference(ts, values, rollover, max_rate))


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

    def failing_for_one_point(ts, values, rollover=None, bucket_seconds=900, *, max_rate=None, prior=None):
        if rollover == marker:
            raise ValueError("corrupt history")
        return real(ts, values, rollover, bucket_seconds, max_rate=max_rate, prior=prior)

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


def test_the_site_files_max_rate_reaches_the_builder(db_url, conn):
    """A point's max_rate (per hour) is stored by the registry and used by the builder: a jump to a
    new level faster than the meter can count is flagged and not counted."""
    raw = make_site(gateways=1, points=8).model_dump(mode="json", exclude_none=True)
    limited = raw["gateways"][0]["meters"][0]["points"][0]
    limited["max_rate"] = 600.0  # kWh per hour: a 500 kW incomer with a margin
    site = Site.model_validate(raw)
    register(db_url, site)
    point = limited["id"]
    assert conn.execute("SELECT max_rate_per_hour FROM points WHERE point = %s", (point,)).fetchone() == (600.0,)
    ts = [T0 + timedelta(minutes=5 * k) for k in range(6)]
    values = [1000.0, 1040.0, 1080.0, 9_000_000.0, 9_000_040.0, 9_000_080.0]  # a 9 GWh step in 5 minutes
    deliver(conn, db_url, site, [reading(point, t, v) for t, v in zip(ts, values, strict=True)])
    build_intervals(conn)
    got = stored(conn, point)
    assert sum(q for _, q, _, _ in got) == pytest.approx(160.0)
    assert any(f & FLAG_SPIKE for _, _, f, _ in got)
    assert_same(got, reference([t.timestamp() for t in ts], values, None, 600.0))


def test_a_garbage_read_and_a_replaced_meter_count_nothing_without_a_rate(db_url, site, conn):
    """No max_rate configured: one all-ones register read is skipped, and a uint32 register at 30e6 kWh
    replaced and reading 0, 5, 10 is a reset, not a 12.9 GWh rollover."""
    garbage, replaced = counter_names(site, 0)[:2]
    conn.execute("UPDATE points SET rollover = %s WHERE point = %s", (2**32 * 0.01, replaced))
    ts = [T0 + timedelta(minutes=5 * k) for k in range(6)]
    rows = [reading(garbage, t, v) for t, v in zip(ts, [100.0, 101.0, 42_949_672.95, 102.0, 103.0, 104.0], strict=True)]
    rows += [reading(replaced, t, v) for t, v in zip(ts, [30e6 - 20, 30e6 - 10, 30e6, 0.0, 5.0, 10.0], strict=True)]
    deliver(conn, db_url, site, rows)
    build_intervals(conn)
    assert sum(q for _, q, _, _ in stored(conn, garbage)) == pytest.approx(4.0)
    assert sum(q for _, q, _, _ in stored(conn, replaced)) == pytest.approx(30.0)
    flags = 0
    for _, _, f, _ in stored(conn, replaced):
        flags |= f
    assert flags & FLAG_RESET and not flags & FLAG_ROLLOVER


def test_max_rate_in_the_site_contract():
    from pydantic import ValidationError

    from carbonwatch.contracts.site import Point

    base = {"id": "incomer.kwh", "address": 0, "type": "uint32", "unit": "kWh", "kind": "counter"}
    p = Point.model_validate({**base, "max_rate": 1800})
    assert p.max_rate == 1800.0 and p.max_rate_per_second == pytest.approx(0.5)
    assert Point.model_validate(base).max_rate is None and Point.model_validate(base).max_rate_per_second is None
    for bad in (0, -5, float("inf"), float("nan"), "fast"):
        with pytest.raises(ValidationError, match="max_rate"):
            Point.model_validate({**base, "max_rate": bad})
    with pytest.raises(ValidationError, match=r"max_rate .* applies to counters only"):
        Point.model_validate({**base, "kind": "gauge", "unit": "kW", "max_rate": 10})


# --- wraps after long gaps, judged by the counter's observed rate ---------------------------------

UINT16 = 65_536.0


def long_gap_history(minutes: int = 112):
    """A uint16 kWh counter (no max_rate) on a 15.6 MW load, read every minute for ``minutes``, then
    75 minutes later across a wrap (19,500 kWh, 30% of the register), then every minute for 5 more."""
    ts = [T0 + timedelta(minutes=m) for m in range(minutes + 1)]
    ts += [ts[-1] + timedelta(minutes=75 + m) for m in range(6)]
    true = [62_000.0 - 260.0 * minutes + 260.0 * (t - T0).total_seconds() / 60 for t in ts]
    return ts, [v % UINT16 for v in true], true[-1] - true[0]


@pytest.mark.parametrize("arrival", ["at once", "history first", "history last"])
def test_a_wrap_after_a_long_gap_is_counted_in_full_however_the_readings_arrive(db_url, site, conn, arrival):
    """The review's example through the builder. Delivered after the history was built, the window
    starts a few readings before the gap and holds no complete bucket of its own before the gap's
    (the history ends 7 minutes into a bucket): the observed rate comes from the stored intervals.
    Delivered before the history, it is first a reset, and the history's build rewrites it (the
    rate of the buckets it rewrites judges wraps up to a day later)."""
    point = counter_names(site, 0)[0]
    conn.execute("UPDATE points SET rollover = %s, max_rate_per_hour = NULL WHERE point = %s", (UINT16, point))
    ts, values, total = long_gap_history()
    rows = [reading(point, t, v) for t, v in zip(ts, values, strict=True)]
    history, rest = rows[:113], rows[113:]
    if arrival == "at once":
        deliver(conn, db_url, site, rows)
    else:
        first, second = (history, rest) if arrival == "history first" else ([*history[-2:], *rest], history[:-2])
        deliver(conn, db_url, site, first)
        build_intervals(conn)
        if arrival == "history last":  # the wrap is seen with no history yet: a reset, for now
            assert any(f & FLAG_RESET for _, _, f, _ in stored(conn, point))
        deliver(conn, db_url, site, second, seq=1)
    build_intervals(conn)
    got = stored(conn, point)
    assert sum(q for _, q, _, _ in got) == pytest.approx(total)
    assert total == pytest.approx(19_500.0 + 260.0 * (112 + 5))
    flags = 0
    for _, _, f, _ in got:
        flags |= f
    assert flags & FLAG_ROLLOVER and not flags & FLAG_RESET
    assert_same(got, reference([t.timestamp() for t in ts], values, UINT16))


def test_the_builder_reads_the_stored_history_only_when_a_window_has_a_reset(db_url, site, conn, monkeypatch):
    """Live builds of a counter running on cost no extra query; a window with a reset is computed
    again with the stored intervals of the day before it."""
    point = counter_names(site, 0)[0]
    conn.execute("UPDATE points SET rollover = %s WHERE point = %s", (UINT16, point))
    ts, values, _ = long_gap_history()
    deliver(conn, db_url, site, [reading(point, t, v) for t, v in zip(ts[:113], values[:113], strict=True)])
    build_intervals(conn)
    queries = []
    execute = psycopg.Cursor.execute

    def spy(self, query, *args, **kwargs):
        queries.append(query)
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", spy)
    more = [T0 + timedelta(minutes=113 + m) for m in range(3)]  # the counter runs on: no wrap
    deliver(conn, db_url, site, [reading(point, t, values[112] + 260.0 * (k + 1)) for k, t in enumerate(more)], 1)
    build_intervals(conn)
    assert builder_module._PRIOR not in queries
    deliver(conn, db_url, site, [reading(point, t, v) for t, v in zip(ts[113:], values[113:], strict=True)], 2)
    build_intervals(conn)
    assert builder_module._PRIOR in queries  # a reset at first: judged again with the stored history
    got = stored(conn, point)
    assert any(f & FLAG_ROLLOVER for _, _, f, _ in got) and not any(f & FLAG_RESET for _, _, f, _ in got)


def test_a_replaced_meter_with_a_long_history_is_still_a_reset_in_the_builder(db_url, site, conn):
    """A uint32 x 0.01 register at 30e6 kWh with a day of history on a 2 MW load, replaced over a
    day and reading 0, 5, 10: a reset (the 12.9 GWh it would imply is far beyond 4x its rate)."""
    point = counter_names(site, 0)[0]
    conn.execute("UPDATE points SET rollover = %s WHERE point = %s", (2**32 * 0.01, point))
    ts = [T0 + timedelta(minutes=5 * k) for k in range(289)]
    values = [30e6 - 48_000.0 + 2_000.0 / 12 * k for k in range(289)]
    deliver(conn, db_url, site, [reading(point, t, v) for t, v in zip(ts, values, strict=True)])
    build_intervals(conn)
    after = [ts[-1] + timedelta(days=1, minutes=5 * k) for k in range(3)]
    deliver(conn, db_url, site, [reading(point, t, v) for t, v in zip(after, [0.0, 5.0, 10.0], strict=True)], 1)
    build_intervals(conn)
    got = stored(conn, point)
    assert sum(q for _, q, _, _ in got) == pytest.approx(48_000.0 + 10.0)
    flags = 0
    for _, _, f, _ in got:
        flags |= f
    assert flags & FLAG_RESET and flags & FLAG_PARTIAL and not flags & FLAG_ROLLOVER
    assert_same(got, reference([t.timestamp() for t in ts + after], [*values, 0.0, 5.0, 10.0], 2**32 * 0.01))
