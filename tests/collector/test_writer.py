"""The writer against a real PostgreSQL: binary COPY, idempotence, the commit guard, dead letters,
completeness bits and the split of a batch the database refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
from fleet import make_site, point_names, reading, register, series, telemetry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbonwatch.collector.copy_format import encode_readings
from carbonwatch.collector.registry import Registry
from carbonwatch.collector.timebase import month_slots
from carbonwatch.collector.validate import Message, parse_message
from carbonwatch.collector.writer import DirectCopy, write_batch, write_isolating

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def site(db_url):
    s = make_site(gateways=2, points=8)
    register(db_url, s)
    return s


def parsed(db_url, messages):
    registry = Registry(db_url)
    return [parse_message(Message(t, p, i + 1, 1), registry, 600.0) for i, (t, p) in enumerate(messages)]


def count(conn, sql, *params):
    return conn.execute(sql, params).fetchone()[0]


def test_rows_are_committed_when_write_batch_returns(db_url, site, conn):
    batch = parsed(db_url, series(site, 0, T0, steps=3, step=timedelta(minutes=1), per_message=1))
    result = write_batch(conn, batch)
    assert result.inserted == result.readings == 3 * 8
    # Seen from another session, so the rows are really committed (not in a savepoint of an open
    # transaction, the bug that once acknowledged uncommitted rows).
    with psycopg.connect(db_url) as other:
        assert count(other, "SELECT count(*) FROM readings") == 24


def test_a_connection_without_autocommit_is_refused(db_url, site):
    batch = parsed(db_url, series(site, 0, T0, steps=1, step=timedelta(minutes=1), per_message=1))
    # autocommit off: conn.transaction() would be a savepoint
    with psycopg.connect(db_url) as conn, pytest.raises(RuntimeError, match="autocommit"):
        write_batch(conn, batch)
    with psycopg.connect(db_url) as other:
        assert count(other, "SELECT count(*) FROM readings") == 0


def test_duplicates_and_redeliveries_insert_once(db_url, site, conn):
    messages = series(site, 0, T0, steps=4, step=timedelta(minutes=5), per_message=2)
    batch = parsed(db_url, messages + messages[:1])  # a message twice in one batch
    first = write_batch(conn, batch)
    assert first.readings == 6 * 8 and first.inserted == 4 * 8
    again = write_batch(conn, parsed(db_url, messages))  # a redelivery of everything
    assert again.inserted == 0
    assert count(conn, "SELECT count(*) FROM readings") == 32
    assert count(conn, "SELECT count(*) - count(DISTINCT (point_id, ts)) FROM readings") == 0
    assert count(conn, "SELECT last_seq FROM gateways WHERE gateway = 'gw-0'") == 1


def test_late_rows_older_than_a_week_are_checked_before_insert(db_url, site, conn):
    old = datetime.now(UTC) - timedelta(days=40)
    messages = series(site, 0, old, steps=2, step=timedelta(minutes=15), per_message=2)
    assert write_batch(conn, parsed(db_url, messages)).inserted == 16
    assert write_batch(conn, parsed(db_url, messages)).inserted == 0
    assert count(conn, "SELECT count(*) FROM readings") == 16


def test_failed_reads_are_stored_with_null_values(db_url, site, conn):
    names = point_names(site, 0)
    msg = telemetry(site, 0, 7, [reading(names[0], T0, None, "bad"), reading(names[1], T0, 5.5, "uncertain")])
    write_batch(conn, parsed(db_url, [msg]))
    rows = conn.execute("SELECT value, quality FROM readings ORDER BY quality").fetchall()
    assert rows == [(5.5, 1), (None, 2)]


def test_binary_copy_round_trips_values_times_and_nulls(conn):
    conn.execute("CREATE TEMP TABLE t (point_id int4, ts timestamptz, value float8, quality int2)")
    pid = np.array([1, 2, 3, 2147483647], dtype=np.int32)
    ts = np.array([946_684_800_000_000, 1_767_225_600_123_456, 4_102_444_800_000_001, 1], dtype=np.int64)
    value = np.array([0.0, -1.5e300, np.nan, 123456.789], dtype=np.float64)
    quality = np.array([0, 1, 2, 0], dtype=np.int16)
    with conn.cursor() as cur, cur.copy("COPY t FROM STDIN (FORMAT BINARY)") as cp:
        cp.write(encode_readings(pid, ts, value, quality))
    rows = conn.execute("SELECT point_id, ts, value, quality FROM t ORDER BY point_id").fetchall()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert rows == [
        (1, epoch + timedelta(microseconds=946_684_800_000_000), 0.0, 0),
        (2, epoch + timedelta(microseconds=1_767_225_600_123_456), -1.5e300, 1),
        (3, epoch + timedelta(microseconds=4_102_444_800_000_001), None, 2),
        (2147483647, epoch + timedelta(microseconds=1), 123456.789, 0),
    ]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(min_value=946_771_200, max_value=4_102_444_799), min_size=1, max_size=50))
def test_beijing_months_and_slots_agree_with_postgresql(conn, seconds):
    ts_us = np.array(seconds, dtype=np.int64) * 1_000_000 + 999_999
    month_us, slot = month_slots(ts_us)
    rows = conn.execute(
        """SELECT extract(epoch FROM date_trunc('month', t, 'Asia/Shanghai'))::int8,
                  floor(extract(epoch FROM t - date_trunc('month', t, 'Asia/Shanghai')) / 900)::int
           FROM unnest(%s::timestamptz[]) WITH ORDINALITY AS u(t, i) ORDER BY i""",
        ([datetime.fromtimestamp(s + 0.999999, UTC) for s in seconds],),
    ).fetchall()
    assert [(int(m // 1_000_000), int(s)) for m, s in zip(month_us, slot, strict=True)] == rows


def test_completeness_bits_are_set_once_per_slot(db_url, site, conn):
    names = point_names(site, 0)
    # Beijing 2026-03-01 00:00 is 2026-02-28 16:00 UTC: T0 is slot 32 of the March month.
    rs = [reading(names[0], T0 + timedelta(minutes=m), 1.0 + m) for m in (0, 1, 14, 15, 16)]
    rs.append(reading(names[0], T0 + timedelta(minutes=30), None, "bad"))  # a failed read is not a value
    write_batch(conn, parsed(db_url, [telemetry(site, 0, 1, rs)]))
    write_batch(conn, parsed(db_url, [telemetry(site, 0, 1, rs)]))  # redelivered: nothing changes
    row = conn.execute("SELECT bucket, received, slots FROM completeness_1mon").fetchone()
    assert row[0] == datetime(2026, 2, 28, 16, tzinfo=UTC)
    assert row[1] == 2
    assert [i for i, b in enumerate(row[2]) if b == "1"] == [32, 33]


def test_counters_queue_dirty_spans_in_the_same_transaction(db_url, site, conn):
    write_batch(conn, parsed(db_url, series(site, 0, T0, steps=3, step=timedelta(minutes=10), per_message=3)))
    rows = conn.execute(
        "SELECT p.point, d.lo, d.hi FROM interval_dirty q, unnest(q.point_ids, q.lo, q.hi) AS d(point_id, lo, hi) "
        "JOIN points p ON p.id = d.point_id ORDER BY 1"
    ).fetchall()
    counters = sorted(n for n in point_names(site, 0) if n.endswith("kwh"))
    assert [r[0] for r in rows] == counters  # gauges need no intervals
    assert {(r[1], r[2]) for r in rows} == {(T0, T0 + timedelta(minutes=20))}
    assert conn.execute("SELECT count(*) FROM interval_dirty").fetchone()[0] == 1  # one row per batch


def test_dead_letters_keep_the_raw_payload_once(db_url, site, conn):
    bad = ("cw/v1/" + site.enterprise.code + "/gw-0/telemetry", b"\x00not json\xff")
    batch = parsed(db_url, [bad, bad])
    result = write_batch(conn, batch)
    assert [d.reason for d in result.dead] == ["not_json", "not_json"]
    write_batch(conn, parsed(db_url, [bad]))
    rows = conn.execute("SELECT topic, payload, reason FROM dead_letters").fetchall()
    assert rows == [(bad[0], bad[1], "not_json")]


def test_a_message_the_database_refuses_becomes_a_dead_letter_and_the_rest_commit(db_url, site, conn):
    conn.execute("ALTER TABLE readings ADD CONSTRAINT below_a_billion CHECK (value < 1e9)")
    names = point_names(site, 0)
    good = [telemetry(site, 0, i, [reading(names[0], T0 + timedelta(minutes=i), 10.0 + i)]) for i in range(5)]
    refused = telemetry(site, 0, 99, [reading(names[1], T0, 5e9)])
    result = write_isolating(conn, parsed(db_url, [*good[:2], refused, *good[2:]]))
    assert result.inserted == 5
    assert [d.reason for d in result.dead] == ["rejected_by_database"]
    reason, detail, payload = conn.execute("SELECT reason, detail, payload FROM dead_letters").fetchone()
    assert reason == "rejected_by_database" and "below_a_billion" in detail and payload == refused[1]
    assert count(conn, "SELECT count(*) FROM readings") == 5


def test_direct_copy_takes_new_rows_and_falls_back_on_a_duplicate(db_url, site, conn):
    recent = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    messages = series(site, 0, recent, steps=12, step=timedelta(minutes=1), per_message=2)  # 6 messages
    direct = DirectCopy(pause=1)
    first = write_batch(conn, parsed(db_url, messages[:2]), direct=direct)
    assert (direct.attempts, direct.fallbacks) == (1, 0)
    assert first.inserted == first.readings == 4 * 8
    # a redelivered message beside a new one: the COPY is refused, the staging path skips the duplicate
    second = write_batch(conn, parsed(db_url, messages[1:3]), direct=direct)
    assert (direct.attempts, direct.fallbacks) == (2, 1)
    assert (second.readings, second.inserted) == (4 * 8, 2 * 8)
    # after a refusal the next batch goes straight to staging (pause=1), the one after tries again
    write_batch(conn, parsed(db_url, messages[2:3]), direct=direct)
    assert direct.attempts == 2
    third = write_batch(conn, parsed(db_url, messages[3:] + messages[3:]), direct=direct)  # a duplicate inside
    assert (direct.attempts, direct.fallbacks) == (3, 2)
    assert third.inserted == 6 * 8
    assert count(conn, "SELECT count(*) FROM readings") == 12 * 8
    assert count(conn, "SELECT count(*) - count(DISTINCT (point_id, ts)) FROM readings") == 0
    # completeness, the interval queue and the sequence bookkeeping are written on both paths
    assert count(conn, "SELECT count(DISTINCT point_id) FROM completeness_1mon") == 8
    assert count(conn, "SELECT count(*) FROM telemetry_received") == 6
    assert count(conn, "SELECT last_seq FROM gateways WHERE gateway = 'gw-0'") == 5


def test_direct_copy_is_not_tried_for_late_rows(db_url, site, conn):
    old = datetime.now(UTC) - timedelta(days=10)
    direct = DirectCopy()
    result = write_batch(conn, parsed(db_url, series(site, 0, old, 2, timedelta(minutes=15), 2)), direct=direct)
    assert direct.attempts == 0 and result.inserted == 16
