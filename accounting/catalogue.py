"""The shipped tables as printable rows (``carbonwatch factors list`` / ``factors show``)."""

from __future__ import annotations

import unicodedata
from typing import Any

from carbonwatch.contracts.carriers import CARRIERS
from carbonwatch.contracts.regions import GRID_REGIONS, PROVINCES

from . import METHOD_VERSION
from .factors import resolve_area, tce_coefficient
from .tables import FactorSet

TABLES = ("electricity", "fuels", "standard-coal", "heat", "levels")


def summary(fs: FactorSet) -> list[str]:
    elec = fs.electricity
    years = fs.electricity_years()
    docs = sorted({f"{r.data_year}: {r.issuer} {r.document} ({r.published_on})" for r in elec if r.level == "national"})
    lines = [f"factor set {fs.id}  (method {METHOD_VERSION})", ""]
    lines.append(
        f"electricity    {len(elec)} values, tCO2/MWh, data years {', '.join(map(str, years))}: national "
        f"(average, excluding market non-fossil, fossil-only), 7 grid regions and 30 provinces (average)"
    )
    lines += [f"               {d}" for d in docs]
    for fam in sorted(fs.fuel_families.values(), key=lambda f: f.family, reverse=True):
        lines.append(
            f"fuels {fam.family}        {len(fam.fuels)} fuels: NCV, carbon content, oxidation rate; {fam.name}"
        )
        lines.append(f"               {fam.document}")
    sc = fs.standard_coal
    lines.append(
        f"standard-coal  {len(sc.coefficients)} GB/T 2589 coefficients (tce per unit); others from NCV / 29.3076"
    )
    lines.append(f"               {sc.document}")
    lines.append(f"heat           {fs.heat.value} {fs.heat.unit}  {fs.heat.document} [{fs.heat.trust}]")
    products = sorted({lv.product for lv in fs.levels})
    lines.append(
        f"levels         {len(fs.levels)} product energy-intensity levels ({fs.levels_version}): {', '.join(products)}"
    )
    lines += ["", "trust: O official text; R2 two transcriptions agree; R1 one transcription (provisional); D derived"]
    return lines


def _area_name(level: str, area: str | None) -> str:
    if level == "national":
        return "全国 national"
    if level == "region":
        return f"{GRID_REGIONS[area]} {area}"
    p = PROVINCES[area]
    return f"{p.name} {p.code}"


def rows(
    fs: FactorSet,
    table: str,
    *,
    data_year: int | None = None,
    place: str | None = None,
    family: str = "B",
    product: str | None = None,
) -> list[dict[str, Any]]:
    """The records of one table as flat dicts, optionally filtered."""
    if table == "electricity":
        want = resolve_area(place) if place else None
        return [
            {
                "data_year": r.data_year,
                "level": r.level,
                "area": _area_name(r.level, r.area),
                "variant": r.variant,
                "value": r.value,
                "unit": r.unit,
                "trust": r.trust,
                "document": f"{r.issuer} {r.document}",
                "published_on": r.published_on.isoformat(),
            }
            for r in fs.electricity
            if (data_year is None or r.data_year == data_year) and (want is None or (r.level, r.area) == want)
        ]
    if table == "fuels":
        fam = fs.fuels(family)
        return [
            {
                "carrier": p.carrier,
                "chinese": CARRIERS[p.carrier].chinese,
                "unit": p.unit,
                "ncv_gj": p.ncv,
                "carbon_content_tc_per_gj": p.carbon_content,
                "oxidation_rate": p.oxidation_rate,
                "tco2_per_unit": round(p.co2_per_unit, 6),
                "family": p.family,
                "trust": p.trust,
                "document": p.document,
                **({"note": p.note} if p.note else {}),
            }
            for p in fam.fuels.values()
        ]
    if table == "standard-coal":
        out = []
        for carrier in CARRIERS:
            if carrier in ("steam", "hot_water"):
                continue
            try:
                c = tce_coefficient(carrier, family, fs)
            except LookupError:
                continue
            out.append(
                {
                    "carrier": carrier,
                    "chinese": CARRIERS[carrier].chinese,
                    "value": c.value,
                    "unit": c.unit,
                    "trust": c.trust,
                    "source": c.source,
                }
            )
        return out
    if table == "heat":
        h = fs.heat
        return [
            {
                "carrier": "heat",
                "value": h.value,
                "unit": h.unit,
                "trust": h.trust,
                "document": h.document,
                "note": h.note,
            }
        ]
    if table == "levels":
        return [
            {
                "product": lv.product,
                "indicator": lv.indicator,
                "name": lv.name,
                "kind": lv.kind,
                "comparator": lv.comparator,
                "value": lv.value,
                "unit": lv.unit,
                "region": lv.region,
                "year": lv.year,
                "trust": lv.trust,
                "document": lv.document,
                "source": lv.source,
                **({"note": lv.note} if lv.note else {}),
            }
            for lv in fs.levels
            if product is None or lv.product == product
        ]
    raise ValueError(f"unknown table {table!r} (tables: {', '.join(TABLES)})")


def format_rows(records: list[dict[str, Any]], columns: list[str]) -> list[str]:
    """Fixed-width text table of the given columns."""
    cells = [[_fmt(r.get(c)) for c in columns] for r in records]
    widths = [max([len(c)] + [_width(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v + " " * (w - _width(v)) for v, w in zip(values, widths, strict=True)).rstrip()

    return [line(columns)] + [line(row) for row in cells]


def _width(text: str) -> int:
    """Display width: CJK characters take two columns in a terminal."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


COLUMNS = {
    "electricity": ["data_year", "level", "area", "variant", "value", "trust", "document"],
    "fuels": [
        "carrier",
        "chinese",
        "unit",
        "ncv_gj",
        "carbon_content_tc_per_gj",
        "oxidation_rate",
        "tco2_per_unit",
        "trust",
    ],
    "standard-coal": ["carrier", "chinese", "value", "unit", "trust"],
    "heat": ["carrier", "value", "unit", "trust", "document"],
    "levels": ["product", "indicator", "kind", "comparator", "value", "unit", "region", "trust", "document"],
}
