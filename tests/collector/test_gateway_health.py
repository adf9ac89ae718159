"""Gateway health reaches the database: status (online, devices, last will) and events."""

from __future__ import annotations

import asyncio

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from carbonwatch.collector.registry import register_site
from carbonwatch.contracts.payload import TopicKind, topic
from carbonwatch.edge.agent import Agent
from carbonwatch.simulators.server import SiteSimulator

from support import BackgroundLoop, CollectorThread, localise, site_from_file, wait_until

pytestmark = pytest.mark.timeout(120)


def _one(db_url: str, sql: str, *params):
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql, params).fetchone()


def test_status_devices_events_and_offline(db_url, broker, tmp_path):
    site = localise(site_from_file("demo-shanxi-chemical.yaml"), tmp_path, broker.port, {}, poll_interval=1.0)
    with psycopg.connect(db_url) as conn:
        register_site(conn, site)
    gw = site.gateways[0]
    with CollectorThread(db_url, broker.port), BackgroundLoop() as bg:
        sim = SiteSimulator(site)
        bg.run(sim.start())
        agent = bg.call(Agent, site)
        stop = asyncio.Event()
        done = bg.spawn(agent.run(stop))
        try:
            wait_until(
                lambda: _one(db_url, "SELECT state FROM gateways WHERE gateway = %s", gw.id) == ("online",),
                30,
                what="the gateway online in the database",
            )
            wait_until(
                lambda: _one(db_url, "SELECT count(*) FROM device_health WHERE state = 'ok'") == (2,),
                30,
                what="both meters reported ok",
            )
            sim.meter("gas").faults.dead = True  # the flow computer stops answering
            wait_until(
                lambda: _one(db_url, "SELECT state FROM device_health WHERE meter = 'gas'")[0] in ("degraded", "down"),
                60,
                what="the dead meter's health in the database",
            )
            wait_until(
                lambda: (
                    _one(db_url, "SELECT count(*) FROM gateway_events WHERE kind = 'device_down' AND device = 'gas'")
                    == (1,)
                ),
                60,
                what="a device_down event for the dead meter",
            )
            assert _one(db_url, "SELECT state FROM device_health WHERE meter = 'incomer'") == ("ok",)
        finally:
            bg.loop.call_soon_threadsafe(stop.set)
            done.result(30)
            bg.run(sim.stop())
        wait_until(
            lambda: _one(db_url, "SELECT state FROM gateways WHERE gateway = %s", gw.id) == ("offline",),
            30,
            what="the gateway offline after the agent stopped",
        )


def test_malformed_status_goes_to_dead_letters(db_url, broker, tmp_path):
    site = localise(site_from_file("demo-shanxi-chemical.yaml"), tmp_path, broker.port, {})
    with psycopg.connect(db_url) as conn:
        register_site(conn, site)
    code, gw = site.enterprise.code, site.gateways[0].id
    with CollectorThread(db_url, broker.port):
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="forger", protocol=mqtt.MQTTv5)
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        c.publish(topic(code, gw, TopicKind.STATUS), b"not json", qos=1).wait_for_publish(5)
        c.publish(topic(code, "gw-unknown", TopicKind.EVENTS), b'{"v":1}', qos=1).wait_for_publish(5)
        c.loop_stop()
        wait_until(
            lambda: (
                _one(db_url, "SELECT count(*) FROM dead_letters WHERE topic LIKE '%%/status' OR topic LIKE '%%/events'")
                == (2,)
            ),
            20,
            what="two dead letters",
        )
    assert _one(db_url, "SELECT state FROM gateways WHERE gateway = %s", gw) == (None,)
