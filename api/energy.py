"""Energy and CO2 queries on the rollups, scoped to the caller, accounted by the core.

One query shape serves every level (point, meter, carrier, enterprise, industry, city,
province) and period (15 min to year): sum the period's rollup in SQL, grouped by the level's
key and by what the factors depend on, then account the sums with :mod:`.figures`.
"""

from __future__ import annotations

import asyncio
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
    """Sums of ``table`` per level key, factor attributes and bucket, for the points in scope.

    Points are grouped first (a few rows), so the rollup rows are summed by one integer and the
    bucket rather than by the dozen columns the factors depend on (a point's measured fuel
    parameters among them: points measured differently are accounted apart).
    """
    key = LEVEL_KEY[level]
    if level in ("point", "meter") and not one_enterprise:
        key = f"e.code || ':' || {key}"  # point and meter names repeat across enterprises
    where = [cond, "p.carrier IS NOT NULL"]
    where += [f"{FILTER_COLUMNS[name]} = %({name})s" for name in filters]
    meter_join = "JOIN meters m ON m.id = p.meter_id " if level == "meter" else ""
    attrs = (
        "p.carrier, p.unit, p.direction, p.use, p.renewable, p.new_since_base_year, e.province, "
        "p.fuel_ncv, p.fuel_carbon_content, p.fuel_oxidation_rate, p.fuel_source"
    )
    return f"""
        WITH pts AS MATERIALIZED (
            SELECT p.id, {key} AS key, {attrs}, dense_rank() OVER (ORDER BY {key}, {attrs}) AS g
            FROM points p JOIN enterprises e ON e.code = p.enterprise {meter_join}
            WHERE {" AND ".join(where)}
        ),
        sums AS (
            SELECT pts.g, r.bucket, sum(r.quantity) AS quantity, bit_or(r.flags) AS flags
            FROM {table} r JOIN pts ON pts.id = r.point_id
            WHERE r.bucket >= %(start)s AND r.bucket < %(end)s
            GROUP BY 1, 2
        )
        SELECT g.key, sums.bucket, g.carrier, g.unit, g.direction, g.use, g.renewable, g.new_since_base_year,
               g.province, g.fuel_ncv, g.fuel_carbon_content, g.fuel_oxidation_rate, g.fuel_source,
               sums.quantity, sums.flags
        FROM sums JOIN (SELECT DISTINCT ON (g) * FROM pts ORDER BY g) g ON g.g = sums.g"""


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


async def energies(pool, who: Caller, *queries: tuple) -> list[Figures]:
    """Several :func:`energy` queries at once, each on its own pooled connection (the database
    answers them in parallel); each query is ``(level, period, start, end, filters[, options])``."""

    async def one(q: tuple) -> Figures:
        async with pool.connection() as conn:
            return await energy(conn, who, *q[:5], **(q[5] if len(q) > 5 else {}))

    return list(await asyncio.gather(*(one(q) for q in queries)))
