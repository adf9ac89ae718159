"""The collector service: MQTT telemetry in, committed rows out, acknowledgements last.

One pipeline of threads, messages kept in arrival order end to end:

- the MQTT network thread (paho) puts each message in the inbox. With MQTT 5 the broker sends
  at most Receive Maximum unacknowledged messages, so the inbox never holds more;
- the parser validates each message (schema, registry, timestamps; see ``validate``) and
  gathers a batch until ``batch_rows`` readings or ``flush_interval`` seconds after its first
  message, then hands it over (at most ``writers`` batches wait, so memory is bounded);
- the writer (the thread that calls :meth:`Collector.run`) has each batch written in one
  transaction by one of ``writers`` connections (two transactions in flight keep both the
  database and the parser busy) and, only after the commit, acknowledges its messages, batches
  in the order they were received. A crash before the commit loses nothing (the broker
  redelivers the unacknowledged messages to our persistent session); a redelivery after it
  inserts nothing (readings are keyed by point and time);
- the interval builder turns committed counter readings into 15-minute intervals and rollups.

When the database is slow or down the writer keeps its batch and retries with back-off; the
parser then waits, acknowledgements stop, and the broker holds everything else in our session
(back-pressure without dropping). When the database returns, writing resumes by itself.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import socket
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from carbonwatch.contracts.payload import telemetry_filter

from .db import pending_migrations
from .health import HealthConsumer, HealthWriter
from .intervals import IntervalBuilder
from .metrics import CollectorMetrics
from .registry import Registry, RegistryUnavailable
from .validate import INVALID_PAYLOAD, DeadLetter, Message, Parsed, parse_message
from .writer import DirectCopy, SlotCache, WriteResult, prepare, write_isolating

log = logging.getLogger("carbonwatch.collector")

_END = object()  # the parser's last word to the writer


@dataclass
class CollectorSettings:
    database_url: str
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_protocol: str = "5"
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_tls_ca: str | None = None  # CA file; setting any TLS option turns TLS on
    mqtt_tls_cert: str | None = None  # client certificate, for certificate authentication
    mqtt_tls_key: str | None = None
    shared_group: str | None = "collectors"
    # Stable across restarts: the broker keeps messages for this session (and, with a shared
    # subscription, deals it a share of new ones) while the collector is away.
    client_id: str = field(default_factory=lambda: f"cw-collector-{socket.gethostname()}")
    session_expiry: int = 7 * 24 * 3600  # how long the broker keeps our messages while we are away
    receive_maximum: int = 2000  # unacknowledged messages the broker may send us (MQTT 5)
    batch_rows: int = 20_000  # readings per transaction, at most (one message is never split)
    flush_interval: float = 0.5  # seconds from a batch's first message to its commit, at most
    max_future_skew: float = 600.0  # readings further ahead of our clock are refused
    interval_period: float = 5.0  # seconds between interval-builder runs when idle
    fleet_period: float = 60.0  # seconds between refreshes of the per-gateway gauges (fleet.py)
    build_intervals: bool = True
    ingest_health: bool = True  # also consume the status and events topics (see health.py)
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    drain_timeout: float = 10.0  # on stop, seconds to commit what was received before leaving
    writers: int = 2  # transactions in flight at once (their acknowledgements stay in order)


def mqtt_client(s: CollectorSettings, client_id: str) -> mqtt.Client:
    """A paho client with the collector's broker settings; messages are acknowledged by us."""
    v5 = s.mqtt_protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
        manual_ack=True,
    )
    if s.mqtt_username:
        client.username_pw_set(s.mqtt_username, s.mqtt_password)
    if s.mqtt_tls_ca or s.mqtt_tls_cert:
        client.tls_set(ca_certs=s.mqtt_tls_ca, certfile=s.mqtt_tls_cert, keyfile=s.mqtt_tls_key)
    # A random first delay per collector: a fleet that lost its broker does not return in step.
    # Capped low: collectors sit next to their broker, and until they are back a restarted
    # Mosquitto 2.0 has no shared subscription to deliver to (it does not keep them across a
    # restart), so the sooner they resubscribe, the sooner gateways' messages are taken again.
    client.reconnect_delay_set(min_delay=random.uniform(1, 2), max_delay=5)
    return client


def connect_persistent(client: mqtt.Client, s: CollectorSettings) -> None:
    """Connect in the background with a persistent session (the broker keeps what we miss)."""
    kwargs = {}
    props = None
    if s.mqtt_protocol == "5":
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = s.session_expiry
        props.ReceiveMaximum = s.receive_maximum
        kwargs["clean_start"] = False
    client.connect_async(s.mqtt_host, s.mqtt_port, keepalive=30, properties=props, **kwargs)
    client.loop_start()


class Collector:
    def __init__(self, settings: CollectorSettings) -> None:
        self.s = settings
        self.metrics = CollectorMetrics()
        self.registry = Registry(settings.database_url)
        self.builder = IntervalBuilder(
            settings.database_url, self.metrics, settings.interval_period, fleet_period=settings.fleet_period
        )
        self._inbox: queue.Queue[Message] = queue.Queue(maxsize=settings.receive_maximum + 100)
        self._ready: queue.Queue = queue.Queue(maxsize=settings.writers)
        self._stop = threading.Event()  # stop taking messages; commit what we have
        self._abandon = threading.Event()  # stop retrying: what is not committed stays unacknowledged
        self._connected = threading.Event()
        self._health: HealthConsumer | None = None
        self._generation = 0
        self._received = 0
        self._acked = 0
        self._client = self._make_client()
        self._slots = SlotCache()
        self._local = threading.local()  # each writer thread's connection
        self._conns: list[psycopg.Connection] = []
        self.committed_rows = 0  # readings in committed batches, duplicates included
        self.inserted_rows = 0  # new reading rows
        self.committed_messages = 0  # stored and dead-lettered

    # --- MQTT side -----------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = mqtt_client(self.s, self.s.client_id)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        # Messages from the previous connection can no longer be acknowledged: the broker
        # redelivers them on this one, and their packet ids may be reused for new messages.
        self._generation += 1
        group = self.s.shared_group if self.s.mqtt_protocol == "5" else None
        client.subscribe(telemetry_filter(group), qos=1)
        log.info("connected to the broker (session present: %s)", flags.session_present)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("the broker refused our subscription: %s", failed)
            return
        self._connected.set()  # only now do new messages reach us
        self.metrics.broker_connected.set(1)
        log.info("subscribed to %s", telemetry_filter(self.s.shared_group if self.s.mqtt_protocol == "5" else None))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        self.metrics.broker_connected.set(0)
        if not self._stop.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if self._stop.is_set():
            return  # not acknowledged: the broker gives it to us (or the group) again
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # brokers refuse such topics; should one pass, dead-letter it
            topic = msg._topic.decode("utf-8", "replace")
        item = Message(topic, bytes(msg.payload), msg.mid, msg.qos, self._generation)
        self._received += 1
        while not self._stop.is_set():
            try:
                self._inbox.put(item, timeout=0.5)
                return
            except queue.Full:  # only without Receive Maximum (MQTT 3.1.1): hold the network thread
                continue

    def start(self) -> None:
        """Connect to the broker (in the background, reconnecting by itself)."""
        connect_persistent(self._client, self.s)

    def _start_health(self) -> HealthConsumer:
        group = self.s.shared_group if self.s.mqtt_protocol == "5" else None
        writer = HealthWriter(self.s.database_url, self.registry, self.metrics)
        health = HealthConsumer(mqtt_client(self.s, f"{self.s.client_id}-health"), writer, group)
        health.start()
        connect_persistent(health.client, self.s)
        return health

    def wait_connected(self, timeout: float) -> bool:
        """True once both sessions are subscribed: telemetry, and status and events when consumed."""
        deadline = time.monotonic() + timeout
        if not self._connected.wait(timeout):
            return False
        if not self.s.ingest_health:
            return True
        while self._health is None:  # run() starts the health session just after the telemetry one
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return self._health.subscribed.wait(max(0.0, deadline - time.monotonic()))

    def _ack(self, messages: list[Message]) -> None:
        generation = self._generation
        for m in messages:
            if m.qos > 0 and m.generation == generation:
                self._client.ack(m.mid, m.qos)
            self._acked += 1
        self.metrics.unacked.set(self._received - self._acked)

    # --- the pipeline ----------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Run until ``stop`` (or :meth:`stop`) is set; the calling thread is the writer."""
        external = stop or threading.Event()
        parser = threading.Thread(target=self._parse_loop, name="collector-parser", daemon=True)
        threads = [threading.Thread(target=self._watch, args=(external,), name="collector-stop", daemon=True), parser]
        builder_stop = threading.Event()
        builder = None
        if self.s.build_intervals:
            builder = threading.Thread(
                target=self.builder.run,
                args=(builder_stop, self.s.drain_timeout),
                name="collector-intervals",
                daemon=True,  # its last run is best effort: the queue keeps whatever it leaves
            )
            threads.append(builder)
        server = self.metrics.serve(self.s.metrics_port, self.s.metrics_host) if self.s.metrics_port else None
        self.start()
        health = self._health = self._start_health() if self.s.ingest_health else None
        for t in threads:
            t.start()
        pool = ThreadPoolExecutor(self.s.writers, thread_name_prefix="collector-writer")
        inflight: deque[tuple[Future, list[Parsed]]] = deque()
        ended = held = False
        try:
            while not ended or inflight:
                # Several transactions may run at once; acknowledgements still go out in order.
                if inflight and (ended or len(inflight) >= self.s.writers or inflight[0][0].done()):
                    future, batch = inflight.popleft()
                    done = future.result()
                    if done is None:  # abandoned on stop: from here on the broker delivers again
                        held = True
                    elif not held:
                        self._ack([p.message for p in batch])
                        self._account(*done)
                    continue
                try:
                    batch = self._ready.get(timeout=0.05 if inflight else 1.0)
                except queue.Empty:
                    if not parser.is_alive():  # crash, and let the supervisor restart us: nothing is lost
                        raise RuntimeError("the parser thread died; see the log") from None
                    continue
                if batch is _END:
                    ended = True
                else:
                    inflight.append((pool.submit(self._commit, batch), batch))
        finally:
            self._stop.set()
            self._abandon.set()
            pool.shutdown(wait=True)
            if builder is not None:
                builder_stop.set()  # it brings the intervals up to date with our last commit, then stops
                self.builder.wakeup.set()
                builder.join(self.s.drain_timeout + 10)
            self._client.disconnect()
            self._client.loop_stop()
            if health is not None:
                health.client.disconnect()
                health.client.loop_stop()
                health.stop()
            for conn in self._conns:
                conn.close()
            if server is not None:
                server.shutdown()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self, external: threading.Event) -> None:
        while not (external.wait(0.2) or self._stop.is_set()):
            pass
        self._stop.set()
        # Give the pipeline drain_timeout to commit what it holds, then stop retrying.
        if not self._abandon.wait(self.s.drain_timeout):
            log.warning("stopping with uncommitted messages; the broker will deliver them again")
            self._abandon.set()

    def _parse_loop(self) -> None:
        while True:
            batch = self._gather()
            if batch:
                while not self._abandon.is_set():
                    try:
                        self._ready.put(batch, timeout=0.2)
                        break
                    except queue.Full:
                        continue
            if self._abandon.is_set() or (self._stop.is_set() and self._inbox.empty()):
                break
        while True:  # the writer may be busy; it must hear the end
            try:
                self._ready.put(_END, timeout=0.2)
                return
            except queue.Full:
                if self._abandon.is_set():
                    with contextlib.suppress(queue.Empty):
                        self._ready.get_nowait()  # the writer has given up on it anyway

    def _gather(self) -> list[Parsed]:
        """Messages until the batch is full or ``flush_interval`` after its first message."""
        batch: list[Parsed] = []
        rows = 0
        max_messages = max(1, self.s.receive_maximum // (self.s.writers + 2))  # the next batches fill meanwhile
        deadline = None
        while rows < self.s.batch_rows and len(batch) < max_messages:
            timeout = 0.2 if deadline is None else deadline - time.monotonic()
            if timeout <= 0:
                break
            try:
                m = self._inbox.get(timeout=timeout)
            except queue.Empty:
                if deadline is None and not self._stop.is_set():
                    continue
                break
            if deadline is None:
                deadline = time.monotonic() + self.s.flush_interval
            p = self._parse(m)
            if p is None:
                break
            batch.append(p)
            rows += p.rows
        return batch

    def _parse(self, m: Message) -> Parsed | None:
        backoff = 0.5
        while not self._abandon.is_set():
            try:
                return parse_message(m, self.registry, self.s.max_future_skew)
            except RegistryUnavailable as exc:
                log.warning("registry unavailable (%s); holding messages", exc)
                self._abandon.wait(backoff)
                backoff = min(backoff * 2, 15.0)
            except Exception as exc:  # a fault of ours: keep the message (raw) and go on
                log.exception("could not check a message on %s", m.topic)
                return Parsed(m, dead=DeadLetter(m.topic, m.payload, INVALID_PAYLOAD, f"collector error: {exc!r}"))
        return None

    def _commit(self, batch: list[Parsed]) -> tuple[WriteResult, float] | None:
        """In a writer thread: write ``batch`` until it is committed; None if we are abandoning."""
        backoff = 0.5
        while True:
            conn = getattr(self._local, "conn", None)
            try:
                if conn is None or conn.closed:
                    conn = self._local.conn = self._connect()
                    self._conns.append(conn)
                started = time.monotonic()
                direct = self._local.direct = getattr(self._local, "direct", None) or DirectCopy()
                return write_isolating(conn, batch, self._slots, direct), time.monotonic() - started
            except psycopg.OperationalError as exc:
                self.metrics.database_errors.inc()
                self.metrics.database_up.set(0)
                log.warning("database unavailable (%s); holding %d messages", str(exc).strip(), len(batch))
                if conn is not None:
                    conn.close()
                self._local.conn = None
                if self._abandon.wait(backoff * random.uniform(0.5, 1.5)):
                    return None
                backoff = min(backoff * 2, 15.0)

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.s.database_url, autocommit=True, connect_timeout=10)
        try:
            pending = pending_migrations(conn)
            if pending:
                raise psycopg.OperationalError(
                    f"schema not migrated (pending: {', '.join(pending)}); run carbonwatch db migrate"
                )
            conn.execute("SET statement_timeout = '120s'")  # a stuck statement becomes a retry, not a hang
            prepare(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _account(self, result: WriteResult, seconds: float) -> None:
        m = self.metrics
        now = time.time()
        m.database_up.set(1)
        m.commit_seconds.observe(seconds)
        m.batch_readings.observe(result.readings)
        m.readings.inc(result.readings)
        m.rows_written.inc(result.inserted)
        m.messages.labels("stored").inc(len(result.stored))
        m.messages.labels("dead_letter").inc(len(result.dead))
        for d in result.dead:
            m.dead_letters.labels(d.reason).inc()
        newest = 0.0
        for p in result.stored:
            if p.rows:
                t = float(p.ts_us.max()) / 1e6
                m.lag_seconds.observe(max(0.0, now - t))
                newest = max(newest, t)
        if newest:
            m.lag_last.set(max(0.0, now - newest))
        m.last_commit.set(now)
        self.committed_rows += result.readings
        self.inserted_rows += result.inserted
        self.committed_messages += len(result.stored) + len(result.dead)
