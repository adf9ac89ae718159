"""A real scrape: Prometheus, configured from deploy/prometheus/prometheus.yml, scrapes a running
gateway agent (polling simulated meters), a collector writing PostgreSQL and the API; their metrics come
back over Prometheus' HTTP API with the targets' routing labels, and the shipped alert rules load
and evaluate without error."""

from __future__ import annotations

import asyncio

import httpx
import psycopg
import pytest
from promserver import DEPLOY_PROM, PrometheusServer, render_config

from carbonwatch.api.app import create_app
from carbonwatch.collector.registry import register_site
from carbonwatch.edge.agent import Agent
from carbonwatch.embedded import free_port
from carbonwatch.simulators.server import SiteSimulator

from support import BackgroundLoop, CollectorThread, UvicornThread, localise, site_from_file, wait_until

pytestmark = pytest.mark.timeout(180)


def test_prometheus_scrapes_agent_and_collector(db_url, broker, tmp_path):
    site = localise(site_from_file("demo-shanxi-chemical.yaml"), tmp_path, broker.port, {}, poll_interval=1.0)
    code, gateway = site.enterprise.code, site.gateways[0].id
    with psycopg.connect(db_url) as conn:
        register_site(conn, site)
    collector_port = free_port()
    with (
        CollectorThread(db_url, broker.port, metrics_port=collector_port, fleet_period=1.0) as collector,
        UvicornThread(create_app(db_url), free_port()) as api,
        BackgroundLoop() as bg,
    ):
        sim = SiteSimulator(site)
        bg.run(sim.start())
        agent = bg.call(Agent, site)
        agent.metrics_port = agent.metrics.serve(free_port(), "127.0.0.1")  # loopback only, before run()
        stop = asyncio.Event()
        done = bg.spawn(agent.run(stop))
        try:
            labels = {"province": "140000", "enterprise": code, "gateway": gateway}
            config = render_config(
                tmp_path,
                {
                    "edge": [(f"127.0.0.1:{agent.metrics_port}", labels)],
                    "collector": [(f"127.0.0.1:{collector_port}", {})],
                    "api": [(api.url.removeprefix("http://"), {})],
                },
                rule_files=[DEPLOY_PROM / "rules" / "carbonwatch.rules.yml"],
            )
            with PrometheusServer(config, tmp_path) as prom:
                try:
                    wait_until(
                        lambda: all(prom.targets_up(job) for job in ("edge", "collector", "api")), 60, what="targets up"
                    )
                    # The agent's reads, with the target's routing labels.
                    reads = wait_until(
                        lambda: prom.query("sum by (province, gateway) (carbonwatch_edge_point_reads_total) > 0"),
                        60,
                        what="point reads scraped from the agent",
                    )
                    assert reads[0]["metric"] == {"province": "140000", "gateway": gateway}
                    fresh = prom.query("time() - carbonwatch_edge_device_last_success_timestamp_seconds")
                    assert {r["metric"]["device"] for r in fresh} == {m.id for m in site.gateways[0].meters}
                    assert all(float(r["value"][1]) < 60 for r in fresh)
                    # The collector stored the agent's messages, and says so.
                    stored = wait_until(
                        lambda: prom.query('carbonwatch_collector_messages_total{outcome="stored"} > 0'),
                        60,
                        what="stored messages scraped from the collector",
                    )
                    assert float(stored[0]["value"][1]) <= collector.committed_messages
                    online = wait_until(
                        lambda: prom.query("carbonwatch_collector_gateway_online == 1"),
                        60,
                        what="the gateway online in the collector's fleet gauges",
                    )
                    assert online[0]["metric"]["gateway"] == gateway
                    assert online[0]["metric"]["province"] == "140000"
                    # The API counts its own requests (Prometheus' scrapes of /metrics among them).
                    httpx.get(f"{api.url}/api/v1/health", timeout=10)
                    served = wait_until(
                        lambda: prom.query('carbonwatch_api_requests_total{route="/api/v1/health", status="2xx"} > 0'),
                        60,
                        what="API requests scraped from the API",
                    )
                    assert served[0]["metric"]["job"] == "api"
                    # The shipped rules evaluate against real series without error.
                    groups = wait_until(
                        lambda: [
                            g for g in prom.api("rules")["groups"] if all(r.get("lastEvaluation") for r in g["rules"])
                        ],
                        30,
                        what="rule evaluation",
                    )
                    rules = [r for g in groups for r in g["rules"]]
                    assert len(rules) >= 15
                    assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
                except BaseException:
                    print(prom.log_tail())
                    raise
        finally:
            bg.loop.call_soon_threadsafe(stop.set)
            done.result(20)
            bg.run(sim.stop())
