"""Synthetic enterprises and their telemetry, for the collector tests and benchmarks.

A fleet is one enterprise with ``gateways`` gateways of ``points`` points each (counters in kWh,
except every fourth point, a power gauge, unless ``gauges`` is false). Readings are made up,
published for real.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from carbonwatch.collector.registry import register_site
from carbonwatch.contracts.payload import encode_telemetry, topic, utc_iso
from carbonwatch.contracts.site import Site, uscc_check_digit


@contextlib.contextmanager
def scratch_database(admin_url: str, template: str | None = None) -> Iterator[str]:
    """URL of a new database (empty, or a copy of ``template``), dropped afterwards."""
    name = f"cw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        for attempt in range(50):
            try:
                admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
                break
            except psycopg.errors.ObjectInUse:  # a TimescaleDB worker was just leaving the template
                if attempt == 49:
                    raise
                time.sleep(0.1)
    info = psycopg.conninfo.conninfo_to_dict(admin_url)
    info["dbname"] = name
    try:
        yield psycopg.conninfo.make_conninfo(**info)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def enterprise_code(n: int) -> str:
    first17 = f"91140105MA{n:07d}"
    return first17 + uscc_check_digit(first17)


def make_site(gateways: int = 2, points: int = 8, n: int = 1, poll_interval: float = 60.0, gauges: bool = True) -> Site:
    raw_gateways = []
    for g in range(gateways):
        pts = []
        for i in range(points):
            if gauges and i % 4 == 3:
                pts.append({"id": f"g{g}.p{i}.kw", "address": 2 * i, "type": "float32", "unit": "kW"})
            else:
                pts.append(
                    {"id": f"g{g}.p{i}.kwh", "address": 2 * i, "type": "uint32", "unit": "kWh", "kind": "counter",
                     "carrier": "electricity", "direction": "import"}
                )  # fmt: skip
        meter = {"id": f"m{g}", "connection": {"type": "tcp", "host": "127.0.0.1", "port": 1502}, "address_base": 0}
        raw_gateways.append({"id": f"gw-{g}", "poll_interval": poll_interval, "meters": [{**meter, "points": pts}]})
    return Site.model_validate(
        {
            "version": 1,
            "enterprise": {"code": enterprise_code(n), "name": f"测试企业 {n}", "region": "140105", "industry": "2614"},
            "gateways": raw_gateways,
        }
    )


def register(db_url: str, site: Site) -> None:
    with psycopg.connect(db_url) as conn:
        register_site(conn, site, actor="test")


def point_names(site: Site, gateway: int) -> list[str]:
    return [p.id for m in site.gateways[gateway].meters for p in m.points]


def counter_names(site: Site, gateway: int) -> list[str]:
    return [p.id for m in site.gateways[gateway].meters for p in m.points if p.kind.value == "counter"]


def reading(point: str, ts: datetime, value: float | None, q: str = "good") -> dict:
    return {"p": point, "t": utc_iso(ts), "v": value, "q": q}


def telemetry(site: Site, gateway: int, seq: int, readings: list[dict]) -> tuple[str, bytes]:
    g = site.gateways[gateway].id
    payload = encode_telemetry(site.enterprise.code, g, seq, readings, datetime.now(UTC))
    return topic(site.enterprise.code, g, "telemetry"), payload


def series(site: Site, gateway: int, start: datetime, steps: int, step: timedelta, per_message: int, seq0: int = 0):
    """Messages of one gateway: every point read every ``step`` from ``start``; counters rise by
    (point index + 1) kWh per step. ``per_message`` time steps go in one message."""
    names = point_names(site, gateway)
    out = []
    for first in range(0, steps, per_message):
        rs = []
        for k in range(first, min(steps, first + per_message)):
            ts = start + k * step
            for i, name in enumerate(names):
                value = 1000.0 + (i + 1) * k if name.endswith("kwh") else 50.0 + i
                rs.append(reading(name, ts, value))
        out.append(telemetry(site, gateway, seq0 + first // per_message, rs))
    return out


def publish(port: int, messages: Iterable[tuple[str, bytes]], client_id: str = "test-publisher") -> int:
    """Publish with QoS 1 and wait for every PUBACK; returns the number published."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(t, p, qos=1) for t, p in messages]
        deadline = time.monotonic() + 60
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise AssertionError("the broker did not acknowledge a publish in time")
        return len(infos)
    finally:
        client.disconnect()
        client.loop_stop()
