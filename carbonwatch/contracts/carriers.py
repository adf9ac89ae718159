"""Energy carriers and physical units: the shared vocabulary of meters and accounting.

A carrier names what flows through a meter (``electricity``, ``natural_gas``, ``coke``...).
The accounting core keys its factor tables on these names; the site configuration and
the activity-data CSV of ``carbonwatch account`` use them too. Each carrier has a
canonical unit, the one its factors are expressed in, and a dimension that says which
units a meter may report it in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Dimension(StrEnum):
    ENERGY = "energy"  # kWh, MWh, GJ, MJ
    MASS = "mass"  # t, kg
    VOLUME = "volume"  # m3, Nm3, 10^4Nm3 (gas volumes at standard conditions)
    POWER = "power"  # kW (gauges only)
    OTHER = "other"


@dataclass(frozen=True)
class Unit:
    symbol: str
    dimension: Dimension
    to_base: float  # factor to the dimension's base: kWh for energy, t for mass, Nm3 for volume


# Electric energy has its own base (kWh) and thermal energy its own (GJ); both are
# ENERGY so that heat meters reporting in kWh and electricity meters in MWh both work.
UNITS: dict[str, Unit] = {
    u.symbol: u
    for u in [
        Unit("kWh", Dimension.ENERGY, 1.0),
        Unit("MWh", Dimension.ENERGY, 1000.0),
        Unit("GWh", Dimension.ENERGY, 1_000_000.0),
        Unit("GJ", Dimension.ENERGY, 1e9 / 3.6e6),
        Unit("MJ", Dimension.ENERGY, 1e6 / 3.6e6),
        Unit("t", Dimension.MASS, 1.0),
        Unit("kg", Dimension.MASS, 0.001),
        Unit("m3", Dimension.VOLUME, 1.0),
        Unit("Nm3", Dimension.VOLUME, 1.0),
        Unit("10^4Nm3", Dimension.VOLUME, 10_000.0),
        Unit("kW", Dimension.POWER, 1.0),
        Unit("MW", Dimension.POWER, 1000.0),
    ]
}
UNIT_ALIASES = {
    "kwh": "kWh",
    "mwh": "MWh",
    "gwh": "GWh",
    "gj": "GJ",
    "mj": "MJ",
    "t": "t",
    "tonne": "t",
    "tonnes": "t",
    "kg": "kg",
    "m3": "m3",
    "m³": "m3",
    "nm3": "Nm3",
    "nm³": "Nm3",
    "10^4nm3": "10^4Nm3",
    "10^4 nm3": "10^4Nm3",
    "万nm3": "10^4Nm3",
    "万立方米": "10^4Nm3",
    "kw": "kW",
    "mw": "MW",
}


def normalise_unit(symbol: str) -> str | None:
    """Canonical spelling of an energy/quantity unit, or None when it is not one of ours."""
    s = symbol.strip()
    if s in UNITS:
        return s
    return UNIT_ALIASES.get(s.lower())


@dataclass(frozen=True)
class CarrierInfo:
    name: str
    chinese: str
    dimension: Dimension  # the dimension of canonical_unit
    canonical_unit: str  # the unit factor tables use
    also: tuple[Dimension, ...] = ()  # other dimensions a meter may report it in

    def accepts(self, unit: str) -> bool:
        u = UNITS.get(unit)
        return u is not None and (u.dimension == self.dimension or u.dimension in self.also)

    fossil: bool = True
    biomass: bool = False


CARRIERS: dict[str, CarrierInfo] = {
    c.name: c
    for c in [
        CarrierInfo("electricity", "电力", Dimension.ENERGY, "MWh", fossil=False),
        CarrierInfo("heat", "热力", Dimension.ENERGY, "GJ", fossil=False),
        CarrierInfo("steam", "蒸汽", Dimension.MASS, "t", also=(Dimension.ENERGY,), fossil=False),
        CarrierInfo("hot_water", "热水", Dimension.MASS, "t", also=(Dimension.ENERGY,), fossil=False),
        CarrierInfo("raw_coal", "原煤", Dimension.MASS, "t"),
        CarrierInfo("anthracite", "无烟煤", Dimension.MASS, "t"),
        CarrierInfo("bituminous_coal", "烟煤", Dimension.MASS, "t"),
        CarrierInfo("lignite", "褐煤", Dimension.MASS, "t"),
        CarrierInfo("washed_coal", "洗精煤", Dimension.MASS, "t"),
        CarrierInfo("other_washed_coal", "其他洗煤", Dimension.MASS, "t"),
        CarrierInfo("briquette", "型煤", Dimension.MASS, "t"),
        CarrierInfo("other_coal_products", "其他煤制品", Dimension.MASS, "t"),
        CarrierInfo("coke", "焦炭", Dimension.MASS, "t"),
        CarrierInfo("petroleum_coke", "石油焦", Dimension.MASS, "t"),
        CarrierInfo("crude_oil", "原油", Dimension.MASS, "t"),
        CarrierInfo("fuel_oil", "燃料油", Dimension.MASS, "t"),
        CarrierInfo("gasoline", "汽油", Dimension.MASS, "t"),
        CarrierInfo("diesel", "柴油", Dimension.MASS, "t"),
        CarrierInfo("kerosene", "一般煤油", Dimension.MASS, "t"),
        CarrierInfo("lng", "液化天然气", Dimension.MASS, "t"),
        CarrierInfo("lpg", "液化石油气", Dimension.MASS, "t"),
        CarrierInfo("naphtha", "石脑油", Dimension.MASS, "t"),
        CarrierInfo("coal_tar", "焦油", Dimension.MASS, "t"),
        CarrierInfo("crude_benzene", "粗苯", Dimension.MASS, "t"),
        CarrierInfo("refinery_gas", "炼厂干气", Dimension.MASS, "t"),
        CarrierInfo("natural_gas", "天然气", Dimension.VOLUME, "10^4Nm3"),
        CarrierInfo("blast_furnace_gas", "高炉煤气", Dimension.VOLUME, "10^4Nm3"),
        CarrierInfo("converter_gas", "转炉煤气", Dimension.VOLUME, "10^4Nm3"),
        CarrierInfo("coke_oven_gas", "焦炉煤气", Dimension.VOLUME, "10^4Nm3"),
        CarrierInfo("other_gas", "其他煤气", Dimension.VOLUME, "10^4Nm3"),
        CarrierInfo("biomass", "生物质", Dimension.MASS, "t", fossil=False, biomass=True),
    ]
}


def convert(quantity: float, from_unit: str, to_unit: str) -> float:
    """Convert between units of the same dimension (kWh <-> GJ, kg <-> t, Nm3 <-> 10^4Nm3)."""
    a, b = UNITS[from_unit], UNITS[to_unit]
    if a.dimension != b.dimension:
        raise ValueError(f"cannot convert {from_unit} ({a.dimension}) to {to_unit} ({b.dimension})")
    return quantity * a.to_base / b.to_base
