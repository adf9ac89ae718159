"""The whole agent against the simulators and a real Mosquitto: outages, kill -9, status and
last will, metrics, supervision, start-up errors."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from edgekit import Subscriber, assert_seqs_complete, epoch, localise_sample, sample_raw, scrape, write_site

from carbonwatch.contracts.payload import Status, decode_events, decode_telemetry
from carbonwatch.edge.agent import Agent
from carbonwatch.edge.buffer import TELEMETRY, Outbox
from carbonwatch.simulators.server import SiteSimulator

pytestmark = pytest.mark.timeout(180)


async def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def assert_each_reading_once_in_order(sub: Subscriber) -> dict[str, list[float]]:
    seen: set[tuple[str, str]] = set()
    times: dict[str, list[float]] = defaultdict(list)
    for r in sub.readings():
        key = (r["p"], r["t"])
        assert key not in seen, f"reading {key} delivered in two messages"
        seen.add(key)
        times[r["p"]].append(epoch(r["t"]))
    for point, ts in times.items():
        assert ts == sorted(ts), f"{point} arrived out of order"
    return times


def test_broker_outage_every_reading_arrives_once_in_order(tmp_path, broker, subscriber):
    site = localise_sample(
        sample_raw(),
        tmp_path,
        broker_port=broker.port,
        meters={"incomer", "pv"},
        poll_interval=0.5,
        metrics_port=0,
        publish={"batch_max_delay": 0.2, "max_inflight": 4, "drain_rate": 10},
    )
    found = {}

    async def main():
        sims = SiteSimulator(site)
        await sims.start()
        agent = Agent(site, status_interval=1.0)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            await until(lambda: len(subscriber.of("telemetry")) >= 3, 30, "telemetry before the outage")
            await asyncio.to_thread(broker.stop)
            found["outage"] = time.time()
            await until(lambda: agent.outbox.depth >= 12, 60, "a backlog during the outage")
            found["during"] = await asyncio.to_thread(scrape, agent.metrics_port)
            await asyncio.to_thread(broker.start)
            found["back"] = time.time()
            await until(lambda: agent.publisher.connected and agent.outbox.depth == 0, 60, "the backlog to drain")
            await asyncio.sleep(1.0)
            found["after"] = await asyncio.to_thread(scrape, agent.metrics_port)
        finally:
            stop.set()
            await task
            await sims.stop()
        return agent

    agent = asyncio.run(main())
    box = Outbox(site.gateways[0].buffer.path, 10**9)
    last_seq, depth = box.last_seq(TELEMETRY), box.depth
    box.close()
    assert depth == 0, "a clean stop sends what was sealed"
    subscriber.wait(lambda s: any(d["seq"] == last_seq for d in s.of("telemetry")), 30, "the last message")
    seqs = assert_seqs_complete(subscriber.of("telemetry"))
    assert seqs[-1] == last_seq
    times = assert_each_reading_once_in_order(subscriber)
    outage = [t for t in times["incomer.import_kwh"] if found["outage"] + 0.5 < t < found["back"]]
    assert len(outage) >= 4, "readings taken during the outage arrived"

    # The backlog drained at the configured rate: never more than a burst plus 10 per second.
    sent = sorted(epoch(d["sent"]) for d in subscriber.of("telemetry") if epoch(d["sent"]) >= found["back"])
    assert len(sent) >= 12
    for i, a in enumerate(sent):
        for j in range(i + 1, len(sent)):
            assert j - i + 1 <= 4 + 10 * (sent[j] - a) + 1.5, "drained faster than drain_rate"

    during, after = found["during"], found["after"]
    assert during["carbonwatch_edge_mqtt_connected"] == 0, {k: v for k, v in during.items() if "mqtt" in k}
    assert during["carbonwatch_edge_buffer_messages"] >= 12
    assert during["carbonwatch_edge_buffer_oldest_age_seconds"] > 0
    assert during["carbonwatch_edge_buffer_bytes"] > 0
    assert after["carbonwatch_edge_mqtt_connected"] == 1
    assert after["carbonwatch_edge_buffer_messages"] == 0
    assert after['carbonwatch_edge_mqtt_publishes_total{result="acked",stream="telemetry"}'] >= len(seqs) - 3
    assert after['carbonwatch_edge_modbus_requests_total{device="incomer",result="ok"}'] > 10
    assert after['carbonwatch_edge_point_reads_total{quality="good"}'] > 100
    assert after['carbonwatch_edge_device_up{device="pv"}'] == 1
    assert after['carbonwatch_edge_device_last_success_timestamp_seconds{device="pv"}'] > found["back"]
    bus = f"tcp://127.0.0.1:{site.gateways[0].meters[0].connection.port}"
    assert after[f'carbonwatch_edge_modbus_request_duration_seconds_count{{bus="{bus}"}}'] > 10
    assert after['carbonwatch_edge_mqtt_connects_total{result="failed"}'] >= 1
    assert agent.publisher.published_total >= len(seqs) - 3


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    """A carbonwatch subcommand with its output in a file (a pipe nobody reads could block it)."""
    with open(log, "a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "carbonwatch", *cmd], stdout=out, stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def _stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    return proc.returncode, proc.log.read_text()


def _wait_output(proc: subprocess.Popen, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.log.read_text():
        assert proc.poll() is None, proc.log.read_text()[-2000:]
        assert time.monotonic() < deadline, f"no {text!r} in the output"
        time.sleep(0.05)


def _status(sub: Subscriber) -> dict | None:
    docs = sub.of("status")
    return docs[-1] if docs else None


def test_agent_killed_with_sigkill_loses_nothing_and_its_will_says_offline(tmp_path, broker, subscriber):
    raw = sample_raw()
    site = localise_sample(raw, tmp_path, broker_port=broker.port, poll_interval=0.5)
    path = write_site(raw, tmp_path / "site.yaml")
    sim = _start(["simulate", "--site", str(path), "--pty"], tmp_path / "simulate.log")
    agent = None
    try:
        _wait_output(sim, "simulating 5 meters", 30)
        agent = _start(["edge", "--site", str(path)], tmp_path / "edge.log")
        subscriber.wait(lambda s: len(s.of("telemetry")) >= 6, 60, "telemetry from the first run")
        subscriber.wait(lambda s: (_status(s) or {}).get("state") == "online", 30, "online status")
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        killed = time.time()
        subscriber.wait(lambda s: (_status(s) or {}).get("state") == "offline", 30, "the last will")
        assert "devices" not in _status(subscriber), "the will is the broker's, not the agent's"
        before = len(subscriber.of("telemetry"))
        time.sleep(1.0)
        agent = _start(["edge", "--site", str(path)], tmp_path / "edge.log")
        subscriber.wait(lambda s: len(s.of("telemetry")) >= before + 6, 60, "telemetry after the restart")
        subscriber.wait(lambda s: (_status(s) or {}).get("state") == "online", 30, "online again")
        code, out = _stop(agent)
        assert code == 0, out[-2000:]
        subscriber.wait(lambda s: (_status(s) or {}).get("state") == "offline", 30, "offline on a clean stop")
    finally:
        if agent is not None and agent.poll() is None:
            _stop(agent, signal.SIGKILL)
        _stop(sim, signal.SIGINT)
    box = Outbox(site.gateways[0].buffer.path, 10**9)
    last_seq, left = box.last_seq(TELEMETRY), [m.seq for m in box.peek(0, 10**6) if m.stream == TELEMETRY]
    box.close()
    subscriber.wait(
        lambda s: any(d["seq"] == last_seq for d in s.of("telemetry")) or last_seq in left, 30, "the last message"
    )
    seqs = assert_seqs_complete(subscriber.of("telemetry"))
    assert seqs + left == list(range(1, last_seq + 1)), "every stored message arrived or is still in the outbox"
    times = assert_each_reading_once_in_order(subscriber)
    assert {p.id for _, _, p in site.iter_points()} == set(times)
    assert any(t < killed for t in times["gas.standard_volume_nm3"]) and any(
        t > killed for t in times["gas.standard_volume_nm3"]
    )
    # Everything on the wire validates against the shared payload contract.
    for doc in subscriber.of("telemetry"):
        decode_telemetry(json.dumps(doc))
    for doc in subscriber.of("events"):
        decode_events(json.dumps(doc))
    for doc in subscriber.of("status"):
        Status.model_validate(doc)
    online = [d for d in subscriber.of("status") if d["state"] == "online"]
    assert set(online[-1]["devices"]) == {"incomer", "pv", "gas", "steam", "belt"}
    assert online[-1]["buffer"]["dropped_total"] == 0


def test_a_crashed_bus_task_is_logged_counted_announced_and_restarted(tmp_path, broker, subscriber, caplog):
    site = localise_sample(sample_raw(), tmp_path, broker_port=broker.port, meters={"incomer"}, poll_interval=0.5)

    async def main():
        sims = SiteSimulator(site)
        await sims.start()
        agent = Agent(site)
        [poller] = agent.pollers
        real_poll = poller.poll
        crashes = []

        async def poll_that_crashes_once(device, *groups):
            if not crashes:
                crashes.append(device.id)
                raise RuntimeError("simulated bug in a bus task")
            await real_poll(device, *groups)

        poller.poll = poll_that_crashes_once
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            await until(lambda: crashes and agent.readings_total > 0, 30, "a poll after the crash")
        finally:
            stop.set()
            await task
            await sims.stop()
        return agent, poller

    with caplog.at_level(logging.ERROR, logger="carbonwatch.edge"):
        agent, poller = asyncio.run(main())
    crashed = [r for r in caplog.records if "crashed; restarting" in r.getMessage()]
    assert crashed and crashed[0].exc_info and "simulated bug" in str(crashed[0].exc_info[1])
    task = f"bus {poller.bus_key}"
    assert agent.metrics.task_restarts.labels(task)._value.get() == 1
    subscriber.wait(lambda s: s.of("events"), 30, "the restart event")
    [event] = [e for d in subscriber.of("events") for e in d["events"] if e["kind"] == "task_restarted"]
    assert task in event["detail"] and "simulated bug" in event["detail"]


def _edge(site_path, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "carbonwatch", "edge", "--site", str(site_path), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_start_up_errors_name_what_to_fix(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    cases = [
        ({"buffer": {"path": str(tmp_path / "a-file" / "b.sqlite")}}, (), "buffer.path"),
        ({"mqtt": {"tls": {"ca_file": str(tmp_path / "missing-ca.pem")}}}, (), "mqtt"),
        ({"mqtt": {"username": "gw", "password_file": str(tmp_path / "missing-secret")}}, (), "missing-secret"),
        ({"metrics_port": busy.getsockname()[1]}, (), "metrics_port"),
        ({}, ("--gateway", "gw-nope"), "no gateway 'gw-nope'"),
    ]
    try:
        for overrides, extra, expect in cases:
            raw = sample_raw()
            localise_sample(raw, tmp_path, meters={"incomer"})
            raw["gateways"][0].update(overrides)
            out = _edge(write_site(raw, tmp_path / "site.yaml"), *extra)
            assert out.returncode == 2, (overrides, out.stderr[-2000:])
            assert expect in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]
    finally:
        busy.close()


def test_unreachable_devices_are_reported_not_fatal(tmp_path, broker, subscriber):
    raw = sample_raw()
    localise_sample(raw, tmp_path, broker_port=broker.port, meters={"incomer", "pv"})  # nothing serves them
    proc = _start(["edge", "--site", str(write_site(raw, tmp_path / "site.yaml"))], tmp_path / "edge.log")
    try:
        subscriber.wait(
            lambda s: any(
                d["state"] == "online" and {v["state"] for v in d.get("devices", {}).values()} == {"down"}
                for d in s.of("status")
            ),
            60,
            "status naming both devices down",
        )
        assert proc.poll() is None, "the agent keeps running"

        def down(s: Subscriber) -> list[dict]:
            return [e for d in s.of("events") for e in d["events"] if e["kind"] == "device_down"]

        subscriber.wait(lambda s: {e["device"] for e in down(s)} == {"incomer", "pv"}, 30, "device_down events")
        assert all("cannot connect" in e["detail"] for e in down(subscriber))
    finally:
        code, out = _stop(proc)
    assert code == 0, out[-2000:]
    assert "cannot connect to tcp://127.0.0.1" in out


def test_the_gateway_install_stays_light():
    code = (
        "import sys, carbonwatch.cli, carbonwatch.edge.agent, carbonwatch.edge.probe, carbonwatch.simulators.server;"
        "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    loaded = set(out.stdout.split())
    assert {"pymodbus", "paho", "sqlite3"} <= loaded
    heavy = loaded & {"numpy", "numba", "psycopg", "fastapi", "uvicorn", "pandas", "aiomqtt"}
    assert not heavy, f"the edge agent imports {heavy}"


@pytest.mark.parametrize("policy", ["drop_oldest", "stop_polling"])
def test_a_full_buffer_follows_its_policy_and_says_so(tmp_path, policy):
    # No broker at all: everything stays in the outbox, which is bounded at 24 kB.
    raw = sample_raw()
    site = localise_sample(raw, tmp_path, meters={"incomer", "pv"}, poll_interval=0.2)
    gateway = site.gateways[0].model_copy(
        update={"buffer": site.gateways[0].buffer.model_copy(update={"max_bytes": 24_000, "when_full": policy})}
    )
    site = site.model_copy(update={"gateways": [gateway]})

    async def main():
        sims = SiteSimulator(site)
        await sims.start()
        agent = Agent(site)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            if policy == "drop_oldest":
                await until(lambda: agent.outbox.dropped_items_total > 200, 60, "drops at the bound")
            else:
                await until(lambda: agent.metrics.polls_skipped_full._value.get() > 5, 60, "polling to pause")
                paused_at = agent.readings_total
                await asyncio.sleep(1.0)
                assert agent.readings_total == paused_at, "no reading is taken while the buffer is full"
            assert agent.outbox.bytes <= 24_000 + 4_000  # the bound, give or take the chunk that crossed it
        finally:
            stop.set()
            await task
            await sims.stop()
        return agent

    agent = asyncio.run(main())
    box = Outbox(site.gateways[0].buffer.path, 10**9)
    try:
        box.seal(force=True)
        kinds = [e["kind"] for m in box.peek(0, 10**6) if m.stream == "events" for e in json.loads(m.payload)]
        seqs = [m.seq for m in box.peek(0, 10**6) if m.stream == TELEMETRY]
    finally:
        box.close()
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    if policy == "drop_oldest":
        assert agent.metrics.buffer_dropped._value.get() == agent.outbox.dropped_items_total > 200
        assert "buffer_dropped" in kinds
        assert seqs[0] > 1, "the oldest messages went, the newest stayed"
    else:
        assert agent.outbox.dropped_items_total == 0 and seqs[0] == 1, "nothing stored was dropped"
