"""Stopping a simulated meter makes its stale-meter alert fire in a real Prometheus.

The alert is the shipped CarbonwatchMeterStale rule rendered with test thresholds: the same
expression with 5 s instead of 900 s since the last successful read, and ``for: 2s`` instead
of 5 minutes (scrapes and evaluations every second). Prometheus loads the shipped rule file too,
and the test checks that the two rules it parsed differ in nothing but those two numbers, so the
fast test cannot drift from the shipped rule. Everything else is real: the simulated meter stops
answering (Faults.dead), the agent's poller fails on it while the other meter on the bus keeps
being read, Prometheus scrapes the agent and evaluates the rule.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from promserver import DEPLOY_PROM, PrometheusServer, render_config

from carbonwatch.edge.agent import Agent
from carbonwatch.embedded import free_port
from carbonwatch.simulators.server import SiteSimulator

from support import BackgroundLoop, localise, site_from_file, wait_until

pytestmark = pytest.mark.timeout(180)

STALE_AFTER = 5  # seconds, in place of 900
FOR = "2s"  # in place of 5m


SHIPPED_RULES = DEPLOY_PROM / "rules" / "carbonwatch.rules.yml"


def render_stale_rule(tmp: Path) -> tuple[Path, dict, dict]:
    """The shipped CarbonwatchMeterStale rule with the test thresholds, alone in a rule file;
    returns its path, the rendered rule and the shipped one."""
    shipped = yaml.safe_load(SHIPPED_RULES.read_text("utf-8"))
    [rule] = [r for g in shipped["groups"] for r in g["rules"] if r.get("alert") == "CarbonwatchMeterStale"]
    assert rule["expr"].count("> 900") == 1 and rule["for"] == "5m", "the shipped rule changed: update this test"
    rendered = dict(rule, expr=rule["expr"].replace("> 900", f"> {STALE_AFTER}"), **{"for": FOR})
    path = tmp / "stale.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "test-stale", "rules": [rendered]}]}, sort_keys=False))
    return path, rendered, rule


def loaded_rule(prom: PrometheusServer, group: str, name: str) -> dict:
    """A rule as Prometheus parsed it (its query printed back in canonical form)."""
    [rule] = [r for g in prom.api("rules")["groups"] if g["name"] == group for r in g["rules"] if r["name"] == name]
    return rule


def assert_same_rule_but_thresholds(tested: dict, shipped: dict) -> None:
    """What Prometheus evaluates in this test is the shipped rule, apart from 900 s and 5 minutes."""
    assert tested["query"].count(f"> {STALE_AFTER}") == 1 and shipped["query"].count("> 900") == 1
    assert tested["query"] == shipped["query"].replace("> 900", f"> {STALE_AFTER}"), (tested["query"], shipped["query"])
    assert (shipped["duration"], tested["duration"]) == (300, 2)
    assert tested["labels"] == shipped["labels"] and tested["annotations"] == shipped["annotations"]


def test_stopping_a_meter_fires_its_stale_alert(broker, tmp_path):
    rules, rule, shipped = render_stale_rule(tmp_path)
    assert {k: v for k, v in rule.items() if k not in ("expr", "for")} == {
        k: v for k, v in shipped.items() if k not in ("expr", "for")
    }
    site = localise(site_from_file("demo-shanxi-chemical.yaml"), tmp_path, broker.port, {}, poll_interval=1.0)
    meters = [m.id for m in site.gateways[0].meters]
    dead, alive = "incomer", next(m for m in meters if m != "incomer")
    with BackgroundLoop() as bg:
        sim = SiteSimulator(site)
        bg.run(sim.start())
        agent = bg.call(Agent, site)
        agent.metrics_port = agent.metrics.serve(free_port(), "127.0.0.1")  # loopback only, before run()
        stop = asyncio.Event()
        done = bg.spawn(agent.run(stop))
        # The labels `carbonwatch db targets` gives an edge target, from the registry.
        labels = {"province": "140000", "enterprise": site.enterprise.code, "gateway": site.gateways[0].id}
        target = {"edge": [(f"127.0.0.1:{agent.metrics_port}", labels)]}
        try:
            # The shipped rules load too (their 900 s cannot fire here): the parsed rules are compared.
            with PrometheusServer(render_config(tmp_path, target, [rules, SHIPPED_RULES]), tmp_path) as prom:
                try:
                    tested = loaded_rule(prom, "test-stale", "CarbonwatchMeterStale")
                    assert_same_rule_but_thresholds(tested, loaded_rule(prom, "carbonwatch-gateways", tested["name"]))
                    wait_until(
                        lambda: (
                            len(prom.query("carbonwatch_edge_device_last_success_timestamp_seconds")) == len(meters)
                        ),
                        60,
                        what="every meter read and scraped",
                    )
                    time.sleep(STALE_AFTER)  # a while of healthy reads: nothing may be pending
                    assert prom.alerts("CarbonwatchMeterStale") == []

                    bg.call(setattr, sim.meter(dead).faults, "dead", True)
                    stopped = time.time()
                    limit = STALE_AFTER + 2 + 30  # threshold + for + generous scrape/evaluation slack
                    firing = wait_until(
                        lambda: [a for a in prom.alerts("CarbonwatchMeterStale") if a["state"] == "firing"],
                        limit,
                        what="the stale-meter alert to fire",
                    )
                    print(f"stale-meter alert firing {time.time() - stopped:.1f} s after the meter stopped")
                    assert [a["labels"]["meter"] for a in firing] == [dead]
                    alert = firing[0]
                    assert alert["labels"]["severity"] == "warning" and alert["labels"]["category"] == "data"
                    assert {k: alert["labels"][k] for k in labels} == labels  # routable to the province
                    assert alert["annotations"]["runbook_url"] == "docs/operations.md#carbonwatchmeterstale"
                    # It became active only once the last successful read was older than the threshold.
                    [last] = prom.query(f'carbonwatch_edge_device_last_success_timestamp_seconds{{device="{dead}"}}')
                    active_at = datetime.fromisoformat(alert["activeAt"].replace("Z", "+00:00")).timestamp()
                    assert active_at >= float(last["value"][1]) + STALE_AFTER
                    # The other meter on the same bus is still read and not alerting.
                    assert all(a["labels"]["meter"] != alive for a in prom.alerts("CarbonwatchMeterStale"))
                    [age] = prom.query(
                        f'time() - carbonwatch_edge_device_last_success_timestamp_seconds{{device="{alive}"}}'
                    )
                    assert float(age["value"][1]) < STALE_AFTER
                except BaseException:
                    print(prom.log_tail())
                    raise
        finally:
            bg.loop.call_soon_threadsafe(stop.set)
            done.result(20)
            bg.run(sim.stop())
