"""The collector with a real Mosquitto and PostgreSQL: malformed messages, duplicates, two
collectors on one shared subscription, a broker restart, the metrics endpoint."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fleet import (
    enterprise_code,
    make_site,
    point_names,
    publish,
    reading,
    register,
    series,
    telemetry,
)

from carbonwatch.contracts.payload import topic
from carbonwatch.embedded import free_port

from support import CollectorThread, wait_until

pytestmark = pytest.mark.timeout(180)
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


@pytest.fixture
def site(db_url):
    s = make_site(gateways=2, points=8)
    register(db_url, s)
    return s


def scalar(db_url, sql, *params):
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql, params).fetchone()[0]


def good(site, seq, minute=0):
    names = point_names(site, 0)
    return telemetry(site, 0, seq, [reading(n, T0 + timedelta(minutes=minute), 1.0 + seq) for n in names])


def doc(site, **changes):
    """A valid telemetry document of gateway gw-0, with fields replaced."""
    names = point_names(site, 0)
    d = {
        "v": 1,
        "enterprise": site.enterprise.code,
        "gateway": "gw-0",
        "seq": 1,
        "sent": "2026-01-01T00:00:00.000Z",
        "readings": [reading(names[0], T0, 12.5)],
    }
    d.update(changes)
    return d


def malformed(site):
    """(name, topic, payload, reason): every kind of bad message the collector must refuse."""
    e, names, other = site.enterprise.code, point_names(site, 0), point_names(site, 1)
    t0 = topic(e, "gw-0", "telemetry")

    def r(**kw):
        return [{**reading(names[0], T0, 12.5), **kw}]

    def j(d):
        return json.dumps(d).encode()

    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    return [
        ("non-JSON text", t0, b"meter 1: 1234.5 kWh", "not_json"),
        ("invalid UTF-8", t0, b'\xff\xfe{"v": 1}', "not_json"),
        ("empty payload", t0, b"", "not_json"),
        ("truncated JSON", t0, j(doc(site))[:-7], "not_json"),
        ("NaN value", t0, j(doc(site)).replace(b"12.5", b"NaN"), "not_json"),
        ("JSON array", t0, b"[1, 2, 3]", "invalid_payload"),
        ("wrong version", t0, j(doc(site, v=2)), "wrong_version"),
        ("missing version", t0, j({k: v for k, v in doc(site).items() if k != "v"}), "invalid_payload"),
        ("unknown gateway", topic(e, "gw-9", "telemetry"), j(doc(site, gateway="gw-9")), "unknown_gateway"),
        (
            "unknown enterprise",
            topic(enterprise_code(77), "gw-0", "telemetry"),
            j(doc(site, enterprise=enterprise_code(77))),
            "unknown_gateway",
        ),
        ("point of another gateway", t0, j(doc(site, readings=[reading(other[0], T0, 1.0)])), "foreign_point"),
        ("unknown point", t0, j(doc(site, readings=[reading("no.such_point", T0, 1.0)])), "foreign_point"),
        ("topic names another gateway", t0, j(doc(site, gateway="gw-1")), "topic_mismatch"),
        ("timestamp not a date", t0, j(doc(site, readings=r(t="yesterday"))), "bad_timestamp"),
        ("timestamp without zone", t0, j(doc(site, readings=r(t="2026-01-01T00:00:00"))), "bad_timestamp"),
        ("timestamp in the future", t0, j(doc(site, readings=r(t=future))), "bad_timestamp"),
        ("clock reset to 1970", t0, j(doc(site, readings=r(t="1970-01-01T00:00:05Z"))), "bad_timestamp"),
        ("bad sent time", t0, j(doc(site, sent="soon")), "bad_timestamp"),
        ("value is text", t0, j(doc(site, readings=r(v="lots"))), "invalid_payload"),
        ("bad read with a value", t0, j(doc(site, readings=r(q="bad"))), "invalid_payload"),
        ("good read without value", t0, j(doc(site, readings=r(v=None))), "invalid_payload"),
        ("unknown quality", t0, j(doc(site, readings=r(q="excellent"))), "invalid_payload"),
        ("negative sequence", t0, j(doc(site, seq=-1)), "invalid_payload"),
        ("unknown field", t0, j(doc(site, colour="red")), "invalid_payload"),
        ("no readings", t0, j(doc(site, readings=[])), "invalid_payload"),
        ("too many readings", t0, j(doc(site, readings=r() * 10_001)), "invalid_payload"),
        ("malformed point id", t0, j(doc(site, readings=[reading("bad point!", T0, 1.0)])), "invalid_payload"),
    ]


def test_malformed_messages_land_in_dead_letters_and_the_collector_goes_on(db_url, broker, site):
    cases = malformed(site)
    assert len({c[0] for c in cases}) >= 20
    messages = [good(site, 0)] + [(c[1], c[2]) for c in cases] + [good(site, 1, minute=1)]
    with CollectorThread(db_url, broker.port) as collector:
        publish(broker.port, messages)
        wait_until(lambda: collector.committed_messages >= len(messages), 60, what="every message committed")
        dead = collector.metrics.dead_letters
        counts = {reason: dead.labels(reason)._value.get() for reason in {c[3] for c in cases}}
    with psycopg.connect(db_url) as conn:
        rows = {bytes(p): (reason, detail) for p, reason, detail in conn.execute(
            "SELECT payload, reason, detail FROM dead_letters"
        )}  # fmt: skip
        stored = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    for name, _topic, payload, reason in cases:
        assert payload in rows, name
        assert rows[payload][0] == reason, f"{name}: {rows[payload]}"
        assert rows[payload][1], name  # the detail says what was wrong
    assert len(rows) == len(cases)
    assert stored == 2 * 8  # the good messages before and after all of them
    for reason, n in counts.items():
        assert n == sum(1 for c in cases if c[3] == reason), reason


def test_duplicate_publishes_insert_once(db_url, broker, site):
    messages = series(site, 0, T0, steps=6, step=timedelta(minutes=1), per_message=2)
    with CollectorThread(db_url, broker.port) as collector:
        publish(broker.port, messages + messages + messages[:1])
        wait_until(lambda: collector.committed_messages >= 7, 30, what="all copies committed")
        assert collector.inserted_rows == 48
        assert collector.metrics.rows_written._value.get() == 48
        assert collector.metrics.readings._value.get() == 7 * 16
    assert scalar(db_url, "SELECT count(*) FROM readings") == 48


def test_two_collectors_on_one_shared_subscription_split_the_load(db_url, broker, site):
    messages = []
    for g in range(2):
        messages += series(site, g, T0, steps=60, step=timedelta(minutes=1), per_message=1)
    with (
        CollectorThread(db_url, broker.port, client_id="collector-a") as a,
        CollectorThread(db_url, broker.port, client_id="collector-b") as b,
    ):
        publish(broker.port, messages)
        wait_until(lambda: a.committed_messages + b.committed_messages >= len(messages), 60, what="all committed")
        assert a.committed_messages > 0 and b.committed_messages > 0  # both took a share
        assert a.committed_messages + b.committed_messages == len(messages)  # nobody got a message twice
    assert scalar(db_url, "SELECT count(*) FROM readings") == 2 * 60 * 8
    assert scalar(db_url, "SELECT count(*) - count(DISTINCT (point_id, ts)) FROM readings") == 0
    # The interval builders of both collectors left complete, consistent intervals.
    assert scalar(db_url, "SELECT count(*) FROM interval_dirty") == 0
    assert scalar(db_url, "SELECT sum(quantity) FROM intervals_15m") == pytest.approx(2 * 59 * (1 + 2 + 3 + 5 + 6 + 7))


def test_a_broker_restart_loses_nothing(db_url, broker, site):
    first = series(site, 0, T0, steps=10, step=timedelta(minutes=1), per_message=1)
    second = series(site, 0, T0 + timedelta(minutes=10), steps=10, step=timedelta(minutes=1), per_message=1, seq0=10)
    with CollectorThread(db_url, broker.port) as collector:
        publish(broker.port, first)
        wait_until(lambda: collector.committed_messages >= 10, 30, what="first messages committed")
        broker.stop()
        wait_until(lambda: not collector.wait_connected(0), 10, what="the collector to notice")
        broker.start()
        wait_until(lambda: collector.wait_connected(0.1), 30, what="the collector to reconnect")
        publish(broker.port, second)
        wait_until(lambda: collector.committed_messages >= 20, 30, what="second messages committed")
    assert scalar(db_url, "SELECT count(*) FROM readings") == 20 * 8


def test_metrics_are_served_for_prometheus(db_url, broker, site):
    port = free_port()
    with CollectorThread(db_url, broker.port, metrics_port=port) as collector:
        publish(broker.port, [good(site, 0), (topic(site.enterprise.code, "gw-0", "telemetry"), b"junk")])
        wait_until(lambda: collector.committed_messages >= 2, 30, what="both messages committed")
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(lines['carbonwatch_collector_messages_total{outcome="stored"}']) == 1
    assert float(lines['carbonwatch_collector_messages_total{outcome="dead_letter"}']) == 1
    assert float(lines['carbonwatch_collector_dead_letters_total{reason="not_json"}']) == 1
    assert float(lines["carbonwatch_collector_rows_written_total"]) == 8
    assert float(lines["carbonwatch_collector_batch_readings_count"]) >= 1
    assert float(lines["carbonwatch_collector_commit_duration_seconds_count"]) >= 1
    lag = float(lines["carbonwatch_collector_lag_seconds"])
    assert 2 * 3600 - 60 < lag < 2 * 3600 + 600  # the readings are two hours old
    assert float(lines['carbonwatch_collector_reading_lag_seconds_bucket{le="21600.0"}']) == 1
    assert float(lines["carbonwatch_collector_database_up"]) == 1
    assert float(lines["carbonwatch_collector_broker_connected"]) == 1
    assert float(lines["carbonwatch_collector_unacked_messages"]) == 0
