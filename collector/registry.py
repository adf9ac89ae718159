"""The registry of enterprises, gateways, meters and points, loaded from site files.

``register_site`` writes a site file's metadata into the database (``carbonwatch db register``);
``Registry`` is the collector's in-memory view of it, used to check that a gateway publishes
only points it owns and to turn point names into ids.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psycopg

from carbonwatch.contracts.regions import city_code, province_code
from carbonwatch.contracts.site import Site


def register_site(conn: psycopg.Connection, site: Site, actor: str = "cli") -> dict[str, int]:
    """Upsert a site's metadata; points dropped from the file are marked inactive, never deleted."""
    e = site.enterprise
    counts = {"gateways": 0, "meters": 0, "points": 0}
    with conn.transaction():
        conn.execute(
            """INSERT INTO enterprises (code, name, name_en, region, province, city, industry, updated_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, now())
               ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, name_en = EXCLUDED.name_en,
                 region = EXCLUDED.region, province = EXCLUDED.province, city = EXCLUDED.city,
                 industry = EXCLUDED.industry, updated_at = now()""",
            (e.code, e.name, e.name_en, e.region, province_code(e.region), city_code(e.region), e.industry),
        )
        live_points: list[int] = []
        for g in site.gateways:
            (gateway_id,) = conn.execute(
                """INSERT INTO gateways (enterprise, gateway) VALUES (%s, %s)
                   ON CONFLICT (enterprise, gateway) DO UPDATE SET gateway = EXCLUDED.gateway RETURNING id""",
                (e.code, g.id),
            ).fetchone()
            counts["gateways"] += 1
            for m in g.meters:
                (meter_id,) = conn.execute(
                    """INSERT INTO meters (gateway_id, meter, model) VALUES (%s, %s, %s)
                       ON CONFLICT (gateway_id, meter) DO UPDATE SET model = EXCLUDED.model RETURNING id""",
                    (gateway_id, m.id, m.model),
                ).fetchone()
                counts["meters"] += 1
                for p in m.points:
                    interval = p.poll_interval or m.poll_interval or g.poll_interval
                    (point_id,) = conn.execute(
                        """INSERT INTO points (enterprise, gateway_id, meter_id, point, kind, unit, carrier,
                               direction, use, renewable, new_since_base_year, product, rollover,
                               poll_interval_s, active)
                           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, true)
                           ON CONFLICT (enterprise, point) DO UPDATE SET gateway_id = EXCLUDED.gateway_id,
                             meter_id = EXCLUDED.meter_id, kind = EXCLUDED.kind, unit = EXCLUDED.unit,
                             carrier = EXCLUDED.carrier, direction = EXCLUDED.direction, use = EXCLUDED.use,
                             renewable = EXCLUDED.renewable, new_since_base_year = EXCLUDED.new_since_base_year,
                             product = EXCLUDED.product, rollover = EXCLUDED.rollover,
                             poll_interval_s = EXCLUDED.poll_interval_s, active = true
                           RETURNING id""",
                        (
                            e.code,
                            gateway_id,
                            meter_id,
                            p.id,
                            p.kind.value,
                            p.unit,
                            p.carrier,
                            p.direction.value if p.direction else None,
                            p.use.value,
                            p.renewable,
                            p.new_since_base_year,
                            p.product,
                            p.rollover,
                            interval,
                        ),
                    ).fetchone()
                    live_points.append(point_id)
                    counts["points"] += 1
        conn.execute(
            "UPDATE points SET active = false WHERE enterprise = %s AND NOT (id = ANY(%s))",
            (e.code, live_points),
        )
        conn.execute(
            "INSERT INTO audit_log (actor, action, detail) VALUES (%s, 'register_site', %s::jsonb)",
            (actor, psycopg.types.json.Jsonb({"enterprise": e.code, **counts})),
        )
    return counts


@dataclass(frozen=True)
class GatewayEntry:
    gateway_id: int
    points: dict[str, int]  # point name -> point id, only the points this gateway owns


class Registry:
    """Thread-safe cache of (enterprise, gateway) -> owned points, refreshed from the database."""

    def __init__(self, conninfo: str, max_age: float = 30.0, min_refresh: float = 2.0) -> None:
        self._conninfo = conninfo
        self._max_age = max_age
        self._min_refresh = min_refresh  # unknown gateways cannot make us hammer the database
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], GatewayEntry] = {}
        self._loaded_at = 0.0

    def refresh(self) -> None:
        with psycopg.connect(self._conninfo) as conn:
            rows = conn.execute(
                """SELECT g.enterprise, g.gateway, g.id, p.point, p.id
                   FROM gateways g LEFT JOIN points p ON p.gateway_id = g.id AND p.active"""
            ).fetchall()
        entries: dict[tuple[str, str], GatewayEntry] = {}
        for enterprise, gateway, gateway_id, point, point_id in rows:
            entry = entries.setdefault((enterprise, gateway), GatewayEntry(gateway_id, {}))
            if point is not None:
                entry.points[point] = point_id
        with self._lock:
            self._entries = entries
            self._loaded_at = time.monotonic()

    def lookup(self, enterprise: str, gateway: str) -> GatewayEntry | None:
        """The gateway's entry; an unknown gateway triggers one refresh (it may be newly registered)."""
        with self._lock:
            age = time.monotonic() - self._loaded_at
            entry = self._entries.get((enterprise, gateway))
        if age > self._max_age or (entry is None and age > self._min_refresh):
            self.refresh()
            with self._lock:
                entry = self._entries.get((enterprise, gateway))
        return entry
