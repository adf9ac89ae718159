"""The centre's per-meter gauges (collector/fleet.py) from a real PostgreSQL, scraped by a real
Prometheus and evaluated by the shipped rules: a registered meter that was never read is stale
(it used to be invisible), a counter anomaly names its meter and its province, a decommissioned
meter is not exported, and a series whose cause left the database is removed, so its alert
resolves instead of keeping its last value."""

from __future__ import annotations

import time

import psycopg
import pytest
import yaml
from promserver import DEPLOY_PROM, PrometheusServer, render_config

from carbonwatch.collector.fleet import refresh_fleet
from carbonwatch.collector.metrics import CollectorMetrics
from carbonwatch.collector.registry import register_site
from carbonwatch.contracts.site import Site
from carbonwatch.embedded import free_port

from support import site_from_file, wait_until

pytestmark = pytest.mark.timeout(180)

RULES = DEPLOY_PROM / "rules" / "carbonwatch.rules.yml"
CODE, GATEWAY = "91140105MA0K7Q2B30", "gw-main"
GW = {"province": "140000", "enterprise": CODE, "gateway": GATEWAY}


def rule_expr(name: str) -> str:
    groups = yaml.safe_load(RULES.read_text("utf-8"))["groups"]
    [expr] = [r["expr"] for g in groups for r in g["rules"] if r.get("alert") == name]
    return expr


@pytest.fixture
def fleet_db(db_url) -> str:
    """The Shanxi demo site (meters incomer and gas) with a third meter, `old`, that was in the
    site file once, reported by the gateway, and then removed from the file."""
    raw = site_from_file("demo-shanxi-chemical.yaml")
    old = {**raw["gateways"][0]["meters"][1], "id": "old", "unit_id": 99}
    old["points"] = [{**p, "id": "old." + p["id"]} for p in old["points"]]
    with_old = {**raw, "gateways": [{**raw["gateways"][0], "meters": [*raw["gateways"][0]["meters"], old]}]}
    with psycopg.connect(db_url, autocommit=True) as conn:
        register_site(conn, Site.model_validate(with_old))
        register_site(conn, Site.model_validate(raw))
        conn.execute("UPDATE gateways SET state = 'online', status_at = now()")
        # The gateway's status: incomer read 10 s ago, old read long ago; gas never reported.
        conn.execute(
            """INSERT INTO device_health (gateway_id, meter, state, last_success, reported_at)
               SELECT id, m, s, now() - a * interval '1 second', now()
               FROM gateways, (VALUES ('incomer', 'ok', 10), ('old', 'down', 86400)) AS v (m, s, a)"""
        )
        # incomer's import counter: two intervals reset (one also partial) in the last day, one
        # rollover (normal), and a spike 30 h ago (out of the window).
        conn.execute(
            """INSERT INTO intervals_15m (point_id, bucket, quantity, flags)
               SELECT p.id, date_bin('15 minutes', now(), timestamptz '2000-01-01') - b * interval '15 minutes', 1, f
               FROM points p, (VALUES (4, 4), (3, 4 | 16), (2, 1), (1, 0), (120, 8)) AS v (b, f)
               WHERE p.point = 'incomer.import_kwh'"""
        )
    return db_url


def sample(metrics: CollectorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(f"carbonwatch_collector_{name}", {**GW, **labels})


def test_meter_gauges_from_the_database(fleet_db):
    metrics = CollectorMetrics()
    with psycopg.connect(fleet_db, autocommit=True) as conn:
        assert refresh_fleet(conn, metrics) == 1
        now = time.time()
        assert now - sample(metrics, "meter_last_success_timestamp_seconds", meter="incomer") < 60
        assert sample(metrics, "meter_last_success_timestamp_seconds", meter="gas") == 0  # never read
        assert sample(metrics, "meter_last_success_timestamp_seconds", meter="old") is None  # decommissioned
        assert sample(metrics, "meter_flagged_intervals", meter="incomer", flag="reset") == 2
        for flag in ("spike", "backwards", "rollover"):
            assert sample(metrics, "meter_flagged_intervals", meter="incomer", flag=flag) is None, flag
        assert sample(metrics, "meter_flagged_intervals", meter="gas", flag="reset") is None
        # The resets leave the window: the series goes, it does not stay at 2.
        conn.execute("DELETE FROM intervals_15m WHERE flags & 4 <> 0")
        refresh_fleet(conn, metrics)
        assert sample(metrics, "meter_flagged_intervals", meter="incomer", flag="reset") is None
        # gas answers at last.
        conn.execute(
            """INSERT INTO device_health (gateway_id, meter, state, last_success, reported_at)
               SELECT id, 'gas', 'ok', now(), now() FROM gateways"""
        )
        refresh_fleet(conn, metrics)
        assert time.time() - sample(metrics, "meter_last_success_timestamp_seconds", meter="gas") < 60


def test_shipped_rules_see_the_never_read_meter_and_the_anomaly_by_meter(fleet_db, tmp_path):
    metrics = CollectorMetrics()
    server = metrics.serve(free_port())
    port = server.server_port
    with psycopg.connect(fleet_db, autocommit=True) as conn:
        refresh_fleet(conn, metrics)
        config = render_config(tmp_path, {"collector": [(f"127.0.0.1:{port}", {})]}, [RULES])
        try:
            with PrometheusServer(config, tmp_path) as prom:
                try:
                    # CarbonwatchCounterAnomaly has no `for`: it fires per meter and flag, routable.
                    [alert] = wait_until(
                        lambda: [a for a in prom.alerts("CarbonwatchCounterAnomaly") if a["state"] == "firing"],
                        30,
                        what="the counter anomaly alert",
                    )
                    assert {k: alert["labels"].get(k) for k in (*GW, "meter", "flag", "category")} == {
                        **GW,
                        "meter": "incomer",
                        "flag": "reset",
                        "category": "data",
                    }
                    assert alert["annotations"]["summary"] == (
                        f"Meter incomer of {CODE}/{GATEWAY}: 2 15-minute intervals flagged reset in 24 h"
                    )
                    # CarbonwatchMeterStale waits 5 minutes: its expression, as shipped, names gas alone.
                    stale = prom.query(rule_expr("CarbonwatchMeterStale"))
                    assert [(r["metric"], float(r["value"][1]) > 1e9) for r in stale] == [
                        ({**GW, "meter": "gas"}, True)
                    ]
                    [pending] = wait_until(lambda: prom.alerts("CarbonwatchMeterStale"), 30, what="pending stale")
                    assert pending["labels"]["meter"] == "gas"
                    assert pending["annotations"]["summary"] == f"Meter gas of {CODE}/{GATEWAY} has never been read"
                    # The anomaly leaves the database: the series is removed and the alert resolves.
                    conn.execute("DELETE FROM intervals_15m WHERE flags & 4 <> 0")
                    refresh_fleet(conn, metrics)
                    wait_until(lambda: not prom.alerts("CarbonwatchCounterAnomaly"), 30, what="the anomaly to resolve")
                except BaseException:
                    print(prom.log_tail())
                    raise
        finally:
            server.shutdown()
