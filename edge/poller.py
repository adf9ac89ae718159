"""Polling one bus: a TCP endpoint or a serial port shared by meters with different unit ids.

One task per bus, so access to a bus is serialised (one Modbus master, one outstanding
request) and buses never wait for each other. Each device is read once at start, then on a
wall-clock-aligned schedule (a 60 s device is read at :00 of every minute); a poll that
overruns counts the slots it missed, and the next one goes back to the grid rather than drifting.
Points with a ``poll_interval`` of their own form a group of the device with its own read plan
and its own grid; groups of one device that fall due together are read in one poll.

Requests that may end in a timeout without helping anyone are only made in the bus's slack:
a retry after a timeout, and a probe of a *suspect* device, go ahead only if even an
unanswered request ends before every other healthy device's slot tolerance runs out. A device
that stops answering becomes suspect (a circuit breaker): it is no longer polled on its
schedule but probed with one request, without retries, after an exponentially growing pause.
So a dead unit costs its neighbours at most one timeout, once (two on a bus without transaction
ids, which then waits for its late answer), and they keep their schedule.
A device answering with a Modbus exception is alive: only the points of that request are bad.
An unexpected error while polling a device (a library error for its request, a bug) is that
device's failure, not the bus's: its points read bad, its circuit opens, the traceback is
logged once, and its neighbours keep their schedule.

A bus without transaction ids (Modbus RTU or ASCII, on a serial line or through a TCP serial
server) cannot tell a late answer from the answer to the next request. After a timeout there
the device still owes its answer: before the next request on the bus the poller waits until
that answer has arrived and the line has been quiet for ``line_quiet`` (a few character times,
at least 50 ms), or until the line has stayed quiet for a full ``timeout`` of that device, and
discards whatever arrived. Every answer there must match its request (function code, unit, byte
count) or it is dropped as a stray frame. Over Modbus TCP pymodbus has matched the transaction
id, so an answer of the wrong size is the device's quirk: an error for that read only.

Every reading carries the time its response arrived and a quality: ``good``; ``uncertain``
for a counter that went backwards (:mod:`.counters`); ``bad`` with a null value when the read
failed or decoded to NaN. A failed read is never papered over with the last good value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from carbonwatch.contracts.payload import EventKind, utc_iso
from carbonwatch.contracts.site import Area, Kind, Meter, SerialConnection, TcpConnection

from .counters import CounterGuard
from .metrics import EdgeMetrics
from .plan import Read, plan_reads
from .registers import decimals, decode_point, is_plausible, to_engineering
from .schedule import Backoff, next_aligned, wait_or_stop

log = logging.getLogger("carbonwatch.edge.poller")

_FRAMERS = {"socket": FramerType.SOCKET, "rtu": FramerType.RTU, "ascii": FramerType.ASCII}
BUSY = 6  # Modbus exception "server device busy": worth a retry
DOWN_AFTER = 3  # consecutive unanswered polls before a device is reported down
MAX_PROBE_PAUSE = 300.0  # a suspect device is probed at least this often (seconds)
SLACK_MARGIN = 0.05  # seconds kept free for the bus's own work when fitting a risky request
MAX_TOLERANCE = 2.0  # seconds a device's read may start after its slot and still be on schedule
LINE_QUIET_MIN = 0.05  # seconds: USB serial adapters deliver bytes in bursts up to 16 ms apart
MAX_FRAME_CHARS = 256  # the longest Modbus RTU frame
_FUNCTION_CODES = {Area.COIL: 1, Area.DISCRETE: 2, Area.HOLDING: 3, Area.INPUT: 4}


class PollSink(Protocol):
    """Where a bus poller delivers its work (the agent)."""

    async def readings(self, device: Device, readings: list[dict]) -> None: ...
    async def events(self, events: list[dict]) -> None: ...
    def paused(self) -> bool: ...
    async def health_changed(self, device: Device, was: str) -> None: ...


@dataclass
class Group:
    """Points of one device read on one schedule, with their own read plan."""

    interval: float
    reads: list[Read]
    next_due: float

    @property
    def deadline(self) -> float:
        """The latest start of its next poll that still keeps it on schedule."""
        return self.next_due + min(0.25 * self.interval, MAX_TOLERANCE)


def plan_groups(meter: Meter, default_interval: float, now: float) -> list[Group]:
    """One group per distinct poll interval of the meter's points (a point's own, else the
    meter's, else the gateway's), each with its read plan; all due at ``now``."""
    base = meter.poll_interval or default_interval
    by_interval: dict[float, list] = {}
    for p in meter.points:
        by_interval.setdefault(float(p.poll_interval or base), []).append(p)
    return [Group(i, plan_reads(meter, points), now) for i, points in sorted(by_interval.items())]


@dataclass
class Device:
    """One meter's schedule (its groups) and health."""

    meter: Meter
    groups: list[Group]
    failures: int = 0  # consecutive polls without an answer
    suspect: bool = False  # circuit open: probed, not polled on schedule
    probe_at: float = 0.0
    last_success: float | None = None
    last_error: str | None = None
    state: str = "ok"  # ok | degraded | down

    @property
    def id(self) -> str:
        return self.meter.id

    @property
    def reads(self) -> list[Read]:
        return [r for g in self.groups for r in g.reads]

    @property
    def interval(self) -> float:
        """Its shortest poll interval."""
        return min(g.interval for g in self.groups)

    @property
    def next_due(self) -> float:
        return min(g.next_due for g in self.groups)

    @next_due.setter
    def next_due(self, when: float) -> None:
        for g in self.groups:
            g.next_due = when

    def due(self, now: float) -> list[Group]:
        return [g for g in self.groups if g.next_due <= now]

    def probe_pause(self) -> float:
        """1 s after the first failure (a retry deferred to the bus's slack), then doubling."""
        return min(2.0 ** max(self.failures - 1, 0), MAX_PROBE_PAUSE)

    @property
    def deadline(self) -> float:
        """The latest start of its next poll that still keeps it on schedule."""
        return min(g.deadline for g in self.groups)


class NoAnswer(Exception):
    """The device did not answer (timeout or a garbled response)."""


class BusDown(Exception):
    """The connection itself failed: every device on the bus is affected."""


class StrayFrame(NoAnswer):
    """An answer that does not match its request: a late answer to an earlier one."""


def char_time(conn: TcpConnection | SerialConnection) -> float | None:
    """Seconds one character takes on a serial line (None over TCP: the line is not ours to time)."""
    if not isinstance(conn, SerialConnection):
        return None
    bits = 1 + conn.bytesize + (0 if conn.parity == "N" else 1) + conn.stopbits
    return bits / conn.baudrate


def has_transaction_ids(conn: TcpConnection | SerialConnection) -> bool:
    """Whether answers carry the request's transaction id (Modbus TCP's MBAP header only)."""
    return isinstance(conn, TcpConnection) and conn.framer == "socket"


def default_line_quiet(conn: TcpConnection | SerialConnection) -> float:
    """How long the line must stay quiet after a timeout: the 3.5-character inter-frame gap,
    at least :data:`LINE_QUIET_MIN`."""
    c = char_time(conn)
    return max(LINE_QUIET_MIN, 3.5 * c) if c else LINE_QUIET_MIN


def make_client(conn: TcpConnection | SerialConnection, timeout: float, trace_packet=None):
    """A pymodbus client without its own retries or reconnects: the poller owns both."""
    if isinstance(conn, TcpConnection):
        client = AsyncModbusTcpClient(
            conn.host,
            port=conn.port,
            framer=_FRAMERS[conn.framer],
            timeout=timeout,
            retries=0,
            reconnect_delay=0,
            trace_packet=trace_packet,
        )
    else:
        client = AsyncModbusSerialClient(
            conn.port,
            framer=_FRAMERS[conn.framer],
            baudrate=conn.baudrate,
            parity=conn.parity,
            stopbits=conn.stopbits,
            bytesize=conn.bytesize,
            timeout=timeout,
            retries=0,
            reconnect_delay=0,
            trace_packet=trace_packet,
        )
    client.set_max_no_responses(1 << 30)  # pymodbus would drop a TCP gateway for one dead unit
    return client


@dataclass
class BusPoller:
    """Polls every device on one connection, one request at a time.

    ``line_quiet``: on a bus without transaction ids, how long the line must be quiet after a
    late answer before the next request (default: :func:`default_line_quiet`); when no answer
    comes, the line must stay quiet for the device's whole timeout.
    """

    meters: list[Meter]
    default_interval: float
    sink: PollSink
    metrics: EdgeMetrics
    clock: Callable[[], float] = time.time
    line_quiet: float | None = None
    devices: dict[str, Device] = field(init=False)

    def __post_init__(self) -> None:
        now = self.clock()
        self.connection = self.meters[0].connection
        self.bus_key = self.connection.bus_key
        self.devices = {}
        for m in self.meters:
            # The first poll is at once, so a start-up reports every device's real state within
            # seconds; from then on polls follow the wall-clock grid.
            self.devices[m.id] = Device(m, plan_groups(m, self.default_interval, now))
            if any(p.kind is Kind.COUNTER for p in m.points):
                # Present at 0 from the start, so the first anomaly is an increase the alert rule sees.
                for kind in (EventKind.COUNTER_BACKWARDS, EventKind.COUNTER_ROLLOVER):
                    self.metrics.counter_events.labels(m.id, kind.value)
        self.client = None
        self.guard = CounterGuard()
        self._digits = {p.id: decimals(p.type, p.scale, p.offset) for m in self.meters for p in m.points}
        self._connect_backoff = Backoff(1.0, 60.0)
        self._silent_requests = 0  # consecutive unanswered requests across the bus
        self._latency = self.metrics.request_seconds.labels(self.bus_key)
        # A late answer can only be told apart by its transaction id: without one, settle the
        # line after a timeout (see _settle).
        self.settles = not has_transaction_ids(self.connection)
        if self.line_quiet is None:
            self.line_quiet = default_line_quiet(self.connection)
        c = char_time(self.connection) or 0.0
        self._settle_limit = 2 * self.line_quiet + MAX_FRAME_CHARS * c  # a late frame may still be arriving
        self._dirty_at: float | None = None  # monotonic time the line went unsure (a timeout, a stray frame)
        self._owed = 0.0  # seconds after _dirty_at that the device may still answer (its timeout)
        self._last_rx = 0.0  # monotonic time bytes last arrived
        self._rx_waiter: asyncio.Future | None = None  # resolved when bytes arrive (see _settle)
        self._logged_errors: set[tuple[str, str]] = set()  # (device, error) logged with a traceback

    # --- the loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                if (self.client is None or not self.client.connected) and not await self._connect(stop):
                    continue
                device, groups, wait = self._next(self.clock())
                if device is None:
                    await wait_or_stop(stop, wait)
                    continue
                if self.sink.paused():
                    self.metrics.polls_skipped_full.inc()
                    now = self.clock()
                    for g in groups:
                        g.next_due = next_aligned(now, g.interval)
                    device.probe_at = max(device.probe_at, min(g.next_due for g in groups))
                    continue
                try:
                    await self.poll(device, groups)
                except BusDown as exc:
                    await self._bus_failed(str(exc), already=device)
        finally:
            self.close()

    def _next(self, now: float) -> tuple[Device | None, list[Group], float]:
        """The device to poll now with its groups to read, or None and how long to wait."""
        healthy = [d for d in self.devices.values() if not d.suspect]
        due = [(g.next_due, i, d) for i, d in enumerate(healthy) for g in d.due(now)]
        if due:
            device = min(due, key=lambda x: x[:2])[2]
            return device, device.due(now), 0.0
        next_healthy = min((d.next_due for d in healthy), default=math.inf)
        suspects = sorted((d for d in self.devices.values() if d.suspect), key=lambda d: d.probe_at)
        for d in suspects:
            if d.probe_at <= now and self.fits(d, now):
                # A probe reads what is due, or else the group due first: one answer is enough.
                return d, d.due(now) or [min(d.groups, key=lambda g: g.next_due)], 0.0
        later = [d.probe_at for d in suspects if d.probe_at > now]
        return None, [], max(0.0, min([next_healthy, *later]) - now)

    def fits(self, device: Device, now: float) -> bool:
        """Whether a request to ``device`` that goes unanswered still ends before every other
        healthy device's deadline: the test for retries and probes."""
        budget = min((d.deadline for d in self.devices.values() if not d.suspect and d is not device), default=math.inf)
        timeout = device.meter.timeout
        # Without transaction ids an unanswered request is followed by the wait for its answer.
        owed = timeout + self.line_quiet if self.settles else 0.0
        return now + self._settle_left() + timeout + owed + SLACK_MARGIN <= budget

    def _settle_left(self) -> float:
        """At most how long the bus must still wait for an owed answer before its next request."""
        if self._dirty_at is None:
            return 0.0
        return max(0.0, self._dirty_at + self._owed - time.monotonic()) + self.line_quiet

    def _owe(self, timeout: float) -> None:
        """A request on a bus without transaction ids failed (no answer, a stray frame, an
        error): its device may still answer it, up to ``timeout`` from now."""
        self._dirty_at = time.monotonic()
        self._owed = timeout

    async def open(self) -> bool:
        """Connect (or reconnect) to the bus once; True when connected."""
        if self.client is None:
            self.client = make_client(self.connection, max(m.timeout for m in self.meters), self._trace)
        if not await self.client.connect():
            self.metrics.bus_connects.labels(self.bus_key, "failed").inc()
            return False
        self.metrics.bus_connects.labels(self.bus_key, "ok").inc()
        self._silent_requests = 0
        self._dirty_at = None
        _no_delay(self.client)
        return True

    def _trace(self, sending: bool, data: bytes) -> bytes:
        """pymodbus hands every packet through here: note when bytes last arrived."""
        if not sending:
            self._last_rx = time.monotonic()
            if self._rx_waiter is not None and not self._rx_waiter.done():
                self._rx_waiter.set_result(None)
        return data

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    async def _connect(self, stop: asyncio.Event) -> bool:
        if await self.open():
            self._connect_backoff.reset()
            log.info("connected to %s", self.bus_key)
            return True
        delay = self._connect_backoff.next_delay()
        await self._bus_failed(f"cannot connect to {self.bus_key}")
        log.warning("cannot connect to %s; retrying in %.1fs", self.bus_key, delay)
        await wait_or_stop(stop, delay)
        return False

    async def _bus_failed(self, error: str, already: Device | None = None) -> None:
        """The bus is gone: every device on it (but ``already``, counted by its poll) failed this round."""
        self.close()
        now = self.clock()
        for d in self.devices.values():
            if d is not already:
                await self._failed(d, error, now)

    # --- one poll -----------------------------------------------------------------------------

    async def poll(self, device: Device, groups: list[Group] | None = None) -> None:
        """Read ``groups`` of a device (default: all) once and hand the readings to the sink."""
        meter = device.meter
        groups = device.groups if groups is None else groups
        reads = [r for g in groups for r in g.reads]
        attempts = 1 if device.suspect else 1 + meter.retries
        readings: list[dict] = []
        events: list[dict] = []
        silent = None  # why the device stopped answering, if it did
        bus_down = None
        errors = []
        for i, read in enumerate(reads):
            if silent is not None:
                readings.extend(_bad(read, self.clock()))
                continue
            try:
                values, stamp = await self._request(device, read, attempts)
                got: list[dict] = []
                found: list[dict] = []
                self._decode(device, read, values, stamp, got, found)
                readings.extend(got)
                events.extend(found)
            except (NoAnswer, BusDown) as exc:
                silent = str(exc)
                bus_down = exc if isinstance(exc, BusDown) else None
                readings.extend(_bad(read, self.clock()))
                continue
            except ModbusException as exc:  # an exception response: the device is alive
                errors.append(str(exc))
                readings.extend(_bad(read, self.clock()))
            except Exception as exc:  # a bug or a library error: this device's failure, not the bus's
                silent = self._unexpected(device, read, exc)
                readings.extend(_bad(read, self.clock()))
                continue
            if meter.pause_between_requests and i < len(reads) - 1:
                await asyncio.sleep(meter.pause_between_requests)
        now = self.clock()
        for g in groups:
            due = next_aligned(now, g.interval)
            if not device.suspect:  # slots between the one due and the next that this poll overran
                skipped = round((due - g.next_due) / g.interval) - 1
                if skipped > 0:
                    self.metrics.slots_missed.labels(device.id).inc(skipped)
            g.next_due = due
        if readings:
            await self.sink.readings(device, readings)
        if events:
            await self.sink.events(events)
        if silent is not None:
            await self._failed(device, silent, now)
        else:
            if device.suspect:  # back: its other groups go on from their next slot, none counted missed
                for g in device.groups:
                    if g.next_due <= now:
                        g.next_due = next_aligned(now, g.interval)
            await self._answered(device, "; ".join(errors) or None, now)
        if bus_down is not None:
            raise bus_down

    def _unexpected(self, device: Device, read: Read, exc: Exception) -> str:
        """An error nobody planned for while reading ``device``: counted, logged once with its
        traceback, and reported as the device's failure (its circuit opens)."""
        self.metrics.requests.labels(device.id, "error").inc()
        error = f"internal error reading {read.area.value} {read.address}+{read.count}: {type(exc).__name__}: {exc}"
        key = (device.id, f"{type(exc).__name__}: {exc}")
        if key not in self._logged_errors:
            self._logged_errors.add(key)
            log.error("%s on %s: %s", device.id, self.bus_key, error, exc_info=exc)
        else:
            log.debug("%s on %s: %s", device.id, self.bus_key, error)
        if self.settles:
            self._owe(device.meter.timeout)  # whatever it was, the line may carry an answer nobody reads
        return error[:500]

    async def _settle(self) -> None:
        """Before the next request after a failed one on a bus without transaction ids: the
        device owes its answer. Wait until it has arrived (bytes after the failure, then the line
        quiet for ``line_quiet``) or until the line has stayed quiet for the device's whole
        timeout, then discard all input.

        A quiet wait alone is not enough: an answer that is late by more than the quiet time
        would arrive while the next request waits, and a request of the same shape (the retry,
        or another read of as many registers) would take it as its own.
        """
        mark, owed = self._dirty_at, self._owed
        if mark is None:
            return
        give_up = mark + owed + self._settle_limit  # a line that never goes quiet cannot stop the bus
        while True:
            now = time.monotonic()
            arrived = self._last_rx > mark  # the owed answer (or something) came: let it finish
            left = self.line_quiet - (now - self._last_rx) if arrived else mark + owed - now
            left = min(left, give_up - now)
            if left <= 0:
                break
            if arrived:
                await asyncio.sleep(left)
            else:  # until the answer starts arriving, or no answer is owed any more
                self._rx_waiter = asyncio.get_running_loop().create_future()
                try:
                    await asyncio.wait_for(self._rx_waiter, left)
                except TimeoutError:
                    pass
                finally:
                    self._rx_waiter = None
        self._dirty_at = None
        ctx = self.client.ctx
        ctx.recv_buffer = b""
        port = getattr(ctx.transport, "sync_serial", None)
        if port is not None:
            with contextlib.suppress(Exception):
                port.reset_input_buffer()  # bytes the OS holds that the event loop has not read yet

    async def _request(self, device: Device, read: Read, attempts: int) -> tuple[list, float]:
        """One Modbus request, retried while the bus has slack; returns (values, answer time)."""
        meter = device.meter
        fn = {
            Area.HOLDING: self.client.read_holding_registers,
            Area.INPUT: self.client.read_input_registers,
            Area.COIL: self.client.read_coils,
            Area.DISCRETE: self.client.read_discrete_inputs,
        }[read.area]
        self.client.ctx.comm_params.timeout_connect = meter.timeout  # this device's timeout
        requests = self.metrics.requests
        failure: Exception = NoAnswer("no answer")
        for attempt in range(attempts):
            if self._dirty_at is not None:
                await self._settle()  # needed before any next request on the bus, retry or not
            if attempt:
                if not self.fits(device, self.clock()):
                    break
                await asyncio.sleep(0.02 * attempt)
            t0 = time.perf_counter()
            try:
                rr = await fn(read.address, count=read.count, device_id=meter.unit_id)
            except (ModbusIOException, TimeoutError) as exc:
                self._latency.observe(time.perf_counter() - t0)
                requests.labels(meter.id, "timeout").inc()
                garbled = isinstance(exc, ModbusIOException) and "No response" not in str(exc)
                failure = NoAnswer(_short(exc) if garbled else f"no answer within {meter.timeout:g}s")
                self._silent_requests += 1
                if self.settles:
                    self._owe(meter.timeout)
                self._maybe_reset_tcp()
                continue
            except (ConnectionException, OSError) as exc:
                requests.labels(meter.id, "error").inc()
                raise BusDown(f"{self.bus_key}: {_short(exc)}") from None
            self._latency.observe(time.perf_counter() - t0)
            self._silent_requests = 0
            stamp = self.clock()
            wrong = _mismatch(rr, read, meter.unit_id, exact=self.settles)
            if wrong is not None:
                requests.labels(meter.id, "error").inc()
                what = f"{read.area.value} {read.address}+{read.count}: {wrong}"
                if not self.settles:
                    # Modbus TCP: pymodbus matched the transaction id, so this is the answer, and
                    # its device's quirk: an error for this read only (the device is alive).
                    raise ModbusException(what)
                # No transaction id: most likely a late answer to an earlier request, and the
                # answer to this one may still come.
                failure = StrayFrame(f"{what} (a late answer to an earlier request?)")
                self._owe(meter.timeout)
                continue
            if rr.isError():
                requests.labels(meter.id, "exception").inc()
                code = getattr(rr, "exception_code", None)
                failure = ModbusException(f"{read.area.value} {read.address}+{read.count}: exception {code}")
                if code == BUSY:
                    continue
                raise failure
            requests.labels(meter.id, "ok").inc()
            return (rr.bits if read.area.is_bit else rr.registers), stamp
        raise failure

    def _maybe_reset_tcp(self) -> None:
        """A TCP connection on which nobody answers any more is probably half-open: reconnect.

        Only when every device on it has gone silent, so one dead unit behind a TCP gateway
        never costs the others their connection.
        """
        if isinstance(self.connection, TcpConnection) and self._silent_requests >= max(3, 2 * len(self.devices)):
            raise BusDown(f"{self.bus_key}: no answer to {self._silent_requests} requests in a row")

    def _decode(self, device: Device, read: Read, values: list, stamp: float, readings: list, events: list) -> None:
        t = utc_iso(datetime.fromtimestamp(stamp, UTC))
        for point, offset in read.points:
            if read.area.is_bit:
                value = 1.0 if values[offset] else 0.0
            else:
                raw = decode_point(values[offset : offset + point.registers], point)
                value = to_engineering(raw, point.scale, point.offset, self._digits[point.id])
            if not is_plausible(value):
                readings.append({"p": point.id, "t": t, "v": None, "q": "bad"})
                continue
            judgement = self.guard.judge(point, value)
            readings.append({"p": point.id, "t": t, "v": value, "q": judgement.quality.value})
            if judgement.event is not None:
                self.metrics.counter_events.labels(device.id, judgement.event.value).inc()
                events.append(
                    {
                        "kind": judgement.event.value,
                        "t": t,
                        "device": device.id,
                        "point": point.id,
                        "value": value,
                        "previous": judgement.previous,
                    }
                )

    # --- health -------------------------------------------------------------------------------

    async def _answered(self, device: Device, error: str | None, now: float) -> None:
        was = device.state
        device.failures = 0
        device.suspect = False
        if self._logged_errors:  # a later failure of the same kind is logged again
            self._logged_errors = {k for k in self._logged_errors if k[0] != device.id}
        device.last_success = now
        device.last_error = error
        device.state = "degraded" if error else "ok"
        self.metrics.device_up.labels(device.id).set(0 if error else 1)
        self.metrics.device_last_success.labels(device.id).set(now)
        if was != device.state:
            if was == "down":
                log.info("%s answers again on %s", device.id, self.bus_key)
            await self.sink.health_changed(device, was)

    async def _failed(self, device: Device, error: str, now: float) -> None:
        was = device.state
        device.failures += 1
        device.suspect = True
        device.last_error = error
        device.probe_at = now + device.probe_pause()
        device.state = "down" if device.failures >= DOWN_AFTER else "degraded"
        self.metrics.device_up.labels(device.id).set(0)
        if was != device.state:
            if device.state == "down":
                log.warning("%s is down on %s: %s", device.id, self.bus_key, error)
            await self.sink.health_changed(device, was)


def _mismatch(rr, read: Read, unit_id: int, exact: bool) -> str | None:
    """Why an answer cannot be the answer to ``read`` (None when it can): another function,
    unit or size.

    Registers: exactly as many as asked. Bits: at least as many as asked (an answer carries
    whole bytes, so 8 coils more at most); with ``exact`` (a bus without transaction ids, where
    the size tells a late answer to another read) no more bytes than the request's either.
    """
    fc = _FUNCTION_CODES[read.area]
    got = getattr(rr, "function_code", None)
    if got is None or got & 0x7F != fc:
        return f"answer with function code {got} to a request with {fc}"
    dev = getattr(rr, "dev_id", unit_id)
    if dev and unit_id and dev != unit_id:
        return f"answer from unit {dev} to a request to unit {unit_id}"
    if rr.isError():
        return None
    if read.area.is_bit:
        n = len(rr.bits)
        wrong = n < read.count or (exact and n > 8 * math.ceil(read.count / 8))
    else:
        n = len(rr.registers)
        wrong = n != read.count
    if wrong:
        return f"{n} values in an answer to a request for {read.count}"
    return None


def _bad(read: Read, when: float) -> list[dict]:
    t = utc_iso(datetime.fromtimestamp(when, UTC))
    return [{"p": p.id, "t": t, "v": None, "q": "bad"} for p, _ in read.points]


def _short(exc: BaseException) -> str:
    return f"{exc}"[:200]


def _no_delay(client) -> None:
    """Disable Nagle on TCP: a Modbus request is one small write that must leave at once."""
    transport = getattr(client.ctx, "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
