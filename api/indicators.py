"""What meters can measure of the provincial plans' indicators, beyond energy and CO2 totals.

- Product energy intensity (F-28) for every shipped indicator, against the shipped levels
  (F-29), with the baseline and limit alerts (F-30, F-31). The energy on top of the fraction
  follows the indicator's unit:

  ===================  =========================================================  =============
  unit                 energy                                                     output point
  ===================  =========================================================  =============
  kgce/t               comprehensive energy on the enterprise boundary (tce)      tonnes
  kWh/t                electricity used (import - export + generation)            tonnes
  gce/kWh              fuel energy on the boundary, electricity left out (tce)    net kWh supplied
  1 (PUE)              electricity used                                           IT kWh
  ===================  =========================================================  =============

  A product point names a product of the level table (``steel``: every indicator of it) or one
  indicator (``steel.blast_furnace``); a product without shipped levels is reported as such.
- Benchmark attainment (F-32) per product indicator over the monitored enterprises of a province:
  output, the share of it from enterprises at or better than the benchmark (标杆) level, and how
  many are worse than the baseline (基准) and the limit (grade 3, 限定值).
- Green-power share (F-42): renewable electricity generated on site and used, over electricity
  used, with the conservative rule ``green used = max(0, renewable generation - export)`` (what
  leaves the site is taken to be the green electricity first). No green certificates or
  green-power contracts are metered, so purchased electricity counts as grid electricity.
- The monitored enterprises' non-fossil share of energy on the equivalent-value basis: green
  electricity used at the core's electricity coefficient (0.1229 kgce/kWh) over their energy
  consumption including the renewable electricity generated on site. It is the monitored
  enterprises' figure, never the regional statistic the plans' non-fossil targets count.

Nothing here knows a factor: coefficients and levels come from the accounting core's tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from psycopg import AsyncConnection

from carbonwatch.accounting.intensity import IntensityError, compare, intensity, levels_for
from carbonwatch.accounting.tables import shipped
from carbonwatch.contracts.carriers import UNITS, Dimension

from .auth import Caller

GREEN_RULE = (
    "electricity used = import - export + generation; green electricity used = max(0, renewable generation "
    "on site - export), per enterprise (what leaves the site counts as green first: the conservative rule)"
)
NO_CERTIFICATES = (
    "no green certificates or green-power contracts are metered: purchased electricity counts as grid "
    "electricity, only renewable generation on site counts as green"
)
NON_FOSSIL_SCOPE = (
    "monitored enterprises only, on the equivalent-value basis (electricity {coef} kgce/kWh): green electricity "
    "used over their energy consumption including renewable electricity generated on site; not the regional "
    "statistic, and not compared with the plans' non-fossil targets"
)
BASIS = {
    "comprehensive": "comprehensive energy on the enterprise boundary (imports add, exports subtract), tce",
    "fuel": "fuel energy on the enterprise boundary without electricity, tce, per net electricity supplied",
    "electricity_used": "electricity used (import - export + generation), kWh",
}
# targets whose indicator is a capacity share at benchmark, and the products they cover (None: every
# key industry with a shipped benchmark level)
SHARE_TARGETS: dict[str, tuple[str, ...] | None] = {
    "steel_capacity_share_at_benchmark": ("steel",),
    "aluminium_copper_capacity_share_at_benchmark": ("electrolytic_aluminium", "copper"),
    "cement_clinker_capacity_share_at_benchmark": ("cement_clinker",),
    "capacity_share_at_benchmark": None,
}
_ELECTRIC = {"kWh", "MWh", "GWh"}


@dataclass
class Electricity:
    """One enterprise's metered electricity over a window, kWh."""

    import_kwh: float = 0.0
    export_kwh: float = 0.0
    generation_kwh: float = 0.0
    renewable_generation_kwh: float = 0.0

    @property
    def used_kwh(self) -> float:
        return self.import_kwh - self.export_kwh + self.generation_kwh

    @property
    def green_used_kwh(self) -> float:
        return max(0.0, self.renewable_generation_kwh - self.export_kwh)


@dataclass
class SiteFacts:
    """What one enterprise's meters say over a window, beyond tce: electricity by direction, outputs."""

    code: str
    city: str
    electricity: Electricity = field(default_factory=Electricity)
    outputs: list[tuple[str, str, float]] = field(default_factory=list)  # product point's product, unit, quantity
    tce: float = 0.0  # comprehensive energy on the enterprise boundary
    tce_fuel: float = 0.0  # the same, electricity left out


async def site_facts(
    conn: AsyncConnection,
    who: Caller,
    start: datetime,
    end: datetime,
    *,
    enterprise: str | None = None,
    province: str | None = None,
) -> dict[str, SiteFacts]:
    """Electricity by direction and product output per enterprise in scope, from the monthly rollup.

    ``start`` and ``end`` are whole Beijing months. Every enterprise in scope (and in the filter)
    gets an entry, with or without meters.
    """
    cond, params = who.where()
    where = [cond]
    if enterprise is not None:
        where.append("e.code = %(enterprise)s")
    if province is not None:
        where.append("e.province = %(province)s")
    args = {**params, "enterprise": enterprise, "province": province, "start": start, "end": end}
    cur = await conn.execute(f"SELECT e.code, e.city FROM enterprises e WHERE {' AND '.join(where)}", args)
    out = {code: SiteFacts(code, city) for code, city in await cur.fetchall()}
    cur = await conn.execute(
        f"""WITH pts AS MATERIALIZED (
                SELECT p.id, e.code, p.product, p.carrier, p.direction, p.renewable, p.unit
                FROM points p JOIN enterprises e ON e.code = p.enterprise
                WHERE {" AND ".join(where)} AND (p.product IS NOT NULL OR p.carrier = 'electricity')
            )
            SELECT pts.code, pts.product, pts.carrier, pts.direction, pts.renewable, pts.unit, sum(m.quantity)
            FROM energy_1mon m JOIN pts ON pts.id = m.point_id
            WHERE m.bucket >= %(start)s AND m.bucket < %(end)s
            GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 6""",
        args,
    )
    for code, product, carrier, direction, renewable, unit, quantity in await cur.fetchall():
        facts = out.get(code)
        if facts is None or quantity is None:
            continue
        if product is not None:
            facts.outputs.append((product, unit, float(quantity)))
        if carrier == "electricity" and unit in UNITS and UNITS[unit].dimension is Dimension.ENERGY:
            kwh = float(quantity) * UNITS[unit].to_base
            el = facts.electricity
            if direction == "import":
                el.import_kwh += kwh
            elif direction == "export":
                el.export_kwh += kwh
            elif direction == "generation":
                el.generation_kwh += kwh
                if renewable:
                    el.renewable_generation_kwh += kwh
    return out


def electricity_coefficient() -> float:
    """tce per MWh of electricity, equivalent value, from the core's standard-coal table."""
    return shipped().standard_coal.coefficients["electricity"].value


def green_power(facts: Iterable[SiteFacts]) -> dict:
    """Green-power share of one enterprise or a group (sums of per-enterprise figures)."""
    facts = list(facts)
    used = sum(f.electricity.used_kwh for f in facts)
    green = sum(f.electricity.green_used_kwh for f in facts)
    return {
        "enterprises": len(facts),
        "import_kwh": sum(f.electricity.import_kwh for f in facts),
        "export_kwh": sum(f.electricity.export_kwh for f in facts),
        "generation_kwh": sum(f.electricity.generation_kwh for f in facts),
        "renewable_generation_kwh": sum(f.electricity.renewable_generation_kwh for f in facts),
        "electricity_used_kwh": used,
        "green_used_kwh": green,
        "share": green / used if used > 0 else None,
        "rule": GREEN_RULE,
        "certificates": NO_CERTIFICATES,
    }


def non_fossil(facts: Iterable[SiteFacts], boundary_tce: float) -> dict:
    """The monitored enterprises' non-fossil share of energy, equivalent value (see the module text)."""
    facts = list(facts)
    coef = electricity_coefficient()  # tce/MWh
    green_tce = sum(f.electricity.green_used_kwh for f in facts) / 1000 * coef
    energy_tce = boundary_tce + sum(f.electricity.renewable_generation_kwh for f in facts) / 1000 * coef
    return {
        "share": green_tce / energy_tce if energy_tce > 0 else None,
        "non_fossil_tce": green_tce,
        "energy_tce": energy_tce,
        "electricity_kgce_per_kwh": coef,
        "basis": "equivalent value",
        "scope": NON_FOSSIL_SCOPE.format(coef=coef),
    }


# --- product intensity ---------------------------------------------------------------------------


def _indicators() -> dict[str, list[tuple[str, str, str]]]:
    """product -> [(indicator, unit, name)] in the level table's order."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for lv in shipped().levels:
        rows = out.setdefault(lv.product, [])
        if all(r[0] != lv.indicator for r in rows):
            rows.append((lv.indicator, lv.unit, lv.name))
    return out


def basis_of(unit: str) -> str:
    """Which energy an intensity unit puts over the output (see the module text)."""
    num, _, den = unit.partition("/")
    if unit == "1" or num in _ELECTRIC:
        return "electricity_used"
    if den in _ELECTRIC:
        return "fuel"
    return "comprehensive"


def output_unit_of(unit: str) -> str:
    """The unit an indicator's output is summed in: its denominator, kWh for a ratio of electricity."""
    return "kWh" if unit == "1" else unit.partition("/")[2]


def _in_unit(quantity: float, unit: str, target: str) -> float:
    """``quantity`` of ``unit`` expressed in ``target`` (same dimension), through the core's units."""
    if quantity == 0:
        intensity(1.0, unit, 1.0, target, "1")  # still refuse a unit of another dimension
        return 0.0
    return intensity(quantity, unit, 1.0, target, "1")


@dataclass
class Measured:
    """One enterprise's intensity on one indicator, for the drill-down and the attainment tables."""

    item: dict
    output: float = 0.0  # in output_unit_of(unit)
    value: float | None = None
    checks: dict[str, bool] = field(default_factory=dict)  # kind -> met (every level of that kind)


def product_intensities(facts: SiteFacts, region: str) -> list[Measured]:
    """Every indicator the enterprise's product points allow, compared with the levels of ``region``."""
    table = _indicators()
    out = []
    outputs: dict[tuple[str, str], float] = {}
    for product, unit, quantity in facts.outputs:
        outputs[(product, unit)] = outputs.get((product, unit), 0.0) + quantity
    for (named, unit), quantity in sorted(outputs.items()):
        product, _, only = named.partition(".")
        if product not in table:
            out.append(
                Measured(
                    {
                        "product": named,
                        "indicator": None,
                        "output": quantity,
                        "output_unit": unit,
                        "error": f"no levels are shipped for product {named!r}",
                    }
                )
            )
            continue
        chosen = [row for row in table[product] if not only or row[0] == only]
        if not chosen:
            known = ", ".join(r[0] for r in table[product])
            out.append(
                Measured(
                    {
                        "product": product,
                        "indicator": only,
                        "output": quantity,
                        "output_unit": unit,
                        "error": f"no indicator {only!r} of {product} (known: {known})",
                    }
                )
            )
            continue
        for indicator, iunit, name in chosen:
            out.append(_one(facts, product, indicator, iunit, name, quantity, unit, region))
    return out


def _one(
    facts: SiteFacts, product: str, indicator: str, unit: str, name: str, quantity: float, qunit: str, region: str
) -> Measured:
    basis = basis_of(unit)
    energy, energy_unit = {
        "comprehensive": (facts.tce, "tce"),
        "fuel": (facts.tce_fuel, "tce"),
        "electricity_used": (facts.electricity.used_kwh, "kWh"),
    }[basis]
    head = {
        "product": product,
        "indicator": indicator,
        "output": quantity,
        "output_unit": qunit,
        "energy": energy,
        "energy_unit": energy_unit,
        "basis": basis,
        "energy_basis": BASIS[basis],
    }
    try:
        value = intensity(energy, energy_unit, quantity, qunit, unit)
        output = _in_unit(quantity, qunit, output_unit_of(unit))
    except IntensityError as exc:
        return Measured({**head, "name": name, "unit": unit, "error": str(exc)})
    if levels_for(product, indicator, region):
        cmp = compare(product, indicator, value, region=region)
        item = {**head, **cmp.as_dict()}
        checks: dict[str, bool] = {}
        for c in cmp.checks:
            checks[c.level.kind] = checks.get(c.level.kind, True) and c.met
    else:  # only other regions' targets: nothing to compare with here
        item = {
            **head,
            "name": name,
            "value": value,
            "unit": unit,
            "grade": None,
            "alerts": [],
            "levels": [],
            "factor_set": shipped().id,
            "note": f"no level of {product}.{indicator} applies in {region}",
        }
        checks = {}
    return Measured(item, output, value, checks)


# --- benchmark attainment and measured targets -----------------------------------------------------


def attainment(facts: Iterable[SiteFacts], region: str) -> tuple[list[dict], list[dict]]:
    """Per product indicator with shipped levels: monitored output and its standing against the levels.

    Returns (rows, unlevelled): ``unlevelled`` sums output points whose product has no shipped levels.
    """
    measured: dict[tuple[str, str], list[tuple[str, Measured]]] = {}
    unlevelled: dict[tuple[str, str], list] = {}
    for f in facts:
        for m in product_intensities(f, region):
            item = m.item
            if item.get("indicator") is None and "error" in item:
                row = unlevelled.setdefault((item["product"], item["output_unit"]), [set(), 0.0])
                row[0].add(f.code)
                row[1] += item["output"]
            elif m.value is not None and m.output > 0:
                measured.setdefault((item["product"], item["indicator"]), []).append((f.code, m))
    rows = []
    for product, indicators in _indicators().items():
        for indicator, unit, name in indicators:
            levels = levels_for(product, indicator, region)
            value_of = {kind: [lv.value for lv in levels if lv.kind == kind] for kind in ("benchmark", "baseline")}
            value_of["limit"] = [lv.value for lv in levels if lv.kind == "grade_3"]
            got = measured.get((product, indicator), [])
            output = sum(m.output for _, m in got)
            has = {k: bool(v) for k, v in value_of.items()}
            at_bench = [m for _, m in got if m.checks.get("benchmark")]
            notes = []
            if not has["benchmark"]:
                notes.append("no benchmark (标杆) level is shipped for this indicator")
            if not levels:
                notes.append(f"no level applies in {region}")
            rows.append(
                {
                    "product": product,
                    "indicator": indicator,
                    "name": name,
                    "unit": unit,
                    "output_unit": output_unit_of(unit),
                    "enterprises": len(got),
                    "output": output,
                    "intensity": sum(m.value * m.output for _, m in got) / output if output > 0 else None,
                    "benchmark": min(value_of["benchmark"]) if has["benchmark"] else None,
                    "baseline": min(value_of["baseline"]) if has["baseline"] else None,
                    "limit": min(value_of["limit"]) if has["limit"] else None,
                    "enterprises_at_benchmark": len(at_bench) if has["benchmark"] else None,
                    "output_at_benchmark": sum(m.output for m in at_bench) if has["benchmark"] else None,
                    "share_at_benchmark": (sum(m.output for m in at_bench) / output)
                    if has["benchmark"] and output > 0
                    else None,
                    "enterprises_worse_than_baseline": sum(not m.checks.get("baseline", True) for _, m in got)
                    if has["baseline"]
                    else None,
                    "enterprises_worse_than_limit": sum(not m.checks.get("grade_3", True) for _, m in got)
                    if has["limit"]
                    else None,
                    "note": "; ".join(notes) or None,
                }
            )
    extra = [
        {
            "product": p,
            "output_unit": u,
            "enterprises": len(codes),
            "output": q,
            "note": "no levels are shipped for this product: nothing to compare with",
        }
        for (p, u), (codes, q) in sorted(unlevelled.items())
    ]
    return rows, extra


def measure_targets(targets: list[dict], rows: list[dict]) -> None:
    """Fill ``measured`` (in the target's unit) where the monitored enterprises' meters measure it.

    Every target gets ``measured_scope`` (what a measured value covers), ``measured_note`` (why a
    target is not measured, or what is left out) and ``measured_status``, a short code: measured,
    no_output (no monitored enterprise has the output), no_levels (no benchmark level is shipped
    for the products), not_compared (non-fossil share: shown apart) or regional (a regional
    statistic meters do not measure).
    """
    levelled = {r["product"] for r in rows}
    for t in targets:
        t["measured"], t["measured_scope"], t["measured_note"] = None, None, None
        if t.get("measured_by"):
            product, _, indicator = t["measured_by"].partition(".")
            row = next(r for r in rows if r["product"] == product and r["indicator"] == indicator)
            if row["intensity"] is None:
                t["measured_status"] = "no_output"
                t["measured_note"] = f"no monitored enterprise in scope has a {product} output point with a figure"
            else:
                t["measured"], t["measured_status"] = row["intensity"], "measured"
                t["measured_scope"] = (
                    f"monitored enterprises only: output-weighted over {row['enterprises']} enterprise(s) in scope "
                    f"with {product} output ({row['output']:.6g} {row['output_unit']}); not the regional statistic"
                )
        elif t["indicator"] in SHARE_TARGETS:
            products = SHARE_TARGETS[t["indicator"]]
            chosen = [r for r in rows if r["benchmark"] is not None and (products is None or r["product"] in products)]
            notes = []
            for p in products or ():
                if p not in levelled:
                    notes.append(f"{p}: no levels are shipped (no source found), so it is left out")
                elif not any(r["product"] == p and r["benchmark"] is not None for r in rows):
                    notes.append(f"{p}: no benchmark (标杆) level is shipped, so it is left out")
            output = sum(r["output"] for r in chosen)
            if output > 0:
                share = sum(r["output_at_benchmark"] for r in chosen) / output
                t["measured"], t["measured_status"] = (share * 100 if t["unit"] == "%" else share), "measured"
                n = sum(r["enterprises"] for r in chosen)
                names = ", ".join(f"{r['product']}.{r['indicator']}" for r in chosen if r["output"] > 0)
                t["measured_scope"] = (
                    "monitored enterprises only: share of metered output (standing in for capacity) at or better "
                    f"than the benchmark level, output-weighted over {n} enterprise figure(s) ({names}); "
                    "not the regional statistic"
                )
            elif chosen:
                t["measured_status"] = "no_output"
                notes.append("no monitored enterprise in scope has output of a product with a benchmark level")
            else:
                t["measured_status"] = "no_levels"
            t["measured_note"] = "; ".join(notes) or None
        elif t["indicator"] == "non_fossil_share_of_energy":
            t["measured_status"] = "not_compared"
            t["measured_note"] = (
                "regional statistic: the monitored enterprises' non-fossil share (equivalent value) is shown "
                "separately and not compared with this target"
            )
        else:
            t["measured_status"] = "regional"
            t["measured_note"] = "regional statistic: enterprise meters do not measure it"
