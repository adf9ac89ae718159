"""Simulated meters: register images that follow a load profile, with switchable faults.

A :class:`SimulatedMeter` is built from the same ``Meter`` entry of a site file that the agent
polls, so the register map cannot drift between the two. Counters integrate a rate that
follows the meter's load profile in Beijing time; gauges follow the same rate. Values are
encoded into registers here with :mod:`struct`, independently of the agent's decoder, so a
test that compares the two checks both.

Tests and users can steer a meter: :meth:`set_value` puts a counter at an exact value,
:meth:`hold` freezes it there, and :attr:`faults` switches on failures.
"""

from __future__ import annotations

import math
import random
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from carbonwatch.contracts.site import Area, DataType, Kind, Meter, Order, Point, SimulationSpec

BEIJING = timedelta(hours=8)

_STRUCT = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}


def profile_factor(profile: str, t: float) -> float:
    """Load relative to the mean (about 1.0 on average) at epoch time ``t``, in Beijing time."""
    local = datetime.fromtimestamp(t, UTC) + BEIJING
    hour = local.hour + local.minute / 60
    weekday = local.weekday() < 5
    if profile == "flat":
        return 1.0
    if profile == "process":  # continuous process plant: near-constant with a slow ripple
        return 1.0 + 0.08 * math.sin(2 * math.pi * hour / 24)
    if profile == "office":
        return (1.8 if 8 <= hour < 18 else 0.4) if weekday else 0.35
    if profile == "shift":  # two shifts, 06-22
        return 1.4 if 6 <= hour < 22 else 0.2
    if profile == "solar":
        return max(0.0, math.sin(math.pi * (hour - 6) / 12)) * 1.57 if 6 <= hour < 18 else 0.0
    raise ValueError(f"unknown load profile {profile!r}: use process, office, shift, solar or flat")


def encode(value: float, point: Point) -> list[int]:
    """Registers a real meter would hold for an engineering value of ``point``."""
    dtype = point.type
    raw = (value - point.offset) / point.scale if point.scale else 0.0
    if not dtype.is_float:
        bits = dtype.bits
        n = round(raw) % (1 << bits)  # a counter wraps at its register width, like the hardware
        if not dtype.is_unsigned and n >= 1 << (bits - 1):
            n -= 1 << bits
        data = struct.pack(">" + _STRUCT[dtype], n)
    else:
        data = struct.pack(">" + _STRUCT[dtype], raw)
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if point.byte_order is Order.LITTLE:
        words = [w[::-1] for w in words]
    if point.word_order is Order.LITTLE:
        words.reverse()
    return [int.from_bytes(w, "big") for w in words]


@dataclass
class Faults:
    """Failures a test can switch on. All off by default."""

    timeout: bool = False  # no answer at all (the master times out)
    exception_code: int | None = None  # answer every request with this Modbus exception code
    delay: float = 0.0  # seconds before answering (a slow device)
    zero_once: set[str] = field(default_factory=set)  # points that read 0 on their next read only


class SimulatedMeter:
    def __init__(self, meter: Meter, clock: Callable[[], float] = time.time) -> None:
        self.meter = meter
        self.spec = meter.simulation or SimulationSpec()
        self.clock = clock
        self.faults = Faults()
        self._rng = random.Random(self.spec.seed)
        self._lock = threading.Lock()
        self._last = clock()
        counters = [p for p in meter.points if p.kind is Kind.COUNTER]
        self._main = counters[0].id if counters else None
        self._counters = {p.id: 1000.0 + self._rng.random() * 1000 for p in counters}
        self._held: set[str] = set()
        self.reads = 0

    def _rate(self, point: Point, t: float) -> float:
        """Per-hour rate of a counter."""
        if point.product is not None:
            return self.spec.base * 0.01 * profile_factor(self.spec.profile, t)
        if point.direction is not None and point.direction.value == "generation":
            return self.spec.base * 0.3 * profile_factor("solar", t)
        if point.direction is not None and point.direction.value == "export":
            return self.spec.base * 0.05 * profile_factor("solar", t)
        share = 1.0 if point.id == self._main else 0.2
        return self.spec.base * share * profile_factor(self.spec.profile, t)

    def advance(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        with self._lock:
            dt = now - self._last
            if dt <= 0:
                return
            for p in self.meter.points:
                if p.kind is Kind.COUNTER and p.id not in self._held:
                    self._counters[p.id] += self._rate(p, now) * dt / 3600.0
            self._last = now

    def value(self, point: Point) -> float:
        """Current engineering value of a point."""
        if point.kind is Kind.COUNTER:
            return self._counters[point.id]
        rate = self._rate(point, self._last) if self._main is None else self._rate(self._point(self._main), self._last)
        unit = point.unit
        if unit in ("V",):
            return 230.0 + self._rng.uniform(-3, 3)
        if unit in ("A",):
            return rate * 1000 / (math.sqrt(3) * 400 * 0.95) if rate else 0.0
        if unit in ("PF", "pf", "cos"):
            return 0.93 + self._rng.uniform(-0.02, 0.02)
        if unit in ("Hz",):
            return 50.0 + self._rng.uniform(-0.05, 0.05)
        if point.area.is_bit:
            return 1.0
        return rate * (1 + self._rng.uniform(-0.02, 0.02))

    def _point(self, point_id: str) -> Point:
        return next(p for p in self.meter.points if p.id == point_id)

    def set_value(self, point_id: str, value: float) -> None:
        with self._lock:
            self._point(point_id)
            self._counters[point_id] = float(value)

    def hold(self, point_id: str, value: float | None = None) -> None:
        """Freeze a counter (at ``value`` if given) until :meth:`release`."""
        with self._lock:
            if value is not None:
                self._counters[point_id] = float(value)
            self._held.add(point_id)

    def release(self, point_id: str) -> None:
        with self._lock:
            self._held.discard(point_id)

    def register_image(self, area: Area) -> dict[int, int]:
        """Protocol address -> 16-bit register (or 0/1 bit) for every point of ``area``."""
        self.advance()
        image: dict[int, int] = {}
        with self._lock:
            for p in self.meter.points:
                if p.area is not area:
                    continue
                addr = self.meter.protocol_address(p)
                if p.id in self.faults.zero_once:
                    self.faults.zero_once.discard(p.id)
                    regs = [0] * p.registers
                elif area.is_bit:
                    regs = [int(bool(self.value(p)))]
                else:
                    regs = encode(self.value(p), p)
                for i, r in enumerate(regs):
                    image[addr + i] = r
        return image
