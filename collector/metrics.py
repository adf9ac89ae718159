"""Prometheus metrics of one collector.

Each collector owns a registry (two collectors in one process, as in the tests, keep separate
counts); ``carbonwatch collector --metrics-port`` serves it. Labels are bounded: message
outcome and dead-letter reason come from fixed sets.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from carbonwatch.accounting.flags import FLAG_BACKWARDS, FLAG_RESET, FLAG_ROLLOVER, FLAG_SPIKE

from .validate import REASONS

OUTCOMES = ("stored", "dead_letter")
COUNTER_FLAGS = {"rollover": FLAG_ROLLOVER, "backwards": FLAG_BACKWARDS, "reset": FLAG_RESET, "spike": FLAG_SPIKE}
HEALTH_OUTCOMES = ("status", "events", "dead_letter")
_LAG_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400, 183 * 86400)


class CollectorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        p = "carbonwatch_collector_"
        self.messages = Counter(p + "messages_total", "Messages committed, by outcome", ["outcome"], registry=r)
        self.dead_letters = Counter(p + "dead_letters_total", "Messages refused, by reason", ["reason"], registry=r)
        self.readings = Counter(p + "readings_total", "Readings in stored messages (duplicates included)", registry=r)
        self.rows_written = Counter(p + "rows_written_total", "Reading rows inserted (new)", registry=r)
        self.batch_readings = Histogram(
            p + "batch_readings",
            "Readings per committed batch",
            buckets=(1, 10, 100, 1000, 5000, 10_000, 20_000, 50_000, 100_000),
            registry=r,
        )
        self.commit_seconds = Histogram(
            p + "commit_duration_seconds",
            "Time to write and commit one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.lag_seconds = Histogram(
            p + "reading_lag_seconds",
            "Commit time minus reading time of the newest reading of each stored message",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.lag_last = Gauge(p + "lag_seconds", "Commit time minus newest reading time, last batch", registry=r)
        self.last_commit = Gauge(p + "last_commit_timestamp_seconds", "Unix time of the last commit", registry=r)
        self.unacked = Gauge(p + "unacked_messages", "Messages received and not yet acknowledged", registry=r)
        self.database_up = Gauge(p + "database_up", "1 when the last database write succeeded", registry=r)
        self.database_errors = Counter(p + "database_errors_total", "Failed batch writes (retried)", registry=r)
        self.broker_connected = Gauge(p + "broker_connected", "1 while connected to the broker", registry=r)
        self.interval_backlog = Gauge(
            p + "interval_backlog_spans", "Counter spans waiting for the interval builder", registry=r
        )
        self.intervals_written = Counter(p + "intervals_written_total", "15-minute intervals (re)written", registry=r)
        self.interval_failures = Counter(
            p + "interval_failures_total", "Points whose intervals failed to build (retried later)", registry=r
        )
        self.flagged_intervals = Counter(
            p + "flagged_intervals_total",
            "15-minute intervals written with a counter flag, by flag (a rewritten interval counts again)",
            ["flag"],
            registry=r,
        )
        # Per-gateway gauges from the database (collector/fleet.py): every collector exports the
        # same values, so rules take max by gateway. Bounded by the registry, not by readings.
        gw = ["province", "enterprise", "gateway"]
        self.gateway_online = Gauge(
            p + "gateway_online", "1 when the gateway's last status says online, 0 after its last will", gw, registry=r
        )
        self.gateway_status_time = Gauge(
            p + "gateway_status_timestamp_seconds", "Unix time the gateway's last status arrived", gw, registry=r
        )
        self.gateway_completeness = Gauge(
            p + "gateway_completeness_ratio",
            "15-minute values received / expected over the last 24 h, all active points of the gateway",
            gw,
            registry=r,
        )
        self.gateway_expected = Gauge(
            p + "gateway_expected_values", "15-minute values expected over the last 24 h", gw, registry=r
        )
        self.meter_last_success = Gauge(
            p + "meter_last_success_timestamp_seconds",
            "When the meter last answered a full poll, as its gateway's status reported it",
            [*gw, "meter"],
            registry=r,
        )
        self.health_messages = Counter(
            p + "health_messages_total", "Status and events messages handled, by outcome", ["outcome"], registry=r
        )
        for outcome in HEALTH_OUTCOMES:
            self.health_messages.labels(outcome)
        for outcome in OUTCOMES:
            self.messages.labels(outcome)
        for reason in REASONS:
            self.dead_letters.labels(reason)
        for flag in COUNTER_FLAGS:
            self.flagged_intervals.labels(flag)

    def serve(self, port: int, addr: str = "127.0.0.1"):
        """Serve /metrics on ``addr:port``; returns the HTTP server (call ``shutdown()`` to stop)."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server
