"""The versioned reference tables shipped in ``accounting/data/``: loading and validation.

Every table is read once, checked (units, ranges, completeness, provenance on every record) and
frozen. A set is identified by :data:`FACTOR_SET_VERSION` plus a hash of the files' bytes, so a
result computed with it names exactly the numbers it used and can be recomputed when they are
revised. A fuel table holds exactly one parameter family; a set whose fuel rows mix families is
refused, because the families disagree (see reference/accounting.md §3.2).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from carbonwatch.contracts.carriers import CARRIERS
from carbonwatch.contracts.regions import GRID_REGIONS, PROVINCES

FACTOR_SET_VERSION = "cw-factors-2026.1"

# Trust levels of reference/accounting.md §0. Unverified recollections (U) are never shipped.
TRUST_LEVELS = ("O", "R2", "R1", "D")
Trust = Literal["O", "R2", "R1", "D"]

ELECTRICITY_VARIANTS = ("average", "excluding_market_non_fossil", "fossil_only")
FUEL_FAMILIES = ("A", "B")
LEVEL_KINDS = ("grade_1", "grade_2", "grade_3", "benchmark", "baseline", "target")
LEVEL_UNITS = ("kgce/t", "kWh/t", "gce/kWh", "1")

_FILES = {
    "electricity": "electricity.yaml",
    "fuels_b": "fuels_family_b.yaml",
    "fuels_a": "fuels_family_a.yaml",
    "standard_coal": "standard_coal.yaml",
    "heat": "heat.yaml",
    "levels": "product_energy_levels.yaml",
}


class FactorTableError(ValueError):
    """A reference table that fails validation; the message names the file and the record."""


# --- YAML that refuses duplicate keys (a silently shadowed factor is a wrong figure) ----------


class _StrictLoader(yaml.SafeLoader):
    pass


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise FactorTableError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _parse(text: str, name: str) -> dict:
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except FactorTableError as exc:
        raise FactorTableError(f"{name}: {exc}") from None
    except yaml.YAMLError as exc:
        raise FactorTableError(f"{name}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise FactorTableError(f"{name}: expected a mapping at the top")
    return data


# --- checks -----------------------------------------------------------------------------------


class _Check:
    """Collects the context (file, record) for error messages."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, msg: str) -> FactorTableError:
        return FactorTableError(f"{self.where}: {msg}")

    def number(self, value: Any, what: str, lo: float, hi: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(f"{what} must be a number, got {value!r}")
        if not lo <= value <= hi:
            raise self.fail(f"{what} = {value} is outside the plausible range [{lo}, {hi}]")
        return float(value)

    def trust(self, value: Any) -> Trust:
        if value not in TRUST_LEVELS:
            raise self.fail(
                f"trust must be one of {', '.join(TRUST_LEVELS)} (unverified values are not shipped), got {value!r}"
            )
        return value

    def text(self, data: dict, key: str) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{key} is required (every record names its source)")
        return value

    def keys(self, data: dict, allowed: set[str]) -> None:
        extra = set(data) - allowed
        if extra:
            raise self.fail(f"unknown field(s) {', '.join(sorted(map(str, extra)))}")

    def year(self, value: Any, what: str) -> int | None:
        if value is None:
            return None
        if not isinstance(value, int) or not 2000 <= value <= 2100:
            raise self.fail(f"{what} must be a year, got {value!r}")
        return value


# --- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ElectricityRecord:
    value: float  # tCO2/MWh
    variant: str  # one of ELECTRICITY_VARIANTS
    level: Literal["national", "region", "province"]
    area: str | None  # None (national), a GRID_REGIONS key, or a GB/T 2260 province code
    data_year: int
    issuer: str
    document: str
    title: str
    published_on: date
    url: str
    trust: Trust
    unit: str = "tCO2/MWh"


@dataclass(frozen=True)
class FuelParameters:
    carrier: str
    family: str
    unit: str  # canonical unit of the carrier: t or 10^4Nm3
    ncv: float  # GJ per unit
    carbon_content: float  # tC/GJ
    oxidation_rate: float  # fraction
    trust: Trust
    document: str
    note: str | None = None

    @property
    def co2_per_unit(self) -> float:
        """tCO2 per unit: ncv x carbon content x oxidation rate x 44/12."""
        return self.ncv * self.carbon_content * self.oxidation_rate * 44.0 / 12.0


@dataclass(frozen=True)
class FuelFamily:
    family: str
    name: str
    document: str
    published: int
    trust: Trust
    fuels: dict[str, FuelParameters]


@dataclass(frozen=True)
class Coefficient:
    """A standard-coal coefficient: tce per the carrier's canonical unit."""

    carrier: str
    unit: str
    value: float
    trust: Trust
    document: str
    note: str | None = None


@dataclass(frozen=True)
class StandardCoal:
    document: str
    published: int
    data_year: int | None
    gj_per_tce: float
    coefficients: dict[str, Coefficient]


@dataclass(frozen=True)
class HeatFactor:
    value: float  # tCO2/GJ
    unit: str
    document: str
    published: int
    trust: Trust
    note: str | None = None


@dataclass(frozen=True)
class Level:
    product: str
    indicator: str
    name: str
    unit: str
    kind: str
    value: float
    comparator: Literal["<=", "<"]
    document: str
    trust: Trust
    source: str
    region: str | None = None
    year: int | None = None
    note: str | None = None


@dataclass(frozen=True)
class FactorSet:
    """All shipped tables, validated; ``id`` names the version and the exact bytes."""

    id: str
    electricity: tuple[ElectricityRecord, ...]
    fuel_families: dict[str, FuelFamily]
    standard_coal: StandardCoal
    heat: HeatFactor
    levels: tuple[Level, ...]
    levels_version: str

    def fuels(self, family: str) -> FuelFamily:
        try:
            return self.fuel_families[family]
        except KeyError:
            raise FactorTableError(
                f"no fuel family {family!r} in factor set {self.id} (have {', '.join(sorted(self.fuel_families))})"
            ) from None

    def electricity_years(self) -> list[int]:
        return sorted({r.data_year for r in self.electricity})


# --- parsers ----------------------------------------------------------------------------------


def _value_and_trust(raw: Any, default_trust: Any, check: _Check, what: str) -> tuple[float, Trust]:
    if isinstance(raw, dict):
        check.keys(raw, {"value", "trust"})
        return check.number(raw.get("value"), what, 0.05, 1.2), check.trust(raw.get("trust", default_trust))
    return check.number(raw, what, 0.05, 1.2), check.trust(default_trust)


def parse_electricity(data: dict, name: str = _FILES["electricity"]) -> tuple[ElectricityRecord, ...]:
    check = _Check(name)
    check.keys(data, {"series", "unit", "announcements"})
    if data.get("unit") != "tCO2/MWh":
        raise check.fail(f"unit must be tCO2/MWh, got {data.get('unit')!r}")
    records: list[ElectricityRecord] = []
    years: set[int] = set()
    expected_provinces = {code for code in PROVINCES if code not in {"540000", "710000", "810000", "820000"}}
    for i, ann in enumerate(data.get("announcements") or []):
        c = _Check(f"{name}: announcements[{i}]")
        c.keys(
            ann,
            {"data_year", "issuer", "document", "title", "published_on", "url", "national", "regions", "regions_trust"}
            | {"provinces", "provinces_trust"},
        )
        year = c.year(ann.get("data_year"), "data_year")
        if year is None or year in years:
            raise c.fail(f"data_year {year!r} is missing or repeated")
        years.add(year)
        published = ann.get("published_on")
        if not isinstance(published, date) or published.year <= year:
            raise c.fail(f"published_on must be a date after the data year, got {published!r}")
        meta = {
            "data_year": year,
            "issuer": c.text(ann, "issuer"),
            "document": c.text(ann, "document"),
            "title": c.text(ann, "title"),
            "published_on": published,
            "url": c.text(ann, "url"),
        }
        national = ann.get("national") or {}
        if set(national) != set(ELECTRICITY_VARIANTS):
            raise c.fail(f"national needs exactly the variants {', '.join(ELECTRICITY_VARIANTS)}")
        for variant in ELECTRICITY_VARIANTS:
            v, t = _value_and_trust(national[variant], None, c, f"national.{variant}")
            records.append(ElectricityRecord(v, variant, "national", None, trust=t, **meta))
        regions = ann.get("regions") or {}
        if set(regions) != set(GRID_REGIONS):
            raise c.fail(f"regions must be exactly {', '.join(GRID_REGIONS)}")
        for key, raw in regions.items():
            v, t = _value_and_trust(raw, ann.get("regions_trust"), c, f"regions.{key}")
            records.append(ElectricityRecord(v, "average", "region", key, trust=t, **meta))
        provinces = ann.get("provinces") or {}
        if set(provinces) != expected_provinces:
            missing = sorted(expected_provinces - set(provinces))
            extra = sorted(set(provinces) - expected_provinces)
            raise c.fail(f"provinces must be the 30 published ones (missing {missing}, unexpected {extra})")
        for code, raw in provinces.items():
            v, t = _value_and_trust(raw, ann.get("provinces_trust"), c, f"provinces.{code}")
            records.append(ElectricityRecord(v, "average", "province", code, trust=t, **meta))
    if not records:
        raise check.fail("no announcements")
    return tuple(records)


_NCV_RANGE = {"t": (5.0, 60.0), "10^4Nm3": (20.0, 500.0)}


def parse_fuel_family(data: dict, name: str) -> FuelFamily:
    check = _Check(name)
    check.keys(data, {"family", "name", "document", "published", "data_year", "trust", "fuels"})
    family = data.get("family")
    if family not in FUEL_FAMILIES:
        raise check.fail(f"family must be one of {', '.join(FUEL_FAMILIES)}, got {family!r}")
    document = check.text(data, "document")
    default_trust = check.trust(data.get("trust"))
    fuels: dict[str, FuelParameters] = {}
    for carrier, row in (data.get("fuels") or {}).items():
        c = _Check(f"{name}: fuels.{carrier}")
        if not isinstance(row, dict):
            raise c.fail("expected a mapping")
        c.keys(row, {"unit", "ncv", "carbon_content", "oxidation_rate", "ef_check", "trust", "note", "family"})
        if row.get("family", family) != family:
            raise c.fail(
                f"row of family {row['family']!r} in a family-{family} table: the families disagree and are never mixed"
            )
        info = CARRIERS.get(carrier)
        if info is None or info.biomass or not info.fossil:
            raise c.fail(f"{carrier!r} is not a fossil fuel carrier of carbonwatch.contracts.carriers")
        unit = row.get("unit")
        if unit != info.canonical_unit:
            raise c.fail(f"unit must be {info.canonical_unit} (the carrier's canonical unit), got {unit!r}")
        params = FuelParameters(
            carrier=carrier,
            family=family,
            unit=unit,
            ncv=c.number(row.get("ncv"), "ncv (GJ/unit)", *_NCV_RANGE[unit]),
            carbon_content=c.number(row.get("carbon_content"), "carbon_content (tC/GJ)", 0.005, 0.08),
            oxidation_rate=c.number(row.get("oxidation_rate"), "oxidation_rate (fraction)", 0.5, 1.0),
            trust=c.trust(row.get("trust", default_trust)),
            document=document,
            note=row.get("note"),
        )
        if "ef_check" in row:
            expected = c.number(row["ef_check"], "ef_check", 0.1, 40.0)
            if abs(params.co2_per_unit - expected) > 5e-5 + 1e-6 * expected:
                raise c.fail(
                    f"ncv x carbon_content x oxidation_rate x 44/12 = {params.co2_per_unit:.6f} disagrees with "
                    f"ef_check {expected}: a parameter is mistyped"
                )
        fuels[carrier] = params
    if not fuels:
        raise check.fail("no fuels")
    return FuelFamily(family, check.text(data, "name"), document, int(data.get("published", 0)), default_trust, fuels)


# Plausible tce per canonical unit: catches the kgce/m3-as-tce/10^4m3 class of unit slip.
_TCE_RANGE = {"t": (0.1, 2.5), "10^4Nm3": (0.5, 20.0), "MWh": (0.1, 0.5), "GJ": (0.030, 0.040)}


def parse_standard_coal(data: dict, name: str = _FILES["standard_coal"]) -> StandardCoal:
    check = _Check(name)
    check.keys(data, {"standard", "document", "published", "data_year", "gj_per_tce", "coefficients"})
    document = check.text(data, "document")
    gj_per_tce = check.number(data.get("gj_per_tce"), "gj_per_tce", 29.0, 29.5)
    coefficients: dict[str, Coefficient] = {}
    for carrier, row in (data.get("coefficients") or {}).items():
        c = _Check(f"{name}: coefficients.{carrier}")
        c.keys(row, {"unit", "value", "trust", "note"})
        info = CARRIERS.get(carrier)
        if info is None:
            raise c.fail(f"unknown carrier {carrier!r}")
        unit = row.get("unit")
        if unit != info.canonical_unit and not (carrier == "heat" and unit == "GJ"):
            raise c.fail(f"unit must be {info.canonical_unit}, got {unit!r}")
        value = c.number(row.get("value"), f"tce per {unit}", *_TCE_RANGE[unit])
        coefficients[carrier] = Coefficient(carrier, unit, value, c.trust(row.get("trust")), document, row.get("note"))
    for required in ("electricity", "heat"):
        if required not in coefficients:
            raise check.fail(f"the {required} coefficient is required")
    return StandardCoal(
        document,
        int(data.get("published", 0)),
        check.year(data.get("data_year"), "data_year"),
        gj_per_tce,
        coefficients,
    )


def parse_heat(data: dict, name: str = _FILES["heat"]) -> HeatFactor:
    check = _Check(name)
    check.keys(data, {"factor"})
    row = data.get("factor") or {}
    c = _Check(f"{name}: factor")
    c.keys(row, {"value", "unit", "document", "published", "data_year", "trust", "note"})
    if row.get("unit") != "tCO2/GJ":
        raise c.fail(f"unit must be tCO2/GJ, got {row.get('unit')!r}")
    return HeatFactor(
        c.number(row.get("value"), "value", 0.05, 0.2),
        "tCO2/GJ",
        c.text(row, "document"),
        int(row.get("published", 0)),
        c.trust(row.get("trust")),
        row.get("note"),
    )


def parse_levels(data: dict, name: str = _FILES["levels"]) -> tuple[str, tuple[Level, ...]]:
    check = _Check(name)
    check.keys(data, {"version", "products"})
    version = check.text(data, "version")
    levels: list[Level] = []
    for product, pdata in (data.get("products") or {}).items():
        for indicator, idata in (pdata.get("indicators") or {}).items():
            c = _Check(f"{name}: {product}.{indicator}")
            unit = idata.get("unit")
            if unit not in LEVEL_UNITS:
                raise c.fail(f"unit must be one of {', '.join(LEVEL_UNITS)}, got {unit!r}")
            seen: set[tuple] = set()
            for j, row in enumerate(idata.get("levels") or []):
                lc = _Check(f"{name}: {product}.{indicator}.levels[{j}]")
                lc.keys(row, {"kind", "value", "comparator", "document", "trust", "source", "region", "year", "note"})
                if row.get("kind") not in LEVEL_KINDS:
                    raise lc.fail(f"kind must be one of {', '.join(LEVEL_KINDS)}, got {row.get('kind')!r}")
                if row.get("comparator") not in ("<=", "<"):
                    raise lc.fail(f"comparator must be '<=' or '<', got {row.get('comparator')!r}")
                region = row.get("region")
                if region is not None and str(region) not in PROVINCES:
                    raise lc.fail(f"region {region!r} is not a GB/T 2260 province code")
                key = (row["kind"], region, row.get("document"))
                if key in seen:
                    raise lc.fail(f"repeated level {key}")
                seen.add(key)
                levels.append(
                    Level(
                        product=product,
                        indicator=indicator,
                        name=c.text(idata, "name"),
                        unit=unit,
                        kind=row["kind"],
                        value=lc.number(row.get("value"), "value", -1000.0, 100000.0),
                        comparator=row["comparator"],
                        document=lc.text(row, "document"),
                        trust=lc.trust(row.get("trust")),
                        source=lc.text(row, "source"),
                        region=None if region is None else str(region),
                        year=lc.year(row.get("year"), "year"),
                        note=row.get("note"),
                    )
                )
    if not levels:
        raise check.fail("no levels")
    return version, tuple(levels)


# --- loading ----------------------------------------------------------------------------------


def load_factor_set(directory: str | Path | None = None) -> FactorSet:
    """Load and validate a factor set from ``directory`` (default: the tables shipped in the package)."""
    if directory is None:
        root = resources.files("carbonwatch.accounting").joinpath("data")
        texts = {role: root.joinpath(fname).read_bytes() for role, fname in _FILES.items()}
    else:
        d = Path(directory)
        texts = {role: (d / fname).read_bytes() for role, fname in _FILES.items()}
    parsed = {role: _parse(raw.decode("utf-8"), _FILES[role]) for role, raw in texts.items()}

    families: dict[str, FuelFamily] = {}
    for role in ("fuels_b", "fuels_a"):
        fam = parse_fuel_family(parsed[role], _FILES[role])
        if fam.family in families:
            raise FactorTableError(f"{_FILES[role]}: a second table for fuel family {fam.family}")
        families[fam.family] = fam
    levels_version, levels = parse_levels(parsed["levels"])
    digest = hashlib.sha256()
    for role in sorted(texts):
        digest.update(_FILES[role].encode() + b"\0" + texts[role] + b"\0")
    return FactorSet(
        id=f"{FACTOR_SET_VERSION}+{digest.hexdigest()[:12]}",
        electricity=parse_electricity(parsed["electricity"]),
        fuel_families=families,
        standard_coal=parse_standard_coal(parsed["standard_coal"]),
        heat=parse_heat(parsed["heat"]),
        levels=levels,
        levels_version=levels_version,
    )


@cache
def shipped() -> FactorSet:
    """The factor set shipped with this version of carbonwatch (loaded and validated once)."""
    return load_factor_set()
