"""Forwarding the outbox to the broker: MQTT 5 (or 3.1.1), QoS 1, TLS, retained status, last will.

The publisher owns the broker connection. It connects (reconnecting after any failure with
exponential back-off and jitter, so a fleet of gateways does not reconnect in step),
announces ``online`` on the retained status topic (its last will says ``offline`` if the
agent vanishes), then sends sealed outbox messages in order with at most ``max_inflight``
awaiting their PUBACK, and deletes each message only when its PUBACK arrives. A backlog drains
at ``drain_rate`` messages per second, so a gateway returning from a long outage does not
flood the broker. A negative PUBACK (e.g. the broker's ACL refuses the topic) keeps the
message, is logged and counted, and the publisher backs off and tries again later.

A PUBACK with reason code 16, *No matching subscribers*, is a success for the broker but not
a delivery: nobody got the message. It happens when the collectors are away, and after a
broker restart (Mosquitto 2.0 does not restore the shared subscriptions of persistent
sessions, so until the collectors resubscribe every telemetry message is answered 16 and
dropped). Such a telemetry or events message stays in the outbox where it is; its stream is
*held*: nothing more of it is sent until what is in flight has been answered, then its oldest
message is tried again, alone, after a back-off (1 s doubling to 30 s, jittered). The first
PUBACK 0 releases the stream and the kept messages follow in order; so does an outbox with
nothing of the stream left (``drop_oldest`` deleted it). The other stream is not held up.
Retained status messages are exempt: the broker keeps them for later subscribers.

paho-mqtt is used directly rather than through aiomqtt: the publisher needs every PUBACK's
reason code and an immediate failure of in-flight messages when the connection drops, and
it does its own reconnecting. Each connection runs paho's network loop on its own thread
and hands events to the asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from carbonwatch.contracts.payload import PAYLOAD_VERSION, TopicKind, offline_status, topic, utc_iso
from carbonwatch.contracts.site import Gateway, MqttSettings

from .buffer import EVENTS, STREAMS, TELEMETRY, Message, Outbox
from .metrics import EdgeMetrics
from .schedule import Backoff, wait_or_stop

log = logging.getLogger("carbonwatch.edge.publisher")

STATUS_MIN_GAP = 1.0  # seconds between status publishes triggered by health changes
STOP_GRACE = 3.0  # seconds a stopping agent keeps sending what is sealed, while connected
NO_SUBSCRIBERS = 16  # MQTT 5 PUBACK reason code "No matching subscribers": accepted, delivered to nobody
HOLD_BACKOFF = (1.0, 30.0)  # seconds between retries of a stream nobody subscribes to


class ConnectionLost(ConnectionError):
    pass


class PublishRejected(RuntimeError):
    """The broker answered a publish with a failure reason code."""


@dataclass
class Hold:
    """A stream whose messages the broker answered with "no matching subscribers"."""

    since: float  # epoch seconds of the first such answer
    retry_at: float  # event-loop time of the next try of its oldest message
    backoff: Backoff = field(default_factory=lambda: Backoff(*HOLD_BACKOFF))
    answers: int = 0  # messages answered 16 since


def tls_context(mqtt_settings: MqttSettings) -> ssl.SSLContext | None:
    """The TLS context for the broker connection; file errors surface here, at start."""
    tls = mqtt_settings.tls
    if tls is None:
        return None
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False  # the chain is still verified against the CA
    return ctx


def envelope(enterprise: str, gateway: str, message: Message) -> bytes:
    """Wrap a stored JSON array into its payload, without re-parsing it (ids are validated)."""
    field = "readings" if message.stream == TELEMETRY else "events"
    head = (
        f'{{"v":{PAYLOAD_VERSION},"enterprise":"{enterprise}","gateway":"{gateway}",'
        f'"seq":{message.seq},"sent":"{utc_iso(datetime.now(UTC))}","{field}":'
    )
    return head.encode() + message.payload + b"}"


class _Connection:
    """One MQTT connection: a paho client whose network loop runs on its own thread."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        will: tuple[str, bytes],
        password: str | None,
        tls: ssl.SSLContext | None,
        max_inflight: int,
        poke: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.loop = asyncio.get_running_loop()
        self.poke = poke
        v5 = settings.protocol == "5"
        c = self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,
            reconnect_on_failure=False,
        )
        if settings.username is not None:
            c.username_pw_set(settings.username, password)
        if tls is not None:
            c.tls_set_context(tls)
        c.will_set(will[0], will[1], qos=1, retain=True)
        c.max_inflight_messages_set(max_inflight + 2)  # + status messages: paho never holds ours back
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self.connected: asyncio.Future = self.loop.create_future()
        self.lost: asyncio.Future = self.loop.create_future()
        self.acks: dict[int, asyncio.Future] = {}
        self._closing = False
        self._thread = threading.Thread(target=self._network, name="mqtt", daemon=True)

    # network thread ---------------------------------------------------------------------------

    def _network(self) -> None:
        s = self.settings
        v5: dict = {}
        if s.protocol == "5":
            v5["clean_start"] = True  # the outbox, not a broker session, makes delivery reliable
            v5["properties"] = Properties(PacketTypes.CONNECT)
            v5["properties"].SessionExpiryInterval = int(s.session_expiry)
        try:
            self.client.connect(s.host, s.port, int(s.keepalive), **v5)
        except Exception as exc:  # DNS, refused, TLS verification: all end this connection
            self._call(self._end, ConnectionLost(f"cannot connect to {s.host}:{s.port}: {exc}"))
            return
        rc = mqtt.MQTT_ERR_SUCCESS
        # After close() has queued a DISCONNECT, keep looping until it is written.
        while rc == mqtt.MQTT_ERR_SUCCESS and not (self._closing and not self.client.want_write()):
            rc = self.client.loop(timeout=0.2)
        self._call(self._end, ConnectionLost(f"connection to {s.host}:{s.port} lost ({mqtt.error_string(rc)})"))

    def _call(self, fn, *args) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is gone: nobody is waiting
            self.loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._call(self._connack, reason_code)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._call(self._end, ConnectionLost(f"disconnected: {reason_code}"))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._call(self._puback, mid, reason_code)

    # event loop -------------------------------------------------------------------------------

    def _connack(self, reason_code) -> None:
        if self.connected.done():
            return
        if reason_code.is_failure:
            self.connected.set_exception(ConnectionRefusedError(f"broker refused the connection: {reason_code}"))
        else:
            self.connected.set_result(None)

    def _puback(self, mid: int, reason_code) -> None:
        fut = self.acks.pop(mid, None)
        if fut is not None and not fut.done():
            if reason_code.is_failure:
                fut.set_exception(PublishRejected(f"broker rejected the message: {reason_code}"))
            else:
                fut.set_result(getattr(reason_code, "value", 0))  # 0, or 16: no matching subscribers
        self.poke()

    def _end(self, exc: Exception) -> None:
        if not self.connected.done():
            self.connected.set_exception(exc)
        if not self.lost.done():
            self.lost.set_result(exc)
        for fut in self.acks.values():
            if not fut.done():
                fut.set_exception(exc)
        self.acks.clear()
        self.poke()

    async def open(self, timeout: float) -> None:
        self._thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(self.connected), timeout)
        except TimeoutError:
            raise ConnectionLost(f"no CONNACK from {self.settings.host}:{self.settings.port} in {timeout:g}s") from None

    def publish(self, topic_name: str, payload: bytes, retain: bool = False) -> asyncio.Future:
        """Send with QoS 1; the future resolves to the PUBACK's reason code (0, or 16 when nobody
        subscribes), fails on a rejection or a lost connection."""
        fut = self.loop.create_future()
        fut.add_done_callback(_retrieved)  # a session that ended early never looks at its futures
        if self.lost.done():
            fut.set_exception(self.lost.result())
            return fut
        info = self.client.publish(topic_name, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            fut.set_exception(ConnectionLost(f"publish failed: {mqtt.error_string(info.rc)}"))
        else:
            self.acks[info.mid] = fut  # PUBACKs arrive through call_soon_threadsafe, after this line
        return fut

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()  # a clean DISCONNECT: the broker does not publish the will
        self._closing = True
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, 5)


class _Pacer:
    """A token bucket: at most ``rate`` sends per second, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, max(1, burst)
        self.tokens = float(self.burst)
        self.at = time.monotonic()

    def wait(self) -> float:
        """Seconds until a send is allowed (0: now, and the token is taken)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Publisher:
    def __init__(
        self,
        enterprise: str,
        gateway: Gateway,
        outbox: Outbox,
        status: Callable[[], bytes],
        metrics: EdgeMetrics | None = None,
        status_interval: float = 30.0,
    ) -> None:
        self.enterprise = enterprise
        self.gateway = gateway
        self.outbox = outbox
        self.status = status
        self.metrics = metrics or EdgeMetrics()
        self.status_interval = status_interval
        self.wakeup = asyncio.Event()  # set when there is something to do: new messages, acks, a lost link
        self.connected = False
        self.published_total = 0  # messages acknowledged by the broker
        self.last_error: str | None = None
        self.holds: dict[str, Hold] = {}  # streams nobody subscribes to, by stream
        for stream in STREAMS:
            self.metrics.no_subscribers_since.labels(stream).set(0)
        self._status_wanted = False
        m = gateway.mqtt
        self.client_id = m.client_id or f"cw-{enterprise}-{gateway.id}"
        self._password = m.resolved_password()  # read once, at start: a missing file fails here
        self._tls = tls_context(m)
        self._topics = {
            TELEMETRY: topic(enterprise, gateway.id, TopicKind.TELEMETRY),
            EVENTS: topic(enterprise, gateway.id, TopicKind.EVENTS),
        }
        self.status_topic = topic(enterprise, gateway.id, TopicKind.STATUS)

    def no_subscribers_since(self, stream: str) -> float | None:
        """Since when (epoch seconds) the broker has had no subscriber for ``stream``, if it has none."""
        hold = self.holds.get(stream)
        return None if hold is None else hold.since

    def request_status(self) -> None:
        """Publish the status soon (a device's health changed)."""
        self._status_wanted = True
        self.wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(1.0, 120.0)
        stopper = asyncio.ensure_future(_set_when(stop, self.wakeup))
        try:
            while not stop.is_set():
                conn = _Connection(
                    self.gateway.mqtt,
                    self.client_id,
                    (self.status_topic, offline_status(self.enterprise, self.gateway.id)),
                    self._password,
                    self._tls,
                    self.gateway.publish.max_inflight,
                    self.wakeup.set,
                )
                delay = None
                try:
                    await conn.open(timeout=max(10.0, self.gateway.mqtt.keepalive))
                    self.metrics.mqtt_connects.labels("ok").inc()
                    self._set_connected(True)
                    backoff.reset()
                    log.info("connected to %s:%s as %s", self.gateway.mqtt.host, self.gateway.mqtt.port, self.client_id)
                    await self._session(conn, stop)
                except (ConnectionError, OSError, PublishRejected) as exc:
                    if not self.connected:
                        self.metrics.mqtt_connects.labels("failed").inc()
                    self.last_error = str(exc)
                    if not stop.is_set():
                        delay = backoff.next_delay()
                        refused = isinstance(exc, PublishRejected | ConnectionRefusedError)
                        level = logging.ERROR if refused else logging.WARNING
                        log.log(level, "%s; retrying in %.1fs, %d messages waiting", exc, delay, self.outbox.depth)
                finally:
                    self._set_connected(False)
                    await conn.close()
                if delay is not None:
                    await wait_or_stop(stop, delay)
        finally:
            stopper.cancel()

    def _set_connected(self, value: bool) -> None:
        self.connected = value
        self.metrics.mqtt_connected.set(1 if value else 0)

    async def _session(self, conn: _Connection, stop: asyncio.Event) -> None:
        pub = self.gateway.publish
        pacer = _Pacer(pub.drain_rate, pub.max_inflight)
        inflight: dict[int, tuple[Message, asyncio.Future]] = {}
        after = dict.fromkeys(STREAMS, 0)  # per stream, the highest seq sent on this connection
        rewind: set[str] = set()  # held streams to send again from their oldest message
        status_futs: list[asyncio.Future] = [conn.publish(self.status_topic, self.status(), retain=True)]
        loop = asyncio.get_running_loop()
        for hold in self.holds.values():  # a new connection: try a held stream at once
            hold.retry_at = loop.time()
        next_status = loop.time() + self.status_interval
        last_status = loop.time()
        grace_until = None
        idle = False  # the last look found nothing to send
        while True:
            if stop.is_set():
                # Stopping: seal what the pollers left and send it for a moment, so a clean
                # restart does not leave readings waiting for the next start.
                if grace_until is None:
                    grace_until = loop.time() + STOP_GRACE
                    await self.outbox.aseal(force=True)
                    idle = False
                if (not inflight and idle) or loop.time() >= grace_until:
                    break
            self.wakeup.clear()
            # Harvest acknowledgements, in order of sending.
            acked = []
            for mid in [i for i, (_, f) in inflight.items() if f.done()]:
                message, fut = inflight.pop(mid)
                exc = fut.exception()
                if exc is None and fut.result() == NO_SUBSCRIBERS:
                    self.metrics.publishes.labels(message.stream, "no_subscribers").inc()
                    self._nobody(message, loop.time())
                    rewind.add(message.stream)
                elif exc is None:
                    acked.append(mid)
                    self.metrics.publishes.labels(message.stream, "acked").inc()
                    self._release(message.stream)
                elif isinstance(exc, PublishRejected):
                    self.metrics.publishes.labels(message.stream, "rejected").inc()
                    raise PublishRejected(f"{message.stream} seq {message.seq}: {exc}")
                else:
                    self.metrics.publishes.labels(message.stream, "lost").inc()
            if acked:
                await self.outbox.aack(acked)
                self.published_total += len(acked)
            status_futs = self._harvest_status(status_futs)
            if conn.lost.done():
                raise conn.lost.result()
            # Status: periodically, and soon after a health change.
            now = loop.time()
            if now >= next_status or (self._status_wanted and now - last_status >= STATUS_MIN_GAP):
                self._status_wanted = False
                status_futs.append(conn.publish(self.status_topic, self.status(), retain=True))
                next_status, last_status = now + self.status_interval, now
            # Send more, within the window and the drain rate. A held stream sends nothing until
            # its messages in flight are answered, then its oldest message alone, when due.
            flying = {m.stream for m, _ in inflight.values()}
            for stream in rewind - flying:
                after[stream] = 0  # nothing of it in flight: its oldest kept message goes first
            rewind &= flying
            wanted: dict[str, int] = {}
            retry = None  # loop time of the next try of a held stream
            for stream in STREAMS:
                hold = self.holds.get(stream)
                if stream in rewind:
                    continue
                if hold is not None and stream not in flying and not self.outbox.has(stream):
                    # drop_oldest deleted what it kept and nothing new came: nothing waits for a
                    # subscriber any more (the next message, if it finds none, holds it again).
                    self._release(stream, "nothing of it is left in the outbox")
                    hold = None
                if hold is None:
                    wanted[stream] = after[stream]
                elif stream not in flying:
                    if now >= hold.retry_at:
                        wanted[stream] = after[stream]
                    else:
                        retry = hold.retry_at if retry is None else min(retry, hold.retry_at)
            pause = None
            free = pub.max_inflight - len(inflight)
            idle = not inflight and not wanted
            if free > 0 and wanted:
                candidates = await self.outbox.apeek_streams(wanted, free)
                idle = not inflight and not candidates
                sent_held: set[str] = set()
                for message in candidates:
                    if message.stream in self.holds and (message.stream in sent_held or message.stream in flying):
                        continue  # a held stream tries one message at a time
                    pause = pacer.wait()
                    if pause:
                        break
                    envelope_bytes = envelope(self.enterprise, self.gateway.id, message)
                    inflight[message.id] = (message, conn.publish(self._topics[message.stream], envelope_bytes))
                    after[message.stream] = message.seq
                    if message.stream in self.holds:
                        sent_held.add(message.stream)
                else:
                    pause = None
            timeout = next_status - loop.time()
            if grace_until is not None:
                timeout = min(timeout, grace_until - loop.time())
            if self._status_wanted:
                timeout = min(timeout, last_status + STATUS_MIN_GAP - loop.time())
            if pause:
                timeout = min(timeout, pause)
            if retry is not None:
                timeout = min(timeout, retry - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), max(0.0, timeout))
        await self._goodbye(conn, inflight)

    def _nobody(self, message: Message, now: float) -> None:
        """The broker had no subscriber for ``message``: hold its stream and try again later."""
        hold = self.holds.get(message.stream)
        if hold is None:
            hold = self.holds[message.stream] = Hold(since=time.time(), retry_at=now)
            self.metrics.no_subscribers_since.labels(message.stream).set(hold.since)
        hold.answers += 1
        if now >= hold.retry_at:  # the first answer of this try: the next try after a back-off
            delay = hold.backoff.next_delay()
            hold.retry_at = now + delay
            level = logging.WARNING if hold.answers == 1 else logging.INFO
            log.log(
                level,
                "no subscriber for %s (seq %d answered 'No matching subscribers'); %d messages kept, "
                "trying again in %.1fs",
                message.stream,
                message.seq,
                self.outbox.depth,
                delay,
            )

    def _release(self, stream: str, why: str | None = None) -> None:
        """A message of ``stream`` was delivered (it has subscribers again), or there is nothing
        of it left to deliver (``why``)."""
        hold = self.holds.pop(stream, None)
        if hold is None:
            return
        self.metrics.no_subscribers_since.labels(stream).set(0)
        if why is not None:
            log.info("%s: no longer held after %.0fs without a subscriber: %s", stream, time.time() - hold.since, why)
            return
        log.info(
            "%s has a subscriber again after %.0fs without; sending the %d kept messages",
            stream,
            time.time() - hold.since,
            self.outbox.depth,
        )

    def _harvest_status(self, futs: list[asyncio.Future]) -> list[asyncio.Future]:
        keep = []
        for f in futs:
            if not f.done():
                keep.append(f)
            elif f.exception() is None:
                self.metrics.publishes.labels("status", "acked").inc()
            else:
                self.metrics.publishes.labels("status", "failed").inc()
        return keep

    async def _goodbye(self, conn: _Connection, inflight: dict[int, tuple[Message, asyncio.Future]]) -> None:
        """On a clean stop: say offline ourselves (the will fires only on an unclean drop) and
        give in-flight messages a moment to be acknowledged, to spare the next start resending."""
        offline = conn.publish(self.status_topic, offline_status(self.enterprise, self.gateway.id), retain=True)
        waiting = [f for _, f in inflight.values()] + [offline]
        with contextlib.suppress(Exception):
            await asyncio.wait(waiting, timeout=2.0)
        acked = [
            mid
            for mid, (_, f) in inflight.items()
            if f.done() and not f.cancelled() and f.exception() is None and f.result() != NO_SUBSCRIBERS
        ]
        if acked:
            await self.outbox.aack(acked)
            self.published_total += len(acked)


def _retrieved(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()  # marks it retrieved: no "Future exception was never retrieved" noise


async def _set_when(event: asyncio.Event, other: asyncio.Event) -> None:
    await event.wait()
    other.set()
