"""Routes of /api/v1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from carbonwatch import __version__
from carbonwatch.accounting import METHOD_VERSION
from carbonwatch.accounting.factors import ELECTRICITY_TCE_PER_MWH, FactorNotFound, electricity_factor
from carbonwatch.contracts.carriers import convert

from .deps import db

router = APIRouter()
Conn = Annotated[AsyncConnection, Depends(db)]
BEIJING = timedelta(hours=8)


@router.get("/health", tags=["operations"])
async def health(conn: Conn) -> dict:
    await conn.execute("SELECT 1")
    return {"status": "ok", "version": __version__}


@router.get("/enterprises", tags=["registry"])
async def enterprises(conn: Conn) -> list[dict]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("SELECT code, name, name_en, region, province, city, industry FROM enterprises ORDER BY code")
    return await cur.fetchall()


def _beijing_day_start(now: datetime) -> datetime:
    local = (now + BEIJING).replace(hour=0, minute=0, second=0, microsecond=0)
    return (local - BEIJING).replace(tzinfo=UTC)


@router.get("/enterprises/{code}/emissions", tags=["energy and CO2"])
async def enterprise_emissions(
    code: str,
    conn: Conn,
    start: Annotated[datetime | None, Query(description="UTC or offset-aware; default: today 00:00 Beijing")] = None,
    end: Annotated[datetime | None, Query(description="default: now")] = None,
) -> dict:
    """Energy (tce) and location-based CO2 of one enterprise over [start, end), by point."""
    now = datetime.now(UTC)
    end = _aware(end) if end else now
    start = _aware(start) if start else _beijing_day_start(now)
    if end <= start:
        raise HTTPException(422, "end must be after start")
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("SELECT code, name, province FROM enterprises WHERE code = %s", (code,))
    ent = await cur.fetchone()
    if ent is None:
        raise HTTPException(404, f"no enterprise {code}")
    await cur.execute(
        """SELECT p.point, p.carrier, p.unit, p.direction,
                  extract(year FROM i.bucket AT TIME ZONE 'Asia/Shanghai')::int AS year,
                  sum(i.quantity) AS quantity, bit_or(i.flags) AS flags, count(*) AS buckets
           FROM intervals_15m i JOIN points p ON p.id = i.point_id
           WHERE p.enterprise = %s AND p.carrier IS NOT NULL AND i.bucket >= %s AND i.bucket < %s
           GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 5""",
        (code, start, end),
    )
    points = []
    total_co2 = total_tce = 0.0
    for row in await cur.fetchall():
        item = {k: row[k] for k in ("point", "carrier", "unit", "direction", "year", "quantity", "flags", "buckets")}
        if row["carrier"] == "electricity" and row["direction"] == "import":
            mwh = convert(row["quantity"], row["unit"], "MWh")
            try:
                f = electricity_factor(ent["province"], row["year"])
            except FactorNotFound as exc:
                raise HTTPException(422, str(exc)) from None
            item.update(
                mwh=mwh,
                co2_t=mwh * f.value,
                tce=mwh * ELECTRICITY_TCE_PER_MWH,
                factor={"value": f.value, "unit": "tCO2/MWh", "data_year": f.data_year, "source": f.source},
            )
            total_co2 += item["co2_t"]
            total_tce += item["tce"]
        else:
            item.update(co2_t=None, tce=None, note="carrier not yet accounted by this API version")
        points.append(item)
    return {
        "enterprise": ent["code"],
        "name": ent["name"],
        "start": start,
        "end": end,
        "method": "location",
        "method_version": METHOD_VERSION,
        "co2_t": total_co2,
        "tce": total_tce,
        "points": points,
    }


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
