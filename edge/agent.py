"""The gateway agent: poll the site's meters, keep every reading on disk, forward to the broker.

``carbonwatch edge --site FILE [--gateway ID]`` runs one :class:`Agent`. Meters are grouped
into buses by connection (one TCP endpoint or one serial port); each bus is polled by its own
task (:mod:`.poller`), readings go to the durable outbox (:mod:`.buffer`) the moment they are
read, a batcher seals them into messages, and the publisher (:mod:`.publisher`) forwards
them. Every task is supervised: a task that crashes is logged with its traceback, counted,
announced on the events topic and restarted after a back-off, never silently gone.

Start-up fails clearly on what the user must fix (an unwritable buffer, a missing TLS or
password file, a metrics port in use); an unreachable device or broker is reported, not fatal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from carbonwatch import __version__
from carbonwatch.contracts.payload import EventKind, utc_iso
from carbonwatch.contracts.site import Gateway, Meter, Site

from .buffer import EVENTS, TELEMETRY, BufferFull, Outbox, OutboxError
from .metrics import EdgeMetrics
from .poller import BusPoller, Device
from .publisher import Publisher
from .schedule import Backoff, wait_or_stop

log = logging.getLogger("carbonwatch.edge")

BUFFER_FULL_LOG_GAP = 60.0  # seconds between repeated "buffer full" warnings and drop events


class StartupError(RuntimeError):
    """The agent cannot start; the message says what to fix."""


def _dumps(items: list[dict]) -> bytes:
    return json.dumps(items, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


class Agent:
    def __init__(self, site: Site, gateway_id: str | None = None, *, status_interval: float = 30.0) -> None:
        self.site = site
        try:
            self.gateway: Gateway = site.gateway(gateway_id) if gateway_id else site.gateways[0]
        except KeyError as exc:
            known = ", ".join(g.id for g in site.gateways)
            raise StartupError(f"{exc.args[0]} (gateways in the file: {known})") from None
        self.enterprise = site.enterprise.code
        self.metrics = EdgeMetrics()
        buf, pub = self.gateway.buffer, self.gateway.publish
        try:
            self.outbox = Outbox(buf.path, buf.max_bytes, buf.when_full, pub.batch_max_readings, pub.batch_max_delay)
        except OutboxError as exc:
            raise StartupError(f"gateways[{self.gateway.id}].buffer.path: {exc}") from None
        self.metrics.watch_buffer(self.outbox)
        try:
            self.publisher = Publisher(
                self.enterprise, self.gateway, self.outbox, self.status_payload, self.metrics, status_interval
            )
        except (OSError, ssl.SSLError) as exc:
            self.outbox.close()
            raise StartupError(f"gateways[{self.gateway.id}].mqtt: {exc}") from None
        buses: dict[str, list[Meter]] = defaultdict(list)
        for m in self.gateway.meters:
            buses[m.connection.bus_key].append(m)
        self.pollers = [BusPoller(meters, self.gateway.poll_interval, self, self.metrics) for meters in buses.values()]
        self.readings_total = 0
        self.metrics_port: int | None = None
        self._dropped_seen = self.outbox.dropped_items_total
        self._last_full_warning = 0.0

    # --- what the bus pollers deliver (poller.PollSink) ---------------------------------------

    async def readings(self, device: Device, readings: list[dict]) -> None:
        size = self.gateway.publish.batch_max_readings
        for i in range(0, len(readings), size):
            chunk = readings[i : i + size]
            if not await self._store(TELEMETRY, chunk):
                return
            for r in chunk:
                self.metrics.point_reads.labels(r["q"]).inc()
            self.readings_total += len(chunk)

    async def events(self, events: list[dict]) -> None:
        await self._store(EVENTS, events)

    def paused(self) -> bool:
        return self.outbox.when_full == "stop_polling" and self.outbox.full

    async def health_changed(self, device: Device, was: str) -> None:
        kind = None
        if device.state == "down":
            kind = EventKind.DEVICE_DOWN
        elif was == "down":
            kind = EventKind.DEVICE_UP
        if kind is not None:
            event = {"kind": kind.value, "t": utc_iso(datetime.now(UTC)), "device": device.id}
            if device.last_error:
                event["detail"] = device.last_error[:1000]
            await self.events([event])
        self.publisher.request_status()

    async def _store(self, stream: str, items: list[dict]) -> bool:
        try:
            await self.outbox.aadd(stream, _dumps(items), len(items))
        except BufferFull as exc:
            self._warn_full(f"{exc}; policy stop_polling: polling pauses until the backlog drains")
            return False
        self.publisher.wakeup.set()
        dropped = self.outbox.dropped_items_total - self._dropped_seen
        if dropped > 0:
            self._dropped_seen += dropped
            self.metrics.buffer_dropped.inc(dropped)
            if self._warn_full(f"buffer full ({self.outbox.max_bytes} bytes): dropped the oldest {dropped} items"):
                detail = f"{self.outbox.dropped_items_total} items dropped since the buffer was created"
                event = {"kind": EventKind.BUFFER_DROPPED.value, "t": utc_iso(datetime.now(UTC)), "detail": detail}
                await self.outbox.aadd(EVENTS, _dumps([event]), 1)
        return True

    def _warn_full(self, message: str) -> bool:
        now = time.monotonic()
        if now - self._last_full_warning < BUFFER_FULL_LOG_GAP and self._last_full_warning:
            return False
        self._last_full_warning = now
        log.warning(message)
        return True

    # --- status ---------------------------------------------------------------------------------

    def status_payload(self) -> bytes:
        devices = {}
        for poller in self.pollers:
            for d in poller.devices.values():
                devices[d.id] = {
                    "state": d.state,
                    "last_success": utc_iso(datetime.fromtimestamp(d.last_success, UTC)) if d.last_success else None,
                    "consecutive_failures": d.failures,
                    "last_error": d.last_error,
                }
        oldest = self.outbox.oldest_created()
        doc = {
            "v": 1,
            "enterprise": self.enterprise,
            "gateway": self.gateway.id,
            "state": "online",
            "ts": utc_iso(datetime.now(UTC)),
            "agent_version": __version__,
            "devices": devices,
            "buffer": {
                "depth": self.outbox.depth,
                "bytes": self.outbox.bytes,
                "oldest": utc_iso(datetime.fromtimestamp(oldest, UTC)) if oldest else None,
                "dropped_total": self.outbox.dropped_items_total,
            },
        }
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

    # --- running --------------------------------------------------------------------------------

    async def _batcher(self, stop: asyncio.Event) -> None:
        """Seal readings that waited ``batch_max_delay`` into messages."""
        max_delay = self.gateway.publish.batch_max_delay
        while not stop.is_set():
            due = self.outbox.next_seal_due()
            wait = max_delay if due is None else min(max(due - time.time(), 0.01), max_delay)
            if await wait_or_stop(stop, wait):
                break
            if await self.outbox.aseal():
                self.publisher.wakeup.set()

    async def _supervise(
        self, name: str, task: Callable[[asyncio.Event], Awaitable[None]], stop: asyncio.Event
    ) -> None:
        backoff = Backoff(1.0, 60.0)
        while not stop.is_set():
            started = time.monotonic()
            try:
                await task(stop)
                if stop.is_set():
                    return
                raise RuntimeError("returned before the agent stopped")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("task %r crashed; restarting it", name)
                self.metrics.task_restarts.labels(name).inc()
                if time.monotonic() - started > 60:
                    backoff.reset()
                try:
                    event = {
                        "kind": EventKind.TASK_RESTARTED.value,
                        "t": utc_iso(datetime.now(UTC)),
                        "detail": f"{name}: {type(exc).__name__}: {exc}"[:1000],
                    }
                    await self.outbox.aadd(EVENTS, _dumps([event]), 1)
                except Exception:
                    log.exception("could not record the restart of %r", name)
                await wait_or_stop(stop, backoff.next_delay())

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then finish cleanly (the outbox keeps what was not sent)."""
        _quiet_pymodbus()
        if self.gateway.metrics_port is not None and self.metrics_port is None:
            try:
                self.metrics_port = self.metrics.serve(self.gateway.metrics_port)
            except OSError as exc:
                self.outbox.close()
                raise StartupError(
                    f"gateways[{self.gateway.id}].metrics_port {self.gateway.metrics_port}: {exc}"
                ) from None
        log.info(
            "gateway %s of %s: %d meters on %d buses, outbox %s (%d messages, %d items waiting)%s",
            self.gateway.id,
            self.enterprise,
            len(self.gateway.meters),
            len(self.pollers),
            self.outbox.path,
            self.outbox.depth,
            self.outbox.pending_items,
            f", metrics on :{self.metrics_port}" if self.metrics_port is not None else "",
        )
        jobs = [(f"bus {p.bus_key}", p.run) for p in self.pollers]
        jobs += [("publisher", self.publisher.run), ("batcher", self._batcher)]
        tasks = [asyncio.create_task(self._supervise(name, fn, stop), name=name) for name, fn in jobs]
        try:
            await stop.wait()
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.outbox.close()
            self.metrics.close()


def _quiet_pymodbus() -> None:
    """pymodbus logs every unanswered request as an error with a frame dump; the agent reports
    device failures itself (logs, status, events, metrics). Kept when the user asked for debug."""
    pm = logging.getLogger("pymodbus")
    if pm.getEffectiveLevel() > logging.DEBUG:
        pm.setLevel(logging.CRITICAL)
