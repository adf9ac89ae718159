"""Simulated meters: live register images that follow a load profile, with switchable faults.

A :class:`SimulatedMeter` serves a :class:`~.models.MeterModel`: a named one (the site file's
``simulation.model``) or the ``auto`` model built from the meter's own points. Counters
integrate the meter's load, gauges follow it. Values are encoded into registers here (integers
as two's complement bytes, floats with :mod:`struct`, bits and bytes shifted into place and
OR-ed into their register), independently of the agent's decoder, so a test that compares the
two checks both.

Tests and users steer a meter by channel name or by site-file point id: :meth:`hold` freezes a
channel at a value, :meth:`set_value` moves a counter, :meth:`replace` restarts a counter as a
new meter would, :meth:`near_rollover` brings an integer counter close to its register width,
and :attr:`faults` switches on failures (no response, dropped requests, exception responses,
slow answers, a counter that reads 0 once).
"""

from __future__ import annotations

import random
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from carbonwatch.contracts.site import Area, DataType, Half, Meter, Order, SimulationSpec

from .models import (
    BEIJING,
    Channel,
    Counter,
    Gauge,
    MeterModel,
    Mirror,
    auto_model,
    model_named,
    noise_source,
    profile_factor,
)

_FLOAT = {DataType.FLOAT32: "f", DataType.FLOAT64: "d"}


def encode(value: float, point) -> list[int]:
    """Registers a real meter would hold for an engineering value of ``point`` (a Point or Channel).

    A bool with a ``bit`` and an 8-bit value with a ``byte`` give their register with only their
    own bits set, so that the channels sharing a register combine with ``|``.
    """
    dtype = point.type
    raw = (value - point.offset) / point.scale if point.scale else 0.0
    if dtype is DataType.BOOL:
        on = 1 if raw else 0
        return [on << point.bit] if getattr(point, "bit", None) is not None else [on]
    if dtype.is_float:
        data = struct.pack(">" + _FLOAT[dtype], raw)
    else:
        # Two's complement at the register's width; an integer register wraps like the hardware.
        n = round(raw) % (1 << dtype.bits)
        if dtype.bits == 8:
            return [n << 8 if point.byte is Half.HIGH else n]
        data = n.to_bytes(dtype.bits // 8, "big")
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if point.byte_order is Order.LITTLE:
        words = [w[::-1] for w in words]
    if point.word_order is Order.LITTLE:
        words.reverse()
    return [int.from_bytes(w, "big") for w in words]


@dataclass
class Faults:
    """Failures a test (or ``carbonwatch simulate --fault``) can switch on. All off by default."""

    dead: bool = False  # never answers: a dead unit on a shared bus, or a powered-off meter
    drop_rate: float = 0.0  # fraction of requests left unanswered (intermittent timeouts)
    drop_next: int = 0  # leave the next N requests unanswered (a deterministic timeout)
    exception_code: int | None = None  # answer every request with this Modbus exception code
    delay: float = 0.0  # seconds before answering (a slow device)
    delay_next: list[float] = field(default_factory=list)  # delays of the next requests, one each, before `delay`
    zero_once: set[str] = field(default_factory=set)  # channels that read 0 on their next read only
    # Answers carry this many registers more (or, negative, fewer) than asked; for coils and
    # discrete inputs, whole bytes of bits (a device quirk: the answer is otherwise right).
    wrong_size: int = 0

    def clear(self) -> None:
        self.dead, self.drop_rate, self.drop_next, self.exception_code, self.delay = False, 0.0, 0, None, 0.0
        self.wrong_size = 0
        self.delay_next.clear()
        self.zero_once.clear()

    def next_delay(self) -> float:
        """Seconds to wait before answering the request that just arrived."""
        return self.delay_next.pop(0) if self.delay_next else self.delay


class Request(NamedTuple):
    """A request as the simulated meter received it (for tests: counts, order, spacing)."""

    t: float  # arrival, epoch seconds
    area: Area
    address: int  # protocol address (for coils and discrete inputs, of the first bit)
    count: int  # registers (for coils and discrete inputs, the 16-bit words of bits touched)
    answered: bool  # False when a fault left it unanswered
    delay: float  # seconds the answer was held back


class SimulatedMeter:
    def __init__(self, meter: Meter, clock: Callable[[], float] = time.time) -> None:
        self.meter = meter
        spec = meter.simulation or SimulationSpec()
        self.model: MeterModel = auto_model(meter) if spec.model == "auto" else model_named(spec.model)
        self.profile = spec.profile if "profile" in spec.model_fields_set else self.model.profile
        self.base = spec.base if "base" in spec.model_fields_set else self.model.base
        profile_factor(self.profile, 0.0)  # unknown profile names fail here, at start
        self.clock = clock
        self.faults = Faults()
        self.requests = 0  # requests answered with data
        self.request_log: deque[Request] = deque(maxlen=10_000)  # every read request received, in order
        self._rng = random.Random(spec.seed)
        self._noise = noise_source(spec.seed + 1)
        self._lock = threading.Lock()
        self._last = clock()
        self._by_name = {c.name: c for c in self.model.channels}
        self._by_area: dict[Area, list[Channel]] = {a: [] for a in Area}
        for c in sorted(self.model.channels, key=lambda c: c.address):
            self._by_area[c.area].append(c)
        self._counters = {
            c.name: (self._rng.random() * 10 if c.source.daily_reset else 1000.0 + self._rng.random() * 1000)
            for c in self.model.channels
            if isinstance(c.source, Counter)
        }
        self._held: dict[str, float] = {}

    # --- naming ---------------------------------------------------------------------------

    def channel(self, name: str) -> Channel:
        """A channel by its name, or by the id of a site-file point that reads it."""
        if name in self._by_name:
            return self._by_name[name]
        for p in self.meter.points:
            if p.id == name:
                addr = self.meter.protocol_address(p)
                for c in self._by_area[p.area]:
                    if c.address == addr and c.bit == p.bit and c.byte == p.byte:
                        return c
                where = f"{p.area.value} {addr}" + (f" bit {p.bit}" if p.bit is not None else "")
                where += f" {p.byte.value} byte" if p.byte is not None else ""
                raise KeyError(f"point {name!r} reads {where}, where model {self.model.name} has nothing")
        raise KeyError(f"meter {self.meter.id} ({self.model.name}) has no channel or point {name!r}")

    # --- the physics ------------------------------------------------------------------------

    def load(self, t: float, profile: str | None = None) -> float:
        """The meter's main rate at ``t``, in its main counter's unit per hour."""
        return self.base * profile_factor(profile or self.profile, t)

    def advance(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        with self._lock:
            dt = now - self._last
            if dt <= 0:
                return
            new_day = (datetime.fromtimestamp(now, UTC) + BEIJING).date() != (
                datetime.fromtimestamp(self._last, UTC) + BEIJING
            ).date()
            for c in self.model.channels:
                src = c.source
                if not isinstance(src, Counter) or c.name in self._held:
                    continue
                if src.daily_reset and new_day:
                    self._counters[c.name] = 0.0
                self._counters[c.name] += src.share * self.load(now, src.profile) * dt / 3600.0
            self._last = now

    def _value(self, c: Channel) -> float:
        if c.name in self._held:
            return self._held[c.name]
        src = c.source
        if isinstance(src, Counter):
            return self._counters[c.name]
        if isinstance(src, Mirror):
            return self._value(self._by_name[src.channel]) * src.factor
        assert isinstance(src, Gauge)
        return src.fn(self.load(self._last), self._noise)

    def value_of(self, name: str) -> float:
        """Current engineering value of a channel (or of the channel a point id reads)."""
        c = self.channel(name)
        self.advance()
        with self._lock:
            return self._value(c)

    # --- steering ---------------------------------------------------------------------------

    def set_value(self, name: str, value: float) -> None:
        """Move a counter to ``value``; it keeps counting from there (a held channel stays held)."""
        c = self.channel(name)
        if not isinstance(c.source, Counter):
            raise ValueError(f"{c.name} is not a counter register; use hold() for gauges")
        self.advance()
        with self._lock:
            self._counters[c.name] = float(value)
            if c.name in self._held:
                self._held[c.name] = float(value)

    def hold(self, name: str, value: float | None = None) -> None:
        """Freeze a channel (at ``value`` if given, else where it is) until :meth:`release`."""
        c = self.channel(name)
        self.advance()
        with self._lock:
            self._held[c.name] = self._value(c) if value is None else float(value)
            if isinstance(c.source, Counter):
                self._counters[c.name] = self._held[c.name]

    def release(self, name: str) -> None:
        c = self.channel(name)
        self.advance()
        with self._lock:
            self._held.pop(c.name, None)

    def replace(self, name: str, start: float = 0.0) -> None:
        """A meter replacement: the counter restarts at ``start`` and counts on."""
        self.set_value(name, start)

    def near_rollover(self, name: str, counts: int = 10) -> float:
        """Put an unsigned integer counter ``counts`` raw steps below its register width.

        Returns the engineering value at which the register wraps to zero.
        """
        c = self.channel(name)
        if c.raw_limit is None or not isinstance(c.source, Counter):
            raise ValueError(f"{c.name} is not an unsigned integer counter; it cannot roll over")
        self.set_value(c.name, c.raw_limit - counts * c.scale)
        return c.raw_limit

    def read_zero_once(self, name: str) -> None:
        """The channel's next read returns 0 (a glitch real meters have), then it reads true again."""
        self.faults.zero_once.add(self.channel(name).name)

    # --- the register image -----------------------------------------------------------------

    def register_image(self, area: Area, start: int = 0, count: int = 65536) -> dict[int, int]:
        """Protocol address -> 16-bit register (or 0/1 bit) for the channels of ``area`` that
        overlap ``[start, start + count)``."""
        self.advance()
        image: dict[int, int] = {}
        end = start + count
        with self._lock:
            for c in self._by_area[area]:
                if c.address >= end or c.address + c.registers <= start:
                    continue
                if c.name in self.faults.zero_once:
                    self.faults.zero_once.discard(c.name)
                    regs = [0] * c.registers
                else:
                    regs = encode(self._value(c), c)
                for i, r in enumerate(regs):
                    # bits of one status word, the two bytes of one register: combined
                    image[c.address + i] = image.get(c.address + i, 0) | r
            for text in self.model.texts:
                if text.area is area and text.address < end and text.address + text.registers > start:
                    for i, r in enumerate(text.encode()):
                        image[text.address + i] = r
        return image

    def drops_request(self) -> bool:
        """True when this request gets no answer (dead unit or an intermittent timeout)."""
        f = self.faults
        if f.drop_next > 0:
            f.drop_next -= 1
            return True
        return f.dead or (f.drop_rate > 0 and self._rng.random() < f.drop_rate)


FAULT_KINDS = ("dead", "drop", "exception", "delay", "wrong-size", "zero-once", "rollover", "replace")


def apply_fault(meters: dict[str, SimulatedMeter], spec: str) -> None:
    """Apply ``METER:KIND[=VALUE]`` as ``carbonwatch simulate --fault`` gives it.

    dead | drop=0.2 | exception=4 | delay=0.5 | wrong-size=-1 | zero-once=CHANNEL | rollover=CHANNEL | replace=CHANNEL
    """
    meter_id, _, rest = spec.partition(":")
    kind, _, value = rest.partition("=")
    if meter_id not in meters:
        raise ValueError(f"--fault {spec}: no meter {meter_id!r} (meters: {', '.join(meters)})")
    sim = meters[meter_id]
    try:
        if kind == "dead":
            sim.faults.dead = True
        elif kind == "drop":
            sim.faults.drop_rate = float(value)
        elif kind == "exception":
            sim.faults.exception_code = int(value)
        elif kind == "delay":
            sim.faults.delay = float(value)
        elif kind == "wrong-size":
            sim.faults.wrong_size = int(value)
        elif kind == "zero-once":
            sim.read_zero_once(value)
        elif kind == "rollover":
            sim.near_rollover(value)
        elif kind == "replace":
            sim.replace(value)
        else:
            raise ValueError(f"unknown kind {kind!r}; use {', '.join(FAULT_KINDS)}")
    except (KeyError, ValueError) as exc:
        raise ValueError(f"--fault {spec}: {exc}") from None
