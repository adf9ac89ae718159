"""Polling one bus: a TCP endpoint or a serial port shared by meters with different unit ids.

Requests on one bus are strictly sequential (one Modbus master, one outstanding request).
Each meter is polled on a wall-clock-aligned schedule (a 60 s meter is read at :00 of every
minute), every reading is stamped with the time its response arrived, and a failed read
produces ``bad`` readings (value null) rather than a repeat of the last good value.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from carbonwatch.contracts.payload import Quality, utc_iso
from carbonwatch.contracts.site import Area, Meter, SerialConnection, TcpConnection

from .plan import Read, plan_reads
from .registers import decode, is_plausible, to_engineering
from .schedule import Backoff, next_aligned, wait_or_stop

log = logging.getLogger("carbonwatch.edge.poller")

_FRAMERS = {"socket": FramerType.SOCKET, "rtu": FramerType.RTU, "ascii": FramerType.ASCII}

Sink = Callable[[Meter, list[dict]], Awaitable[None]]


@dataclass
class MeterState:
    meter: Meter
    reads: list[Read]
    interval: float
    next_due: float
    consecutive_failures: int = 0
    last_success: float | None = None
    last_error: str | None = None
    skip_until: float = 0.0  # circuit breaker: a failing meter is skipped until then

    @property
    def health(self) -> str:
        if self.consecutive_failures == 0:
            return "ok"
        return "down" if self.consecutive_failures >= 3 else "degraded"


def make_client(conn: TcpConnection | SerialConnection, timeout: float):
    if isinstance(conn, TcpConnection):
        return AsyncModbusTcpClient(
            conn.host,
            port=conn.port,
            framer=_FRAMERS[conn.framer],
            timeout=timeout,
            retries=0,
            reconnect_delay=0,
        )
    return AsyncModbusSerialClient(
        conn.port,
        framer=_FRAMERS[conn.framer],
        baudrate=conn.baudrate,
        parity=conn.parity,
        stopbits=conn.stopbits,
        bytesize=conn.bytesize,
        timeout=timeout,
        retries=0,
        reconnect_delay=0,
    )


@dataclass
class BusPoller:
    """Polls every meter on one connection, one request at a time."""

    meters: list[Meter]
    default_interval: float
    sink: Sink
    clock: Callable[[], float] = time.time
    states: dict[str, MeterState] = field(init=False)

    def __post_init__(self) -> None:
        now = self.clock()
        self.states = {}
        for m in self.meters:
            interval = m.poll_interval or self.default_interval
            self.states[m.id] = MeterState(m, plan_reads(m), interval, next_aligned(now, interval))
        self.connection = self.meters[0].connection
        timeout = max(m.timeout for m in self.meters)
        self.client = make_client(self.connection, timeout)
        self._connect_backoff = Backoff()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                state = min(self.states.values(), key=lambda s: max(s.next_due, s.skip_until))
                wait = max(state.next_due, state.skip_until) - self.clock()
                if wait > 0 and await wait_or_stop(stop, wait):
                    return
                if not self.client.connected and not await self._connect(stop):
                    continue
                await self.poll_meter(state)
                state.next_due = next_aligned(self.clock(), state.interval)
        finally:
            self.client.close()

    async def _connect(self, stop: asyncio.Event) -> bool:
        ok = await self.client.connect()
        if ok:
            self._connect_backoff.reset()
            return True
        delay = self._connect_backoff.next_delay()
        log.warning("cannot connect to %s; retrying in %.1fs", self.connection.bus_key, delay)
        for s in self.states.values():
            s.consecutive_failures += 1
            s.last_error = "connection failed"
        await wait_or_stop(stop, delay)
        return False

    async def poll_meter(self, state: MeterState) -> None:
        meter = state.meter
        readings: list[dict] = []
        failed = False
        for read in state.reads:
            try:
                values = await self._execute(meter, read)
            except (ModbusException, OSError, TimeoutError) as exc:
                failed = True
                state.last_error = f"{type(exc).__name__}: {exc}"[:200]
                now = utc_iso(datetime.now(UTC))
                readings.extend({"p": p.id, "t": now, "v": None, "q": Quality.BAD.value} for p, _ in read.points)
                continue
            stamp = utc_iso(datetime.now(UTC))
            for point, offset in read.points:
                if read.area.is_bit:
                    raw = bool(values[offset])
                else:
                    raw = decode(
                        values[offset : offset + point.registers],
                        point.type,
                        point.byte_order,
                        point.word_order,
                    )
                value = to_engineering(raw, point.scale, point.offset)
                if is_plausible(value):
                    readings.append({"p": point.id, "t": stamp, "v": value, "q": Quality.GOOD.value})
                else:
                    readings.append({"p": point.id, "t": stamp, "v": None, "q": Quality.BAD.value})
            if meter.pause_between_requests:
                await asyncio.sleep(meter.pause_between_requests)
        if failed:
            state.consecutive_failures += 1
            # Circuit breaker: after repeated failures, skip the meter for a growing while so the
            # healthy meters on the bus keep their schedule.
            if state.consecutive_failures >= 3:
                state.skip_until = self.clock() + min(state.interval * 2 ** (state.consecutive_failures - 3), 300.0)
        else:
            state.consecutive_failures = 0
            state.last_success = self.clock()
            state.last_error = None
            state.skip_until = 0.0
        if readings:
            await self.sink(meter, readings)

    async def _execute(self, meter: Meter, read: Read) -> list:
        fn = {
            Area.HOLDING: self.client.read_holding_registers,
            Area.INPUT: self.client.read_input_registers,
            Area.COIL: self.client.read_coils,
            Area.DISCRETE: self.client.read_discrete_inputs,
        }[read.area]
        rr = await fn(read.address, count=read.count, device_id=meter.unit_id)
        if rr.isError():
            raise ModbusException(f"exception response {rr}")
        return rr.bits if read.area.is_bit else rr.registers
