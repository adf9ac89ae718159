"""Bus polling against the simulators: schedules, the circuit breaker, retries, faults, counters.

The dead-unit test is about the schedule, not speed: every healthy device must be read once in
every poll slot, never skipping one, while a unit on the same RS-485 line does not answer.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import datetime

import pytest
from edgekit import RecordingSink, localise_sample, pollers_for, sample_raw

from carbonwatch.edge.schedule import Backoff, next_aligned
from carbonwatch.simulators.server import SiteSimulator

pytestmark = pytest.mark.timeout(120)


def _epoch(t: str) -> float:
    return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


def _sample(tmp_path, meters: set[str], **meter_overrides: dict):
    raw = sample_raw()
    for m in raw["gateways"][0]["meters"]:
        m.update(meter_overrides.get(m["id"], {}))
    return localise_sample(raw, tmp_path, meters=meters)


def _count(metrics, device: str, result: str) -> float:
    return metrics.requests.labels(device, result)._value.get()


def test_dead_unit_on_an_rtu_bus_does_not_delay_the_others(tmp_path):
    # Without the circuit breaker each poll of the dead unit would cost 6 x 0.4 s = 2.4 s of a
    # 2 s slot, and its neighbours would miss slots.
    raw = sample_raw()
    raw["gateways"][0]["meters"][3].update(timeout=0.4, retries=5)
    assert raw["gateways"][0]["meters"][3]["id"] == "steam"
    site = localise_sample(raw, tmp_path, meters={"gas", "steam", "belt"}, poll_interval=2.0)
    sink = RecordingSink()
    [poller] = pollers_for(site, sink)

    async def main():
        sims = SiteSimulator(site, pty=True)
        await sims.start()
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        try:
            await asyncio.sleep(4.5)
            sims.meter("steam").faults.dead = True
            dead_at = time.time()
            await asyncio.sleep(12)
            return dead_at
        finally:
            stop.set()
            await task
            await sims.stop()

    dead_at = asyncio.run(main())
    for device, point in (("gas", "gas.standard_volume_nm3"), ("belt", "belt.total_t")):
        stamps = [_epoch(r["t"]) for r in sink.got if r["p"] == point]
        assert all(r["q"] == "good" for r in sink.got if r["p"].startswith(device + ".")), device
        slots = [int(t // 2.0) for t in stamps]
        assert slots == list(range(slots[0], slots[0] + len(slots))), f"{device} missed or repeated a slot: {slots}"
        assert len(slots) >= 8
        assert poller.metrics.slots_missed.labels(device)._value.get() == 0
    steam = poller.devices["steam"]
    assert steam.state == "down" and steam.suspect
    assert ("steam", "degraded", "down") in sink.changes
    # Probed without retries, in the bus's slack: at most one unanswered request per slot.
    timeouts = _count(poller.metrics, "steam", "timeout")
    assert 3 <= timeouts <= 12 // 2 + 1
    bad = [r for r in sink.got if r["p"].startswith("steam.") and _epoch(r["t"]) > dead_at]
    assert bad and all(r["q"] == "bad" and r["v"] is None for r in bad), "a dead unit reads bad, never stale"


def test_dead_unit_comes_back_and_is_polled_on_schedule_again(tmp_path):
    site = _sample(tmp_path, {"gas", "steam"}, steam={"timeout": 0.2})
    sink = RecordingSink()
    [poller] = pollers_for(site, sink)

    async def main():
        sims = SiteSimulator(site, pty=True)
        await sims.start()
        sims.meter("steam").faults.dead = True
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        try:
            deadline = time.monotonic() + 20
            while poller.devices["steam"].state != "down" and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            sims.meter("steam").faults.dead = False
            revived = time.time()
            while not any(r["p"] == "steam.mass_t" and r["q"] == "good" and _epoch(r["t"]) > revived for r in sink.got):
                assert time.monotonic() < deadline + 30, "steam never came back"
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await task
            await sims.stop()

    asyncio.run(main())
    assert ("steam", "down", "ok") in sink.changes
    assert not poller.devices["steam"].suspect


def test_counter_glitches_are_flagged_not_hidden(tmp_path):
    site = _sample(tmp_path, {"incomer"})
    sink = RecordingSink()
    [poller] = pollers_for(site, sink)
    device = poller.devices["incomer"]

    def kwh() -> dict:
        return [r for r in sink.got if r["p"] == "incomer.import_kwh"][-1]

    async def main():
        sims = SiteSimulator(site)
        await sims.start()
        meter = sims.meter("incomer")
        assert await poller.open()
        try:
            meter.hold("import_kwh", 5000.0)
            await poller.poll(device)
            assert kwh()["v"] == 5000.0 and kwh()["q"] == "good"
            meter.read_zero_once("import_kwh")  # a busy meter answering 0 once
            await poller.poll(device)
            assert kwh() | {"t": None} == {"p": "incomer.import_kwh", "t": None, "v": 0.0, "q": "uncertain"}
            await poller.poll(device)
            assert kwh()["v"] == 5000.0 and kwh()["q"] == "good"
            limit = meter.near_rollover("import_kwh", counts=5)
            meter.hold("import_kwh", limit - 0.05)
            await poller.poll(device)
            meter.hold("import_kwh", limit + 0.10)  # the 32-bit register wraps
            await poller.poll(device)
            assert kwh()["v"] == pytest.approx(0.10) and kwh()["q"] == "good"
            meter.hold("import_kwh", 8000.0)
            await poller.poll(device)
            meter.replace("import_kwh", 3.0)  # a new meter, counting from 3 kWh
            await poller.poll(device)
            assert kwh()["v"] == 3.0 and kwh()["q"] == "uncertain"
        finally:
            poller.close()
            await sims.stop()

    asyncio.run(main())
    # (import_total_kwh, the 64-bit mirror of the same energy, never wraps: it has its own events)
    kinds = [
        (e["kind"], e["point"], e["previous"], e["value"])
        for e in sink.got_events
        if e["point"].endswith(".import_kwh")
    ]
    assert kinds == [
        ("counter_backwards", "incomer.import_kwh", 5000.0, 0.0),
        ("counter_rollover", "incomer.import_kwh", pytest.approx(2**32 * 0.01 - 0.05), pytest.approx(0.10)),
        ("counter_backwards", "incomer.import_kwh", 8000.0, 3.0),
    ]
    assert all(e["device"] == "incomer" and e["t"] for e in sink.got_events)
    # The alerting counter follows the events, by kind
    for kind in ("counter_backwards", "counter_rollover"):
        sent = sum(e["kind"] == kind for e in sink.got_events)
        assert (
            poller.metrics.registry.get_sample_value(
                "carbonwatch_edge_counter_events_total", {"device": "incomer", "kind": kind}
            )
            == sent
            >= 1
        )


def test_timeouts_retries_exceptions_and_slow_devices(tmp_path):
    site = _sample(tmp_path, {"incomer", "pv"}, incomer={"timeout": 0.3, "retries": 2}, pv={"timeout": 0.3})
    sink = RecordingSink()
    [poller] = pollers_for(site, sink)
    incomer, pv = poller.devices["incomer"], poller.devices["pv"]

    def latest(prefix: str) -> list[dict]:
        last = {}
        for r in sink.got:
            if r["p"].startswith(prefix):
                last[r["p"]] = r
        return list(last.values())

    async def main():
        sims = SiteSimulator(site)
        await sims.start()
        assert await poller.open()
        m = poller.metrics
        try:
            pv.next_due = time.time() + 3600  # retries only happen when no one else is due soon
            sims.meter("incomer").faults.drop_next = 2  # two lost requests: the third attempt answers
            await poller.poll(incomer)
            assert all(r["q"] == "good" for r in latest("incomer."))
            assert _count(m, "incomer", "timeout") == 2 and incomer.state == "ok"

            sims.meter("pv").faults.exception_code = 2  # illegal data address
            await poller.poll(pv)
            assert all(r["q"] == "bad" and r["v"] is None for r in latest("pv."))
            assert pv.state == "degraded" and not pv.suspect, "a device that answers is alive"
            assert "exception 2" in pv.last_error and _count(m, "pv", "exception") == 2

            sims.meter("pv").faults.clear()
            sims.meter("pv").faults.delay = 0.1  # slow, but within its timeout
            await poller.poll(pv)
            assert all(r["q"] == "good" for r in latest("pv.")) and pv.state == "ok"

            sims.meter("pv").faults.delay = 0.6  # slower than its timeout: no answer
            await poller.poll(pv)
            assert pv.suspect and "no answer within 0.3s" in pv.last_error
            assert all(r["q"] == "bad" for r in latest("pv."))
            # The neighbour on the same TCP gateway keeps its connection and its answers.
            await asyncio.sleep(0.7)
            await poller.poll(incomer)
            assert all(r["q"] == "good" for r in latest("incomer.")) and poller.client.connected
        finally:
            poller.close()
            await sims.stop()

    asyncio.run(main())


def test_tcp_device_restart_reconnects_with_backoff_and_no_stale_values(tmp_path):
    site = _sample(tmp_path, {"incomer"})
    sink = RecordingSink()
    [poller] = pollers_for(site, sink)

    async def main():
        sims = SiteSimulator(site)
        await sims.start()
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        try:
            await asyncio.sleep(2.2)
            await sims.stop()  # the meter (or its TCP gateway) powers off
            off = time.time()
            await asyncio.sleep(4)
            on = time.time()
            sims = SiteSimulator(site)
            await sims.start()
            deadline = time.monotonic() + 30
            while not any(_epoch(r["t"]) > on and r["q"] == "good" for r in sink.got):
                assert time.monotonic() < deadline, "no reading after the device came back"
                await asyncio.sleep(0.1)
            return off, on
        finally:
            stop.set()
            await task
            await sims.stop()

    off, on = asyncio.run(main())
    during = [r for r in sink.got if off + 0.05 < _epoch(r["t"]) < on]
    assert all(r["q"] == "bad" for r in during), "nothing good was read while the device was off"
    assert poller.metrics.bus_connects.labels(poller.bus_key, "failed")._value.get() >= 1
    assert poller.metrics.bus_connects.labels(poller.bus_key, "ok")._value.get() >= 2
    assert poller.devices["incomer"].state == "ok"


def test_polls_are_aligned_to_the_wall_clock():
    assert next_aligned(1000.2, 15.0) == 1005.0
    assert next_aligned(1005.0, 15.0) == 1020.0
    assert next_aligned(3599.9, 900.0) == 3600.0


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    b = Backoff(1.0, 8.0)
    delays = [b.next_delay() for _ in range(8)]
    bases = [1, 2, 4, 8, 8, 8, 8, 8]
    assert all(0.5 * base <= d <= 1.5 * base for d, base in zip(delays, bases, strict=True))
    spread = defaultdict(set)
    for _ in range(20):
        spread[0].add(round(Backoff(1.0, 8.0).next_delay(), 6))
    assert len(spread[0]) > 10, "jitter: gateways do not reconnect in step"
    b.reset()
    assert b.next_delay() <= 1.5
