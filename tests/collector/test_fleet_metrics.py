"""The collector's alerting metrics: per-gateway state and completeness read from the database,
and 15-minute intervals counted by counter flag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fleet import counter_names, make_site, reading, register, series, telemetry

from carbonwatch.collector.fleet import refresh_fleet
from carbonwatch.collector.intervals import IntervalBuilder
from carbonwatch.collector.metrics import CollectorMetrics
from carbonwatch.collector.registry import Registry
from carbonwatch.collector.validate import Message, parse_message
from carbonwatch.collector.writer import write_batch


def deliver(conn, db_url, messages) -> None:
    registry = Registry(db_url)
    write_batch(conn, [parse_message(Message(t, p, 1, 1), registry, 600.0) for t, p in messages])


def test_gateway_state_and_completeness_come_from_the_database(db_url, conn):
    site = make_site(gateways=2, points=4)
    register(db_url, site)
    code = site.enterprise.code
    gw0, gw1 = (g.id for g in site.gateways)
    # Both gateways' points existed for the last 2 hours: 8 whole slots each (or 7 at a boundary).
    conn.execute("UPDATE points SET registered_at = now() - interval '2 hours'")
    now = datetime.now(UTC)
    start = now - timedelta(hours=2)
    deliver(conn, db_url, series(site, 0, start, steps=25, step=timedelta(minutes=5), per_message=5))
    conn.execute(
        "UPDATE gateways SET state = %s, status_at = now() - %s * interval '1 second' WHERE gateway = %s",
        ("online", 10, gw0),
    )
    conn.execute(
        "UPDATE gateways SET state = %s, status_at = now() - %s * interval '1 second' WHERE gateway = %s",
        ("offline", 400, gw1),
    )

    conn.execute(
        """INSERT INTO device_health (gateway_id, meter, state, last_success, reported_at)
           SELECT id, 'm-silent', 'down', now() - interval '20 minutes', now() FROM gateways WHERE gateway = %s""",
        (gw0,),
    )
    metrics = CollectorMetrics()
    assert refresh_fleet(conn, metrics) == 2
    meter = metrics.registry.get_sample_value(
        "carbonwatch_collector_meter_last_success_timestamp_seconds",
        {"province": "140000", "enterprise": code, "gateway": gw0, "meter": "m-silent"},
    )
    assert now.timestamp() - meter == pytest.approx(1200, abs=30)

    def value(name: str, gateway: str) -> float | None:
        labels = {"province": "140000", "enterprise": code, "gateway": gateway}
        return metrics.registry.get_sample_value(f"carbonwatch_collector_{name}", labels)

    assert value("gateway_online", gw0) == 1 and value("gateway_online", gw1) == 0
    assert now.timestamp() - 60 < value("gateway_status_timestamp_seconds", gw0) <= now.timestamp() + 1
    assert value("gateway_status_timestamp_seconds", gw0) - value("gateway_status_timestamp_seconds", gw1) == (
        pytest.approx(390, abs=1)
    )
    points = 4
    assert value("gateway_expected_values", gw0) in (7 * points, 8 * points)
    assert value("gateway_completeness_ratio", gw0) == 1.0  # a reading every 5 minutes fills every slot
    assert value("gateway_completeness_ratio", gw1) == 0.0  # registered, silent


def test_intervals_are_counted_by_flag(db_url, conn):
    site = make_site(gateways=1, points=4)
    register(db_url, site)
    point = counter_names(site, 0)[0]
    t0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    # Counts up, then the meter is replaced and counts on from 5 (a reset), for two hours.
    values = [100.0 + k for k in range(12)] + [5.0 + k for k in range(12)]
    deliver(
        conn,
        db_url,
        [telemetry(site, 0, 0, [reading(point, t0 + timedelta(minutes=5 * k), v) for k, v in enumerate(values)])],
    )
    metrics = CollectorMetrics()
    builder = IntervalBuilder(db_url, metrics, fleet_period=0)
    builder._cycle(conn)
    stored = conn.execute("SELECT flags FROM intervals_15m").fetchall()
    resets = sum(1 for (f,) in stored if f & 4)
    assert resets >= 1
    assert metrics.registry.get_sample_value("carbonwatch_collector_flagged_intervals_total", {"flag": "reset"}) == (
        resets
    )
    assert metrics.registry.get_sample_value("carbonwatch_collector_flagged_intervals_total", {"flag": "spike"}) == 0
    # The builder's cycle also refreshed the per-gateway gauges.
    assert (
        metrics.registry.get_sample_value(
            "carbonwatch_collector_gateway_online",
            {"province": "140000", "enterprise": site.enterprise.code, "gateway": site.gateways[0].id},
        )
        == 0
    )


def test_missing_telemetry_messages_are_exported_per_gateway_until_they_arrive(db_url, conn):
    site = make_site(gateways=2, points=2)
    register(db_url, site)
    code = site.enterprise.code
    start = datetime.now(UTC) - timedelta(hours=1)
    messages = series(site, 0, start, steps=6, step=timedelta(minutes=1), per_message=1)  # seq 0..5
    deliver(conn, db_url, messages[:2] + messages[4:])  # 2 and 3 lost on the way
    deliver(conn, db_url, series(site, 1, start, steps=3, step=timedelta(minutes=1), per_message=1))
    # noticed 11 minutes ago: past the 10-minute grace in which a message may still be on its way
    conn.execute("UPDATE telemetry_received SET received_at = now() - interval '11 minutes'")
    metrics = CollectorMetrics()
    refresh_fleet(conn, metrics)

    def missing(gateway):
        return metrics.registry.get_sample_value(
            "carbonwatch_collector_gateway_missing_messages",
            {"province": "140000", "enterprise": code, "gateway": gateway},
        )

    assert missing("gw-0") == 2
    assert missing("gw-1") is None  # no hole: no series
    deliver(conn, db_url, messages[2:4])  # the held messages arrive after all
    refresh_fleet(conn, metrics)
    assert missing("gw-0") is None
