"""PUBACK 16, "No matching subscribers": the broker took the message and gave it to nobody.

It is what a private Mosquitto answers while no collector subscribes, and what Mosquitto 2.0
answers after a restart until the collectors make their shared subscriptions again (it does
not restore them from persistent sessions). Such a message is not delivered: it must stay in
the outbox, in order, and go when a subscriber is back.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from edgekit import Subscriber, assert_seqs_complete, epoch, localise_sample, sample_raw

from carbonwatch.edge.agent import Agent
from carbonwatch.edge.buffer import EVENTS, TELEMETRY, Outbox
from carbonwatch.edge.metrics import EdgeMetrics
from carbonwatch.edge.publisher import Publisher
from carbonwatch.simulators.server import SiteSimulator

pytestmark = pytest.mark.timeout(180)

SHARED = "$share/collectors/cw/v1/#"


async def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def _site(tmp_path, broker):
    return localise_sample(
        sample_raw(),
        tmp_path,
        broker_port=broker.port,
        meters={"incomer", "pv"},
        poll_interval=0.5,
        publish={"batch_max_delay": 0.2, "max_inflight": 4, "drain_rate": 50},
    )


def _count(agent: Agent, result: str, stream: str = TELEMETRY) -> float:
    return agent.metrics.publishes.labels(stream, result)._value.get()


async def _kept_seqs(agent: Agent) -> list[int]:
    return [m.seq for m in await agent.outbox.apeek(0, 10**6) if m.stream == TELEMETRY]


def _readings_once_in_order(docs: list[dict]) -> dict[str, list[float]]:
    seen: set[tuple[str, str]] = set()
    times: dict[str, list[float]] = {}
    for doc in docs:
        for r in doc["readings"]:
            key = (r["p"], r["t"])
            assert key not in seen, f"reading {key} delivered twice"
            seen.add(key)
            times.setdefault(r["p"], []).append(epoch(r["t"]))
    for point, ts in times.items():
        assert ts == sorted(ts), f"{point} arrived out of order"
    return times


def test_messages_nobody_subscribes_to_wait_for_a_shared_subscriber(tmp_path, broker):
    site = _site(tmp_path, broker)
    found: dict = {}

    async def main():
        sims = SiteSimulator(site)
        await sims.start()
        agent = Agent(site, status_interval=1.0)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        sub = None
        try:
            # Nobody subscribes: every message is answered 16 and stays in the outbox.
            await until(lambda: _count(agent, "no_subscribers") >= 3, 60, "'no matching subscribers' answers")
            await until(lambda: agent.outbox.depth >= 8, 60, "a backlog nobody took")
            found["since"] = agent.publisher.no_subscribers_since(TELEMETRY)
            found["kept"] = await _kept_seqs(agent)
            found["acked_before"] = _count(agent, "acked")
            found["gauge_before"] = agent.metrics.no_subscribers_since.labels(TELEMETRY)._value.get()
            # A collector with a shared subscription appears.
            sub = await asyncio.to_thread(Subscriber, broker.port, SHARED)
            found["subscribed"] = time.time()
            await until(lambda: agent.publisher.no_subscribers_since(TELEMETRY) is None, 60, "the hold to end")
            await until(lambda: agent.outbox.depth == 0, 60, "the backlog to drain")
            await asyncio.sleep(1.0)
            found["gauge_after"] = agent.metrics.no_subscribers_since.labels(TELEMETRY)._value.get()
        finally:
            stop.set()
            await task
            await sims.stop()
        return agent, sub

    agent, sub = asyncio.run(main())
    try:
        assert found["since"] is not None and found["since"] <= found["subscribed"]
        assert found["gauge_before"] == pytest.approx(found["since"]) and found["gauge_after"] == 0
        assert found["acked_before"] == 0, "nothing counts as delivered while nobody subscribes"
        kept = found["kept"]
        assert kept == list(range(1, len(kept) + 1)) and len(kept) >= 8, f"the outbox released messages: {kept}"
        sub.wait(lambda s: s.of("telemetry") and s.of("telemetry")[-1]["seq"] >= kept[-1], 30, "the kept messages")
        time.sleep(0.5)
        docs = sub.of("telemetry")
        seqs = [d["seq"] for d in docs]
        assert len(seqs) == len(set(seqs)), f"a message arrived twice: {seqs}"
        assert seqs == list(range(1, len(seqs) + 1)), f"gap or disorder: {seqs}"
        assert len(seqs) >= len(kept)
        times = _readings_once_in_order(docs)
        early = [t for t in times["incomer.import_kwh"] if t < found["subscribed"] - 1.0]
        assert len(early) >= 4, "readings taken before anybody subscribed arrived"
        assert _count(agent, "no_subscribers") >= 3 and _count(agent, "acked") >= len(seqs)
    finally:
        sub.close()


def test_broker_restart_with_the_collector_back_later_than_the_agent(tmp_path, broker):
    site = _site(tmp_path, broker)
    sub = Subscriber(broker.port, SHARED)  # persistent session: Mosquitto forgets its shared subscription
    found: dict = {}

    async def main():
        sims = SiteSimulator(site)
        await sims.start()
        agent = Agent(site, status_interval=1.0)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            await until(lambda: len(sub.of("telemetry")) >= 4, 60, "telemetry before the restart")
            await asyncio.to_thread(broker.stop)
            sub.pause()  # the collector is slower to come back than the agent
            found["down"] = time.time()
            await asyncio.sleep(1.0)
            await asyncio.to_thread(broker.start)
            await until(lambda: agent.publisher.connected, 60, "the agent to reconnect")
            await until(lambda: _count(agent, "no_subscribers") >= 1, 60, "'no matching subscribers' after the restart")
            acked = _count(agent, "acked")
            await asyncio.sleep(3.0)
            found["acked_while_away"] = _count(agent, "acked") - acked
            found["kept"] = await _kept_seqs(agent)
            await asyncio.to_thread(sub.resume)
            found["back"] = time.time()
            await until(lambda: agent.publisher.no_subscribers_since(TELEMETRY) is None, 60, "the hold to end")
            await until(lambda: agent.outbox.depth == 0, 60, "the backlog to drain")
        finally:
            stop.set()
            await task
            await sims.stop()
        return agent

    try:
        asyncio.run(main())
        kept = found["kept"]
        assert found["acked_while_away"] == 0, "nothing was counted delivered while the collector was away"
        assert len(kept) >= 4 and kept == list(range(kept[0], kept[0] + len(kept))), kept
        sub.wait(lambda s: any(d["seq"] >= kept[-1] for d in s.of("telemetry")), 30, "the kept messages")
        time.sleep(0.5)
        seqs = assert_seqs_complete(sub.of("telemetry"))
        assert set(kept) <= set(seqs)
        firsts: dict[int, dict] = {}
        for doc in sub.of("telemetry"):
            firsts.setdefault(doc["seq"], doc)
        times = _readings_once_in_order([firsts[s] for s in seqs])
        away = [t for t in times["incomer.import_kwh"] if found["down"] < t < found["back"]]
        assert len(away) >= 4, "readings taken while the collector was away arrived"
    finally:
        sub.close()


def test_a_hold_ends_when_drop_oldest_leaves_nothing_of_its_stream(tmp_path, broker):
    # Events have no subscriber and are held; telemetry is delivered. Telemetry fills the
    # bounded outbox and drop_oldest deletes the one kept event: nothing of the events stream
    # waits for a subscriber any more, so its gauge must not go on saying "nobody since ...".
    sub = Subscriber(broker.port, "cw/v1/+/+/telemetry")
    site = localise_sample(sample_raw(), tmp_path, broker_port=broker.port, meters={"incomer"})
    event = b'[{"kind":"device_down","t":"2026-12-01T00:00:00.000Z","device":"incomer"}]'
    reading = b'{"p":"incomer.import_kwh","t":"2026-12-01T00:00:00.000Z","v":1234.5,"q":"good"}'
    telemetry = b"[" + b",".join([reading] * 30) + b"]"
    # Room for the telemetry, not for both: storing it drops the oldest message, the event.
    outbox = Outbox(tmp_path / "outbox.sqlite", len(event) + len(telemetry) - 1, batch_max_items=1, batch_max_age=0)
    metrics = EdgeMetrics()
    publisher = Publisher(site.enterprise.code, site.gateways[0], outbox, lambda: b"{}", metrics, status_interval=1.0)
    found: dict = {}

    async def main():
        stop = asyncio.Event()
        task = asyncio.create_task(publisher.run(stop))
        try:
            await outbox.aadd(EVENTS, event, 1)
            publisher.wakeup.set()
            await until(lambda: publisher.no_subscribers_since(EVENTS) is not None, 30, "the events stream held")
            found["gauge_held"] = metrics.no_subscribers_since.labels(EVENTS)._value.get()
            await outbox.aadd(TELEMETRY, telemetry, 30)
            publisher.wakeup.set()
            found["dropped"] = outbox.dropped_messages_total
            found["events_left"] = outbox.has(EVENTS)
            await until(lambda: outbox.depth == 0, 30, "the telemetry delivered")
            await until(lambda: publisher.no_subscribers_since(EVENTS) is None, 10, "the hold of the events to end")
            found["gauge_after"] = metrics.no_subscribers_since.labels(EVENTS)._value.get()
        finally:
            stop.set()
            await task

    try:
        asyncio.run(main())
        assert found["gauge_held"] > 0 and found["dropped"] == 1 and not found["events_left"]
        assert found["gauge_after"] == 0
        sub.wait(lambda s: s.of("telemetry"), 10, "the telemetry")
        assert metrics.publishes.labels(EVENTS, "acked")._value.get() == 0, "the event was never delivered"
    finally:
        sub.close()
        outbox.close()
