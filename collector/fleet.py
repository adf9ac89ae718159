"""Per-gateway gauges for alerting, read from the database: online state, time of the last
status, 15-minute completeness over the last 24 hours, and each meter's last successful read
as its gateway last reported it (the centre's view, for gateways it cannot scrape).

The database is the fleet's memory: a collector that restarts exports every registered gateway
again at once, including those that went silent before it started, so the alert rules see a
gateway that stopped talking as a value that grows old, never as a series that vanishes. Every
collector exports the same values; the rules take ``max by (gateway)``. A gateway that has
never sent a status has no status time (and its completeness shows its points are silent).
"""

from __future__ import annotations

import time

import psycopg

from .metrics import CollectorMetrics

# Completeness per gateway over the last 24 h: whole 15-minute slots that ended, as the national rule counts them.
_FLEET = """
SELECT e.province, g.enterprise, g.gateway, g.state, extract(epoch FROM g.status_at),
       coalesce(sum(c.expected), 0), coalesce(sum(c.received), 0)
FROM gateways g
JOIN enterprises e ON e.code = g.enterprise
LEFT JOIN points p ON p.gateway_id = g.id AND p.active
LEFT JOIN cw_completeness(now() - interval '24 hours', now()) c ON c.point_id = p.id
GROUP BY e.province, g.enterprise, g.gateway, g.state, g.status_at
"""

_METERS = """
SELECT e.province, g.enterprise, g.gateway, d.meter, extract(epoch FROM d.last_success)
FROM device_health d
JOIN gateways g ON g.id = d.gateway_id
JOIN enterprises e ON e.code = g.enterprise
WHERE d.last_success IS NOT NULL
"""


def refresh_fleet(conn: psycopg.Connection, metrics: CollectorMetrics) -> int:
    """Set the per-gateway gauges from the database; returns the number of gateways."""
    rows = conn.execute(_FLEET).fetchall()
    for province, enterprise, gateway, state, status_at, expected, received in rows:
        labels = (province, enterprise, gateway)
        metrics.gateway_online.labels(*labels).set(0 if state in (None, "offline") else 1)
        if status_at is not None:
            metrics.gateway_status_time.labels(*labels).set(float(status_at))
        metrics.gateway_expected.labels(*labels).set(expected)
        # No slot expected yet (a gateway registered minutes ago) counts as complete.
        metrics.gateway_completeness.labels(*labels).set(received / expected if expected else 1.0)
    for province, enterprise, gateway, meter, last_success in conn.execute(_METERS):
        metrics.meter_last_success.labels(province, enterprise, gateway, meter).set(float(last_success))
    return len(rows)


class FleetRefresher:
    """Calls :func:`refresh_fleet` at most every ``period`` seconds from the builder's loop."""

    def __init__(self, metrics: CollectorMetrics, period: float = 60.0) -> None:
        self.metrics = metrics
        self.period = period
        self._last = float("-inf")

    def maybe_refresh(self, conn: psycopg.Connection) -> None:
        now = time.monotonic()
        if now - self._last >= self.period:
            self._last = now
            refresh_fleet(conn, self.metrics)
