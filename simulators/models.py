"""Meter models: the register maps and behaviour of the plant meters the simulators impersonate.

Each model is a device with its own register map, as a real meter has one whatever the agent
is told: a site file that maps a register with the wrong type or word order reads garbage
from the simulator exactly as it would from the real meter, and ``carbonwatch probe`` finds
the right entry. Between them the five models use every data type (int8 .. uint64, float32,
float64, bool), all four byte/word orders, scale and offset, coils, discrete inputs, holding and
input registers, single bits of a status word (``bit``), the two halves of a register
(``byte``), 48-bit counters, and text registers (a model name and serial number, which are not
channels: strings are never readings, but ``carbonwatch probe`` shows them).

A channel's value comes from the meter's *load* (its main rate, in the main counter's unit per
hour, following a load profile in Beijing time): counters integrate a share of it, gauges are
functions of it. :func:`template_points` turns a model into site-file points, so the sample
site file and the models cannot drift apart.

The ``auto`` model is built from the site file's own points, for site files that describe a
meter no named model covers (the demo sites use it).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from carbonwatch.contracts.site import EIGHT_BIT, Area, DataType, Direction, Half, Kind, Meter, Order, Point

BEIJING = timedelta(hours=8)
PROFILES = ("process", "office", "shift", "solar", "flat")


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
    raise ValueError(f"unknown load profile {profile!r}: use {', '.join(PROFILES)}")


# --- how a channel gets its value -----------------------------------------------------------


@dataclass(frozen=True)
class Counter:
    """A cumulative register: integrates ``share`` x load (per hour), optionally on another profile."""

    share: float = 1.0
    profile: str | None = None  # None: the meter's profile
    daily_reset: bool = False  # a "today" register that restarts at 00:00 Beijing time


@dataclass(frozen=True)
class Mirror:
    """The same quantity as another counter in another unit (e.g. Wh beside kWh)."""

    channel: str
    factor: float


Noise = Callable[[float, float], float]  # (centre, spread) -> value


@dataclass(frozen=True)
class Gauge:
    """An instantaneous value: ``fn(load, noise)``; ``load`` is the meter's rate per hour."""

    fn: Callable[[float, Noise], float]


Source = Counter | Mirror | Gauge


@dataclass(frozen=True)
class Channel:
    """One quantity a meter exposes at one place in its register map."""

    name: str
    area: Area
    address: int  # protocol (0-based) address
    type: DataType
    unit: str
    source: Source
    byte_order: Order = Order.BIG
    word_order: Order = Order.BIG
    scale: float = 1.0
    offset: float = 0.0
    site: dict = field(default_factory=dict)  # extra site-file fields: carrier, direction, renewable...
    bit: int | None = None  # a bool in a register area: its bit (0 = least significant)
    byte: Half | None = None  # an 8-bit value: the register's high or low byte

    @property
    def kind(self) -> Kind:
        # A "today" register restarts every midnight: to the agent it is a gauge, not a meter reading.
        if isinstance(self.source, Gauge) or self.type is DataType.BOOL:
            return Kind.GAUGE
        return Kind.GAUGE if isinstance(self.source, Counter) and self.source.daily_reset else Kind.COUNTER

    @property
    def registers(self) -> int:
        return self.type.registers

    @property
    def raw_limit(self) -> float | None:
        """Engineering value at which an unsigned integer register wraps to zero."""
        if not self.type.is_unsigned:
            return None
        return (2**self.type.bits) * self.scale + self.offset


@dataclass(frozen=True)
class Text:
    """A fixed string in the register map (model name, serial number): ASCII, two characters a
    register, high byte first, padded with NUL. Not a channel: strings are never readings."""

    name: str
    area: Area
    address: int
    registers: int
    value: str

    def encode(self) -> list[int]:
        raw = self.value.encode("ascii").ljust(2 * self.registers, b"\0")
        if len(raw) > 2 * self.registers:
            raise ValueError(f"{self.name} {self.value!r} is longer than {self.registers} registers")
        return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


@dataclass(frozen=True)
class MeterModel:
    name: str
    description: str
    profile: str
    base: float  # default mean load, main counter unit per hour
    channels: tuple[Channel, ...]
    texts: tuple[Text, ...] = ()

    def channel(self, name: str) -> Channel:
        for c in self.channels:
            if c.name == name:
                return c
        raise KeyError(f"model {self.name} has no channel {name!r}")


def _ch(name, area, address, dtype, unit, source, **kw) -> Channel:
    return Channel(name, Area(area), address, DataType(dtype), unit, source, **kw)


BIG, LITTLE = Order.BIG, Order.LITTLE
SQRT3 = math.sqrt(3)

THREE_PHASE_METER = MeterModel(
    "three-phase-meter",
    "three-phase energy meter: import/export kWh, kW, V, A, PF, Hz (holding registers, coil)",
    "process",
    1000.0,
    (
        _ch("voltage_l1_v", "holding", 0, "uint16", "V", Gauge(lambda load, n: n(230.0, 2.0)), scale=0.1),
        _ch("voltage_l2_v", "holding", 1, "uint16", "V", Gauge(lambda load, n: n(230.0, 2.0)), scale=0.1),
        _ch("voltage_l3_v", "holding", 2, "uint16", "V", Gauge(lambda load, n: n(230.0, 2.0)), scale=0.1),
        _ch("frequency_hz", "holding", 3, "uint16", "Hz", Gauge(lambda load, n: n(50.0, 0.03)), scale=0.01),
        _ch("power_factor", "holding", 4, "int16", "PF", Gauge(lambda load, n: n(0.93, 0.01)), scale=0.001),
        *(
            _ch(
                f"current_l{i}_a",
                "holding",
                4 + 2 * i,
                "float32",
                "A",
                Gauge(lambda load, n: n(load * 1000 / (3 * 230 * 0.93), 0.01)),
            )
            for i in (1, 2, 3)
        ),
        _ch("active_power_kw", "holding", 12, "int32", "kW", Gauge(lambda load, n: n(load, 0.01)), scale=0.001),
        _ch(
            "import_kwh",
            "holding",
            16,
            "uint32",
            "kWh",
            Counter(),
            word_order=LITTLE,
            scale=0.01,
            site={"carrier": "electricity", "direction": "import"},
        ),
        _ch(
            "export_kwh",
            "holding",
            18,
            "uint32",
            "kWh",
            Counter(0.03, "solar"),
            word_order=LITTLE,
            scale=0.01,
            site={"carrier": "electricity", "direction": "export"},
        ),
        # Status word: one alarm per bit (bit 15 is the sign bit of an int16: decoding must not care).
        _ch("alarm_voltage_loss", "holding", 20, "bool", "state", Gauge(lambda load, n: 0.0), bit=0),
        _ch("alarm_reverse_power", "holding", 20, "bool", "state", Gauge(lambda load, n: 0.0), bit=3),
        _ch("alarm_clock_battery", "holding", 20, "bool", "state", Gauge(lambda load, n: 1.0), bit=15),
        # One register, two values: the time-of-use tariff in force (1 peak .. 4 valley) and the
        # meter's internal temperature, signed.
        _ch("tariff", "holding", 21, "uint8", "tariff", Gauge(lambda load, n: 2.0), byte=Half.HIGH),
        _ch(
            "internal_temperature_c",
            "holding",
            21,
            "int8",
            "degC",
            Gauge(lambda load, n: round(n(31.0, 1.0))),
            byte=Half.LOW,
        ),
        # Reactive import in varh on a 48-bit register, low word first.
        _ch("reactive_import_kvarh", "holding", 22, "uint48", "kvarh", Counter(0.3), word_order=LITTLE, scale=0.001),
        # High-resolution import register (Wh, signed 64-bit), a cross-check of import_kwh.
        _ch("import_total_kwh", "holding", 32, "int64", "kWh", Mirror("import_kwh", 1.0), scale=0.001),
        _ch("pulse_output", "coil", 0, "bool", "state", Gauge(lambda load, n: 1.0)),
    ),
    (
        Text("model_name", Area.HOLDING, 40, 8, "CW-3P4W-100"),
        Text("serial_number", Area.HOLDING, 48, 8, "SN2026-000042"),
    ),
)

GAS_FLOW_COMPUTER = MeterModel(
    "gas-flow-computer",
    "natural-gas flow computer: Nm3 totaliser, flow, pressure, temperature (input registers)",
    "process",
    350.0,
    (
        _ch(
            "standard_volume_nm3",
            "input",
            0,
            "float64",
            "Nm3",
            Counter(),
            site={"carrier": "natural_gas", "direction": "import"},
        ),
        _ch(
            "flow_nm3h",
            "input",
            4,
            "float32",
            "Nm3/h",
            Gauge(lambda load, n: n(load, 0.02)),
            byte_order=LITTLE,
            word_order=LITTLE,
        ),
        _ch("pressure_kpa", "input", 6, "float32", "kPa", Gauge(lambda load, n: n(400.0, 5.0)), byte_order=LITTLE),
        # Kelvin x 10 on the wire: scale 0.1 and offset -273.15 give degC.
        _ch(
            "temperature_c",
            "input",
            8,
            "uint16",
            "degC",
            Gauge(lambda load, n: n(15.0, 0.5)),
            scale=0.1,
            offset=-273.15,
        ),
        _ch("line_volume_m3", "input", 10, "uint32", "m3", Counter(0.25), scale=0.1),
        _ch("alarm", "discrete", 0, "bool", "state", Gauge(lambda load, n: 0.0)),
    ),
)

STEAM_METER = MeterModel(
    "steam-meter",
    "steam/heat meter: t and GJ totalisers, flow, temperature, pressure (input registers)",
    "process",
    12.0,
    (
        _ch("mass_t", "input", 0, "uint32", "t", Counter(), byte_order=LITTLE, scale=0.001),
        _ch(
            "heat_gj",
            "input",
            2,
            "float64",
            "GJ",
            Mirror("mass_t", 2.79),  # saturated steam at about 1 MPa: 2.79 GJ/t
            byte_order=LITTLE,
            word_order=LITTLE,
            site={"carrier": "steam", "direction": "import"},
        ),
        _ch("flow_th", "input", 6, "float32", "t/h", Gauge(lambda load, n: n(load, 0.02)), word_order=LITTLE),
        _ch("temperature_c", "input", 8, "int16", "degC", Gauge(lambda load, n: n(184.0, 1.0)), scale=0.1),
        _ch("pressure_mpa", "input", 9, "uint16", "MPa", Gauge(lambda load, n: n(1.0, 0.01)), scale=0.001),
    ),
)

BELT_SCALE = MeterModel(
    "belt-scale",
    "coal belt scale: t totaliser (kg, 64-bit), rate, belt speed and load (holding registers, coil)",
    "shift",
    40.0,
    (
        _ch(
            "total_t",
            "holding",
            0,
            "uint64",
            "t",
            Counter(),
            byte_order=LITTLE,
            word_order=LITTLE,
            scale=0.001,
            site={"carrier": "raw_coal", "direction": "consumption"},
        ),
        _ch("rate_th", "holding", 4, "float32", "t/h", Gauge(lambda load, n: n(load, 0.03))),
        _ch("speed_ms", "holding", 6, "uint16", "m/s", Gauge(lambda load, n: 2.5 if load > 0 else 0.0), scale=0.01),
        _ch("load_kgm", "holding", 7, "int16", "kg/m", Gauge(lambda load, n: n(load / 9.0, 0.05)), scale=0.1),
        # Status word: belt slip (bit 0) and overload (bit 7) alarms.
        _ch("alarm_belt_slip", "holding", 8, "bool", "state", Gauge(lambda load, n: 0.0), bit=0),
        _ch("alarm_overload", "holding", 8, "bool", "state", Gauge(lambda load, n: 0.0), bit=7),
        # Belt load in % of rated (low byte; the high byte is unused) and a signed 48-bit net
        # totaliser in kg on byte-swapped registers.
        _ch(
            "load_percent",
            "holding",
            9,
            "uint8",
            "%",
            Gauge(lambda load, n: min(255.0, round(load * 2.0))),
            byte=Half.LOW,
        ),
        _ch("net_total_t", "holding", 10, "int48", "t", Mirror("total_t", 1.0), byte_order=LITTLE, scale=0.001),
        _ch("belt_running", "coil", 0, "bool", "state", Gauge(lambda load, n: 1.0 if load > 0 else 0.0)),
        _ch("calibration_due", "discrete", 0, "bool", "state", Gauge(lambda load, n: 0.0)),
    ),
)

PV_INVERTER = MeterModel(
    "pv-inverter",
    "PV inverter: lifetime and daily generation, AC power, DC voltage, temperature (holding registers)",
    "solar",
    500.0,
    (
        _ch(
            "generation_kwh",
            "holding",
            0,
            "uint64",
            "kWh",
            Counter(),
            word_order=LITTLE,
            scale=0.001,
            site={"carrier": "electricity", "direction": "generation", "renewable": True, "new_since_base_year": True},
        ),
        _ch("daily_kwh", "holding", 4, "uint32", "kWh", Counter(daily_reset=True), scale=0.1),
        _ch(
            "ac_power_kw",
            "holding",
            6,
            "int32",
            "kW",
            Gauge(lambda load, n: n(load, 0.01)),
            byte_order=LITTLE,
            scale=0.001,
        ),
        _ch(
            "dc_voltage_v",
            "holding",
            8,
            "uint16",
            "V",
            Gauge(lambda load, n: n(620.0, 10.0) if load > 0 else 0.0),
            scale=0.1,
        ),
        _ch(
            "temperature_c", "holding", 9, "int16", "degC", Gauge(lambda load, n: n(25.0 + load / 40.0, 0.5)), scale=0.1
        ),
        _ch("grid_frequency_hz", "holding", 10, "float32", "Hz", Gauge(lambda load, n: n(50.0, 0.03))),
        _ch("grid_connected", "discrete", 0, "bool", "state", Gauge(lambda load, n: 1.0 if load > 0 else 0.0)),
    ),
)

MODELS: dict[str, MeterModel] = {
    m.name: m for m in (THREE_PHASE_METER, GAS_FLOW_COMPUTER, STEAM_METER, BELT_SCALE, PV_INVERTER)
}


def model_named(name: str) -> MeterModel:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown simulator model {name!r}; known: auto, {', '.join(MODELS)}") from None


# --- the auto model: channels from a site file's points --------------------------------------


def _auto_source(point: Point, main: str | None) -> Source:
    if point.kind is Kind.COUNTER:
        if point.product is not None:
            return Counter(0.01)
        if point.direction is Direction.GENERATION:
            return Counter(0.3, "solar")
        if point.direction is Direction.EXPORT:
            return Counter(0.05, "solar")
        return Counter(1.0 if point.id == main else 0.2)
    unit = point.unit
    if point.type is DataType.BOOL:
        return Gauge(lambda load, n: 1.0)
    if point.type in EIGHT_BIT:  # an 8-bit half holds at most 255 (127 signed) counts
        return Gauge(lambda load, n: point.offset + point.scale * round(n(100.0, 20.0)))
    if unit == "V":
        return Gauge(lambda load, n: n(230.0, 3.0))
    if unit == "A":
        return Gauge(lambda load, n: load * 1000 / (SQRT3 * 400 * 0.95))
    if unit in ("PF", "pf", "cos"):
        return Gauge(lambda load, n: n(0.93, 0.02))
    if unit == "Hz":
        return Gauge(lambda load, n: n(50.0, 0.05))
    return Gauge(lambda load, n: n(load, 0.02))


def auto_model(meter: Meter) -> MeterModel:
    """A model whose register map is the meter's points, named by point id."""
    counters = [p for p in meter.points if p.kind is Kind.COUNTER]
    main = counters[0].id if counters else None
    channels = tuple(
        Channel(
            p.id,
            p.area,
            meter.protocol_address(p),
            p.type,
            p.unit,
            _auto_source(p, main),
            p.byte_order,
            p.word_order,
            p.scale,
            p.offset,
            bit=p.bit,
            byte=p.byte,
        )
        for p in meter.points
    )
    return MeterModel("auto", f"derived from the points of meter {meter.id}", "process", 100.0, channels)


def template_points(model: MeterModel, prefix: str, address_base: int = 0) -> list[dict]:
    """Site-file points that read every channel of ``model`` correctly (ids ``prefix.channel``)."""
    points = []
    for c in model.channels:
        p: dict = {"id": f"{prefix}.{c.name}"}
        if c.area is not Area.HOLDING:
            p["area"] = c.area.value
        p["address"] = c.address + address_base
        p["type"] = c.type.value
        if c.bit is not None:
            p["bit"] = c.bit
        if c.byte is not None:
            p["byte"] = c.byte.value
        if c.byte_order is not BIG:
            p["byte_order"] = c.byte_order.value
        if c.word_order is not BIG:
            p["word_order"] = c.word_order.value
        if c.scale != 1.0:
            p["scale"] = c.scale
        if c.offset != 0.0:
            p["offset"] = c.offset
        p["unit"] = c.unit
        if c.kind is Kind.COUNTER:
            p["kind"] = "counter"
        p.update(c.site)
        points.append(p)
    return points


def noise_source(seed: int) -> Noise:
    rng = random.Random(seed)
    return lambda centre, spread: centre + rng.uniform(-spread, spread)
