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

  A product point names one indicator (``steel.blast_furnace``) or a product, which gives only
  the product's whole-site indicators: process-level ones (sharing a unit with another indicator
  of the product: steel's processes, methanol's routes) need the process named. A product without
  shipped levels is reported as such.

  A figure is compared only when it is meaningful: energy metered (> 0), PUE at least 1, and the
  15-minute data of its energy and output points at least 90% complete (the national rule).
  Otherwise it is ``not_comparable`` with the reason, and left out of every share and target.
- Benchmark attainment (F-32) per product indicator over the monitored enterprises of a province:
  output, the share of it from enterprises at or better than the benchmark (标杆) level, and how
  many are worse than the baseline (基准) and the limit (grade 3, 限定值). Share targets count
  each enterprise once.
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

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from psycopg import AsyncConnection

from carbonwatch.accounting.intensity import IntensityError, compare, intensity, levels_for
from carbonwatch.accounting.tables import shipped
from carbonwatch.contracts.carriers import UNITS, Dimension

from .auth import Caller
from .quality_routes import COMPLETENESS_RULE

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
SLOT = 900  # seconds in a 15-minute slot


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
class PointFacts:
    """One energy or output point over the window: its sum and how much of the window its data covers."""

    point: str
    product: str | None
    carrier: str | None
    direction: str | None
    unit: str
    active: bool
    since: datetime  # when the point's data began: registration, or its first interval if earlier
    quantity: float | None  # sum in the window, in the point's unit; None when the rollup has no row
    covered: float  # 15-minute slots backed by readings in the window (the rollups' coverage)


@dataclass
class SiteFacts:
    """What one enterprise's meters say over a window, beyond tce: electricity by direction, outputs."""

    code: str
    city: str
    start: datetime | None = None  # the window's start
    until: datetime | None = None  # the window's end, or the last whole 15 minutes before now
    electricity: Electricity = field(default_factory=Electricity)
    points: list[PointFacts] = field(default_factory=list)
    tce: float = 0.0  # comprehensive energy on the enterprise boundary
    tce_fuel: float = 0.0  # the same, electricity left out


def _floor_15min(t: datetime) -> datetime:
    return datetime.fromtimestamp(int(t.timestamp()) // SLOT * SLOT, UTC)


async def site_facts(
    conn: AsyncConnection,
    who: Caller,
    start: datetime,
    end: datetime,
    *,
    enterprise: str | None = None,
    province: str | None = None,
) -> dict[str, SiteFacts]:
    """Electricity by direction, product output and every point's coverage per enterprise in scope,
    from the monthly rollup.

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
    until = min(end, _floor_15min(datetime.now(UTC)))
    cur = await conn.execute(f"SELECT e.code, e.city FROM enterprises e WHERE {' AND '.join(where)}", args)
    out = {code: SiteFacts(code, city, start, until) for code, city in await cur.fetchall()}
    # since: a point's data begins at its registration, or earlier when intervals before it exist
    # (looked up only for points registered inside the window)
    cur = await conn.execute(
        f"""WITH pts AS MATERIALIZED (
                SELECT p.id, e.code, p.point, p.product, p.carrier, p.direction, p.renewable, p.unit, p.active,
                       CASE WHEN p.registered_at > %(start)s THEN least(p.registered_at, (
                           SELECT min(i.bucket) FROM intervals_15m i WHERE i.point_id = p.id
                           AND i.bucket >= %(start)s AND i.bucket < p.registered_at))
                       ELSE p.registered_at END AS since
                FROM points p JOIN enterprises e ON e.code = p.enterprise
                WHERE {" AND ".join(where)} AND (p.product IS NOT NULL OR p.carrier IS NOT NULL)
            ),
            sums AS (
                SELECT m.point_id, sum(m.quantity) AS quantity, sum(m.coverage) AS covered
                FROM energy_1mon m JOIN pts ON pts.id = m.point_id
                WHERE m.bucket >= %(start)s AND m.bucket < %(end)s
                GROUP BY 1
            )
            SELECT pts.code, pts.point, pts.product, pts.carrier, pts.direction, pts.renewable, pts.unit,
                   pts.active, pts.since, sums.quantity, sums.covered
            FROM pts LEFT JOIN sums ON sums.point_id = pts.id ORDER BY 1, 2""",
        args,
    )
    for row in await cur.fetchall():
        code, point, product, carrier, direction, renewable, unit, active, since, quantity, covered = row
        facts = out.get(code)
        if facts is None:
            continue
        q = None if quantity is None else float(quantity)
        facts.points.append(
            PointFacts(point, product, carrier, direction, unit, active, since, q, float(covered or 0.0))
        )
        if q is None:
            continue
        if carrier == "electricity" and unit in UNITS and UNITS[unit].dimension is Dimension.ENERGY:
            kwh = q * UNITS[unit].to_base
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


def process_level(rows: list[tuple[str, str, str]]) -> set[str]:
    """The indicators of one product that measure a process or route, not the whole site: those
    sharing their unit with another indicator of the product (steel sintering, blast furnace and
    converter; the methanol routes; coke top and stamp charging; aluminium liquid and ingot AC
    electricity). A bare product name cannot say which of them its output is."""
    units = [unit for _, unit, _ in rows]
    return {indicator for indicator, unit, _ in rows if units.count(unit) > 1}


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


def energy_points(facts: SiteFacts, basis: str) -> list[PointFacts]:
    """The points whose sum is the energy on top of the fraction (see BASIS)."""
    if basis == "electricity_used":
        return [
            p
            for p in facts.points
            if p.carrier == "electricity"
            and p.direction in ("import", "export", "generation")
            and p.unit in UNITS
            and UNITS[p.unit].dimension is Dimension.ENERGY
        ]
    boundary = [p for p in facts.points if p.carrier is not None and (p.direction or "import") in ("import", "export")]
    return [p for p in boundary if p.carrier != "electricity"] if basis == "fuel" else boundary


def completeness(facts: SiteFacts, energy: list[PointFacts], output: list[PointFacts]) -> dict:
    """How complete a figure's 15-minute data is: per side, the least complete active point.

    A figure spans from the earliest start of data of any of its points (the window's start at
    the earliest) to ``facts.until``; every active point of it is expected over that whole span, so
    an energy meter registered after the output counter, or silent since, is incomplete. A point's
    completeness is its slots backed by readings (the rollups' coverage) over the span's slots.
    """
    active = [p for p in (*energy, *output) if p.active]
    out: dict = {"rule": COMPLETENESS_RULE, "start": None, "end": facts.until, "slots": None}
    out |= {"energy": None, "energy_point": None, "output": None, "output_point": None}
    if not active or facts.start is None or facts.until is None:
        return out
    start = max(facts.start, min(p.since for p in active))
    slots = int((facts.until - start).total_seconds()) // SLOT
    out["start"], out["slots"] = start, slots
    if slots <= 0:
        return out
    for side, pts in (("energy", energy), ("output", output)):
        ratios = [(min(1.0, p.covered / slots), p.point) for p in pts if p.active]
        if ratios:
            out[side], out[f"{side}_point"] = min(ratios)
    return out


@dataclass
class Measured:
    """One enterprise's figure on one indicator, for the drill-down and the attainment tables.

    ``status``: compared (with the levels that apply), no_level_here (a value, but no level applies
    in the region), not_comparable (no value: ``reason`` says why), or, with ``error`` and no
    value, no_levels (a product without shipped levels), unknown_indicator, process_not_named,
    unit_error.
    """

    item: dict
    enterprise: str = ""
    output: float = 0.0  # in output_unit_of(unit)
    value: float | None = None
    checks: dict[str, bool] = field(default_factory=dict)  # kind -> met (every level of that kind)

    @property
    def status(self) -> str:
        return self.item["status"]


def product_intensities(facts: SiteFacts, region: str) -> list[Measured]:
    """Every indicator the enterprise's product points allow, compared with the levels of ``region``.

    A point naming one indicator (``steel.blast_furnace``) gives that indicator. A bare product name
    gives the product's whole-site indicators (those not process-level, see :func:`process_level`);
    a product with process-level indicators only gets an item asking to name the process. Points
    resolving to the same indicator are summed: one figure per enterprise and indicator.
    """
    table = _indicators()
    out: list[Measured] = []
    named: dict[tuple[str, str], list[PointFacts]] = {}
    for p in facts.points:
        if p.product is not None and p.quantity is not None:
            named.setdefault((p.product, p.unit), []).append(p)
    chosen: dict[tuple[str, str], list[PointFacts]] = {}
    notes: dict[tuple[str, str], str] = {}

    def unscored(product: str, indicator: str | None, pts: list[PointFacts], status: str, error: str) -> None:
        out.append(
            Measured(
                {
                    "product": product,
                    "indicator": indicator,
                    "output": sum(p.quantity or 0.0 for p in pts),
                    "output_unit": pts[0].unit,
                    "output_points": [p.point for p in pts],
                    "status": status,
                    "error": error,
                },
                facts.code,
            )
        )

    for (name, _unit), pts in sorted(named.items()):
        product, _, only = name.partition(".")
        if product not in table:
            unscored(name, None, pts, "no_levels", f"no levels are shipped for product {name!r}")
            continue
        rows = table[product]
        process = process_level(rows)
        if only:
            if all(r[0] != only for r in rows):
                known = ", ".join(r[0] for r in rows)
                unscored(
                    product, only, pts, "unknown_indicator", f"no indicator {only!r} of {product} (known: {known})"
                )
            else:
                chosen.setdefault((product, only), []).extend(pts)
            continue
        whole = [r[0] for r in rows if r[0] not in process]
        names = [f"{product}.{r[0]}" for r in rows if r[0] in process]
        options = f"{', '.join(names[:-1])} or {names[-1]}" if names else ""
        if not whole:
            unscored(
                product,
                None,
                pts,
                "process_not_named",
                f"{product} has process-level indicators only, which the whole site's energy does not measure: "
                f"name the process on the output point ({options})",
            )
            continue
        for indicator in whole:
            chosen.setdefault((product, indicator), []).extend(pts)
            if process:
                notes[(product, indicator)] = (
                    f"{', '.join(names)} are process-level: scored only when an output point names one"
                )
    for product, rows in table.items():
        for indicator, iunit, iname in rows:
            if (product, indicator) in chosen:
                others = [f"{p}.{i}" for p, i in chosen if (p, i) != (product, indicator)]
                m = _one(facts, product, indicator, iunit, iname, chosen[(product, indicator)], region, others)
                if (product, indicator) in notes:
                    m.item["note"] = "; ".join(x for x in (m.item.get("note"), notes[(product, indicator)]) if x)
                out.append(m)
    return out


def _one(
    facts: SiteFacts,
    product: str,
    indicator: str,
    unit: str,
    name: str,
    pts: list[PointFacts],
    region: str,
    others: list[str],
) -> Measured:
    basis = basis_of(unit)
    energy, energy_unit = {
        "comprehensive": (facts.tce, "tce"),
        "fuel": (facts.tce_fuel, "tce"),
        "electricity_used": (facts.electricity.used_kwh, "kWh"),
    }[basis]
    ounit = output_unit_of(unit)
    numerator = energy_points(facts, basis)
    head = {
        "product": product,
        "indicator": indicator,
        "name": name,
        "unit": unit,
        "output_unit": ounit,
        "output_points": [p.point for p in pts],
        "energy": energy,
        "energy_unit": energy_unit,
        "energy_points": [p.point for p in numerator],
        "basis": basis,
        "energy_basis": BASIS[basis],
        "completeness": completeness(facts, numerator, pts),
    }
    try:
        output = sum(_in_unit(p.quantity or 0.0, p.unit, ounit) for p in pts)
    except IntensityError as exc:
        return Measured({**head, "output": None, "status": "unit_error", "error": str(exc)}, facts.code)
    head["output"] = output
    shared = [o for o in others if basis_of(_unit_of(o)) == basis]
    note = (
        f"the whole site's {energy_basis_name(basis)} is also divided by the output of {', '.join(shared)}: "
        "this figure is the site's, not one process's alone"
        if shared
        else None
    )
    reasons = _not_comparable(head, energy, output, unit)
    if reasons:
        item = {**head, "status": "not_comparable", "value": None, "reason": "; ".join(reasons), "grade": None}
        return Measured({**item, "alerts": [], "levels": [], "factor_set": shipped().id}, facts.code, output)
    value = intensity(energy, energy_unit, output, ounit, unit)
    if levels_for(product, indicator, region):
        cmp = compare(product, indicator, value, region=region)
        item = {**head, **cmp.as_dict(), "status": "compared"}
        checks: dict[str, bool] = {}
        for c in cmp.checks:
            checks[c.level.kind] = checks.get(c.level.kind, True) and c.met
    else:  # only other regions' targets: nothing to compare with here
        item = {
            **head,
            "value": value,
            "grade": None,
            "alerts": [],
            "levels": [],
            "factor_set": shipped().id,
            "status": "no_level_here",
            "note": f"no level of {product}.{indicator} applies in {region}",
        }
        checks = {}
    if note:
        item["note"] = "; ".join(x for x in (item.get("note"), note) if x)
    return Measured(item, facts.code, output, value, checks)


def _unit_of(key: str) -> str:
    product, _, indicator = key.partition(".")
    return next(u for i, u, _ in _indicators()[product] if i == indicator)


def energy_basis_name(basis: str) -> str:
    return {"comprehensive": "comprehensive energy", "fuel": "fuel energy", "electricity_used": "electricity used"}[
        basis
    ]


def _not_comparable(head: dict, energy: float, output: float, unit: str) -> list[str]:
    """Why a figure would mislead, if it would: missing energy or output, a PUE below 1, or 15-minute
    data below the completeness rule on either side (none: it is compared)."""
    reasons = []
    if not head["energy_points"]:
        reasons.append(f"no energy metered: no {energy_basis_name(head['basis'])} point is registered")
    elif energy == 0:
        reasons.append(f"no energy metered: the {energy_basis_name(head['basis'])} points sum to 0")
    elif energy < 0:
        reasons.append(
            f"{energy_basis_name(head['basis'])} on the boundary is negative ({energy:.6g} {head['energy_unit']}): "
            "exports exceed what is metered coming in"
        )
    if output <= 0:
        reasons.append("no output metered")
    elif unit == "1" and 0 < energy < output:
        reasons.append(
            f"PUE {energy / output:.3f} is below 1: the IT load exceeds the electricity used (a meter is missing "
            "or assigned to the wrong direction)"
        )
    c = head["completeness"]
    if c["slots"] is not None and c["slots"] <= 0:
        reasons.append("no whole 15 minutes of data yet")
    for side in ("energy", "output"):
        ratio = c[side]
        if ratio is not None and ratio < COMPLETENESS_RULE:
            reasons.append(
                f"{side} data {math.floor(ratio * 100)}% complete ({c[f'{side}_point']}; the rule asks "
                f"{COMPLETENESS_RULE:.0%})"
            )
    return reasons


# --- benchmark attainment and measured targets -----------------------------------------------------


@dataclass
class Attainment:
    rows: list[dict]  # per product indicator with shipped levels
    unlevelled: list[dict]  # output of products without shipped levels
    unscored: list[dict]  # output not scored: the process is not named, or an unknown indicator
    figures: list[Measured]  # every enterprise's figure, compared or not


def attainment(facts: Iterable[SiteFacts], region: str) -> Attainment:
    """Per product indicator with shipped levels: monitored output and its standing against the levels.

    Only figures with a value count (compared, or no level in the region); not comparable ones are
    counted apart (``enterprises_not_comparable``, ``not_comparable`` with each reason).
    """
    measured: dict[tuple[str, str], list[Measured]] = {}
    excluded: dict[tuple[str, str], list[Measured]] = {}
    unlevelled: dict[tuple[str, str], list] = {}
    unscored: dict[tuple[str, str | None, str, str], list] = {}
    figures: list[Measured] = []
    for f in facts:
        for m in product_intensities(f, region):
            item = m.item
            key = (item["product"], item["indicator"])
            if m.status == "no_levels":
                row = unlevelled.setdefault((item["product"], item["output_unit"]), [set(), 0.0])
                row[0].add(f.code)
                row[1] += item["output"]
            elif m.status in ("process_not_named", "unknown_indicator"):
                row = unscored.setdefault(
                    (item["product"], item["indicator"], item["output_unit"], item["error"]), [set(), 0.0]
                )
                row[0].add(f.code)
                row[1] += item["output"]
            elif m.status == "not_comparable":
                excluded.setdefault(key, []).append(m)
                figures.append(m)
            elif m.value is not None and m.output > 0:
                measured.setdefault(key, []).append(m)
                figures.append(m)
    rows = []
    for product, indicators in _indicators().items():
        for indicator, unit, name in indicators:
            levels = levels_for(product, indicator, region)
            value_of = {kind: [lv.value for lv in levels if lv.kind == kind] for kind in ("benchmark", "baseline")}
            value_of["limit"] = [lv.value for lv in levels if lv.kind == "grade_3"]
            got = measured.get((product, indicator), [])
            left_out = excluded.get((product, indicator), [])
            output = sum(m.output for m in got)
            has = {k: bool(v) for k, v in value_of.items()}
            at_bench = [m for m in got if m.checks.get("benchmark")]
            notes = []
            if not has["benchmark"]:
                notes.append("no benchmark (标杆) level is shipped for this indicator")
            if not levels:
                notes.append(f"no level applies in {region}")
            if left_out:
                notes.append(f"{len(left_out)} enterprise figure(s) not comparable, left out")
            rows.append(
                {
                    "product": product,
                    "indicator": indicator,
                    "name": name,
                    "unit": unit,
                    "output_unit": output_unit_of(unit),
                    "enterprises": len(got),
                    "output": output,
                    "intensity": sum(m.value * m.output for m in got) / output if output > 0 else None,
                    "benchmark": min(value_of["benchmark"]) if has["benchmark"] else None,
                    "baseline": min(value_of["baseline"]) if has["baseline"] else None,
                    "limit": min(value_of["limit"]) if has["limit"] else None,
                    "enterprises_at_benchmark": len(at_bench) if has["benchmark"] else None,
                    "output_at_benchmark": sum(m.output for m in at_bench) if has["benchmark"] else None,
                    "share_at_benchmark": (sum(m.output for m in at_bench) / output)
                    if has["benchmark"] and output > 0
                    else None,
                    "enterprises_worse_than_baseline": sum(not m.checks.get("baseline", True) for m in got)
                    if has["baseline"]
                    else None,
                    "enterprises_worse_than_limit": sum(not m.checks.get("grade_3", True) for m in got)
                    if has["limit"]
                    else None,
                    "enterprises_not_comparable": len(left_out),
                    "not_comparable": [{"enterprise": m.enterprise, "reason": m.item["reason"]} for m in left_out],
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
    not_scored = [
        {"product": p, "indicator": i, "output_unit": u, "enterprises": len(codes), "output": q, "note": note}
        for (p, i, u, note), (codes, q) in sorted(unscored.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2]))
    ]
    return Attainment(rows, extra, not_scored, figures)


def share_at_benchmark(figures: Iterable[Measured], keys: set[tuple[str, str]]) -> tuple[float, float, int]:
    """(output at benchmark, output, enterprises) over the compared figures on ``keys``, each
    enterprise counted once: with its largest output, and at benchmark only when every one of its
    figures is (an integrated works naming its blast furnace and converter is one plant, not two)."""
    per: dict[str, list[Measured]] = {}
    for m in figures:
        if m.status == "compared" and m.output > 0 and (m.item["product"], m.item["indicator"]) in keys:
            per.setdefault(m.enterprise, []).append(m)
    weight = {code: max(m.output for m in ms) for code, ms in per.items()}
    at = sum(weight[code] for code, ms in per.items() if all(m.checks.get("benchmark", False) for m in ms))
    return at, sum(weight.values()), len(per)


def _left_out(figures: Iterable[Measured], keys: set[tuple[str, str]]) -> list[Measured]:
    return [m for m in figures if m.status == "not_comparable" and (m.item["product"], m.item["indicator"]) in keys]


def _left_out_note(left: list[Measured]) -> str:
    reasons = "; ".join(f"{m.enterprise} {m.item['product']}.{m.item['indicator']}: {m.item['reason']}" for m in left)
    return f"{len(left)} enterprise figure(s) not comparable, left out ({reasons})"


def measure_targets(targets: list[dict], result: Attainment) -> None:
    """Fill ``measured`` (in the target's unit) where the monitored enterprises' meters measure it.

    Every target gets ``measured_scope`` (what a measured value covers), ``measured_note`` (why a
    target is not measured, or what is left out) and ``measured_status``, a short code: measured,
    no_output (no monitored enterprise has the output), not_comparable (the only figures are not
    comparable: missing or incomplete data), no_levels (no benchmark level is shipped for the
    products), not_compared (non-fossil share: shown apart) or regional (a regional statistic
    meters do not measure).
    """
    rows = result.rows
    levelled = {r["product"] for r in rows}
    for t in targets:
        t["measured"], t["measured_scope"], t["measured_note"] = None, None, None
        if t.get("measured_by"):
            product, _, indicator = t["measured_by"].partition(".")
            row = next(r for r in rows if r["product"] == product and r["indicator"] == indicator)
            left = _left_out(result.figures, {(product, indicator)})
            if row["intensity"] is not None:
                t["measured"], t["measured_status"] = row["intensity"], "measured"
                t["measured_scope"] = (
                    f"monitored enterprises only: output-weighted over {row['enterprises']} enterprise(s) in scope "
                    f"with {product} output ({row['output']:.6g} {row['output_unit']}); not the regional statistic"
                )
                t["measured_note"] = _left_out_note(left) if left else None
            elif left:
                t["measured_status"] = "not_comparable"
                t["measured_note"] = _left_out_note(left)
            else:
                t["measured_status"] = "no_output"
                t["measured_note"] = f"no monitored enterprise in scope has a {product} output point with a figure"
        elif t["indicator"] in SHARE_TARGETS:
            products = SHARE_TARGETS[t["indicator"]]
            chosen = [r for r in rows if r["benchmark"] is not None and (products is None or r["product"] in products)]
            keys = {(r["product"], r["indicator"]) for r in chosen}
            notes = []
            for p in products or ():
                if p not in levelled:
                    notes.append(f"{p}: no levels are shipped (no source found), so it is left out")
                elif not any(r["product"] == p and r["benchmark"] is not None for r in rows):
                    notes.append(f"{p}: no benchmark (标杆) level is shipped, so it is left out")
            at, output, n = share_at_benchmark(result.figures, keys)
            left = _left_out(result.figures, keys)
            if output > 0:
                share = at / output
                t["measured"], t["measured_status"] = (share * 100 if t["unit"] == "%" else share), "measured"
                names = ", ".join(
                    f"{r['product']}.{r['indicator']}" for r in chosen if r["output"] > 0 and r["benchmark"] is not None
                )
                t["measured_scope"] = (
                    "monitored enterprises only: share of metered output (standing in for capacity) at or better "
                    f"than the benchmark level over {n} enterprise(s) ({names}), each counted once with its largest "
                    "output and at benchmark only when all its figures are; not the regional statistic"
                )
            elif not chosen:
                t["measured_status"] = "no_levels"
            elif left:
                t["measured_status"] = "not_comparable"
            else:
                t["measured_status"] = "no_output"
                notes.append("no monitored enterprise in scope has output of a product with a benchmark level")
            if left:
                notes.append(_left_out_note(left))
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
