"""The registry of enterprises, gateways, meters and points, loaded from site files.

``register_site`` writes a site file's metadata into the database (``carbonwatch db register``);
``Registry`` is the collector's in-memory view of it, used to check that a gateway publishes
only points it owns and to turn point names into ids.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import psycopg

from carbonwatch.contracts.regions import city_code, province_code
from carbonwatch.contracts.site import ID_PATTERN, Point, Site

# the points columns of a fuel counter's measured parameters (migration 0010), in this order
FUEL_COLUMNS = ("fuel_ncv", "fuel_carbon_content", "fuel_oxidation_rate", "fuel_source")


def fuel_columns(p: Point) -> tuple[float | None, float | None, float | None, str | None]:
    """A point's measured fuel parameters as stored (all NULL when it has none: the family applies)."""
    f = p.fuel
    if f is None:
        return None, None, None, None
    return f.ncv, f.carbon_content, f.oxidation_rate, f.source


def register_site(conn: psycopg.Connection, site: Site, actor: str = "cli") -> dict[str, int]:
    """Upsert a site's metadata; points dropped from the file are marked inactive, never deleted.

    A point's measured fuel parameters are replaced by the file's on every registration (removed
    from the file, they are cleared and the family defaults apply again)."""
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
                               max_rate_per_hour, poll_interval_s, fuel_ncv, fuel_carbon_content,
                               fuel_oxidation_rate, fuel_source, active)
                           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, true)
                           ON CONFLICT (enterprise, point) DO UPDATE SET gateway_id = EXCLUDED.gateway_id,
                             meter_id = EXCLUDED.meter_id, kind = EXCLUDED.kind, unit = EXCLUDED.unit,
                             carrier = EXCLUDED.carrier, direction = EXCLUDED.direction, use = EXCLUDED.use,
                             renewable = EXCLUDED.renewable, new_since_base_year = EXCLUDED.new_since_base_year,
                             product = EXCLUDED.product, rollover = EXCLUDED.rollover,
                             max_rate_per_hour = EXCLUDED.max_rate_per_hour,
                             poll_interval_s = EXCLUDED.poll_interval_s, fuel_ncv = EXCLUDED.fuel_ncv,
                             fuel_carbon_content = EXCLUDED.fuel_carbon_content,
                             fuel_oxidation_rate = EXCLUDED.fuel_oxidation_rate,
                             fuel_source = EXCLUDED.fuel_source, active = true
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
                            p.max_rate,  # per hour, as in the site file (the builder converts)
                            interval,
                            *fuel_columns(p),
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
    points: dict[str, int]  # point name -> point id, only the active points this gateway owns


_POINT_ID = re.compile(ID_PATTERN)


class RegistryUnavailable(Exception):
    """The registry could not be read and the cache cannot answer; try again later."""


_GATEWAY_SQL = """SELECT g.enterprise, g.gateway, g.id, p.point, p.id
                  FROM gateways g LEFT JOIN points p ON p.gateway_id = g.id AND p.active"""


class Registry:
    """Thread-safe cache of (enterprise, gateway) -> owned points, refreshed from the database.

    The whole registry is reloaded every ``max_age`` seconds. A gateway missing from the cache,
    or a point missing from a gateway, is looked up on its own at once (a site registered a
    moment ago must not have its first messages refused), at most every ``min_refresh`` seconds
    per gateway so that a misconfigured gateway cannot make us hammer the database. When the
    database is unreachable the cache answers for gateways it knows and
    :class:`RegistryUnavailable` is raised for the others.
    """

    def __init__(self, conninfo: str, max_age: float = 60.0, min_refresh: float = 2.0) -> None:
        self._conninfo = conninfo
        self._max_age = max_age
        self._min_refresh = min_refresh
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], GatewayEntry] = {}
        self._refresh_after = -float("inf")  # monotonic time of the next full reload
        self._asked: dict[tuple[str, str], float] = {}  # last single-gateway lookup, per gateway

    def _query(self, where: str = "", params: tuple = ()) -> dict[tuple[str, str], GatewayEntry]:
        with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10) as conn:
            rows = conn.execute(_GATEWAY_SQL + where, params).fetchall()
        entries: dict[tuple[str, str], GatewayEntry] = {}
        for enterprise, gateway, gateway_id, point, point_id in rows:
            entry = entries.setdefault((enterprise, gateway), GatewayEntry(gateway_id, {}))
            if point is not None and _POINT_ID.fullmatch(point):  # no valid payload can name another
                entry.points[point] = point_id
        return entries

    def refresh(self) -> None:
        entries = self._query()
        with self._lock:
            self._entries = entries
            self._refresh_after = time.monotonic() + self._max_age
            self._asked.clear()

    def lookup(self, enterprise: str, gateway: str) -> GatewayEntry | None:
        """The gateway's entry, or None if it is not registered."""
        key = (enterprise, gateway)
        with self._lock:
            due = time.monotonic() >= self._refresh_after
            entry = self._entries.get(key)
        if due:
            try:
                self.refresh()
            except psycopg.Error as exc:
                with self._lock:
                    self._refresh_after = time.monotonic() + self._min_refresh
                if entry is None:
                    raise RegistryUnavailable(str(exc)) from exc
                return entry  # keep serving the known gateways while the database is away
            with self._lock:
                entry = self._entries.get(key)
        return entry if entry is not None else self.reload(enterprise, gateway)

    def reload(self, enterprise: str, gateway: str) -> GatewayEntry | None:
        """Read one gateway afresh (rate-limited per gateway); its entry, or None if unknown."""
        key = (enterprise, gateway)
        now = time.monotonic()
        with self._lock:
            if now - self._asked.get(key, -float("inf")) < self._min_refresh:
                return self._entries.get(key)
            if len(self._asked) > 100_000:  # topics come from outside: keep this bounded
                self._asked.clear()
            self._asked[key] = now
        try:
            found = self._query(" WHERE g.enterprise = %s AND g.gateway = %s", key)
        except psycopg.Error as exc:
            with self._lock:
                self._asked.pop(key, None)
                entry = self._entries.get(key)
            if entry is None:
                raise RegistryUnavailable(str(exc)) from exc
            return entry
        with self._lock:
            if key in found:
                self._entries[key] = found[key]
            else:
                self._entries.pop(key, None)
            return self._entries.get(key)
