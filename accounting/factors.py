"""Factor lookups over the shipped tables, and the rules for choosing among them.

Electricity: the MEE/NBS CO2 factors (tCO2/MWh). An accounting year Y uses data year Y-2, or
the latest published year before it when Y-2 is not yet published (2026 uses 2023 until a
newer year appears). A place is a province (code, Chinese name or pinyin), a regional grid
(``north`` or 华北) or ``national`` (全国). The average variant is published at every level;
the residual (excluding market-traded non-fossil power) and fossil-only variants nationally only.

Fuels: one parameter family at a time (B by default). Standard coal: GB/T 2589 coefficients,
or the family's NCV over 29.3076 GJ/tce where no coefficient is published (trust D).
"""

from __future__ import annotations

from dataclasses import dataclass

from carbonwatch.contracts.carriers import CARRIERS
from carbonwatch.contracts.regions import GRID_REGIONS, UnknownRegion, province

from .tables import ELECTRICITY_VARIANTS, FactorSet, FuelParameters, Trust, shipped

ELECTRICITY_TCE_PER_MWH = 0.1229  # GB/T 2589 equivalent value: 0.1229 kgce/kWh
DEFAULT_FUEL_FAMILY = "B"
# An accounting year Y uses data year Y-2. Publication runs late (data year 2023 came out on
# 2025-12-31, so 2026 still uses 2023: reference/accounting.md §5.5), so one more year of lag is
# normal; beyond that the factors are stale and every result using them says so.
ELECTRICITY_MAX_LAG_YEARS = 3

_NATIONAL = {"national", "全国", "china", "中国", "000000", "cn"}
_REGION_ALIASES: dict[str, str] = {}
for _key, _zh in GRID_REGIONS.items():
    for _alias in (_key, _zh, f"{_zh}电网", f"{_zh}区域", f"{_key} china"):
        _REGION_ALIASES[_alias] = _key


class FactorNotFound(LookupError):
    """No official factor for this place, year, variant or carrier."""


@dataclass(frozen=True)
class ElectricityFactor:
    value: float  # tCO2/MWh
    province: str | None  # GB/T 2260 code of the place asked for, None for a region or the nation
    data_year: int
    accounting_year: int
    source: str
    variant: str = "average"
    level: str = "province"  # national | region | province: the level the value was published at
    area: str | None = None  # region key or province code of the value
    document: str = ""
    published_on: str = ""
    trust: Trust = "R1"
    unit: str = "tCO2/MWh"

    @property
    def stale_warning(self) -> str | None:
        """See :func:`stale_factor_warning`."""
        return stale_factor_warning(self.accounting_year, self.data_year)


def stale_factor_warning(accounting_year: int, data_year: int) -> str | None:
    """A warning when an accounting year uses electricity factors more than
    :data:`ELECTRICITY_MAX_LAG_YEARS` years older than itself (e.g. 2030 with data year 2023);
    None when the data year is as recent as the publication schedule allows."""
    lag = accounting_year - data_year
    if lag <= ELECTRICITY_MAX_LAG_YEARS:
        return None
    return (
        f"stale electricity factors: accounting year {accounting_year} uses data year {data_year}, the latest "
        f"shipped ({lag} years older; the rule is data year {accounting_year - 2}). The figures may be far off: "
        "update the factor set, or give the factor (--factor electricity=VALUE)"
    )


def resolve_area(place: str | int) -> tuple[str, str | None]:
    """``("national", None)``, ``("region", key)`` or ``("province", code)`` for a place name."""
    key = str(place).strip()
    if key.lower() in _NATIONAL:
        return "national", None
    region = _REGION_ALIASES.get(key) or _REGION_ALIASES.get(key.lower())
    if region:
        return "region", region
    return "province", province(key).code


def _describe(level: str, area: str | None) -> str:
    if level == "province":
        return f"{province(area).name} ({area})"
    return f"the {GRID_REGIONS[area]} grid" if level == "region" else "the nation"


def electricity_factor(
    region: str | int,
    accounting_year: int,
    *,
    variant: str = "average",
    data_year: int | None = None,
    factor_set: FactorSet | None = None,
) -> ElectricityFactor:
    """The electricity factor for a place and accounting year (Y-2 rule), or for an explicit data year.

    Variants other than ``average`` are published nationally only, so they return the national value
    whatever the place.
    """
    if variant not in ELECTRICITY_VARIANTS:
        raise FactorNotFound(f"unknown electricity variant {variant!r} (use {', '.join(ELECTRICITY_VARIANTS)})")
    fs = factor_set or shipped()
    try:
        level, area = resolve_area(region)
    except UnknownRegion as exc:
        raise FactorNotFound(str(exc)) from None
    asked_province = area if level == "province" else None
    if variant != "average":
        level, area = "national", None
    rows = {r.data_year: r for r in fs.electricity if r.variant == variant and r.level == level and r.area == area}
    if not rows:
        raise FactorNotFound(
            f"no electricity factor is published for {_describe(level, area)}; "
            "give the factor explicitly (e.g. --factor electricity=VALUE)"
        )
    if data_year is None:
        candidates = [y for y in rows if y <= accounting_year - 2]
        if not candidates:
            raise FactorNotFound(
                f"no electricity factor for accounting year {accounting_year}: the series starts with data year "
                f"{min(rows)}, usable from accounting year {min(rows) + 2}"
            )
        data_year = max(candidates)
    elif data_year not in rows:
        raise FactorNotFound(f"no electricity factor for data year {data_year} (published: {sorted(rows)})")
    rec = rows[data_year]
    where = _describe(level, area)
    return ElectricityFactor(
        value=rec.value,
        province=asked_province,
        data_year=data_year,
        accounting_year=accounting_year,
        source=(
            f"{rec.issuer} {rec.document} ({rec.published_on.isoformat()}): {rec.data_year} electricity CO2 factor, "
            f"{variant.replace('_', ' ')}, {where} [{rec.trust}]"
        ),
        variant=variant,
        level=level,
        area=area,
        document=f"{rec.issuer} {rec.document}",
        published_on=rec.published_on.isoformat(),
        trust=rec.trust,
    )


def fuel_parameters(
    carrier: str, family: str = DEFAULT_FUEL_FAMILY, factor_set: FactorSet | None = None
) -> FuelParameters:
    """Default NCV, carbon content and oxidation rate of a fuel in one family."""
    fam = (factor_set or shipped()).fuels(family)
    try:
        return fam.fuels[carrier]
    except KeyError:
        raise FactorNotFound(
            f"fuel family {family} ({fam.name}) has no default parameters for {carrier!r}; give measured values "
            "(ncv, carbon content, oxidation rate) or a factor; families are never mixed"
        ) from None


@dataclass(frozen=True)
class TceCoefficient:
    value: float  # tce per the carrier's canonical unit
    unit: str  # e.g. "tce/t"
    source: str
    trust: Trust


def tce_coefficient(
    carrier: str, family: str = DEFAULT_FUEL_FAMILY, factor_set: FactorSet | None = None
) -> TceCoefficient:
    """Standard coal per canonical unit: GB/T 2589 where published, else the family NCV / 29.3076 (D)."""
    fs = factor_set or shipped()
    sc = fs.standard_coal
    key = "heat" if carrier in ("steam", "hot_water") else carrier
    info = CARRIERS.get(key)
    if info is None:
        raise FactorNotFound(f"unknown carrier {carrier!r}")
    coef = sc.coefficients.get(key)
    if coef is not None:
        note = f"; {coef.note}" if coef.note else ""
        return TceCoefficient(coef.value, f"tce/{coef.unit}", f"{sc.document}{note} [{coef.trust}]", coef.trust)
    fam = fs.fuels(family)
    params = fam.fuels.get(carrier)
    if params is None:
        raise FactorNotFound(
            f"no standard-coal coefficient for {carrier!r}: GB/T 2589 publishes none and fuel family {family} has no "
            f"NCV for it; give one (e.g. --factor {carrier}.tce=VALUE, tce per {info.canonical_unit})"
        )
    return TceCoefficient(
        params.ncv / sc.gj_per_tce,
        f"tce/{params.unit}",
        f"derived: family-{family} NCV {params.ncv} GJ/{params.unit} / {sc.gj_per_tce} GJ/tce ({sc.document}) [D]",
        "D",
    )
