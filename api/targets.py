"""The targets registry: provincial carbon-peaking targets shipped as versioned data (``data/targets.yaml``).

``load_targets()`` validates the file (known comparators and documents, GB/T 2260 regions,
finite values, a quoted source phrase, no duplicates, measured_by naming shipped product
levels) and fails naming the entry and field.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources

import yaml

from carbonwatch.accounting.tables import shipped

COMPARATORS = ("about", "at_least", "more_than", "at_most", "less_than", "reduce_by")
_REGION = re.compile(r"^[0-9]{4}00$")
_FIELDS = {"region", "year", "indicator", "name", "comparator", "value", "unit", "base_year", "document", "quote"}
_OPTIONAL = {"note", "measured_by", "base_year"}


class TargetsError(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    region: str  # GB/T 2260: a province (140000) or a city (370200)
    province: str
    year: int
    indicator: str
    name: str
    comparator: str
    value: float
    unit: str
    document: str
    quote: str
    base_year: int | None = None
    note: str | None = None
    measured_by: str | None = None  # product.indicator of the shipped intensity levels

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Registry:
    version: str
    documents: dict[str, dict]
    targets: tuple[Target, ...]


def parse_targets(text: str, name: str = "targets.yaml") -> Registry:
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not {"version", "documents", "targets"} <= set(data):
        raise TargetsError(f"{name}: needs version, documents and targets")
    documents = data["documents"]
    levels = {f"{lv.product}.{lv.indicator}" for lv in shipped().levels}
    out, seen = [], set()
    for i, raw in enumerate(data["targets"]):
        where = f"{name}: targets[{i}]"
        if not isinstance(raw, dict):
            raise TargetsError(f"{where}: expected a mapping")
        unknown = set(raw) - _FIELDS - _OPTIONAL
        if unknown:
            raise TargetsError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        missing = _FIELDS - _OPTIONAL - set(raw)
        if missing:
            raise TargetsError(f"{where}: missing field {sorted(missing)[0]!r}")
        region = str(raw["region"])
        if not _REGION.match(region):
            raise TargetsError(f"{where}.region: a GB/T 2260 province or city code, got {region!r}")
        if raw["comparator"] not in COMPARATORS:
            raise TargetsError(f"{where}.comparator: one of {', '.join(COMPARATORS)}, got {raw['comparator']!r}")
        value = raw["value"]
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise TargetsError(f"{where}.value: a finite number >= 0, got {value!r}")
        if raw["document"] not in documents:
            raise TargetsError(f"{where}.document: {raw['document']!r} is not in documents")
        if not str(raw["quote"]).strip():
            raise TargetsError(f"{where}.quote: the source phrase is required")
        year = raw["year"]
        if not isinstance(year, int) or not 2020 <= year <= 2060:
            raise TargetsError(f"{where}.year: a year from 2020 to 2060, got {year!r}")
        if raw.get("measured_by") is not None and raw["measured_by"] not in levels:
            raise TargetsError(f"{where}.measured_by: {raw['measured_by']!r} is not a shipped product level")
        key = (region, year, raw["indicator"], raw["comparator"])
        if key in seen:
            raise TargetsError(f"{where}: duplicate target {key}")
        seen.add(key)
        out.append(
            Target(
                region=region,
                province=region[:2] + "0000",
                year=year,
                indicator=str(raw["indicator"]),
                name=str(raw["name"]),
                comparator=raw["comparator"],
                value=float(value),
                unit=str(raw["unit"]),
                document=raw["document"],
                quote=str(raw["quote"]),
                base_year=raw.get("base_year"),
                note=raw.get("note"),
                measured_by=raw.get("measured_by"),
            )
        )
    return Registry(str(data["version"]), documents, tuple(out))


@cache
def load_targets() -> Registry:
    """The shipped registry, validated once."""
    text = resources.files("carbonwatch.api").joinpath("data/targets.yaml").read_text("utf-8")
    return parse_targets(text)
