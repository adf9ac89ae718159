"""Official factor tables shipped with carbonwatch, and the rules for choosing among them.

Electricity: the MEE/NBS provincial average CO2 factors (tCO2/MWh), by data year. An
accounting year Y uses data year Y-2, or the latest published year before it when Y-2 is
not yet published (2026 uses 2023 until a newer year appears).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from carbonwatch.contracts.regions import province

ELECTRICITY_TCE_PER_MWH = 0.1229  # GB/T 2589 equivalent value: 0.1229 kgce/kWh


@dataclass(frozen=True)
class ElectricityFactor:
    value: float  # tCO2/MWh
    province: str  # GB/T 2260 code
    data_year: int
    accounting_year: int
    source: str


class FactorNotFound(LookupError):
    pass


@cache
def _provincial_table() -> dict[str, dict[int, float]]:
    text = resources.files("carbonwatch.accounting").joinpath("data/electricity_provinces.yaml").read_text("utf-8")
    raw = yaml.safe_load(text)["provinces"]
    return {code: {int(k): float(v) for k, v in row.items() if k != "name"} for code, row in raw.items()}


def electricity_factor(region: str, accounting_year: int) -> ElectricityFactor:
    """Provincial average grid factor for a place (code, Chinese name or pinyin) and year."""
    prov = province(region)
    years = _provincial_table().get(prov.code)
    if years is None:
        raise FactorNotFound(f"no provincial electricity factor is published for {prov.name} ({prov.code})")
    candidates = [y for y in years if y <= accounting_year - 2]
    if not candidates:
        raise FactorNotFound(
            f"no electricity factor for accounting year {accounting_year}: the series starts with data year "
            f"{min(years)}, usable from accounting year {min(years) + 2}"
        )
    data_year = max(candidates)
    return ElectricityFactor(
        value=years[data_year],
        province=prov.code,
        data_year=data_year,
        accounting_year=accounting_year,
        source=f"MEE/NBS provincial average electricity CO2 factor, data year {data_year}",
    )
