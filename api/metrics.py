"""Prometheus metrics of the API (``/metrics``): requests by route template and status class, latency, SSE clients.

Labels are bounded: the route template (never the raw path), the method and the status class.
Each app has its own registry, so several apps in one process (tests) do not collide.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

API_PREFIX = "/api/v1"
UNMATCHED = "unmatched"  # any path no route matched, so scanners cannot grow the label set


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "carbonwatch_api_requests",
            "HTTP requests by route template, method and status class",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "carbonwatch_api_request_seconds",
            "Time to answer a request, by route template",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.sse_clients = Gauge(
            "carbonwatch_api_sse_clients", "Open server-sent-event streams", registry=self.registry
        )
        self.sse_events = Counter(
            "carbonwatch_api_sse_events", "Updates sent to server-sent-event clients", registry=self.registry
        )


def route_template(request: Request) -> str:
    """The matched route's full template (router prefix included), or UNMATCHED."""
    route = request.scope.get("route")
    if route is None:
        return UNMATCHED
    path = route.path
    # routers are included under /api/v1; some FastAPI versions keep the route's own path unprefixed
    if request.url.path.startswith(API_PREFIX) and not path.startswith(API_PREFIX):
        path = API_PREFIX + path
    return path


def install(app: FastAPI) -> ApiMetrics:
    """Count every request and serve ``/metrics``."""
    metrics = ApiMetrics()
    app.state.metrics = metrics

    @app.middleware("http")
    async def measure(request: Request, call_next):
        t = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            template = route_template(request)
            if template != "/api/v1/stream":  # a stream's duration is its lifetime, not a latency
                metrics.latency.labels(template).observe(time.perf_counter() - t)
            metrics.requests.labels(template, request.method, f"{status // 100}xx").inc()

    @app.get("/metrics", include_in_schema=False)
    async def serve_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
