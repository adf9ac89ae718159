"""Gateway health from the status and events topics: what each gateway says about itself.

Status documents are retained on the broker, so this consumer subscribes to them without a
shared group: every collector receives the fleet's current status when it (re)connects, and
applies each document in arrival order (the last will, ``offline``, arrives after the agent's
last ``online``). Events (device down/up, counter anomalies, buffer drops, task restarts) are
shared among the collectors like telemetry and stored once per (gateway, seq, index).

Volume is small (a status every 30 s per gateway), so writes are one transaction per message,
acknowledged after the commit. Messages that fail validation go to the dead letters with the
same reasons as telemetry.
"""

from __future__ import annotations

import logging
import queue
import threading

import paho.mqtt.client as mqtt
import psycopg
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from carbonwatch.contracts.payload import TOPIC_PREFIX, TopicKind, decode_events, decode_status, parse_topic

from .metrics import CollectorMetrics
from .registry import Registry, RegistryUnavailable
from .validate import BAD_TOPIC, INVALID_PAYLOAD, TOPIC_MISMATCH, UNKNOWN_GATEWAY, Message

log = logging.getLogger("carbonwatch.collector.health")

STATUS_FILTER = f"{TOPIC_PREFIX}/+/+/{TopicKind.STATUS.value}"
EVENTS_FILTER = f"{TOPIC_PREFIX}/+/+/{TopicKind.EVENTS.value}"


def health_filters(shared_group: str | None) -> list[str]:
    events = f"$share/{shared_group}/{EVENTS_FILTER}" if shared_group else EVENTS_FILTER
    return [STATUS_FILTER, events]


class HealthWriter:
    """Validates status and events messages and writes them; one transaction per message."""

    def __init__(self, database_url: str, registry: Registry, metrics: CollectorMetrics) -> None:
        self.database_url = database_url
        self.registry = registry
        self.metrics = metrics
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=10)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def write(self, m: Message) -> str:
        """Store one message; returns the outcome label. Raises psycopg.OperationalError to retry."""
        try:
            enterprise, gateway, kind = parse_topic(m.topic)
            if kind is TopicKind.TELEMETRY:
                raise ValueError(f"not a status or events topic: {m.topic}")
        except ValueError as exc:
            return self._dead(m, BAD_TOPIC, str(exc))
        try:
            doc = decode_status(m.payload) if kind is TopicKind.STATUS else decode_events(m.payload)
        except (ValidationError, ValueError) as exc:
            return self._dead(m, INVALID_PAYLOAD, str(exc)[:2000])
        if doc.enterprise != enterprise or doc.gateway != gateway:
            return self._dead(m, TOPIC_MISMATCH, "payload names another gateway than its topic")
        entry = self.registry.lookup(enterprise, gateway)
        if entry is None:
            return self._dead(m, UNKNOWN_GATEWAY, f"{enterprise}/{gateway} is not registered")
        conn = self._connection()
        with conn.transaction():
            if kind is TopicKind.STATUS:
                self._status(conn, entry.gateway_id, doc)
            else:
                self._events(conn, entry.gateway_id, doc)
        return kind.value

    def _status(self, conn: psycopg.Connection, gateway_id: int, doc) -> None:
        conn.execute(
            "UPDATE gateways SET state = %s, status = %s, status_at = now() WHERE id = %s",
            (doc.state, Jsonb(doc.model_dump(mode="json", by_alias=True)), gateway_id),
        )
        if doc.state == "offline":
            return  # the will carries no devices: their last known health stays, the gateway is offline
        for meter, h in doc.devices.items():
            conn.execute(
                """INSERT INTO device_health AS d (gateway_id, meter, state, last_success, consecutive_failures,
                                                   last_error, reported_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (gateway_id, meter) DO UPDATE SET state = EXCLUDED.state,
                     last_success = EXCLUDED.last_success, consecutive_failures = EXCLUDED.consecutive_failures,
                     last_error = EXCLUDED.last_error, reported_at = EXCLUDED.reported_at
                   WHERE d.reported_at <= EXCLUDED.reported_at""",
                (gateway_id, meter, h.state, h.last_success, h.consecutive_failures, h.last_error, doc.ts),
            )

    def _events(self, conn: psycopg.Connection, gateway_id: int, doc) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO gateway_events (gateway_id, seq, idx, ts, kind, device, point, value, previous, detail)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                [
                    (gateway_id, doc.seq, i, e.ts, e.kind.value, e.device, e.point, e.value, e.previous, e.detail)
                    for i, e in enumerate(doc.events)
                ],
            )

    def _dead(self, m: Message, reason: str, detail: str) -> str:
        self._connection().execute(
            """INSERT INTO dead_letters (topic, payload, reason, detail, digest)
               VALUES (%s, %s, %s, %s, sha256(convert_to(%s, 'UTF8') || %s)) ON CONFLICT DO NOTHING""",
            (m.topic, m.payload, reason, detail, m.topic, m.payload),
        )
        self.metrics.dead_letters.labels(reason).inc()
        return "dead_letter"


class HealthConsumer:
    """A second MQTT session of the collector, for the status and events topics."""

    def __init__(self, client: mqtt.Client, writer: HealthWriter, shared_group: str | None) -> None:
        self.client = client
        self.writer = writer
        self.filters = health_filters(shared_group)
        self._inbox: queue.Queue[Message] = queue.Queue(maxsize=1000)
        self._generation = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="collector-health", daemon=True)
        self.subscribed = threading.Event()  # set once the broker granted every filter
        self._pending: set[int] = set()
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the health session: %s", reason_code)
            return
        self._generation += 1
        self._pending = {client.subscribe(f, qos=1)[1] for f in self.filters}

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            log.error("the broker refused the health subscription: %s", reason_codes)
            return
        self._pending.discard(mid)
        if not self._pending:
            self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.subscribed.clear()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        item = Message(msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._generation)
        while not self._stop.is_set():
            try:
                self._inbox.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.writer.close()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                m = self._inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            while not self._stop.is_set():
                try:
                    outcome = self.writer.write(m)
                except (psycopg.OperationalError, RegistryUnavailable) as exc:
                    log.warning("database unavailable for gateway health (%s); retrying", exc)
                    self.writer.close()
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 15.0)
                    continue
                except Exception:  # a fault of ours must not stop the consumer: keep the raw message
                    log.exception("could not store %s", m.topic)
                    outcome = self.writer._dead(m, INVALID_PAYLOAD, "collector error, see its log")
                backoff = 0.5
                self.writer.metrics.health_messages.labels(outcome).inc()
                if m.qos > 0 and m.generation == self._generation:
                    self.client.ack(m.mid, m.qos)
                break
