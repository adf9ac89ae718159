"""The collector service: MQTT telemetry in, committed rows out, acknowledgements last.

Flow: the MQTT network thread hands each message to a bounded queue; the writer thread
gathers a batch (bounded by rows and by time), validates every message against the payload
schema and the registry, writes good readings with binary COPY into a staging table and
``INSERT ... ON CONFLICT DO NOTHING`` into ``readings``, writes bad messages to
``dead_letters``, commits, and only then acknowledges the batch's messages to the broker.
A crash before the commit loses nothing (the broker redelivers); a redelivery after the
commit inserts nothing (the key is point and time).

When the database is down the writer keeps the batch, stops acknowledging and retries;
the queue fills, the network thread blocks, and the broker holds the rest in our session.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError

from carbonwatch.contracts.payload import (
    QUALITY_CODES,
    TopicKind,
    decode_telemetry,
    parse_topic,
    telemetry_filter,
)

from .intervals import rebuild_intervals
from .registry import Registry

log = logging.getLogger("carbonwatch.collector")


@dataclass
class CollectorSettings:
    database_url: str
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_protocol: str = "5"
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    shared_group: str | None = "collectors"
    client_id: str = field(default_factory=lambda: f"cw-collector-{socket.gethostname()}-{os.getpid()}")
    session_expiry: int = 24 * 3600
    receive_maximum: int = 1000
    batch_rows: int = 5000
    flush_interval: float = 0.5
    queue_size: int = 10_000


@dataclass
class _Message:
    topic: str
    payload: bytes
    mid: int
    qos: int


@dataclass
class _Batch:
    messages: list[_Message] = field(default_factory=list)
    rows: list[tuple[int, datetime, float | None, int]] = field(default_factory=list)
    dead: list[tuple[str, bytes, str, str]] = field(default_factory=list)
    gateways: dict[int, tuple[int, datetime]] = field(default_factory=dict)  # gateway id -> (max seq, sent)
    touched: dict[int, list[datetime]] = field(default_factory=lambda: defaultdict(list))


class Collector:
    def __init__(self, settings: CollectorSettings) -> None:
        self.s = settings
        self.registry = Registry(settings.database_url)
        self._queue: queue.Queue[_Message] = queue.Queue(maxsize=settings.queue_size)
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._client = self._make_client()
        self.committed_rows = 0
        self.committed_messages = 0

    # --- MQTT side -----------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        v5 = self.s.mqtt_protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.s.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        if self.s.mqtt_username:
            client.username_pw_set(self.s.mqtt_username, self.s.mqtt_password)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("broker refused connection: %s", reason_code)
            return
        group = self.s.shared_group if self.s.mqtt_protocol == "5" else None
        client.subscribe(telemetry_filter(group), qos=1)
        self._connected.set()
        log.info("connected to broker, subscribed to %s", telemetry_filter(group))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        # Blocking here is the back-pressure: the broker keeps what we have not taken.
        item = _Message(msg.topic, bytes(msg.payload), msg.mid, msg.qos)
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def start(self) -> None:
        props = None
        kwargs = {}
        if self.s.mqtt_protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.s.session_expiry
            props.ReceiveMaximum = self.s.receive_maximum
            kwargs["clean_start"] = False
        time.sleep(random.uniform(0, 0.2))  # spread the start of a fleet of collectors
        self._client.connect_async(self.s.mqtt_host, self.s.mqtt_port, keepalive=30, properties=props, **kwargs)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # --- writer side ---------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Run until ``stop`` (or :meth:`stop`) is set; call from the thread that owns the writer."""
        self.start()
        external = stop or threading.Event()
        conn: psycopg.Connection | None = None
        batch: _Batch | None = None
        backoff = 0.5
        try:
            while not (self._stop.is_set() or external.is_set()):
                if batch is None:
                    batch = self._gather()
                    if not batch.messages:
                        continue
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(self.s.database_url, autocommit=True)
                        _prepare(conn)
                    self._write(conn, batch)
                except psycopg.OperationalError as exc:
                    log.warning("database unavailable (%s); holding %d messages", exc, len(batch.messages))
                    if conn is not None:
                        conn.close()
                    conn = None
                    external.wait(backoff * random.uniform(0.5, 1.5))
                    backoff = min(backoff * 2, 15.0)
                    continue
                backoff = 0.5
                for m in batch.messages:
                    self._client.ack(m.mid, m.qos)
                self.committed_rows += len(batch.rows)
                self.committed_messages += len(batch.messages)
                try:
                    rebuild_intervals(conn, batch.touched)
                except psycopg.Error:
                    log.exception("interval rebuild failed; intervals of these points stay stale until rebuilt")
                batch = None
        finally:
            self._stop.set()
            self._client.disconnect()
            self._client.loop_stop()
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self._stop.set()

    def _gather(self) -> _Batch:
        batch = _Batch()
        deadline = time.monotonic() + self.s.flush_interval
        while len(batch.rows) < self.s.batch_rows:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                m = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            batch.messages.append(m)
            self._parse(m, batch)
        return batch

    def _parse(self, m: _Message, batch: _Batch) -> None:
        try:
            enterprise, gateway, kind = parse_topic(m.topic)
            if kind is not TopicKind.TELEMETRY:
                raise ValueError(f"not a telemetry topic: {m.topic}")
        except ValueError as exc:
            batch.dead.append((m.topic, m.payload, "bad_topic", str(exc)))
            return
        try:
            t = decode_telemetry(m.payload)
        except ValidationError as exc:
            batch.dead.append((m.topic, m.payload, "invalid_payload", str(exc)[:2000]))
            return
        if t.enterprise != enterprise or t.gateway != gateway:
            batch.dead.append((m.topic, m.payload, "topic_mismatch", "payload names another gateway than its topic"))
            return
        entry = self.registry.lookup(enterprise, gateway)
        if entry is None:
            batch.dead.append((m.topic, m.payload, "unknown_gateway", f"{enterprise}/{gateway} is not registered"))
            return
        foreign = [r.point for r in t.readings if r.point not in entry.points]
        if foreign:
            batch.dead.append(
                (
                    m.topic,
                    m.payload,
                    "foreign_point",
                    f"points not owned by this gateway: {sorted(set(foreign))[:20]}",
                )
            )
            return
        for r in t.readings:
            pid = entry.points[r.point]
            batch.rows.append((pid, r.ts, r.value, QUALITY_CODES[r.quality]))
            batch.touched[pid].append(r.ts)
        prev = batch.gateways.get(entry.gateway_id)
        if prev is None or t.seq > prev[0]:
            batch.gateways[entry.gateway_id] = (t.seq, t.sent)

    def _write(self, conn: psycopg.Connection, batch: _Batch) -> None:
        # autocommit connection: this transaction block is a real BEGIN/COMMIT, never a savepoint
        # inside some outer transaction, so returning from here means the rows are durable.
        assert conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with conn.transaction(), conn.cursor() as cur:
            if batch.rows:
                with cur.copy("COPY cw_staging (point_id, ts, value, quality) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(["int4", "timestamptz", "float8", "int2"])
                    for row in batch.rows:
                        cp.write_row(row)
                cur.execute(
                    "INSERT INTO readings (point_id, ts, value, quality) "
                    "SELECT point_id, ts, value, quality FROM cw_staging ON CONFLICT DO NOTHING"
                )
            if batch.dead:
                cur.executemany(
                    "INSERT INTO dead_letters (topic, payload, reason, detail) VALUES (%s, %s, %s, %s)",
                    batch.dead,
                )
            for gateway_id, (seq, _sent) in batch.gateways.items():
                cur.execute(
                    "UPDATE gateways SET last_seq = GREATEST(COALESCE(last_seq, -1), %s), last_seen = now() "
                    "WHERE id = %s",
                    (seq, gateway_id),
                )


def _prepare(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS cw_staging "
        "(point_id int4, ts timestamptz, value float8, quality int2) ON COMMIT DELETE ROWS"
    )
