"""Gaps in a gateway's telemetry sequence, against a real PostgreSQL: every number that arrived
is recorded with its message, folding keeps the ranges exact, and a hole shows as a gap until
its messages arrive."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fleet import make_site, point_names, reading, register, telemetry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbonwatch.collector.registry import Registry
from carbonwatch.collector.sequence import fold_received, missing_messages, open_gaps
from carbonwatch.collector.validate import Message, parse_message
from carbonwatch.collector.writer import write_batch

T0 = datetime(2026, 3, 1, tzinfo=UTC)
NOW = timedelta(0)  # no grace: a hole is a gap as soon as a later message is in


@pytest.fixture
def site(db_url):
    s = make_site(gateways=2, points=2)
    register(db_url, s)
    return s


def deliver(db_url, conn, site, gateway: int, seqs) -> None:
    """Messages with sequence numbers ``seqs`` from ``gateway``, each with its own readings."""
    registry = Registry(db_url)
    batch = []
    for seq in seqs:
        ts = T0 + timedelta(minutes=seq)
        readings = [reading(p, ts, 1000.0 + seq) for p in point_names(site, gateway)]
        topic, payload = telemetry(site, gateway, seq, readings)
        batch.append(parse_message(Message(topic, payload, 1, 1), registry, 600.0))
    assert all(p.dead is None and p.seq == s for p, s in zip(batch, seqs, strict=True))
    write_batch(conn, batch)


def gaps(conn, **kw):
    return [(g.gateway, g.first_missing, g.last_missing) for g in open_gaps(conn, **kw)]


def test_a_hole_is_a_gap_until_its_messages_arrive(db_url, conn, site):
    deliver(db_url, conn, site, 0, [0, 1, 2, 3, 6, 7])
    deliver(db_url, conn, site, 1, [10, 11, 12])
    assert fold_received(conn)
    assert gaps(conn, grace=NOW) == [("gw-0", 4, 5)]
    assert open_gaps(conn, grace=NOW)[0].messages == 2
    # within the grace period the hole is not yet a gap: a message may still be on its way
    assert gaps(conn) == []
    deliver(db_url, conn, site, 0, [5, 3])  # one of the missing, and a redelivery
    fold_received(conn)
    assert gaps(conn, grace=NOW) == [("gw-0", 4, 4)]
    deliver(db_url, conn, site, 0, [4, 9])
    fold_received(conn)
    assert gaps(conn, grace=NOW) == [("gw-0", 8, 8)]
    assert conn.execute("SELECT count(*) FROM telemetry_received").fetchone()[0] == 0
    ranges = conn.execute("SELECT lo, hi FROM telemetry_ranges r ORDER BY gateway_id, lo").fetchall()
    assert ranges == [(0, 7), (9, 9), (10, 12)]


def test_a_dead_lettered_message_counts_as_arrived(db_url, conn, site):
    deliver(db_url, conn, site, 0, [0, 2])
    registry = Registry(db_url)
    foreign = point_names(site, 1)[0]  # gw-0 reporting a point of gw-1: refused, but it arrived
    topic, payload = telemetry(site, 0, 1, [reading(foreign, T0, 1.0)])
    p = parse_message(Message(topic, payload, 1, 1), registry, 600.0)
    assert p.dead is not None and p.dead.reason == "foreign_point"
    write_batch(conn, [p])
    fold_received(conn)
    assert gaps(conn, grace=NOW) == []


def test_gaps_older_than_the_horizon_leave_the_report(db_url, conn, site):
    deliver(db_url, conn, site, 0, [0, 5])
    fold_received(conn)
    conn.execute("UPDATE telemetry_ranges SET first_received = now() - interval '8 days' WHERE lo = 5")
    assert gaps(conn, grace=NOW) == []
    assert gaps(conn, grace=NOW, horizon=timedelta(days=9)) == [("gw-0", 1, 4)]


def test_one_collector_folds_at_a_time(db_url, conn, site):
    deliver(db_url, conn, site, 0, [0, 1])
    with psycopg.connect(db_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (0x63775F736571,))
        assert fold_received(conn) is False  # the other collector is folding: skip this turn
    assert fold_received(conn) is True


def test_folding_while_writers_commit_loses_no_number(db_url, conn, site):
    """Numbers committed during a fold stay for the next one: nothing falls between."""
    stop = threading.Event()
    folds = []

    def folder():
        with psycopg.connect(db_url, autocommit=True) as c:
            while not stop.is_set():
                folds.append(fold_received(c))

    t = threading.Thread(target=folder)
    t.start()
    try:
        for first in range(0, 200, 10):
            deliver(db_url, conn, site, 0, range(first, first + 10))
    finally:
        stop.set()
        t.join(30)
    fold_received(conn)
    assert any(folds)
    assert conn.execute("SELECT lo, hi FROM telemetry_ranges").fetchall() == [(0, 199)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    delivered=st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=40),
    folds=st.lists(st.integers(min_value=1, max_value=40), max_size=4),
)
def test_gaps_are_exactly_the_numbers_never_delivered(db_url, conn, site, delivered, folds):
    conn.execute("DELETE FROM telemetry_received; DELETE FROM telemetry_ranges")
    # deliver in the given order, folding after some of the messages
    cuts = sorted({min(c, len(delivered)) for c in folds} | {len(delivered)})
    start = 0
    for cut in cuts:
        if delivered[start:cut]:
            deliver(db_url, conn, site, 0, delivered[start:cut])
        fold_received(conn)
        start = cut
    seen = set(delivered)
    expected = [n for n in range(min(seen), max(seen) + 1) if n not in seen]
    missing = [n for g in open_gaps(conn, grace=NOW) for n in range(g.first_missing, g.last_missing + 1)]
    assert missing == expected


def test_gaps_past_the_horizon_are_forgotten_and_their_ranges_merged(db_url, conn, site):
    deliver(db_url, conn, site, 0, [0, 1, 5, 6, 9, 10])
    fold_received(conn)
    # the range after the first hole was noticed 8 days ago, the one after the second just now
    conn.execute("UPDATE telemetry_ranges SET first_received = now() - interval '8 days' WHERE lo IN (0, 5)")
    fold_received(conn)
    ranges = conn.execute("SELECT lo, hi FROM telemetry_ranges ORDER BY lo").fetchall()
    assert ranges == [(0, 6), (9, 10)]
    assert gaps(conn, grace=NOW) == [("gw-0", 7, 8)]
    # new numbers rewrite only the ranges they reach: the merged old range keeps its times
    before = conn.execute("SELECT first_received FROM telemetry_ranges WHERE lo = 0").fetchone()[0]
    deliver(db_url, conn, site, 0, [11, 12])
    fold_received(conn)
    assert conn.execute("SELECT lo, hi FROM telemetry_ranges ORDER BY lo").fetchall() == [(0, 6), (9, 12)]
    assert conn.execute("SELECT first_received FROM telemetry_ranges WHERE lo = 0").fetchone()[0] == before


def test_missing_messages_sum_the_gaps_per_gateway(db_url, conn, site):
    deliver(db_url, conn, site, 0, [0, 3, 4, 9])
    deliver(db_url, conn, site, 1, [0, 2])
    fold_received(conn)
    code = site.enterprise.code
    assert missing_messages(conn, grace=NOW) == {("140000", code, "gw-0"): 2 + 4, ("140000", code, "gw-1"): 1}
    assert missing_messages(conn) == {}  # all within the grace period
