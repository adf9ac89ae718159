"""Product energy intensity (energy per unit of product) against benchmark, baseline and limit levels.

The levels come from the versioned table ``data/product_energy_levels.yaml`` (grades of the
national limit standards, NDRC benchmark/baseline levels, provincial targets), each with its
document and trust level. A comparison reports every applicable level, whether it is met, and the
two alerts the provincial plans call for: worse than the baseline (a retrofit transition period,
seeds F-30) and worse than the limit value (grade 3; stop and rectify, F-31).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .tables import FactorSet, Level, shipped

# unit -> (dimension, scale to the dimension's base: kgce, kWh or t)
_SCALE = {
    "tce": ("coal", 1000.0),
    "kgce": ("coal", 1.0),
    "gce": ("coal", 0.001),
    "kWh": ("electricity", 1.0),
    "MWh": ("electricity", 1000.0),
    "GWh": ("electricity", 1e6),
    "t": ("mass", 1.0),
    "kg": ("mass", 0.001),
    "10^4t": ("mass", 1e4),
}
_GRADES = ("grade_1", "grade_2", "grade_3")


class IntensityError(ValueError):
    pass


def intensity(energy: float, energy_unit: str, output: float, output_unit: str, unit: str) -> float:
    """``energy / output`` expressed in ``unit`` (kgce/t, kWh/t, gce/kWh, or "1" for a ratio like PUE)."""
    for u in (energy_unit, output_unit):
        if u not in _SCALE:
            raise IntensityError(f"unknown unit {u!r} (known: {', '.join(_SCALE)})")
    if not (math.isfinite(energy) and math.isfinite(output)):
        raise IntensityError("energy and output must be finite numbers")
    if output <= 0:
        raise IntensityError(f"output must be positive to give an intensity, got {output}")
    (edim, escale), (odim, oscale) = _SCALE[energy_unit], _SCALE[output_unit]
    if unit == "1":
        if edim != odim:
            raise IntensityError(f"a ratio needs like quantities, not {energy_unit} / {output_unit}")
        return energy * escale / (output * oscale)
    num, _, den = unit.partition("/")
    if num not in _SCALE or den not in _SCALE:
        raise IntensityError(f"unknown intensity unit {unit!r}")
    if _SCALE[num][0] != edim or _SCALE[den][0] != odim:
        raise IntensityError(f"{energy_unit} / {output_unit} cannot be expressed in {unit}")
    return (energy * escale / _SCALE[num][1]) / (output * oscale / _SCALE[den][1])


@dataclass(frozen=True)
class LevelCheck:
    level: Level
    met: bool
    margin: float  # level value - actual: >= 0 means at or better than the level (lower is better)


@dataclass
class Comparison:
    product: str
    indicator: str
    name: str
    unit: str
    value: float
    checks: list[LevelCheck]
    factor_set: str
    grade: str | None = None  # best national grade met; "worse_than_grade_3" when none is
    alerts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "product": self.product,
            "indicator": self.indicator,
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "grade": self.grade,
            "alerts": self.alerts,
            "levels": [
                {
                    "kind": c.level.kind,
                    "value": c.level.value,
                    "comparator": c.level.comparator,
                    "met": c.met,
                    "margin": c.margin,
                    "document": c.level.document,
                    "trust": c.level.trust,
                    "source": c.level.source,
                    "region": c.level.region,
                    "year": c.level.year,
                }
                for c in self.checks
            ],
            "factor_set": self.factor_set,
        }


def levels_for(
    product: str, indicator: str, region: str | None = None, factor_set: FactorSet | None = None
) -> list[Level]:
    """National levels plus those of ``region`` (a GB/T 2260 province code); all when region is None."""
    fs = factor_set or shipped()
    found = [lv for lv in fs.levels if lv.product == product and lv.indicator == indicator]
    if not found:
        known = sorted({f"{lv.product}.{lv.indicator}" for lv in fs.levels})
        raise IntensityError(f"no levels for {product}.{indicator} (known: {', '.join(known)})")
    if region is None:
        return found
    return [lv for lv in found if lv.region in (None, region)]


def compare(
    product: str,
    indicator: str,
    value: float,
    *,
    region: str | None = None,
    factor_set: FactorSet | None = None,
) -> Comparison:
    """Compare an intensity (in the indicator's unit) with every applicable level."""
    fs = factor_set or shipped()
    levels = levels_for(product, indicator, region, fs)
    if not levels:  # only other provinces' targets exist for this indicator
        raise IntensityError(f"no national levels for {product}.{indicator}, and none for region {region}")
    if not math.isfinite(value):
        raise IntensityError(f"intensity must be a finite number, got {value}")
    checks = [
        LevelCheck(lv, value <= lv.value if lv.comparator == "<=" else value < lv.value, lv.value - value)
        for lv in levels
    ]
    out = Comparison(product, indicator, levels[0].name, levels[0].unit, value, checks, fs.id)
    grades = {c.level.kind: c.met for c in checks if c.level.kind in _GRADES}
    if grades:
        met = [g for g in _GRADES if grades.get(g)]
        out.grade = met[0] if met else "worse_than_grade_3"
        if "grade_3" in grades and not grades["grade_3"]:
            out.alerts.append("worse than the limit value (grade 3, 限定值): stop and rectify")
    for c in checks:
        if c.level.kind == "baseline" and not c.met:
            out.alerts.append(f"worse than the baseline level (基准水平, {c.level.document}): retrofit transition")
        if c.level.kind == "target" and not c.met:
            out.alerts.append(
                f"target not met ({c.level.region}, {c.level.year}: {c.level.comparator} {c.level.value})"
            )
    return out
