"""Energy and CO2 queries on the rollups, scoped to the caller, accounted by the core.

One query shape serves every level (point, meter, carrier, enterprise, industry, city,
province) and period (15 min to year): sum the period's rollup in SQL, grouped by the level's
key and by what the factors depend on, then account the sums with :mod:`.figures`.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import HTTPException
from psycopg import AsyncConnection

from .auth import Caller
from .figures import PERIOD_TABLE, FigureError, Figures, account_rows

LEVEL_KEY = {
    "point": "p.point",
    "meter": "m.meter",
    "carrier": "p.carrier",
    "enterprise": "e.code",
    "industry": "e.industry",
    "city": "e.city",
    "province": "e.province",
}
LEVELS = tuple(LEVEL_KEY)
FILTER_COLUMNS = {
    "enterprise": "e.code",
    "province": "e.province",
    "city": "e.city",
    "industry": "e.industry",
    "carrier": "p.carrier",
    "point": "p.point",
}


def energy_sql(level: str, table: str, cond: str, filters: dict[str, str], one_enterprise: bool = False) -> str:
    key = LEVEL_KEY[level]
    if level in ("point", "meter") and not one_enterprise:
        key = f"e.code || ':' || {key}"  # point and meter names repeat across enterprises
    where = [cond, "p.carrier IS NOT NULL", "r.bucket >= %(start)s", "r.bucket < %(end)s"]
    where += [f"{FILTER_COLUMNS[name]} = %({name})s" for name in filters]
    meter_join = "JOIN meters m ON m.id = p.meter_id " if level == "meter" else ""
    return f"""
        SELECT {key}, r.bucket, p.carrier, p.unit, p.direction, p.use, p.renewable, p.new_since_base_year,
               e.province, sum(r.quantity), bit_or(r.flags)
        FROM {table} r JOIN points p ON p.id = r.point_id JOIN enterprises e ON e.code = p.enterprise
        {meter_join}WHERE {" AND ".join(where)}
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9"""


async def energy(
    conn: AsyncConnection,
    who: Caller,
    level: str,
    period: str,
    start: datetime,
    end: datetime,
    filters: dict[str, str | None] | None = None,
    carriers: bool = False,
    table: str | None = None,
) -> Figures:
    """tce and CO2 per key of ``level`` and per ``period`` over the aligned window [start, end).

    ``table``: read another rollup than the period's own (the 15-minute table for an exact window).
    """
    who.require_energy()
    given = {k: v for k, v in (filters or {}).items() if v is not None}
    cond, params = who.where()
    one = "enterprise" in given or who.role == "enterprise"
    sql = energy_sql(level, table or PERIOD_TABLE[period], cond, given, one)
    cur = await conn.execute(sql, {**params, **given, "start": start, "end": end})
    rows = await cur.fetchall()
    try:
        return account_rows(rows, period, signed=level != "point", carriers=carriers)
    except FigureError as exc:
        raise HTTPException(422, str(exc)) from None
