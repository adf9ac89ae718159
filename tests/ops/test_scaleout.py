"""Scale-out as far as one machine allows.

- A Mosquitto bridge in front: a gateway publishes to a regional broker configured with
  deploy/mosquitto/bridge.conf, which forwards to the centre's broker, where two collectors on
  one shared subscription commit the readings; an outage of the link to the centre is bridged
  without loss.
- A PostgreSQL streaming replica (pg_basebackup -R) serving the API: data committed on the
  primary is read back through the API from the standby, which refuses writes.

Two collectors splitting one shared subscription are tested in tests/collector/test_ingest.py.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from private_pg import PrivatePostgres

from carbonwatch.api.auth import create_token
from carbonwatch.collector.db import migrate
from carbonwatch.collector.intervals import build_intervals
from carbonwatch.collector.registry import Registry, register_site
from carbonwatch.collector.validate import Message, parse_message
from carbonwatch.collector.writer import prepare, write_batch
from carbonwatch.contracts.payload import encode_telemetry, topic, utc_iso
from carbonwatch.contracts.site import Site
from carbonwatch.edge.agent import Agent
from carbonwatch.embedded import LocalMosquitto, mosquitto_path
from carbonwatch.simulators.server import SiteSimulator

from linkproxy import LinkProxy
from support import (
    REPO,
    BackgroundLoop,
    CollectorThread,
    StreamReader,
    UvicornThread,
    add_interval,
    localise,
    site_from_file,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)


def _scalar(url: str, sql: str, *args):
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute(sql, args).fetchone()[0]


def bridge_config(centre_port: int) -> str:
    text = (REPO / "deploy" / "mosquitto" / "bridge.conf").read_text("utf-8")
    for key, value in {
        "@CENTRE_HOST@": "127.0.0.1",
        "@CENTRE_PORT@": str(centre_port),
        "@BRIDGE_ID@": f"bridge-test-{centre_port}",
        "@BRIDGE_USER@": "bridge-test",
        "@BRIDGE_PASSWORD@": "unused",
    }.items():
        text = text.replace(key, value)
    unfilled = [line for line in text.splitlines() if "@" in line and not line.startswith("#")]
    assert not unfilled, f"placeholders of bridge.conf not filled: {unfilled}"
    return text


@pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed (Debian package mosquitto)")
def test_gateway_behind_a_bridge_into_two_collectors(db_url, tmp_path):
    centre = LocalMosquitto(tmp_path / "centre")
    link = LinkProxy(centre.port)  # the WAN link between the region and the centre
    regional = LocalMosquitto(tmp_path / "regional", extra_config=bridge_config(link.port))
    site = localise(site_from_file("demo-shanxi-chemical.yaml"), tmp_path, regional.port, {}, poll_interval=1.0)
    gateway = site.gateways[0].id
    with psycopg.connect(db_url) as conn:
        register_site(conn, site)
    point_count = sum(len(m.points) for m in site.gateways[0].meters)
    try:
        centre.start()
        link.restore()
        regional.start()
        with (
            CollectorThread(db_url, centre.port, client_id="collector-a") as a,
            CollectorThread(db_url, centre.port, client_id="collector-b") as b,
            BackgroundLoop() as bg,
        ):
            sim = SiteSimulator(site)
            bg.run(sim.start())
            agent = bg.call(Agent, site)
            stop = asyncio.Event()
            done = bg.spawn(agent.run(stop))
            try:
                wait_until(
                    lambda: _scalar(db_url, "SELECT count(DISTINCT point_id) FROM readings") == point_count,
                    60,
                    what="readings of every point through the bridge",
                )
                # The retained status crossed the bridge too: the centre sees the gateway online.
                wait_until(
                    lambda: _scalar(db_url, "SELECT state FROM gateways WHERE gateway = %s", gateway) == "online",
                    30,
                    what="the gateway's status through the bridge",
                )
                # The link to the centre goes down; the regional broker holds what the gateway sends.
                link.cut()
                down_from = datetime.now(UTC)
                time.sleep(3)
                down_to = datetime.now(UTC)
                link.restore()
                wait_until(
                    lambda: (
                        _scalar(db_url, "SELECT count(*) FROM readings WHERE ts >= %s AND ts < %s", down_from, down_to)
                        >= point_count
                    ),
                    60,
                    what="readings taken during the centre outage",
                )
            finally:
                bg.loop.call_soon_threadsafe(stop.set)
                done.result(20)
                bg.run(sim.stop())
            assert a.committed_messages + b.committed_messages > 0
    finally:
        regional.stop()
        link.cut()
        centre.stop()
    assert link.connections >= 2, "the bridge did not reconnect through the restored link"
    # The incomer was polled every second of the 3-second outage, and those readings all arrived.
    during = _scalar(
        db_url,
        """SELECT count(*) FROM readings r JOIN points p ON p.id = r.point_id
           WHERE p.point = 'incomer.import_kwh' AND r.ts >= %s AND r.ts < %s""",
        down_from,
        down_to,
    )
    assert during >= 2


def _history(url: str) -> Site:
    site = Site.model_validate(site_from_file("demo-shanxi-chemical.yaml"))
    with psycopg.connect(url) as conn:
        register_site(conn, site)
    code, gateway = site.enterprise.code, site.gateways[0].id
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    readings = [
        {"p": "incomer.import_kwh", "t": utc_iso(start + timedelta(minutes=5 * k)), "v": 500.0 + 25.0 * k, "q": "good"}
        for k in range(24)
    ]
    with psycopg.connect(url, autocommit=True) as conn:
        prepare(conn)
        payload = encode_telemetry(code, gateway, 1, readings, datetime.now(UTC))
        msg = Message(topic(code, gateway, "telemetry"), payload, 1, 1)
        write_batch(conn, [parse_message(msg, Registry(url), 600.0)])
        while build_intervals(conn).batches:
            pass
    return site


def test_api_reads_from_a_streaming_replica():
    from carbonwatch.api.app import create_app
    from carbonwatch.embedded import free_port

    primary = PrivatePostgres().start()
    replica = None
    try:
        with psycopg.connect(primary.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE carbonwatch")
        primary_url = primary.url.rsplit("/", 1)[0] + "/carbonwatch"
        with psycopg.connect(primary_url, autocommit=True) as conn:
            migrate(conn, timescale=False)
        replica = PrivatePostgres.replica_of(primary).start()
        replica_url = replica.url.rsplit("/", 1)[0] + "/carbonwatch"
        assert _scalar(replica_url, "SELECT pg_is_in_recovery()") is True

        site = _history(primary_url)  # written on the primary after the standby started
        code = site.enterprise.code
        want = _scalar(primary_url, "SELECT count(*) FROM readings")
        wait_until(
            lambda: _scalar(replica_url, "SELECT count(*) FROM readings") == want, 30, what="replication to the standby"
        )
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), psycopg.connect(replica_url) as conn:
            conn.execute("DELETE FROM readings")

        with psycopg.connect(primary_url) as conn:
            token = create_token(conn, "enterprise", code, "plant energy manager")  # replicated like any row
        headers = {"Authorization": f"Bearer {token}"}
        wait_until(lambda: _scalar(replica_url, "SELECT count(*) FROM api_tokens") == 1, 30, what="the token")
        with UvicornThread(create_app(replica_url), free_port()) as api:
            now = datetime.now(UTC)
            r = httpx.get(
                f"{api.url}/api/v1/enterprises/{code}/emissions",
                params={"start": (now - timedelta(hours=3)).isoformat(), "end": now.isoformat()},
                headers=headers,
                timeout=10,
            )
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["enterprise"] == code
            assert body["tce"] > 0 and body["co2_t"] > 0  # the replicated readings, accounted

            # Live updates: NOTIFY does not reach a standby; the stream follows the replay instead.
            with StreamReader(f"{api.url}/api/v1/stream", token) as live:
                wait_until(lambda: live.events, 20, what="the first live event from the replica")
                first = live.events[0]["enterprises"][0]["co2_location_t"]
                add_interval(primary_url, code, 1000.0)
                wait_until(
                    lambda: live.events[-1]["enterprises"][0]["co2_location_t"] > first,
                    30,
                    what="the replica's stream to carry an interval written on the primary",
                )
                assert live.events[-1]["enterprises"][0]["co2_location_t"] - first == pytest.approx(0.6634, rel=1e-6)
    finally:
        if replica is not None:
            replica.destroy()
        primary.destroy()
