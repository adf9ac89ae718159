"""Routes of /api/v1 for energy (tce) and CO2: by level and period, province overview, enterprise drill-down.

Figures come from the rollups (15-minute table, hour, day, month), accounted by the core; every
query is limited to the caller's scope in SQL.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Path, Query, Request
from psycopg.rows import dict_row

from carbonwatch.accounting import METHOD_VERSION
from carbonwatch.accounting.rules import MeasuredFuel
from carbonwatch.accounting.tables import shipped
from carbonwatch.contracts.regions import PROVINCES

from .auth import CallerDep
from .deps import Conn
from .energy import LEVELS, energies, energy
from .figures import factor_used, period_label
from .indicators import attainment, green_power, measure_targets, non_fossil, product_intensities, site_facts
from .models import EnergyResponse, Targets
from .routes import ENTERPRISE_CODE, REGION, enterprise_or_404
from .targets import load_targets
from .windows import BEIJING, aware, default_window, window

router = APIRouter()

Period = Literal["15min", "hour", "day", "month", "year"]
Level = Literal[LEVELS]  # type: ignore[valid-type]
Start = Annotated[datetime | None, Query(description="UTC or offset-aware; widened to whole Beijing periods")]
End = Annotated[datetime | None, Query(description="exclusive; widened to whole Beijing periods")]
Year = Annotated[int | None, Query(ge=2000, le=2099, description="Beijing calendar year (default: this year)")]
PROVINCE_CODE = Path(pattern=r"^[0-9]{2}0000$", description="GB/T 2260 province code")
CREDIT_CODE = r"^[0-9A-HJ-NPQRTUWXY]{18}$"


def _year_window(year: int | None) -> tuple[datetime, datetime]:
    y = year or (datetime.now(UTC) + BEIJING).year
    return datetime(y, 1, 1, tzinfo=UTC) - BEIJING, datetime(y + 1, 1, 1, tzinfo=UTC) - BEIJING


@router.get("/energy", tags=["energy and CO2"])
async def energy_by_level(
    conn: Conn,
    who: CallerDep,
    level: Level = "enterprise",
    period: Period = "day",
    start: Start = None,
    end: End = None,
    enterprise: Annotated[str | None, Query(pattern=CREDIT_CODE)] = None,
    province: Annotated[str | None, Query(pattern=REGION)] = None,
    city: Annotated[str | None, Query(pattern=REGION)] = None,
    industry: Annotated[str | None, Query(pattern=r"^[0-9A-Z]{1,4}$")] = None,
    carrier: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")] = None,
    point: Annotated[str | None, Query(max_length=200)] = None,
) -> EnergyResponse:
    """tce (total and dual-control) and CO2 (location- and market-based) per level and period.

    Levels: point, meter, carrier, enterprise, industry (GB/T 4754), city, province. Periods are
    Beijing time, 15 min to year; the window defaults to the current day, month or year.
    Point rows are each point's own figures; other levels are totals on the enterprise
    boundary (imports add, exports subtract).
    """
    lo, hi = window(start, end, period)
    filters = {"enterprise": enterprise, "province": province, "city": city, "industry": industry}
    filters |= {"carrier": carrier, "point": point}
    fig = await energy(conn, who, level, period, lo, hi, filters)
    return {"level": level, "period": period, "start": lo, "end": hi, **fig.provenance(), "rows": fig.rows()}


@router.get("/enterprises/{code}/emissions", tags=["energy and CO2"])
async def enterprise_emissions(
    conn: Conn,
    who: CallerDep,
    code: Annotated[str, ENTERPRISE_CODE],
    start: Annotated[datetime | None, Query(description="UTC or offset-aware; default: today 00:00 Beijing")] = None,
    end: Annotated[datetime | None, Query(description="default: now")] = None,
) -> dict:
    """Energy (tce) and CO2 of one enterprise over [start, end) to the 15 minute, by point and in total."""
    who.require_energy()
    ent = await enterprise_or_404(conn, who, code)
    now = datetime.now(UTC)
    lo, hi = window(start or default_window("15min", now)[0], end or now, "15min")
    by_point = await energy(conn, who, "point", "year", lo, hi, {"enterprise": code}, table="intervals_15m")
    total = await energy(conn, who, "enterprise", "year", lo, hi, {"enterprise": code}, table="intervals_15m")
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        """SELECT p.point, p.carrier, p.unit, p.direction, p.use, sum(i.quantity) AS quantity,
                  bit_or(i.flags) AS flags, count(*) AS buckets,
                  p.fuel_ncv, p.fuel_carbon_content, p.fuel_oxidation_rate, p.fuel_source
           FROM intervals_15m i JOIN points p ON p.id = i.point_id
           WHERE p.enterprise = %s AND p.carrier IS NOT NULL AND i.bucket >= %s AND i.bucket < %s
           GROUP BY p.id ORDER BY 1""",
        (code, lo, hi),
    )
    year = (lo + BEIJING).year
    index = {k: i for i, k in enumerate(by_point.keys)}
    points = []
    for row in await cur.fetchall():
        i = index[row["point"]]
        fuel = {k: row.pop(f"fuel_{k}") for k in ("ncv", "carbon_content", "oxidation_rate", "source")}
        measured = MeasuredFuel(**fuel) if any(fuel[k] is not None for k in fuel if k != "source") else None
        points.append(
            {
                **row,
                "measured_fuel": fuel if measured is not None else None,
                "year": year,
                "tce": float(by_point.tce[i].sum()),
                "co2_t": float(by_point.co2_location_t[i].sum()),
                "co2_location_t": float(by_point.co2_location_t[i].sum()),
                "co2_market_t": float(by_point.co2_market_t[i].sum()),
                "factor": factor_used(
                    row["carrier"], row["unit"], row["direction"], row["use"], ent["province"], year, measured
                ),
            }
        )

    def total_of(arr: np.ndarray) -> float:
        return float(arr.sum())

    return {
        "enterprise": ent["code"],
        "name": ent["name"],
        "start": lo,
        "end": hi,
        "method": "location",
        **total.provenance(),
        "co2_t": total_of(total.co2_location_t),
        "co2_location_t": total_of(total.co2_location_t),
        "co2_market_t": total_of(total.co2_market_t),
        "tce": total_of(total.tce),
        "tce_dual_control": total_of(total.tce_dual_control),
        "points": points,
    }


def _intensity_of(co2: float, tce: float) -> float | None:
    return co2 / tce if tce > 0 else None


@router.get("/provinces/{code}/overview", tags=["dashboards"])
async def province_overview(
    request: Request, conn: Conn, who: CallerDep, code: Annotated[str, PROVINCE_CODE], year: Year = None
) -> dict:
    """A province's year: per city, carbon intensity of energy first (tCO2/tce), then totals; today live; targets.

    Also, over the monitored enterprises in scope only (never the regional statistic): the
    green-power share per city and in total (on-site renewable used over electricity used; no
    green certificates are metered), their non-fossil share on the equivalent-value basis (not
    compared with the plans' targets), benchmark attainment per product indicator with the counts
    worse than baseline and limit, and ``measured`` for the targets meters can measure. A figure
    with no energy, a PUE below 1, or 15-minute data below 90% complete is not comparable: counted
    apart with its reason, never in a share or a measured target.
    """
    who.require_energy()
    cond, params = who.where()
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT e.city, count(*) AS enterprises FROM enterprises e WHERE e.province = %(p)s AND {cond} GROUP BY 1",
        {"p": code, **params},
    )
    cities = {r["city"]: r["enterprises"] for r in await cur.fetchall()}
    if not cities:
        raise HTTPException(404, f"no monitored enterprises in province {code}")
    lo, hi = _year_window(year)
    t_lo, t_hi = default_window("15min")
    f = {"province": code}
    # the four energy queries on pooled connections, the meters' facts on this request's own
    (by_city, monthly, today, by_ent), sites = await asyncio.gather(
        energies(
            request.app.state.pool,
            who,
            ("city", "year", lo, hi, f),
            ("province", "month", lo, hi, f, {"carriers": True}),
            ("city", "day", t_lo, t_hi, f),
            ("enterprise", "year", lo, hi, f, {"carriers": True}),
        ),
        site_facts(conn, who, lo, hi, province=code),
    )
    elec = by_ent.by_carrier.get("electricity", {})
    for i, ent in enumerate(by_ent.keys):
        if ent in sites:
            sites[ent].tce = float(by_ent.tce[i].sum())
            sites[ent].tce_fuel = sites[ent].tce - float(elec[ent].sum() if ent in elec else 0.0)
    by_city_sites: dict[str, list] = {}
    for s in sites.values():
        by_city_sites.setdefault(s.city, []).append(s)
    rows = []
    for city, n in sorted(cities.items()):
        i = by_city.keys.index(city) if city in by_city.keys else None
        t = today.keys.index(city) if city in today.keys else None

        def pick(fig, idx, name):
            return float(getattr(fig, name)[idx].sum()) if idx is not None else 0.0

        tce, co2 = pick(by_city, i, "tce"), pick(by_city, i, "co2_location_t")
        green = green_power(by_city_sites.get(city, []))
        rows.append(
            {
                "city": city,
                "enterprises": n,
                "co2_per_tce": _intensity_of(co2, tce),
                "dual_control_share": pick(by_city, i, "tce_dual_control") / tce if tce > 0 else None,
                "tce": tce,
                "tce_dual_control": pick(by_city, i, "tce_dual_control"),
                "co2_location_t": co2,
                "co2_market_t": pick(by_city, i, "co2_market_t"),
                "today_tce": pick(today, t, "tce"),
                "today_co2_t": pick(today, t, "co2_location_t"),
                "green_power_share": green["share"],
                "electricity_used_kwh": green["electricity_used_kwh"],
                "green_used_kwh": green["green_used_kwh"],
            }
        )
    months = [
        {
            "period": label,
            "tce": float(monthly.tce[0, j]) if monthly.keys else 0.0,
            "co2_location_t": float(monthly.co2_location_t[0, j]) if monthly.keys else 0.0,
            "co2_market_t": float(monthly.co2_market_t[0, j]) if monthly.keys else 0.0,
            "tce_by_carrier": {c: float(v[code][j]) for c, v in monthly.by_carrier.items() if code in v},
        }
        for j, label in enumerate(monthly.labels)
    ]
    prov = PROVINCES.get(code)
    reg = load_targets()
    targets = [t.as_dict() for t in reg.targets if t.province == code]
    for t in targets:
        t["document_title"] = reg.documents[t["document"]]["title"]
        t["document_status"] = reg.documents[t["document"]]["status"]
    standing = attainment(sites.values(), code)
    measure_targets(targets, standing)
    tot_tce = sum(r["tce"] for r in rows)
    tot_co2 = sum(r["co2_location_t"] for r in rows)
    return {
        "province": code,
        "name": prov.name if prov else None,
        "name_en": prov.english if prov else None,
        "year": (lo + BEIJING).year,
        "start": lo,
        "end": hi,
        **by_city.provenance(),
        "totals": {
            "co2_per_tce": _intensity_of(tot_co2, tot_tce),
            "tce": tot_tce,
            "tce_dual_control": sum(r["tce_dual_control"] for r in rows),
            "co2_location_t": tot_co2,
            "co2_market_t": sum(r["co2_market_t"] for r in rows),
            "today_tce": sum(r["today_tce"] for r in rows),
            "today_co2_t": sum(r["today_co2_t"] for r in rows),
        },
        "cities": rows,
        "months": months,
        "green_power": green_power(sites.values()),
        "non_fossil_monitored": non_fossil(sites.values(), tot_tce),
        "benchmarks": standing.rows,
        "products_without_levels": standing.unlevelled,
        "outputs_not_scored": standing.unscored,
        "targets": targets,
    }


@router.get("/enterprises/{code}/overview", tags=["dashboards"])
async def enterprise_overview(
    request: Request, conn: Conn, who: CallerDep, code: Annotated[str, ENTERPRISE_CODE], year: Year = None
) -> dict:
    """Drill-down: the year by carrier and point, daily totals, today by 15 minutes, product intensity
    for every indicator its output points allow (kgce/t, kWh/t, gce/kWh, PUE) against the levels
    (or ``not_comparable`` with the reason: no energy, PUE below 1, data below 90% complete),
    green-power and non-fossil shares."""
    who.require_energy()
    ent = await enterprise_or_404(conn, who, code)
    lo, hi = _year_window(year)
    f = {"enterprise": code}
    t_lo, t_hi = default_window("15min")
    carriers, points, daily, today = await energies(
        request.app.state.pool,
        who,
        ("carrier", "year", lo, hi, f),
        ("point", "year", lo, hi, f),
        ("enterprise", "day", lo, hi, f),
        ("enterprise", "15min", t_lo, t_hi, f),
    )

    def series(fig) -> list[dict]:
        return (
            [
                {"period": label, "tce": float(fig.tce[0, j]), "co2_location_t": float(fig.co2_location_t[0, j])}
                for j, label in enumerate(fig.labels)
            ]
            if fig.keys
            else []
        )

    def totals(fig) -> list[dict]:
        return [
            {
                "key": key,
                "tce": float(fig.tce[i].sum()),
                "tce_dual_control": float(fig.tce_dual_control[i].sum()),
                "co2_location_t": float(fig.co2_location_t[i].sum()),
                "co2_market_t": float(fig.co2_market_t[i].sum()),
                "flags": int(np.bitwise_or.reduce(fig.flags[i])) if fig.flags.shape[1] else 0,
            }
            for i, key in enumerate(fig.keys)
        ]

    year_total = {
        "tce": float(daily.tce.sum()),
        "tce_dual_control": float(daily.tce_dual_control.sum()),
        "co2_location_t": float(daily.co2_location_t.sum()),
        "co2_market_t": float(daily.co2_market_t.sum()),
    }
    site = (await site_facts(conn, who, lo, hi, enterprise=code))[code]
    site.tce = year_total["tce"]
    elec = carriers.keys.index("electricity") if "electricity" in carriers.keys else None
    site.tce_fuel = site.tce - (float(carriers.tce[elec].sum()) if elec is not None else 0.0)
    return {
        **ent,
        "year": (lo + BEIJING).year,
        **daily.provenance(),
        "totals": year_total,
        "today": {"tce": float(today.tce.sum()), "co2_location_t": float(today.co2_location_t.sum())},
        "carriers": totals(carriers),
        "points": totals(points),
        "days": series(daily),
        "today_15min": series(today),
        "intensity": [m.item for m in product_intensities(site, ent["province"])],
        "green_power": green_power([site]),
        "non_fossil": non_fossil([site], site.tce),
    }


@router.get("/enterprises/{code}/intervals", tags=["energy and CO2"])
async def intervals(
    conn: Conn,
    who: CallerDep,
    code: Annotated[str, ENTERPRISE_CODE],
    point: Annotated[str, Query(max_length=200, description="point id as in the site file")],
    start: Start = None,
    end: End = None,
) -> dict:
    """15-minute intervals of one point: quantity, flags, coverage, tce and location-based CO2."""
    who.require_energy()
    await enterprise_or_404(conn, who, code)
    cur = await conn.execute("SELECT id, unit, carrier FROM points WHERE enterprise = %s AND point = %s", (code, point))
    row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, f"no point {point!r} in enterprise {code}")
    lo, hi = window(start, end, "15min")
    cur = await conn.execute(
        "SELECT bucket, quantity, flags, coverage FROM intervals_15m WHERE point_id = %s AND bucket >= %s "
        "AND bucket < %s ORDER BY bucket",
        (row[0], lo, hi),
    )
    buckets = await cur.fetchall()
    fig = await energy(conn, who, "point", "15min", lo, hi, {"enterprise": code, "point": point})
    by_label = {label: j for j, label in enumerate(fig.labels)}
    out = []
    for bucket, quantity, flags, coverage in buckets:
        j = by_label.get(period_label(bucket, "15min")[0])
        tce = float(fig.tce[0, j]) if fig.keys and j is not None else None
        co2 = float(fig.co2_location_t[0, j]) if fig.keys and j is not None else None
        out.append({"bucket": bucket, "quantity": quantity, "flags": flags, "coverage": coverage, "tce": tce,
                    "co2_location_t": co2})  # fmt: skip
    return {"point": point, "unit": row[1], "carrier": row[2], "start": lo, "end": hi, "intervals": out}


@router.get("/completeness", tags=["data quality"])
async def completeness(
    conn: Conn,
    who: CallerDep,
    start: Start = None,
    end: End = None,
    enterprise: Annotated[str | None, Query(pattern=CREDIT_CODE)] = None,
    province: Annotated[str | None, Query(pattern=REGION)] = None,
    below: Annotated[float | None, Query(ge=0, le=1, description="only points below this share")] = None,
) -> dict:
    """Share of expected 15-minute values received per point (the national rule asks >= 0.9)."""
    now = datetime.now(UTC)
    lo = aware(start) if start else now - timedelta(days=1)
    hi = aware(end) if end else now
    if hi <= lo:
        raise HTTPException(422, "end must be after start")
    if hi - lo > timedelta(days=366):
        raise HTTPException(422, "completeness windows are at most 366 days")
    cond, params = who.where()
    filters = [cond, "p.active"]
    if enterprise:
        filters.append("e.code = %(enterprise)s")
        params["enterprise"] = enterprise
    if province:
        filters.append("e.province = %(province)s")
        params["province"] = province
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"""WITH pts AS (SELECT p.id, p.point, p.enterprise FROM points p JOIN enterprises e ON e.code = p.enterprise
                         WHERE {" AND ".join(filters)})
            SELECT pts.enterprise, pts.point, c.expected, c.received,
                   CASE WHEN c.expected > 0 THEN c.received::float8 / c.expected END AS ratio
            FROM cw_completeness(%(lo)s, %(hi)s, (SELECT coalesce(array_agg(id), '{{}}') FROM pts)) c
            JOIN pts ON pts.id = c.point_id ORDER BY 1, 2""",
        {**params, "lo": lo, "hi": hi},
    )
    rows = await cur.fetchall()
    if below is not None:
        rows = [r for r in rows if r["ratio"] is not None and r["ratio"] < below]
    return {"start": lo, "end": hi, "rule": 0.9, "points": rows}


@router.get("/targets", tags=["reference"])
async def targets(
    who: CallerDep,
    province: Annotated[str | None, Query(pattern=REGION)] = None,
    year: Annotated[int | None, Query(ge=2020, le=2060)] = None,
) -> Targets:
    """The provincial targets registry (from the carbon-peaking plans), with comparators and sources."""
    reg = load_targets()
    rows = [
        t.as_dict()
        for t in reg.targets
        if (province is None or province in (t.province, t.region)) and (year is None or t.year == year)
    ]
    return {"version": reg.version, "documents": reg.documents, "targets": rows}


@router.get("/factor-sets", tags=["reference"])
async def factor_sets(who: CallerDep) -> dict:
    """The factor set in use: its id (version + content hash), tables and documents."""
    fs = shipped()
    documents = sorted({(r.data_year, r.document, r.title) for r in fs.electricity})
    return {
        "id": fs.id,
        "method_version": METHOD_VERSION,
        "electricity_data_years": fs.electricity_years(),
        "electricity_documents": [{"data_year": y, "document": d, "title": t} for y, d, t in documents],
        "fuel_families": sorted(fs.fuel_families),
        "standard_coal_document": fs.standard_coal.document,
        "heat_document": fs.heat.document,
        "levels_version": fs.levels_version,
        "products_with_levels": sorted({lv.product for lv in fs.levels}),
    }
