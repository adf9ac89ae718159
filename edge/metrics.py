"""Prometheus metrics of the gateway agent (``metrics_port`` in the site file serves them).

Names follow the project's guide: one ``carbonwatch_`` prefix, base units, counters end in
``_total``, labels bounded by the site file (device ids, bus keys, task names). Each agent has
its own registry, so several agents can run in one process (the demo, the tests).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("carbonwatch.edge.metrics")

REQUEST_RESULTS = ("ok", "timeout", "exception", "error")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class EdgeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "carbonwatch_edge_modbus_requests_total",
            "Modbus requests by device and result (ok, timeout, exception response, error)",
            ["device", "result"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "carbonwatch_edge_modbus_request_duration_seconds",
            "Time from sending a Modbus request to its answer or timeout",
            ["bus"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.point_reads = Counter(
            "carbonwatch_edge_point_reads_total", "Point values read and stored, by quality", ["quality"], registry=r
        )
        self.device_last_success = Gauge(
            "carbonwatch_edge_device_last_success_timestamp_seconds",
            "When the device last answered a full poll (Unix time)",
            ["device"],
            registry=r,
        )
        self.device_up = Gauge(
            "carbonwatch_edge_device_up",
            "1 while the device answers, 0 while it is degraded or down",
            ["device"],
            registry=r,
        )
        self.counter_events = Counter(
            "carbonwatch_edge_counter_events_total",
            "Cumulative counters read lower than before, by kind (counter_backwards, counter_rollover)",
            ["device", "kind"],
            registry=r,
        )
        self.slots_missed = Counter(
            "carbonwatch_edge_poll_slots_missed_total",
            "Poll slots a healthy device missed because its bus was busy",
            ["device"],
            registry=r,
        )
        self.polls_skipped_full = Counter(
            "carbonwatch_edge_polls_skipped_buffer_full_total",
            "Polls not made because the buffer is full and its policy is stop_polling",
            registry=r,
        )
        self.bus_connects = Counter(
            "carbonwatch_edge_bus_connects_total",
            "Modbus connection attempts by bus and result",
            ["bus", "result"],
            registry=r,
        )
        self.buffer_messages = Gauge(
            "carbonwatch_edge_buffer_messages",
            "Messages in the outbox awaiting the broker's acknowledgement",
            registry=r,
        )
        self.buffer_pending_items = Gauge(
            "carbonwatch_edge_buffer_pending_items",
            "Readings and events stored but not yet sealed into a message",
            registry=r,
        )
        self.buffer_bytes = Gauge("carbonwatch_edge_buffer_bytes", "Payload bytes stored in the outbox", registry=r)
        self.buffer_limit_bytes = Gauge("carbonwatch_edge_buffer_limit_bytes", "The outbox's bound", registry=r)
        self.buffer_oldest_age = Gauge(
            "carbonwatch_edge_buffer_oldest_age_seconds",
            "Age of the oldest unacknowledged item (0 when empty)",
            registry=r,
        )
        self.buffer_dropped = Counter(
            "carbonwatch_edge_buffer_dropped_items_total",
            "Readings and events dropped because the outbox was full (drop_oldest)",
            registry=r,
        )
        self.publishes = Counter(
            "carbonwatch_edge_mqtt_publishes_total",
            "MQTT messages by result: acked, no_subscribers (PUBACK 16, kept and retried), "
            "rejected (negative PUBACK), lost (connection dropped first)",
            ["stream", "result"],
            registry=r,
        )
        self.no_subscribers_since = Gauge(
            "carbonwatch_edge_mqtt_no_subscribers_since_timestamp_seconds",
            "Since when the broker has answered the stream's messages 'No matching subscribers' "
            "(Unix time; 0 while they are delivered)",
            ["stream"],
            registry=r,
        )
        self.mqtt_connected = Gauge("carbonwatch_edge_mqtt_connected", "1 while connected to the broker", registry=r)
        self.mqtt_connects = Counter(
            "carbonwatch_edge_mqtt_connects_total", "Broker connection attempts by result", ["result"], registry=r
        )
        self.task_restarts = Counter(
            "carbonwatch_edge_task_restarts_total", "Agent tasks that crashed and were restarted", ["task"], registry=r
        )
        self._server = None

    def watch_buffer(self, outbox) -> None:
        """Buffer gauges read the outbox's in-memory counters at scrape time."""
        self.buffer_messages.set_function(lambda: outbox.depth)
        self.buffer_pending_items.set_function(lambda: outbox.pending_items)
        self.buffer_bytes.set_function(lambda: outbox.bytes)
        self.buffer_limit_bytes.set(outbox.max_bytes)
        self.buffer_oldest_age.set_function(_age(outbox.oldest_created))

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Serve /metrics on ``port`` (0: any free port); returns the port."""
        self._server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return self._server.server_address[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _age(oldest: Callable[[], float | None]) -> Callable[[], float]:
    def age() -> float:
        t = oldest()
        return 0.0 if t is None else max(0.0, time.time() - t)

    return age
