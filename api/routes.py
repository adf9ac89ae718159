"""Routes of /api/v1 for the registry and fleet health: who the caller is, enterprises, gateways, meters.

Every query carries the caller's scope in its WHERE clause; an object outside it is a 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from psycopg.rows import dict_row

from carbonwatch import __version__

from .auth import CallerDep
from .deps import Conn
from .models import Enterprise, EnterpriseDetail, Fleet, Gateway, Me

router = APIRouter()

ENTERPRISE_CODE = Path(pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$", description="unified social credit code")
REGION = r"^[0-9]{6}$"
# a gateway whose last status is older than this is shown stale (status every 30 s by default)
STALE_GATEWAY = "10 minutes"


@router.get("/health", tags=["operations"])
async def health(conn: Conn) -> dict:
    """Liveness and version; no token needed."""
    await conn.execute("SELECT 1")
    return {"status": "ok", "version": __version__}


@router.get("/me", tags=["registry"])
async def me(who: CallerDep) -> Me:
    """The role and scope of the token in use."""
    return {"role": who.role, "scope": who.scope, "label": who.label, "reads_energy": who.reads_energy}


async def enterprise_or_404(conn: Conn, who: CallerDep, code: str) -> dict:
    """The enterprise if it is inside the caller's scope; 404 otherwise (existence does not leak)."""
    cond, params = who.where()
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT code, name, name_en, region, province, city, industry FROM enterprises e "
        f"WHERE e.code = %(code)s AND {cond}",
        {"code": code, **params},
    )
    row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, f"no enterprise {code}")
    return row


@router.get("/enterprises", tags=["registry"])
async def enterprises(
    conn: Conn,
    who: CallerDep,
    province: Annotated[str | None, Query(pattern=REGION)] = None,
    city: Annotated[str | None, Query(pattern=REGION)] = None,
    industry: Annotated[str | None, Query(pattern=r"^[0-9A-Z]{1,4}$", description="GB/T 4754 code")] = None,
) -> list[Enterprise]:
    """Enterprises in the caller's scope, optionally filtered by province, city and industry."""
    cond, params = who.where()
    filters = [cond]
    for name, value in (("province", province), ("city", city), ("industry", industry)):
        if value is not None:
            filters.append(f"e.{name} = %({name})s")
            params[name] = value
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT code, name, name_en, region, province, city, industry FROM enterprises e "
        f"WHERE {' AND '.join(filters)} ORDER BY code",
        params,
    )
    return await cur.fetchall()


@router.get("/enterprises/{code}", tags=["registry"])
async def enterprise(conn: Conn, who: CallerDep, code: Annotated[str, ENTERPRISE_CODE]) -> EnterpriseDetail:
    """One enterprise with its counts of gateways, meters and points."""
    ent = await enterprise_or_404(conn, who, code)
    cur = await conn.execute(
        """SELECT (SELECT count(*) FROM gateways WHERE enterprise = %(c)s),
                  (SELECT count(*) FROM meters m JOIN gateways g ON g.id = m.gateway_id WHERE g.enterprise = %(c)s),
                  (SELECT count(*) FROM points WHERE enterprise = %(c)s AND active)""",
        {"c": code},
    )
    gateways, meters, points = await cur.fetchone()
    return {**ent, "gateways": gateways, "meters": meters, "points": points}


@router.get("/enterprises/{code}/points", tags=["registry"])
async def points(conn: Conn, who: CallerDep, code: Annotated[str, ENTERPRISE_CODE]) -> list[dict]:
    """The metered points of an enterprise: carrier, unit, direction, use, product."""
    await enterprise_or_404(conn, who, code)
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        """SELECT p.id, p.point, m.meter, g.gateway, p.kind, p.unit, p.carrier, p.direction, p.use, p.renewable,
                  p.new_since_base_year, p.product, p.poll_interval_s, p.active
           FROM points p JOIN meters m ON m.id = p.meter_id JOIN gateways g ON g.id = p.gateway_id
           WHERE p.enterprise = %s ORDER BY p.point""",
        (code,),
    )
    return await cur.fetchall()


_GATEWAYS = f"""
    SELECT e.code AS enterprise, e.name, e.province, e.city, g.gateway, g.state, g.last_seen, g.status_at, g.last_seq,
           (g.last_seen IS NULL OR g.last_seen < now() - interval '{STALE_GATEWAY}') AS stale,
           (SELECT count(*) FROM meters m WHERE m.gateway_id = g.id) AS meters,
           (SELECT count(*) FROM device_health d WHERE d.gateway_id = g.id AND d.state <> 'ok') AS meters_not_ok
    FROM gateways g JOIN enterprises e ON e.code = g.enterprise
"""


@router.get("/gateways", tags=["fleet health"])
async def gateways(
    conn: Conn,
    who: CallerDep,
    enterprise: Annotated[str | None, Query(pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")] = None,
    province: Annotated[str | None, Query(pattern=REGION)] = None,
    stale: Annotated[bool | None, Query(description="only stale (true) or only fresh (false) gateways")] = None,
) -> list[Gateway]:
    """Gateways in scope with their last state, last message and meters not ok."""
    cond, params = who.where()
    filters = [cond]
    if enterprise is not None:
        filters.append("e.code = %(enterprise)s")
        params["enterprise"] = enterprise
    if province is not None:
        filters.append("e.province = %(province)s")
        params["province"] = province
    sql = f"SELECT * FROM ({_GATEWAYS} WHERE {' AND '.join(filters)}) x"
    if stale is not None:
        sql += " WHERE stale = %(stale)s"
        params["stale"] = stale
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(sql + " ORDER BY enterprise, gateway", params)
    return await cur.fetchall()


@router.get("/enterprises/{code}/meters", tags=["fleet health"])
async def meters(conn: Conn, who: CallerDep, code: Annotated[str, ENTERPRISE_CODE]) -> list[dict]:
    """Meters of an enterprise with their health as the gateway last reported it, and their newest reading."""
    await enterprise_or_404(conn, who, code)
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        """SELECT g.gateway, m.meter, m.model, d.state, d.last_success, d.consecutive_failures, d.last_error,
                  d.reported_at,
                  (SELECT max(r.ts) FROM points p, LATERAL (SELECT ts FROM readings r
                       WHERE r.point_id = p.id ORDER BY ts DESC LIMIT 1) r WHERE p.meter_id = m.id) AS last_reading
           FROM meters m JOIN gateways g ON g.id = m.gateway_id
           LEFT JOIN device_health d ON d.gateway_id = g.id AND d.meter = m.meter
           WHERE g.enterprise = %s ORDER BY g.gateway, m.meter""",
        (code,),
    )
    return await cur.fetchall()


@router.get("/fleet", tags=["fleet health"])
async def fleet(conn: Conn, who: CallerDep) -> Fleet:
    """Counts across the fleet in scope: enterprises, gateways by state, stale gateways, meters by health."""
    cond, params = who.where()
    cur = await conn.execute(
        f"""SELECT count(DISTINCT e.code), count(g.id),
                   count(g.id) FILTER (WHERE g.state = 'online'),
                   count(g.id) FILTER (WHERE g.last_seen IS NULL OR g.last_seen < now() - interval '{STALE_GATEWAY}')
            FROM enterprises e LEFT JOIN gateways g ON g.enterprise = e.code WHERE {cond}""",
        params,
    )
    ents, gws, online, stale = await cur.fetchone()
    cur = await conn.execute(
        f"""SELECT d.state, count(*) FROM device_health d JOIN gateways g ON g.id = d.gateway_id
            JOIN enterprises e ON e.code = g.enterprise WHERE {cond} GROUP BY 1""",
        params,
    )
    by_state = dict(await cur.fetchall())
    return {
        "enterprises": ents,
        "gateways": gws,
        "gateways_online": online,
        "gateways_stale": stale,
        "meters_by_state": {s: by_state.get(s, 0) for s in ("ok", "degraded", "down")},
    }
