"""Per-gateway and per-meter gauges for alerting, read from the database: online state, time of
the last status, 15-minute completeness over the last 24 hours, each meter's last successful
read as its gateway last reported it (the centre's view, for gateways it cannot scrape), and
each meter's 15-minute intervals flagged as counter anomalies over the last 24 hours, and each
gateway's telemetry messages that never arrived (holes in its sequence, sequence.py). Also the
Prometheus scrape targets of the registered gateways (``carbonwatch db targets``).

The database is the fleet's memory: a collector that restarts exports every registered gateway
again at once, including those that went silent before it started, so the alert rules see a
gateway that stopped talking as a value that grows old, never as a series that vanishes. Every
collector exports the same values; the rules take ``max by (gateway)``. A gateway that has
never sent a status has no status time (and its completeness shows its points are silent).

Meters: every registered meter that has an active point is exported, with last success ``0``
when it was never read (no status reported it, or the status says it never answered since the
agent started), so the stale-meter rule fires for it instead of the meter being invisible. A
meter whose points were all removed from its site file is no longer exported. Labels are
bounded by the registry (per gateway, per meter, per meter and counter flag), never by readings.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Iterable

import psycopg
from prometheus_client import Gauge

from .metrics import COUNTER_FLAGS, CollectorMetrics
from .sequence import fold_received, missing_messages

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

# Registered meters with an active point, and meters a gateway reports that the registry does not
# know; not the meters whose points were all removed from the site file (decommissioned).
_METERS = """
WITH registered AS (
    SELECT m.gateway_id, m.meter,
           EXISTS (SELECT 1 FROM points p WHERE p.meter_id = m.id AND p.active) AS live
    FROM meters m
)
SELECT e.province, g.enterprise, g.gateway, coalesce(r.meter, d.meter), extract(epoch FROM d.last_success)
FROM registered r
FULL JOIN device_health d ON d.gateway_id = r.gateway_id AND d.meter = r.meter
JOIN gateways g ON g.id = coalesce(r.gateway_id, d.gateway_id)
JOIN enterprises e ON e.code = g.enterprise
WHERE coalesce(r.live, true)
"""

# Counter anomalies per meter: intervals of the last 24 h (by bucket, so the BRIN index or the
# hypertable's chunks bound the scan) flagged backwards, reset or spike. Rollover is normal.
ANOMALY_FLAGS = {name: COUNTER_FLAGS[name] for name in ("backwards", "reset", "spike")}
FLAGGED_WINDOW = "24 hours"
_FLAGGED = f"""
SELECT e.province, g.enterprise, g.gateway, m.meter,
       {", ".join(f"count(*) FILTER (WHERE i.flags & {bit} <> 0)" for bit in ANOMALY_FLAGS.values())}
FROM intervals_15m i
JOIN points p ON p.id = i.point_id
JOIN meters m ON m.id = p.meter_id
JOIN gateways g ON g.id = m.gateway_id
JOIN enterprises e ON e.code = g.enterprise
WHERE i.bucket >= now() - interval '{FLAGGED_WINDOW}' AND i.flags & {sum(ANOMALY_FLAGS.values())} <> 0
GROUP BY e.province, g.enterprise, g.gateway, m.meter
"""

_TARGETS = """
SELECT e.province, g.enterprise, g.gateway
FROM gateways g
JOIN enterprises e ON e.code = g.enterprise
WHERE EXISTS (SELECT 1 FROM points p WHERE p.gateway_id = g.id AND p.active)
ORDER BY e.province, g.enterprise, g.gateway
"""


class FleetGauges:
    """The gauges this module adds to a collector's registry (besides those CollectorMetrics
    declares), and which label sets each refresh exported, so that one that left the database's
    answer is removed instead of keeping its last value for ever."""

    def __init__(self, metrics: CollectorMetrics) -> None:
        self.meter_flagged = Gauge(
            "carbonwatch_collector_meter_flagged_intervals",
            f"15-minute intervals of the meter's points in the last {FLAGGED_WINDOW} flagged with a counter anomaly, "
            "by flag (only meters and flags with at least one)",
            ["province", "enterprise", "gateway", "meter", "flag"],
            registry=metrics.registry,
        )
        self.missing_messages = Gauge(
            "carbonwatch_collector_gateway_missing_messages",
            "Telemetry messages of the gateway that never reached the database: holes in its sequence "
            "noticed over the last 7 days (see sequence.py; only gateways with at least one)",
            ["province", "enterprise", "gateway"],
            registry=metrics.registry,
        )
        self.exported: dict[Gauge, set[tuple[str, ...]]] = {}

    def replace(self, gauge: Gauge, values: dict[tuple[str, ...], float]) -> None:
        """Set ``gauge`` to exactly ``values``: new and changed label sets set, vanished ones removed."""
        for labels, value in values.items():
            gauge.labels(*labels).set(value)
        for labels in self.exported.get(gauge, set()) - values.keys():
            gauge.remove(*labels)
        self.exported[gauge] = set(values)


_GAUGES: weakref.WeakKeyDictionary[CollectorMetrics, FleetGauges] = weakref.WeakKeyDictionary()


def fleet_gauges(metrics: CollectorMetrics) -> FleetGauges:
    """This module's gauges in ``metrics``' registry, created on first use."""
    gauges = _GAUGES.get(metrics)
    if gauges is None:
        gauges = _GAUGES[metrics] = FleetGauges(metrics)
    return gauges


def refresh_fleet(conn: psycopg.Connection, metrics: CollectorMetrics) -> int:
    """Set the per-gateway and per-meter gauges from the database; returns the number of gateways."""
    extra = fleet_gauges(metrics)
    rows = conn.execute(_FLEET).fetchall()
    for province, enterprise, gateway, state, status_at, expected, received in rows:
        labels = (province, enterprise, gateway)
        metrics.gateway_online.labels(*labels).set(0 if state in (None, "offline") else 1)
        if status_at is not None:
            metrics.gateway_status_time.labels(*labels).set(float(status_at))
        metrics.gateway_expected.labels(*labels).set(expected)
        # No slot expected yet (a gateway registered minutes ago) counts as complete.
        metrics.gateway_completeness.labels(*labels).set(received / expected if expected else 1.0)
    # Never read: 0, the Unix epoch, so that "time since last success" is huge and the rule fires.
    meters = {
        (province, enterprise, gateway, meter): float(last_success or 0)
        for province, enterprise, gateway, meter, last_success in conn.execute(_METERS)
    }
    extra.replace(metrics.meter_last_success, meters)
    flagged = {}
    for province, enterprise, gateway, meter, *counts in conn.execute(_FLAGGED):
        for flag, count in zip(ANOMALY_FLAGS, counts, strict=True):
            if count:
                flagged[(province, enterprise, gateway, meter, flag)] = float(count)
    extra.replace(extra.meter_flagged, flagged)
    fold_received(conn)  # skipped when another collector is folding; the gaps below are still current
    extra.replace(extra.missing_messages, {k: float(n) for k, n in missing_messages(conn).items()})
    return len(rows)


def scrape_targets(
    conn: psycopg.Connection,
    address: str,
    provinces: Iterable[str] = (),
    exclude: Iterable[str] = (),
) -> list[dict]:
    """Prometheus file_sd target groups of the registered gateways with an active point, one per
    gateway, labelled with its province, enterprise and gateway from the registry (the labels the
    alert rules aggregate and Alertmanager routes on). ``address`` is a template of the agent's
    ``host:port`` with ``{province}``, ``{enterprise}`` and ``{gateway}``; ``provinces`` keeps only
    those provinces; ``exclude`` drops enterprises (``CODE``) or gateways (``CODE/GATEWAY``), for
    gateways that Prometheus cannot reach (the centre's view still covers them)."""
    wanted, skip = set(provinces), set(exclude)
    groups = []
    for province, enterprise, gateway in conn.execute(_TARGETS):
        if (wanted and province not in wanted) or enterprise in skip or f"{enterprise}/{gateway}" in skip:
            continue
        labels = {"province": province, "enterprise": enterprise, "gateway": gateway}
        groups.append({"targets": [address.format(**labels)], "labels": labels})
    return groups


def render_targets(groups: list[dict], command: str = "carbonwatch db targets") -> str:
    """A file_sd YAML file: one JSON flow line per gateway (YAML reads JSON; label values stay strings)."""
    lines = [
        f"# Prometheus file_sd targets of the gateway agents, generated by `{command}` from the registry.",
        "# Do not edit: run it again after `carbonwatch db register` (Prometheus rereads this file by itself).",
    ]
    if not groups:
        return "\n".join([*lines, "[]", ""])
    lines += [f"- {json.dumps(g, ensure_ascii=False)}" for g in groups]
    return "\n".join([*lines, ""])


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
