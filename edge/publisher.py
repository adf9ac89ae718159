"""Forwarding the outbox to the broker over MQTT (QoS 1), with a retained status and a last will.

The publisher owns the connection: it connects (reconnecting with exponential back-off and
jitter), announces ``online`` on the retained status topic (the broker's last will says
``offline`` if we vanish), then sends outbox rows in sequence order with a bounded number
in flight and deletes each row only when its PUBACK arrives. A backlog drains at
``drain_rate`` messages per second so a gateway returning from a long outage does not
flood the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from datetime import UTC, datetime

import aiomqtt

from carbonwatch.contracts.payload import PAYLOAD_VERSION, TopicKind, offline_status, topic, utc_iso
from carbonwatch.contracts.site import Gateway, MqttSettings

from .buffer import Entry, Outbox
from .schedule import Backoff, wait_or_stop

log = logging.getLogger("carbonwatch.edge.publisher")


def tls_context(mqtt: MqttSettings) -> ssl.SSLContext | None:
    if mqtt.tls is None:
        return None
    ctx = ssl.create_default_context(cafile=str(mqtt.tls.ca_file) if mqtt.tls.ca_file else None)
    if mqtt.tls.cert_file:
        ctx.load_cert_chain(str(mqtt.tls.cert_file), str(mqtt.tls.key_file) if mqtt.tls.key_file else None)
    if mqtt.tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def envelope(enterprise: str, gateway: str, entry: Entry) -> bytes:
    """Wrap a stored readings array into the telemetry payload, without re-parsing it."""
    head = (
        f'{{"v":{PAYLOAD_VERSION},"enterprise":"{enterprise}","gateway":"{gateway}",'
        f'"seq":{entry.seq},"sent":"{utc_iso(datetime.now(UTC))}","readings":'
    )
    return head.encode() + entry.payload + b"}"


class Publisher:
    def __init__(
        self,
        enterprise: str,
        gateway: Gateway,
        outbox: Outbox,
        status: Callable[[], bytes],
        status_interval: float = 30.0,
    ) -> None:
        self.enterprise = enterprise
        self.gateway = gateway
        self.outbox = outbox
        self.status = status
        self.status_interval = status_interval
        self.wakeup = asyncio.Event()  # set by the agent when it appends to the outbox
        self.connected = False
        self.published_total = 0
        self.failed_total = 0
        self._backoff = Backoff()

    def _client(self) -> aiomqtt.Client:
        m = self.gateway.mqtt
        will = aiomqtt.Will(
            topic(self.enterprise, self.gateway.id, TopicKind.STATUS),
            offline_status(self.enterprise, self.gateway.id),
            qos=1,
            retain=True,
        )
        return aiomqtt.Client(
            m.host,
            m.port,
            identifier=m.client_id or f"cw-{self.enterprise}-{self.gateway.id}",
            protocol=aiomqtt.ProtocolVersion.V5 if m.protocol == "5" else aiomqtt.ProtocolVersion.V311,
            username=m.username,
            password=m.resolved_password(),
            will=will,
            keepalive=int(m.keepalive),
            tls_context=tls_context(m),
            max_inflight_messages=self.gateway.publish.max_inflight,
            timeout=30,
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with self._client() as client:
                    self.connected = True
                    self._backoff = Backoff()
                    log.info("connected to %s:%s", self.gateway.mqtt.host, self.gateway.mqtt.port)
                    await self._session(client, stop)
            except aiomqtt.MqttError as exc:
                if stop.is_set():
                    break
                delay = self._backoff.next_delay()
                log.warning(
                    "broker unavailable (%s); retrying in %.1fs, %d messages buffered",
                    exc,
                    delay,
                    self.outbox.depth,
                )
                await wait_or_stop(stop, delay)
            finally:
                self.connected = False

    async def _session(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        status_topic = topic(self.enterprise, self.gateway.id, TopicKind.STATUS)
        telemetry_topic = topic(self.enterprise, self.gateway.id, TopicKind.TELEMETRY)
        await client.publish(status_topic, self.status(), qos=1, retain=True)
        loop = asyncio.get_running_loop()
        next_status = loop.time() + self.status_interval
        limit = self.gateway.publish.max_inflight
        min_gap = 1.0 / self.gateway.publish.drain_rate
        while not stop.is_set():
            entries = self.outbox.peek(0, limit)
            if entries:
                started = loop.time()
                await asyncio.gather(*(self._send(client, telemetry_topic, e) for e in entries))
                # Pace the drain: at most drain_rate messages per second.
                spare = len(entries) * min_gap - (loop.time() - started)
                if spare > 0:
                    await asyncio.sleep(spare)
            else:
                self.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake_or_stop(stop), timeout=max(0.0, next_status - loop.time()))
            if loop.time() >= next_status:
                await client.publish(status_topic, self.status(), qos=1, retain=True)
                next_status = loop.time() + self.status_interval
        # A clean goodbye: say offline ourselves, since the will only fires on an unclean drop.
        await client.publish(status_topic, offline_status(self.enterprise, self.gateway.id), qos=1, retain=True)

    async def _wake_or_stop(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(self.wakeup.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def _send(self, client: aiomqtt.Client, telemetry_topic: str, entry: Entry) -> None:
        try:
            await client.publish(telemetry_topic, envelope(self.enterprise, self.gateway.id, entry), qos=1)
        except aiomqtt.MqttError:
            self.failed_total += 1
            raise
        self.outbox.ack(entry.seq)
        self.published_total += 1
