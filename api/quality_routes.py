"""Routes of /api/v1 for data quality and alerts: stale gateways and meters, low completeness, counter anomalies.

Open to every role (operators watch fleet health); limited to the caller's scope in SQL.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from psycopg.rows import dict_row

from carbonwatch.accounting.flags import FLAG_BACKWARDS, FLAG_RESET, FLAG_ROLLOVER, FLAG_SPIKE

from .auth import CallerDep
from .deps import Conn
from .models import Alerts
from .routes import STALE_GATEWAY

router = APIRouter()

ANOMALY_FLAGS = {"rollover": FLAG_ROLLOVER, "backwards": FLAG_BACKWARDS, "reset": FLAG_RESET, "spike": FLAG_SPIKE}
COMPLETENESS_RULE = 0.9

_STALE_GATEWAYS = f"""
    SELECT 'gateway_stale' AS kind, 'critical' AS severity, e.code AS enterprise, e.name, g.gateway,
           NULL::text AS meter, NULL::text AS point, g.last_seen AS since,
           coalesce('state ' || g.state, 'never seen') AS detail
    FROM gateways g JOIN enterprises e ON e.code = g.enterprise
    WHERE {{cond}} AND (g.last_seen IS NULL OR g.last_seen < now() - interval '{STALE_GATEWAY}' OR g.state = 'offline')
"""
_METERS_NOT_OK = """
    SELECT 'meter_' || d.state AS kind, CASE d.state WHEN 'down' THEN 'critical' ELSE 'warning' END AS severity,
           e.code, e.name, g.gateway, d.meter, NULL::text, d.last_success,
           d.consecutive_failures || ' failed reads; ' || coalesce(d.last_error, '')
    FROM device_health d JOIN gateways g ON g.id = d.gateway_id JOIN enterprises e ON e.code = g.enterprise
    WHERE {cond} AND d.state <> 'ok'
"""
# a counter point whose newest reading is older than three poll intervals (at least 5 minutes)
_STALE_POINTS = """
    SELECT 'point_stale', 'warning', e.code, e.name, g.gateway, m.meter, p.point, r.ts,
           'no reading for ' || date_trunc('second', now() - r.ts)::text
    FROM points p JOIN enterprises e ON e.code = p.enterprise JOIN gateways g ON g.id = p.gateway_id
    JOIN meters m ON m.id = p.meter_id
    CROSS JOIN LATERAL (SELECT max(ts) AS ts FROM (SELECT ts FROM readings r WHERE r.point_id = p.id
                        ORDER BY ts DESC LIMIT 1) x) r
    WHERE {cond} AND p.active AND p.kind = 'counter' AND r.ts IS NOT NULL
      AND r.ts < now() - greatest(interval '5 minutes', 3 * coalesce(p.poll_interval_s, 60) * interval '1 second')
"""
_ANOMALIES = """
    SELECT 'counter_anomaly', 'warning', e.code, e.name, g.gateway, m.meter, p.point, min(d.bucket),
           'flags ' || bit_or(d.flags)::text
    FROM energy_1d d JOIN points p ON p.id = d.point_id JOIN enterprises e ON e.code = p.enterprise
    JOIN gateways g ON g.id = p.gateway_id JOIN meters m ON m.id = p.meter_id
    WHERE {cond} AND d.bucket >= now() - %(days)s * interval '1 day' AND d.flags & %(mask)s <> 0
    GROUP BY e.code, e.name, g.gateway, m.meter, p.point
"""
_COMPLETENESS = """
    WITH pts AS (SELECT p.id FROM points p JOIN enterprises e ON e.code = p.enterprise WHERE {cond} AND p.active)
    SELECT 'completeness_low', 'warning', e.code, e.name, g.gateway, m.meter, p.point, now() - interval '1 day',
           c.received || ' of ' || c.expected || ' values in 24 h'
    FROM cw_completeness(now() - interval '1 day', now(), (SELECT coalesce(array_agg(id), '{{}}') FROM pts)) c
    JOIN points p ON p.id = c.point_id JOIN enterprises e ON e.code = p.enterprise
    JOIN gateways g ON g.id = p.gateway_id JOIN meters m ON m.id = p.meter_id
    WHERE c.expected > 0 AND c.received < %(rule)s * c.expected
"""
COLUMNS = ("kind", "severity", "enterprise", "name", "gateway", "meter", "point", "since", "detail")


@router.get("/alerts", tags=["data quality"])
async def alerts(
    conn: Conn,
    who: CallerDep,
    days: Annotated[int, Query(ge=1, le=90, description="look-back for counter anomalies")] = 7,
    enterprise: Annotated[str | None, Query(pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")] = None,
) -> Alerts:
    """Data-quality alerts in scope: stale gateways and points, meters not ok, counter anomalies, completeness < 90%."""
    cond, params = who.where()
    if enterprise is not None:
        cond += " AND e.code = %(enterprise)s"
        params["enterprise"] = enterprise
    mask = FLAG_ROLLOVER | FLAG_BACKWARDS | FLAG_RESET | FLAG_SPIKE
    sql = " UNION ALL ".join(
        f"({part.format(cond=cond)})"
        for part in (_STALE_GATEWAYS, _METERS_NOT_OK, _STALE_POINTS, _ANOMALIES, _COMPLETENESS)
    )
    cur = await conn.execute(
        f"SELECT * FROM ({sql}) a ORDER BY 2, 1, 3, 5, 6, 7",
        {**params, "days": days, "mask": mask, "rule": COMPLETENESS_RULE},
    )
    rows = [dict(zip(COLUMNS, r, strict=True)) for r in await cur.fetchall()]
    for r in rows:
        if r["kind"] == "counter_anomaly":
            flags = int(r["detail"].split()[1])
            r["detail"] = ", ".join(k for k, bit in ANOMALY_FLAGS.items() if flags & bit)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["kind"]] = counts.get(r["kind"], 0) + 1
    return {"counts": counts, "alerts": rows}


@router.get("/events", tags=["data quality"])
async def events(
    conn: Conn,
    who: CallerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    enterprise: Annotated[str | None, Query(pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")] = None,
) -> list[dict]:
    """The newest gateway events in scope (counter resets, rollovers, connection changes...)."""
    cond, params = who.where()
    if enterprise is not None:
        cond += " AND e.code = %(enterprise)s"
        params["enterprise"] = enterprise
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"""SELECT e.code AS enterprise, g.gateway, v.ts, v.kind, v.device, v.point, v.value, v.previous, v.detail
            FROM gateway_events v JOIN gateways g ON g.id = v.gateway_id JOIN enterprises e ON e.code = g.enterprise
            WHERE {cond} ORDER BY v.ts DESC LIMIT %(limit)s""",
        {**params, "limit": limit},
    )
    return await cur.fetchall()
