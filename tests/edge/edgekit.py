"""Helpers for the edge agent's tests: the sample site moved onto free ports, a temporary
serial pty path and buffer, an MQTT subscriber that records what the broker delivers, and a
sink that records what a bus poller delivers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from carbonwatch.contracts.site import Site
from carbonwatch.embedded import free_port

from support import SITES

SAMPLE = SITES / "sample-all-models.yaml"


def sample_raw() -> dict:
    return yaml.safe_load(SAMPLE.read_text("utf-8"))


def localise_sample(
    raw: dict,
    tmp: Path,
    broker_port: int | None = None,
    poll_interval: float = 1.0,
    meters: set[str] | None = None,
    **gateway: object,
) -> Site:
    """The sample site on a free TCP port, a pty path and buffer in ``tmp``, a test broker."""
    tcp_port = free_port()
    g = raw["gateways"][0]
    g["poll_interval"] = poll_interval
    g["mqtt"] = {"host": "127.0.0.1", "port": broker_port or free_port()}
    g["buffer"] = {"path": str(tmp / "buffer.sqlite"), "max_bytes": "64MiB"}
    g["metrics_port"] = None
    g["publish"] = {"batch_max_delay": 0.2}
    if meters is not None:
        g["meters"] = [m for m in g["meters"] if m["id"] in meters]
    for m in g["meters"]:
        c = m["connection"]
        if c["type"] == "tcp":
            c["port"] = tcp_port
        else:
            c["port"] = str(tmp / "rtu0")
    g.update(gateway)
    return Site.model_validate(raw)


class Subscriber:
    """Records every message under ``topic`` (default cw/v1/#; MQTT 5, QoS 1) in arrival order.

    It keeps a persistent session (clean start off, an hour's expiry) and resubscribes on every
    connect, so messages published while it is cut off by a broker restart wait for it (and a
    shared subscription, ``$share/group/...``, which Mosquitto does not restore after a restart,
    is made again). :meth:`pause` and :meth:`resume` keep it away for a while.
    """

    def __init__(self, port: int, topic: str = "cw/v1/#") -> None:
        self.messages: list[tuple[str, dict, bool]] = []  # (kind, document, retained)
        self.topic = topic
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}-{time.monotonic_ns()}", protocol=mqtt.MQTTv5
        )
        self.client.reconnect_delay_set(0.2, 1.0)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise AssertionError("test subscriber got no SUBACK")

    def pause(self) -> None:
        """Stop talking to the broker (no reconnects) until :meth:`resume`."""
        self.client.loop_stop()

    def resume(self) -> None:
        """Reconnect (same session) and subscribe again."""
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.reconnect()
        self.client.loop_start()
        if not subscribed.wait(10):
            raise AssertionError("test subscriber got no SUBACK after resuming")

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic.rsplit("/", 1)[-1], json.loads(msg.payload), bool(msg.retain)))

    def of(self, kind: str) -> list[dict]:
        with self._lock:
            return [doc for k, doc, _ in self.messages if k == kind]

    def readings(self) -> list[dict]:
        """Readings of distinct telemetry messages (a redelivered seq counts once), in arrival order."""
        seen: set[int] = set()
        out = []
        for doc in self.of("telemetry"):
            if doc["seq"] not in seen:
                seen.add(doc["seq"])
                out.extend(doc["readings"])
        return out

    def wait(self, predicate: Callable[[Subscriber], object], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.05)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def assert_seqs_complete(docs: list[dict]) -> list[int]:
    """Distinct seqs are 1..N without a gap, first arrivals in increasing order, and a
    redelivered seq carries the same readings. Returns the distinct seqs."""
    first: dict[int, dict] = {}
    order = []
    for doc in docs:
        if doc["seq"] in first:
            assert first[doc["seq"]]["readings"] == doc["readings"], f"seq {doc['seq']} redelivered with other data"
            continue
        first[doc["seq"]] = doc
        order.append(doc["seq"])
    assert order == sorted(order), f"messages arrived out of order: {order}"
    assert order == list(range(1, len(order) + 1)), f"gap in sequence numbers: {order}"
    return order


class RecordingSink:
    """What a bus poller delivers, kept in memory (the outbox and broker have their own tests)."""

    def __init__(self) -> None:
        self.got: list[dict] = []
        self.got_events: list[dict] = []
        self.changes: list[tuple[str, str, str]] = []  # (device, was, now)
        self.full = False

    async def readings(self, device, readings: list[dict]) -> None:
        self.got.extend(readings)

    async def events(self, events: list[dict]) -> None:
        self.got_events.extend(events)

    def paused(self) -> bool:
        return self.full

    async def health_changed(self, device, was: str) -> None:
        self.changes.append((device.id, was, device.state))

    def latest(self) -> dict[str, dict]:
        return {r["p"]: r for r in self.got}


def pollers_for(site: Site, sink: RecordingSink, meters: set[str] | None = None):
    """One real BusPoller per bus of the site's first gateway (optionally only some meters)."""
    from collections import defaultdict

    from carbonwatch.edge.metrics import EdgeMetrics
    from carbonwatch.edge.poller import BusPoller

    g = site.gateways[0]
    buses = defaultdict(list)
    for m in g.meters:
        if meters is None or m.id in meters:
            buses[m.connection.bus_key].append(m)
    metrics = EdgeMetrics()
    return [BusPoller(ms, g.poll_interval, sink, metrics) for ms in buses.values()]


def write_site(raw: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def scrape(port: int) -> dict[str, float]:
    """The agent's /metrics as {'name{label="v",...}': value}."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def epoch(t: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
