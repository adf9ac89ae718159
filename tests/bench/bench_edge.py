"""Edge agent throughput: point-reads/s over Modbus TCP, agent CPU and memory, request count.

Simulated meters (``carbonwatch simulate``, its own process) behind two TCP gateways, each
meter 100 points in 160 contiguous registers (float32, uint32 counters, uint16 gauges), polled
every 100 ms by the real agent (``carbonwatch edge``, its own process) through its outbox to a
private Mosquitto, where a subscriber takes every message (without one the broker answers
"no matching subscribers" and the agent keeps its messages). Measured from the agent's own
Prometheus metrics and /proc:

- merged reads (the read plan): point-reads/s, requests per meter poll against the minimum the
  125-register limit allows (ceil(160 / 125) = 2), agent CPU, peak RSS;
- baseline in the same run, on the same meters and schedule: ``one_request_per_point`` (what a
  poller without read planning does), the same figures.

Goal: >= 5,000 point-reads/s on one core with the agent under 80 MB resident, and the request
count at the minimum. Usage: ``python tests/bench/bench_edge.py [--quick]``; the last line is a
JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from carbonwatch.contracts.site import Site
from carbonwatch.edge.plan import plan_reads
from carbonwatch.embedded import LocalMosquitto, free_port, wait_port

POINTS = [("float32", 40), ("uint32", 20), ("uint16", 40)]  # 80 + 40 + 40 = 160 registers
REGISTERS = sum({"float32": 2, "uint32": 2, "uint16": 1}[t] * n for t, n in POINTS)
POLL_INTERVAL = 0.1


def site_doc(meters_per_gateway: int, gateways: int, broker_port: int, folder: Path, per_point: bool) -> dict:
    meters = []
    for g in range(gateways):
        port = free_port()
        for u in range(meters_per_gateway):
            mid = f"m{g}u{u + 1}"
            points, addr = [], 0
            for dtype, n in POINTS:
                for _ in range(n):
                    p = {"id": f"{mid}.p{len(points)}", "address": addr, "type": dtype, "unit": "kW"}
                    if dtype == "uint32":
                        p.update(unit="kWh", kind="counter", scale=0.01, word_order="little")
                    points.append(p)
                    addr += 1 if dtype == "uint16" else 2
            meters.append(
                {
                    "id": mid,
                    "connection": {"type": "tcp", "host": "127.0.0.1", "port": port},
                    "unit_id": u + 1,
                    "address_base": 0,
                    "one_request_per_point": per_point,
                    "simulation": {"profile": "flat", "base": 1000},
                    "points": points,
                }
            )
    return {
        "version": 1,
        "enterprise": {"code": "91130200MA0CW3T1X0", "name": "bench", "region": "130203", "industry": "3011"},
        "gateways": [
            {
                "id": "gw-bench",
                "poll_interval": POLL_INTERVAL,
                "metrics_port": free_port(),
                "mqtt": {"host": "127.0.0.1", "port": broker_port},
                "buffer": {"path": str(folder / f"buffer-{'point' if per_point else 'plan'}.sqlite")},
                "publish": {"batch_max_readings": 2000, "batch_max_delay": 0.5, "max_inflight": 50, "drain_rate": 1000},
                "meters": meters,
            }
        ],
    }


class Drain:
    """A subscriber that takes everything under cw/v1/# (QoS 0) and counts it: the collector's place."""

    def __init__(self, port: int) -> None:
        self.messages = 0
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-drain", protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe("cw/v1/#", qos=0)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._count
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the bench's subscriber got no SUBACK")

    def _count(self, client, userdata, msg) -> None:
        self.messages += 1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            out[s.name] = out.get(s.name, 0.0) + s.value  # summed over labels
            for k, v in s.labels.items():
                out[f"{s.name}:{k}={v}"] = out.get(f"{s.name}:{k}={v}", 0.0) + s.value
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> tuple[float, float]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def run_agent(doc: dict, folder: Path, warmup: float, duration: float) -> dict:
    path = folder / "site-agent.yaml"
    path.write_text(yaml.safe_dump(doc))
    port = doc["gateways"][0]["metrics_port"]
    log = open(folder / "edge.log", "a")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "carbonwatch", "-q", "edge", "--site", str(path)], stdout=log, stderr=log
    )
    try:
        wait_port("127.0.0.1", port, 30, proc)
        time.sleep(warmup)
        m0, c0, t0 = metrics(port), cpu_seconds(proc.pid), time.monotonic()
        time.sleep(duration)
        m1, c1, t1 = metrics(port), cpu_seconds(proc.pid), time.monotonic()
        rss, peak = rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()

    def delta(name: str) -> float:
        return m1.get(name, 0.0) - m0.get(name, 0.0)

    wall, cpu = t1 - t0, c1 - c0
    reads = delta("carbonwatch_edge_point_reads_total")
    good = delta("carbonwatch_edge_point_reads_total:quality=good")
    requests = delta("carbonwatch_edge_modbus_requests_total:result=ok")
    points_per_meter = sum(n for _, n in POINTS)
    polls = reads / points_per_meter
    return {
        "point_reads_per_s": reads / wall,
        "good_fraction": good / reads if reads else 0.0,
        "requests_per_s": requests / wall,
        "requests_per_poll": requests / polls if polls else math.nan,
        "agent_cpu_fraction": cpu / wall,
        "agent_cpu_ms_per_1000_reads": 1000 * 1000 * cpu / reads if reads else math.nan,
        "agent_rss_mb": rss,
        "agent_peak_rss_mb": peak,
        "published_messages_per_s": delta("carbonwatch_edge_mqtt_publishes_total:result=acked") / wall,
        "no_subscriber_answers": m1.get("carbonwatch_edge_mqtt_publishes_total:result=no_subscribers", 0.0),
        "missed_slots_per_s": delta("carbonwatch_edge_poll_slots_missed_total") / wall,
        "buffer_messages_at_end": m1.get("carbonwatch_edge_buffer_messages", math.nan),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small run for CI (well under a minute)")
    args = ap.parse_args()
    gateways, per_gateway = (2, 3) if args.quick else (2, 5)
    warmup, duration = (1.5, 3.0) if args.quick else (3.0, 15.0)
    meters = gateways * per_gateway
    demand = meters * sum(n for _, n in POINTS) / POLL_INTERVAL
    print(
        f"{meters} meters x {sum(n for _, n in POINTS)} points every {POLL_INTERVAL * 1000:.0f} ms on {gateways} TCP "
        f"gateways: {demand:,.0f} point-reads/s asked; {duration:g} s measured after {warmup:g} s warm-up"
    )

    with tempfile.TemporaryDirectory(prefix="cw-bench-edge-") as tmp:
        folder = Path(tmp)
        broker = LocalMosquitto(folder / "mosquitto").start()
        drain = Drain(broker.port)
        sim = None
        try:
            merged = site_doc(per_gateway, gateways, broker.port, folder, per_point=False)
            baseline = json.loads(json.dumps(merged))
            for m in baseline["gateways"][0]["meters"]:
                m["one_request_per_point"] = True
            baseline["gateways"][0]["buffer"]["path"] = str(folder / "buffer-point.sqlite")
            sim_path = folder / "site-sim.yaml"
            sim_path.write_text(yaml.safe_dump(merged))
            sim_log = open(folder / "simulate.log", "w")  # noqa: SIM115 - closed below
            sim = subprocess.Popen(
                [sys.executable, "-m", "carbonwatch", "-q", "simulate", "--site", str(sim_path)],
                stdout=sim_log,
                stderr=sim_log,
            )
            for m in merged["gateways"][0]["meters"][::per_gateway]:
                wait_port("127.0.0.1", m["connection"]["port"], 30, sim)

            site = Site.model_validate(merged)
            planned = {len(plan_reads(m)) for m in site.gateways[0].meters}
            minimum = math.ceil(REGISTERS / 125)
            results = {}
            for name, doc in (("read_plan", merged), ("one_request_per_point", baseline)):
                r = results[name] = run_agent(doc, folder, warmup, duration)
                print(
                    f"{name:>22}: {r['point_reads_per_s']:>8,.0f} point-reads/s, "
                    f"{r['requests_per_s']:>7,.0f} requests/s, "
                    f"{r['requests_per_poll']:.2f} requests/poll, agent CPU {100 * r['agent_cpu_fraction']:.0f}% "
                    f"({r['agent_cpu_ms_per_1000_reads']:.1f} ms per 1000 reads), RSS {r['agent_rss_mb']:.0f} MB "
                    f"(peak {r['agent_peak_rss_mb']:.0f}), {r['published_messages_per_s']:.1f} messages/s acked"
                )
        finally:
            if sim is not None:
                sim.send_signal(signal.SIGINT)
                sim.wait(30)
                sim_log.close()
            drain.close()
            broker.stop()

    plan, base = results["read_plan"], results["one_request_per_point"]
    capacity = plan["point_reads_per_s"] / max(plan["agent_cpu_fraction"], 1e-9)
    cpu_ratio = base["agent_cpu_ms_per_1000_reads"] / plan["agent_cpu_ms_per_1000_reads"]
    one_core = plan["point_reads_per_s"] >= 5000 and plan["agent_cpu_fraction"] <= 1.0
    summary = {
        "benchmark": "edge",
        "quick": args.quick,
        "meters": meters,
        "points_per_meter": sum(n for _, n in POINTS),
        "registers_per_meter": REGISTERS,
        "poll_interval_s": POLL_INTERVAL,
        "asked_point_reads_per_s": demand,
        "read_plan": plan,
        "one_request_per_point": base,
        "planned_requests_per_poll": sorted(planned),
        "delivered_messages": drain.messages,
        "minimum_requests_per_poll": minimum,
        "request_count_at_minimum": planned == {minimum} and abs(plan["requests_per_poll"] - minimum) < 0.05,
        "point_reads_per_s_ratio": plan["point_reads_per_s"] / base["point_reads_per_s"],
        "cpu_per_read_ratio_baseline_over_plan": cpu_ratio,
        "one_core_capacity_point_reads_per_s": capacity,
        "goal_5000_point_reads_per_s_on_one_core": one_core,
        "goal_rss_under_80_mb": plan["agent_peak_rss_mb"] < 80,
    }
    print(
        f"read plan vs one request per point: {summary['point_reads_per_s_ratio']:.1f}x point-reads/s, "
        f"{summary['cpu_per_read_ratio_baseline_over_plan']:.1f}x less agent CPU per read; "
        f"requests per poll {plan['requests_per_poll']:.2f} (minimum {minimum}); "
        f"one-core capacity about {capacity:,.0f} point-reads/s"
    )
    print(json.dumps(summary, separators=(",", ":")))


if __name__ == "__main__":
    main()
