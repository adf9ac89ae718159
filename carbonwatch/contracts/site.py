"""Site configuration: one YAML file per enterprise, validated with pydantic.

The same file drives the gateway agent (which meters to poll, how to decode them, where to
publish), the collector's registry (which points a gateway may publish) and the simulators
(which meters to impersonate). A bad file fails at start with the file, line and field named:

    site.yaml:41: gateways[0].meters[2].points[0].type: Input should be 'int16', 'uint16', ...

See ``docs/site-config.md`` for every field and ``simulators/sites/`` for complete examples.
"""

from __future__ import annotations

import difflib
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .carriers import CARRIERS, UNITS, normalise_unit
from .regions import validate_region_code

SITE_SCHEMA_VERSION = 1

# MQTT topic levels must not contain wildcards or separators; keep ids to a safe alphabet.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Identifier = Annotated[str, Field(pattern=ID_PATTERN)]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h)?\s*$")
_DURATION_UNITS = {None: 1.0, "s": 1.0, "sec": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0}


def _parse_duration(v: Any) -> Any:
    """Accept 15, 15.0, "15s", "500ms", "1m", "15min", "1h"; return seconds as float."""
    if isinstance(v, bool):
        return v  # let pydantic reject it
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        m = _DURATION.match(v)
        if not m:
            raise ValueError(f"{v!r} is not a duration; write seconds (15), or 500ms, 15s, 1m, 15min, 1h")
        return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    return v


Seconds = Annotated[float, BeforeValidator(_parse_duration), Field(gt=0)]

_BYTE_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_BYTE_UNITS = {
    None: 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def _parse_bytes(v: Any) -> Any:
    if isinstance(v, str):
        m = _BYTE_SIZE.match(v)
        if not m:
            raise ValueError(f"{v!r} is not a size; write bytes (1048576) or 512MiB, 2GiB")
        unit = m.group(2).lower() if m.group(2) else None
        return int(float(m.group(1)) * _BYTE_UNITS[unit])
    return v


ByteSize = Annotated[int, BeforeValidator(_parse_bytes), Field(gt=0)]


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- enterprise -----------------------------------------------------------------------------

_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_check_digit(first17: str) -> str:
    """Check character of an 18-character unified social credit code (GB 32100-2015)."""
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARS[(31 - total % 31) % 31]


def validate_uscc(code: str) -> str:
    code = code.strip().upper()
    if len(code) != 18 or any(c not in _USCC_CHARS for c in code):
        raise ValueError(
            f"{code!r} is not a unified social credit code: 18 characters of 0-9 and A-Y without I, O, S, V, Z"
        )
    expected = uscc_check_digit(code[:17])
    if code[17] != expected:
        raise ValueError(f"unified social credit code {code!r} fails its check digit (expected {expected})")
    return code


class Enterprise(Strict):
    code: Annotated[str, BeforeValidator(lambda v: validate_uscc(str(v)))] = Field(
        description="18-character unified social credit code (统一社会信用代码)"
    )
    name: str = Field(min_length=1)
    region: Annotated[str, BeforeValidator(lambda v: validate_region_code(str(v)))] = Field(
        description="GB/T 2260 code of the county or city, e.g. 140105"
    )
    industry: str = Field(pattern=r"^[A-T]?\d{2,4}$", description="GB/T 4754 industry code, e.g. 2614 or C2614")
    name_en: str | None = None


# --- connections ----------------------------------------------------------------------------


class TcpConnection(Strict):
    type: Literal["tcp"] = "tcp"
    host: str
    port: int = Field(502, ge=1, le=65535)
    framer: Literal["socket", "rtu"] = Field("socket", description="rtu = Modbus RTU over a TCP serial server")

    @property
    def bus_key(self) -> str:
        return f"tcp://{self.host}:{self.port}"


class SerialConnection(Strict):
    type: Literal["serial"] = "serial"
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0")
    baudrate: int = Field(9600, ge=300, le=921600)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    framer: Literal["rtu", "ascii"] = "rtu"

    @property
    def bus_key(self) -> str:
        return f"serial://{self.port}"


Connection = Annotated[TcpConnection | SerialConnection, Field(discriminator="type")]


# --- points ---------------------------------------------------------------------------------


class Area(StrEnum):
    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"

    @property
    def is_bit(self) -> bool:
        return self in (Area.COIL, Area.DISCRETE)


class DataType(StrEnum):
    BOOL = "bool"
    INT8 = "int8"
    UINT8 = "uint8"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT48 = "int48"
    UINT48 = "uint48"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def registers(self) -> int:
        """Width in 16-bit registers. A bool is one bit of a coil/discrete area, or (with ``bit``)
        one bit of one register; an 8-bit value is one half (``byte``) of one register."""
        return _REGISTERS.get(self.value, 4)

    @property
    def bits(self) -> int:
        """Width of the value itself: 1 for a bool, 8 for an 8-bit half, else 16 per register."""
        return {"bool": 1, "int8": 8, "uint8": 8}.get(self.value, 16 * self.registers)

    @property
    def is_unsigned(self) -> bool:
        return self.value.startswith("uint")

    @property
    def is_float(self) -> bool:
        return self.value.startswith("float")


_REGISTERS = {
    "bool": 1,
    "int8": 1,
    "uint8": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "int48": 3,
    "uint48": 3,
}
EIGHT_BIT = (DataType.INT8, DataType.UINT8)


class Order(StrEnum):
    BIG = "big"
    LITTLE = "little"


class Half(StrEnum):
    """Which byte of a register an 8-bit value occupies, in the register's value as read."""

    HIGH = "high"  # bits 15..8
    LOW = "low"  # bits 7..0


class Kind(StrEnum):
    COUNTER = "counter"  # cumulative register: consumption is the difference of readings
    GAUGE = "gauge"  # instantaneous value (kW, V, degC...)


class Direction(StrEnum):
    IMPORT = "import"  # purchased / received across the enterprise boundary
    EXPORT = "export"  # sold / delivered out of the boundary (subtracted)
    GENERATION = "generation"  # produced on site (e.g. PV)
    CONSUMPTION = "consumption"  # a sub-meter inside the boundary


class Use(StrEnum):
    FUEL = "fuel"  # burned or used as power: counted
    FEEDSTOCK = "feedstock"  # 原料用能: raw material, excluded from dual-control energy


# Measured fuel parameters (GB/T 32151: measured values take precedence over the defaults). Units
# are those of the accounting (docs/accounting.md): NCV in GJ per the carrier's canonical unit (GJ/t,
# or GJ/10^4Nm3 for gases), carbon content per unit of heat in tC/GJ, oxidation rate a fraction.
# A value may also be written with its unit as a lab report gives it ("20.9 MJ/kg", "5000 kcal/kg",
# "26.37 tC/TJ", "94%"); it is converted, and a unit of the wrong kind is refused.
_NCV_UNITS: dict[str, tuple[str, float]] = {  # unit -> (denominator dimension, factor to GJ/t or GJ/10^4Nm3)
    "gj/t": ("mass", 1.0),
    "mj/kg": ("mass", 1.0),
    "kj/kg": ("mass", 0.001),
    "kcal/kg": ("mass", 4.1868e-3),
    "gj/10^4nm3": ("volume", 1.0),
    "mj/nm3": ("volume", 10.0),
    "mj/m3": ("volume", 10.0),
    "kj/nm3": ("volume", 0.01),
    "kj/m3": ("volume", 0.01),
    "kcal/nm3": ("volume", 4.1868e-2),
    "kcal/m3": ("volume", 4.1868e-2),
}
_NCV_UNIT_NAMES = {
    name: _NCV_UNITS[name.lower()]
    for name in ("GJ/t", "MJ/kg", "kJ/kg", "kcal/kg", "GJ/10^4Nm3", "MJ/Nm3", "kJ/Nm3", "kcal/Nm3")
}
_CC_UNITS = {"tc/gj": 1.0, "tc/tj": 0.001, "kgc/gj": 0.001}
_VALUE_WITH_UNIT = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|[-+]?\.\d+)\s*(\S.*?)?\s*$")
# Plausible NCV per carrier, GJ per canonical unit: wide bands around the family defaults
# (accounting/data/fuels_family_b.yaml; raw coal around the GB/T 2589 average 20.908 GJ/t), so that
# a value in the wrong unit (kJ/kg, kcal/kg, MJ/Nm3 for GJ/10^4Nm3) cannot pass.
_COALS = ("raw_coal", "anthracite", "bituminous_coal", "lignite", "washed_coal", "other_washed_coal", "briquette")
_OILS = ("crude_oil", "fuel_oil", "gasoline", "diesel", "kerosene", "naphtha", "coal_tar", "crude_benzene")
NCV_RANGE: dict[str, tuple[float, float]] = {
    **{c: (5.0, 35.0) for c in (*_COALS, "other_coal_products")},
    "coke": (20.0, 40.0),
    "petroleum_coke": (20.0, 40.0),
    **{c: (30.0, 50.0) for c in _OILS},
    **{c: (40.0, 60.0) for c in ("lng", "lpg", "refinery_gas")},
    "natural_gas": (300.0, 450.0),
    "coke_oven_gas": (120.0, 220.0),
    "blast_furnace_gas": (20.0, 50.0),
    "converter_gas": (50.0, 110.0),
    "other_gas": (20.0, 250.0),
}
CARBON_CONTENT_RANGE = (0.005, 0.1)  # tC/GJ: natural gas 0.0153, coal about 0.026, blast-furnace gas 0.0708
OXIDATION_RATE_RANGE = (0.6, 1.0)
# Raw coal (原煤) has no official carbon content (reference/accounting.md §3.3): a counter of it
# carries measured values, or names the coal rank instead.
COAL_RANKS = ("anthracite", "bituminous_coal", "lignite")


def _split_unit(v: Any, field: str) -> tuple[Any, str | None]:
    """(number, unit or None) of a value written as a number or as "20.9 MJ/kg"."""
    if isinstance(v, bool):
        raise ValueError(f"{field} is a number, not {v!r}")
    if not isinstance(v, str):
        return v, None
    m = _VALUE_WITH_UNIT.match(v)
    if not m:
        raise ValueError(f"{field} {v!r} is not a number, nor a number with its unit")
    return float(m.group(1)), m.group(2)


def _ncv(v: Any) -> Any:
    v, unit = _split_unit(v, "ncv")
    if unit is None:
        return v
    kind = _NCV_UNITS.get(unit.replace(" ", "").lower())
    if kind is None:
        raise ValueError(
            f"ncv unit {unit!r} is not one of GJ/t, MJ/kg, kJ/kg, kcal/kg (solids and liquids) or "
            "GJ/10^4Nm3, MJ/Nm3, kJ/Nm3, kcal/Nm3 (gases)"
        )
    return v * kind[1]


def _carbon_content(v: Any) -> Any:
    v, unit = _split_unit(v, "carbon_content")
    if unit is None:
        return v
    factor = _CC_UNITS.get(unit.replace(" ", "").lower())
    if factor is None:
        raise ValueError(f"carbon_content unit {unit!r} is not one of tC/GJ, tC/TJ, kgC/GJ (carbon per unit of heat)")
    return v * factor


def _oxidation_rate(v: Any) -> Any:
    v, unit = _split_unit(v, "oxidation_rate")
    if unit is None:
        return v
    if unit != "%":
        raise ValueError(f"oxidation_rate is a fraction (0.94) or a percentage (94%), not {unit!r}")
    return v / 100.0


class FuelParameters(Strict):
    """Measured parameters of the fuel a counter meters (lab analysis); they take precedence over the
    default family for this point, for CO2 and (NCV) for standard coal."""

    ncv: Annotated[float, BeforeValidator(_ncv)] | None = Field(
        None,
        allow_inf_nan=False,
        description="net calorific value (低位发热量), GJ/t (= MJ/kg), or GJ/10^4Nm3 for gases",
    )
    carbon_content: Annotated[float, BeforeValidator(_carbon_content)] | None = Field(
        None, allow_inf_nan=False, description="carbon content per unit of heat (单位热值含碳量), tC/GJ"
    )
    oxidation_rate: Annotated[float, BeforeValidator(_oxidation_rate)] | None = Field(
        None, allow_inf_nan=False, description="carbon oxidation rate (碳氧化率), a fraction, e.g. 0.94"
    )
    source: str | None = Field(
        None, min_length=1, description="where the values come from, e.g. lab report 2026-03 (recorded with results)"
    )

    @field_validator("carbon_content")
    @classmethod
    def _cc_range(cls, v: float | None) -> float | None:
        lo, hi = CARBON_CONTENT_RANGE
        if v is None or lo <= v <= hi:
            return v
        if 1.0 < v <= 100.0:
            hint = f"; that looks like tC/TJ or kgC/GJ: {v} tC/TJ is {v / 1000:.6g} tC/GJ"
        elif 0.1 < v <= 1.0:
            hint = (
                "; that looks like a carbon mass fraction: carbon content here is per unit of heat, the mass "
                "fraction over the NCV (e.g. 0.60 tC/t / 20.9 GJ/t = 0.0287 tC/GJ)"
            )
        else:
            hint = ""
        raise ValueError(f"carbon_content {v} tC/GJ is outside [{lo}, {hi}]{hint}")

    @field_validator("oxidation_rate")
    @classmethod
    def _of_range(cls, v: float | None) -> float | None:
        lo, hi = OXIDATION_RATE_RANGE
        if v is None or lo <= v <= hi:
            return v
        hint = f'; a percentage? write {v / 100:g} or "{v:g}%"' if 1.0 < v <= 100.0 else ""
        raise ValueError(f"oxidation_rate {v} is a fraction in [{lo}, {hi}]{hint}")

    @model_validator(mode="after")
    def _something_measured(self) -> FuelParameters:
        if self.ncv is None and self.carbon_content is None and self.oxidation_rate is None:
            raise ValueError("give at least one measured value: ncv, carbon_content or oxidation_rate")
        return self


def _ncv_unit_kind(v: Any) -> str | None:
    """``mass`` or ``volume`` for an NCV written with a unit ("20.9 MJ/kg"), None for a bare number."""
    if not isinstance(v, str):
        return None
    try:
        _, unit = _split_unit(v, "ncv")
    except ValueError:
        return None  # reported by the field's own validator, with its location
    kind = _NCV_UNITS.get(unit.replace(" ", "").lower()) if unit else None
    return kind[0] if kind else None


def _check_ncv_unit(data: Any) -> Any:
    """Refuse ``fuel.ncv`` written per volume for a fuel accounted by mass, or the reverse."""
    if not isinstance(data, dict) or not isinstance(data.get("fuel"), dict):
        return data
    raw = data["fuel"].get("ncv")
    kind = _ncv_unit_kind(raw)
    info = CARRIERS.get(data.get("carrier") or "")
    if kind is not None and info is not None and info.fossil:  # other carriers: refused in _check_fuel
        accounted = "volume" if info.canonical_unit == "10^4Nm3" else "mass"
        if kind != accounted:
            want = "GJ/10^4Nm3 (or MJ/Nm3)" if accounted == "volume" else "GJ/t (or MJ/kg)"
            raise ValueError(
                f"fuel.ncv {raw!r} is per {kind}, but {info.name} is accounted by {accounted}: give {want}"
            )
    return data


def _check_fuel(p: Point) -> None:
    """A point's measured fuel parameters suit its carrier; a raw-coal counter carries them."""
    info = CARRIERS.get(p.carrier) if p.carrier else None
    if p.fuel is not None:
        if info is None or not info.fossil:
            what = f"carrier {p.carrier}" if p.carrier else "a point without a carrier"
            raise ValueError(
                f"fuel (measured fuel parameters) applies to fuels (coal, coke, oil, gas...), not to {what}"
            )
        if p.kind is not Kind.COUNTER:
            raise ValueError("fuel (measured fuel parameters) applies to counters of a fuel")
        f = p.fuel
        if f.ncv is not None:
            unit = f"GJ/{info.canonical_unit}"
            lo, hi = NCV_RANGE.get(p.carrier, (3.0, 60.0) if info.canonical_unit == "t" else (10.0, 500.0))
            if not lo <= f.ncv <= hi:
                kind = "volume" if info.canonical_unit == "10^4Nm3" else "mass"
                fits = [
                    f"{name} ({f.ncv * factor:.4g} {unit})"
                    for name, (k, factor) in _NCV_UNIT_NAMES.items()
                    if k == kind and factor != 1.0 and lo <= f.ncv * factor <= hi
                ]
                msg = f"fuel.ncv {f.ncv:g} {unit} is outside the plausible [{lo:g}, {hi:g}] for {p.carrier}"
                if fits:
                    msg += (
                        f'; that looks like {" or ".join(fits)}: write the unit, e.g. "{f.ncv:g} {fits[0].split()[0]}"'
                    )
                raise ValueError(msg)
            if f.carbon_content is not None and info.canonical_unit == "t" and f.ncv * f.carbon_content > 1.0:
                raise ValueError(
                    f"fuel: ncv {f.ncv:g} GJ/t x carbon_content {f.carbon_content:g} tC/GJ is "
                    f"{f.ncv * f.carbon_content:.3g} t of carbon per tonne of fuel, more than the tonne"
                )
    if p.carrier == "raw_coal" and p.kind is Kind.COUNTER and p.use is Use.FUEL:
        missing = [f"fuel.{k}" for k in ("ncv", "carbon_content") if p.fuel is None or getattr(p.fuel, k) is None]
        if missing:
            raise ValueError(
                f"{' and '.join(missing)} required: raw coal (原煤) has no official carbon content, so its CO2 "
                "cannot be computed from defaults; give the measured values (fuel: {ncv: GJ/t, carbon_content: "
                f"tC/GJ, source: ...}}) or use the coal rank as carrier ({', '.join(COAL_RANKS)})"
            )


def order_label(byte_order: Order, word_order: Order, registers: int = 2) -> str:
    """Conventional ABCD label: ABCD big/big, CDAB word-swapped, BADC byte-swapped, DCBA both."""
    letters = "ABCDEFGH"[: 2 * registers]
    words = [letters[i : i + 2] for i in range(0, len(letters), 2)]
    if byte_order is Order.LITTLE:
        words = [w[::-1] for w in words]
    if word_order is Order.LITTLE:
        words = words[::-1]
    return "".join(words)


def _check_width(p: Point) -> None:
    """Area, type, ``bit`` and ``byte`` agree: a bool is a coil, a discrete input or one bit of a
    register, and never a counter; an 8-bit value is one named half of a register (a counter
    may be one: a uint8 counter wraps at 256)."""
    if p.area.is_bit:
        if p.type is not DataType.BOOL:
            raise ValueError(f"a {p.area.value} point has type bool, not {p.type.value}")
        if p.bit is not None:
            raise ValueError(
                f"bit: a {p.area.value} is already a single bit; bit picks one bit of a holding or input register"
            )
    elif p.type is DataType.BOOL and p.bit is None:
        raise ValueError(
            "type bool is only for coil and discrete areas, or for one bit of a holding or input register "
            "with bit: 0..15 (0 = least significant)"
        )
    if p.bit is not None and p.type is not DataType.BOOL:
        raise ValueError(f"bit applies to type bool (one bit of a register), not to type {p.type.value}")
    if p.type in EIGHT_BIT and p.byte is None:
        raise ValueError(f"type {p.type.value} needs byte: high (bits 15..8) or low (bits 7..0) of the register")
    if p.byte is not None and p.type not in EIGHT_BIT:
        raise ValueError(f"byte (high or low) applies to types int8 and uint8, not to type {p.type.value}")
    if p.kind is Kind.COUNTER and p.type is DataType.BOOL:
        what = "a bit of a register" if p.bit is not None else "a bool"
        raise ValueError(f"kind: a counter cannot be {what}; a bit is a state (0 or 1), a gauge")
    if p.type is DataType.BOOL and (p.scale != 1.0 or p.offset != 0.0):
        raise ValueError("a bool reads 0 or 1: scale and offset do not apply to it")
    if (p.bit is not None or p.byte is not None) and Order.LITTLE in (p.byte_order, p.word_order):
        field = "byte_order" if p.byte_order is Order.LITTLE else "word_order"
        key = f"bit: {p.bit}" if p.bit is not None else f"byte: {p.byte.value}"
        raise ValueError(
            f"{field}: little does not apply to {key}: bits and bytes are counted in the register's value as "
            "read (bit 0 the least significant, byte high = bits 15..8); carbonwatch probe prints them"
        )


class Point(Strict):
    id: Identifier = Field(description="unique within the enterprise, e.g. incomer1.import_kwh")
    area: Area = Area.HOLDING
    address: int = Field(ge=0, le=65536, description="register address as written in the meter manual")
    type: DataType = DataType.UINT16
    byte_order: Order = Field(Order.BIG, description="order of the two bytes inside each register")
    word_order: Order = Field(Order.BIG, description="order of registers inside a 32/48/64-bit value")
    bit: int | None = Field(
        None,
        ge=0,
        le=15,
        description="type bool on a holding/input register: which bit of it, 0 (least significant) to 15",
    )
    byte: Half | None = Field(
        None, description="type int8/uint8: the high (bits 15..8) or low (bits 7..0) byte of the register"
    )
    scale: float = 1.0
    offset: float = 0.0
    unit: str = Field(description="engineering unit after scale and offset, e.g. kWh, kW, V, Nm3, t, GJ")
    kind: Kind = Kind.GAUGE
    carrier: str | None = Field(None, description="energy carrier for energy points, e.g. electricity")
    direction: Direction | None = None
    use: Use = Use.FUEL
    renewable: bool = False
    new_since_base_year: bool = Field(False, description="renewable capacity added after the 2020 base year")
    product: str | None = Field(None, description="product output counter, e.g. cement_clinker (t)")
    max_rate: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description=(
            "counters only: the most the counter can plausibly advance per hour, in its unit (e.g. a meter's "
            "rated kW with a margin for a kWh counter); a faster step is flagged as a spike and not counted"
        ),
    )
    fuel: FuelParameters | None = Field(
        None, description="measured fuel parameters (ncv, carbon_content, oxidation_rate, source) of a fuel counter"
    )
    poll_interval: Seconds | None = Field(None, description="overrides the meter's poll interval")
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _fuel_units(cls, data: Any) -> Any:
        return _check_ncv_unit(data)

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, v: str) -> str:
        return normalise_unit(v) or v  # non-energy units (V, A, degC, %) are kept as written

    @field_validator("carrier")
    @classmethod
    def _known_carrier(cls, v: str | None) -> str | None:
        if v is not None and v not in CARRIERS:
            close = difflib.get_close_matches(v, CARRIERS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown carrier {v!r}{hint} (known: {', '.join(sorted(CARRIERS))})")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Point:
        _check_width(self)
        if self.carrier is not None:
            if self.kind is Kind.COUNTER and not CARRIERS[self.carrier].accepts(self.unit):
                raise ValueError(
                    f"unit {self.unit!r} is not a quantity of {self.carrier}; "
                    f"use one of {', '.join(u for u in UNITS if CARRIERS[self.carrier].accepts(u))}"
                )
            if self.direction is None:
                raise ValueError(
                    "an energy point (carrier set) needs a direction: import, export, generation or consumption"
                )
        if self.product is not None and self.kind is not Kind.COUNTER:
            raise ValueError("a product output point must be a counter")
        if self.max_rate is not None and self.kind is not Kind.COUNTER:
            raise ValueError("max_rate (the most a counter can advance per hour) applies to counters only")
        _check_fuel(self)
        return self

    @property
    def registers(self) -> int:
        return self.type.registers

    @property
    def order(self) -> str:
        return order_label(self.byte_order, self.word_order, self.type.registers)

    @property
    def rollover(self) -> float | None:
        """Engineering value at which an unsigned integer counter wraps to zero, if it can."""
        if self.kind is not Kind.COUNTER or not self.type.is_unsigned:
            return None
        return (2**self.type.bits) * abs(self.scale)

    @property
    def max_rate_per_second(self) -> float | None:
        """``max_rate`` in the counter's unit per second (the accounting core's unit), None if not set."""
        return None if self.max_rate is None else self.max_rate / 3600.0


class SimulationSpec(Strict):
    """Used only by ``carbonwatch simulate``: how the simulated meter behaves. The agent ignores it."""

    model: str = Field("auto", description="simulator model name, or auto to derive it from the points")
    profile: str = Field("process", description="load profile: process, office, shift, solar, flat")
    base: float = Field(100.0, ge=0, description="mean rate of the main counter, in its unit per hour")
    seed: int = 0


class Meter(Strict):
    id: Identifier
    model: str | None = Field(None, description="make and model, for people")
    connection: Connection
    unit_id: int = Field(1, ge=0, le=247)
    address_base: Literal[0, 1] = Field(
        description="0 if the manual's addresses are protocol addresses, 1 if they start at 1 (40001 style)"
    )
    poll_interval: Seconds | None = Field(None, description="overrides the gateway's poll interval")
    timeout: Seconds = 1.0
    retries: int = Field(1, ge=0, le=5)
    max_registers_per_request: int = Field(125, ge=1, le=125)
    max_bits_per_request: int = Field(2000, ge=1, le=2000)
    max_gap: int = Field(16, ge=0, le=124, description="unused registers a merged read may span")
    one_request_per_point: bool = False
    pause_between_requests: Seconds | None = None
    points: list[Point] = Field(min_length=1)
    simulation: SimulationSpec | None = None

    @model_validator(mode="after")
    def _unique_points(self) -> Meter:
        seen: set[str] = set()
        for p in self.points:
            if p.id in seen:
                raise ValueError(f"point id {p.id!r} appears twice in meter {self.id!r}")
            seen.add(p.id)
            if p.address - self.address_base < 0:
                raise ValueError(f"point {p.id!r}: address {p.address} is below address_base {self.address_base}")
            width = 1 if p.area.is_bit else p.registers
            if p.address - self.address_base + width > 65536:
                raise ValueError(
                    f"point {p.id!r}: address {p.address} ({p.type.value}) ends past the last Modbus address 65535 "
                    f"(address_base {self.address_base})"
                )
            if p.registers > self.max_registers_per_request and not p.area.is_bit:
                raise ValueError(
                    f"point {p.id!r} ({p.type.value}) needs {p.registers} registers in one request, "
                    f"more than max_registers_per_request={self.max_registers_per_request}"
                )
        return self

    def protocol_address(self, point: Point) -> int:
        """The 0-based address sent on the wire."""
        return point.address - self.address_base


class TlsSettings(Strict):
    ca_file: Path | None = None
    cert_file: Path | None = Field(None, description="client certificate, for certificate authentication")
    key_file: Path | None = None
    insecure_skip_verify: bool = Field(False, description="never in production: skips hostname checks")


class MqttSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str | None = Field(None, description="defaults to cw-<enterprise>-<gateway>")
    username: str | None = None
    password: str | None = None
    password_file: Path | None = Field(None, description="read the password from this file at start")
    tls: TlsSettings | None = None
    keepalive: Seconds = 30.0
    session_expiry: Seconds = Field(7 * 24 * 3600.0, description="broker keeps the session this long")

    @model_validator(mode="after")
    def _one_password(self) -> MqttSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        return self

    def resolved_password(self) -> str | None:
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").strip()
        return self.password


class BufferSettings(Strict):
    path: Path = Field(Path("buffer.sqlite"), description="relative paths resolve against the site file")
    max_bytes: ByteSize = Field(
        2 * 1024**3, description="on-disk bound; 2 GiB holds well over 6 months of 15-minute data"
    )
    when_full: Literal["drop_oldest", "stop_polling"] = Field(
        "drop_oldest", description="drop_oldest keeps the newest data and counts every drop"
    )


class PublishSettings(Strict):
    batch_max_readings: int = Field(500, ge=1, le=10000)
    batch_max_delay: Seconds = 1.0
    max_inflight: int = Field(20, ge=1, le=1000)
    drain_rate: float = Field(200.0, gt=0, description="messages per second when draining a backlog")


class Gateway(Strict):
    id: Identifier
    poll_interval: Seconds = 60.0
    mqtt: MqttSettings = MqttSettings()
    buffer: BufferSettings = BufferSettings()
    publish: PublishSettings = PublishSettings()
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Prometheus /metrics port")
    meters: list[Meter] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent_buses(self) -> Gateway:
        meters: set[str] = set()
        buses: dict[str, tuple[Any, set[int]]] = {}
        for m in self.meters:
            if m.id in meters:
                raise ValueError(f"meter id {m.id!r} appears twice in gateway {self.id!r}")
            meters.add(m.id)
            key = m.connection.bus_key
            conn, units = buses.setdefault(key, (m.connection, set()))
            if conn != m.connection:
                raise ValueError(
                    f"meters on {key} disagree on connection settings ({conn} vs {m.connection}); "
                    "one port has one baud rate, parity and framer"
                )
            if m.unit_id in units:
                raise ValueError(f"two meters on {key} use unit id {m.unit_id}")
            units.add(m.unit_id)
        return self


class Site(Strict):
    version: Literal[1] = Field(description="site-file schema version")
    enterprise: Enterprise
    gateways: list[Gateway] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Site:
        gateways: set[str] = set()
        points: set[str] = set()
        for g in self.gateways:
            if g.id in gateways:
                raise ValueError(f"gateway id {g.id!r} appears twice")
            gateways.add(g.id)
            for m in g.meters:
                for p in m.points:
                    if p.id in points:
                        raise ValueError(f"point id {p.id!r} is used twice in this enterprise")
                    points.add(p.id)
        return self

    def gateway(self, gateway_id: str) -> Gateway:
        for g in self.gateways:
            if g.id == gateway_id:
                return g
        raise KeyError(f"no gateway {gateway_id!r} in site {self.enterprise.code}")

    def iter_points(self):
        """Yield (gateway, meter, point) for every point of the site."""
        for g in self.gateways:
            for m in g.meters:
                for p in m.points:
                    yield g, m, p


# --- loading --------------------------------------------------------------------------------


ModelT = TypeVar("ModelT", bound=BaseModel)


class SiteConfigError(ValueError):
    """A site file that cannot be used; the message names file, line and field."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {seen[key]})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Line (1-based) of the deepest YAML node that a pydantic error location reaches."""
    node = root
    line = None if node is None else node.start_mark.line + 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == key:
                    node = v
                    line = k.start_mark.line + 1
                    break
            # discriminator tags ('tcp') and model names appear in loc without a YAML key: skip them
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
    return line


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for key in loc:
        if isinstance(key, int):
            out += f"[{key}]"
        elif key in ("tcp", "serial") or (isinstance(key, str) and key[:1].isupper()):
            continue  # discriminator / model names, not fields
        else:
            out += ("." if out else "") + str(key)
    return out or "(top level)"


def _known_fields(loc: tuple[Any, ...], root_model: type[BaseModel] | None = None) -> list[str]:
    """Field names allowed where an unknown key was found, for a did-you-mean hint."""
    model: Any = root_model or Site
    for key in loc[:-1]:
        if isinstance(key, int) or model is None:
            continue
        if key == "tcp":
            model = TcpConnection
            continue
        if key == "serial":
            model = SerialConnection
            continue
        field = getattr(model, "model_fields", {}).get(key)
        if field is None:
            continue
        model = _model_of(field.annotation)
    return list(getattr(model, "model_fields", {}))


def _model_of(annotation: Any) -> Any:
    """The pydantic model inside an annotation such as ``list[Point]`` or ``TlsSettings | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def format_validation_error(
    err: ValidationError, source: str, root: yaml.Node | None, model: type[BaseModel] | None = None
) -> str:
    lines = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        line = _line_of(root, loc)
        where = f"{source}:{line}" if line else source
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _known_fields(loc, model), n=1)
            msg = "unknown field" + (f"; did you mean {close[0]!r}?" if close else "")
        elif "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], dict | list):
            msg += f" (got {e['input']!r})"
        lines.append(f"{where}: {_format_loc(loc)}: {msg}")
    return "\n".join(lines)


def parse_yaml_model(text: str, source: str, model: type[ModelT], shape: str) -> ModelT:
    """Validate YAML text against a model; raise SiteConfigError naming the line and field on
    bad input (``shape`` says what the top level must be). Used for site files and other
    configuration files of the same kind."""
    try:
        root = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise SiteConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise SiteConfigError(f"{source}: {shape}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise SiteConfigError(format_validation_error(err, source, root, model)) from None


def parse_site(text: str, source: str = "<site>") -> Site:
    """Validate site YAML text; raise SiteConfigError naming the line and field on bad input."""
    return parse_yaml_model(text, source, Site, "a site file is a YAML mapping with version, enterprise and gateways")


def load_site(path: str | Path) -> Site:
    """Load a site file; relative buffer and TLS paths resolve against the file's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SiteConfigError(f"{path}: cannot read site file: {exc.strerror}") from None
    site = parse_site(text, str(path))
    return resolve_paths(site, path.parent)


def resolve_paths(site: Site, base: Path) -> Site:
    def fix(p: Path | None) -> Path | None:
        return None if p is None or p.is_absolute() else base / p

    gateways = []
    for g in site.gateways:
        buffer = g.buffer.model_copy(update={"path": fix(g.buffer.path) or g.buffer.path})
        mqtt = g.mqtt
        if mqtt.password_file is not None:
            mqtt = mqtt.model_copy(update={"password_file": fix(mqtt.password_file) or mqtt.password_file})
        if mqtt.tls is not None:
            tls = mqtt.tls.model_copy(
                update={
                    k: fix(getattr(mqtt.tls, k)) or getattr(mqtt.tls, k) for k in ("ca_file", "cert_file", "key_file")
                }
            )
            mqtt = mqtt.model_copy(update={"tls": tls})
        gateways.append(g.model_copy(update={"buffer": buffer, "mqtt": mqtt}))
    return site.model_copy(update={"gateways": gateways})
