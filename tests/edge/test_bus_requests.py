"""What goes over the wire, checked at the simulated meter: per-point poll intervals, request
spacing and splitting, a device whose polling raises, late answers on an RTU line, and answers
of the wrong size.

The simulators log every request they receive (``SimulatedMeter.request_log``), so these tests
count and order requests at the far end of a real Modbus TCP connection or a socat pty; timings
are only ever asserted as lower bounds (a sleep is never shorter than asked).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections import Counter
from datetime import datetime

import pytest
from edgekit import RecordingSink, pollers_for

from carbonwatch.contracts.site import Site
from carbonwatch.embedded import free_port
from carbonwatch.simulators.server import SiteSimulator

pytestmark = pytest.mark.timeout(120)


def _epoch(t: str) -> float:
    return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


def _site(tmp_path, meters: list[dict], serial: bool = False, poll_interval: float = 1.0) -> Site:
    """A one-gateway site whose meters share one bus (TCP on a free port, or a pty)."""
    conn = (
        {"type": "serial", "port": str(tmp_path / "rtu"), "baudrate": 19200}
        if serial
        else {"type": "tcp", "host": "127.0.0.1", "port": free_port()}
    )
    for unit, m in enumerate(meters, start=1):
        m.setdefault("connection", conn)
        m.setdefault("unit_id", unit)
        m.setdefault("address_base", 0)
    raw = {
        "version": 1,
        "enterprise": {"code": "91130200MA0CW3T1X0", "name": "test", "region": "130203", "industry": "3011"},
        "gateways": [
            {
                "id": "gw",
                "poll_interval": poll_interval,
                "mqtt": {"host": "127.0.0.1", "port": 1},
                "buffer": {"path": str(tmp_path / "buffer.sqlite")},
                "meters": meters,
            }
        ],
    }
    return Site.model_validate(raw)


def _holding(mid: str, addresses, **extra) -> list[dict]:
    return [{"id": f"{mid}.h{a}", "address": a, "type": "uint16", "unit": "kW", **extra} for a in addresses]


def _hold(sims: SiteSimulator, values: dict[str, float]) -> None:
    for point, value in values.items():
        sims.meter(point.split(".")[0]).hold(point, value)


async def _run(poller, seconds: float, during=None) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    try:
        if during is None:
            await asyncio.sleep(seconds)
        else:
            await asyncio.wait_for(during(), seconds + 30)
    finally:
        stop.set()
        await task


# --- per-point poll intervals ------------------------------------------------------------------


def test_a_point_with_its_own_interval_is_read_on_its_own_grid(tmp_path):
    slow = {"id": "m.h10", "address": 10, "type": "uint16", "unit": "kW", "poll_interval": "3s"}
    site = _site(
        tmp_path, [{"id": "m", "points": [*_holding("m", [0, 1]), slow]}, {"id": "n", "points": _holding("n", [0])}]
    )
    sink = RecordingSink()
    [poller] = pollers_for(site, sink)
    device = poller.devices["m"]
    assert [(g.interval, [(r.address, r.count) for r in g.reads]) for g in device.groups] == [
        (1.0, [(0, 2)]),
        (3.0, [(10, 1)]),
    ], "one read plan per interval"

    async def main():
        sims = SiteSimulator(site)
        await sims.start()
        try:
            await _run(poller, 7.5)
        finally:
            await sims.stop()
        return list(sims.meter("m").request_log)

    log = asyncio.run(main())
    stamps = {p: [_epoch(r["t"]) for r in sink.got if r["p"] == p] for p in ("m.h0", "m.h1", "m.h10", "n.h0")}
    assert all(r["q"] == "good" for r in sink.got)
    for point, interval in (("m.h0", 1.0), ("m.h1", 1.0), ("n.h0", 1.0), ("m.h10", 3.0)):
        slots = [int(t // interval) for t in stamps[point][1:]]  # the first read is at start, off the grid
        assert slots == list(range(slots[0], slots[0] + len(slots))), f"{point} missed or repeated a slot: {slots}"
        assert len(slots) >= math.floor(7.5 / interval) - 2, (point, slots)
    assert len(stamps["m.h10"]) <= 4 < 6 <= len(stamps["m.h0"])
    # At the meter: the 3 s point's register is only asked for in its own requests, at its rate.
    asked = Counter((r.address, r.count) for r in log)
    assert set(asked) == {(0, 2), (10, 1)}
    assert asked[(10, 1)] == len(stamps["m.h10"]) and asked[(0, 2)] == len(stamps["m.h0"])


# --- request spacing and splitting -------------------------------------------------------------


@pytest.mark.parametrize("serial", [False, True], ids=["tcp", "rtu"])
def test_one_request_per_point_and_pause_between_requests_at_the_meter(tmp_path, serial):
    points = [
        {"id": "split.h0", "address": 0, "type": "uint16", "unit": "V"},
        {"id": "split.h1", "address": 1, "type": "int32", "unit": "kW"},
        {"id": "split.h3", "address": 3, "type": "float32", "unit": "A"},
        {"id": "split.h5", "address": 5, "type": "uint64", "unit": "kWh", "kind": "counter"},
    ]
    site = _site(
        tmp_path,
        [
            {"id": "merged", "points": [{**p, "id": p["id"].replace("split", "merged")} for p in points]},
            {"id": "split", "one_request_per_point": True, "points": points},
            {"id": "paced", "pause_between_requests": "150ms", "max_gap": 0, "points": _holding("paced", [0, 2, 4, 6])},
        ],
        serial=serial,
    )
    sink = RecordingSink()
    [poller] = pollers_for(site, sink)
    values = {"merged.h0": 231.0, "merged.h1": -4200.0, "merged.h3": 1.5, "merged.h5": 123456789.0}
    values |= {p.replace("merged", "split"): v for p, v in values.items()}
    values |= {f"paced.h{a}": 10.0 + a for a in (0, 2, 4, 6)}

    async def main():
        sims = SiteSimulator(site, pty=serial)
        await sims.start()
        try:
            _hold(sims, values)
            assert await poller.open()
            for _ in range(2):
                for device in poller.devices.values():
                    await poller.poll(device)
        finally:
            poller.close()
            await sims.stop()
        return {m: list(sims.meter(m).request_log) for m in ("merged", "split", "paced")}

    logs = asyncio.run(main())
    latest = sink.latest()
    assert {p: r["v"] for p, r in latest.items()} == values and all(r["q"] == "good" for r in latest.values())
    # one request for the merged meter's four points, four for the split one, each just its registers
    assert [(r.address, r.count) for r in logs["merged"]] == [(0, 9)] * 2
    assert [(r.address, r.count) for r in logs["split"]] == [(0, 1), (1, 2), (3, 2), (5, 4)] * 2
    assert poller.metrics.requests.labels("split", "ok")._value.get() == 8
    # max_gap 0: four requests, in address order, spaced at least the pause apart within a poll
    paced = logs["paced"]
    assert [(r.address, r.count) for r in paced] == [(0, 1), (2, 1), (4, 1), (6, 1)] * 2
    for poll in (paced[:4], paced[4:]):
        gaps = [b.t - a.t for a, b in itertools.pairwise(poll)]
        assert min(gaps) >= 0.15 - 0.005, gaps
    # nobody else's request went in between a paced device's requests
    merged_all = sorted(
        [(r.t, "merged") for r in logs["merged"]]
        + [(r.t, "split") for r in logs["split"]]
        + [(r.t, "paced") for r in paced]
    )
    order = [who for _, who in merged_all]
    assert order == (["merged"] + ["split"] * 4 + ["paced"] * 4) * 2


# --- a device whose polling raises -------------------------------------------------------------


def test_a_device_that_raises_does_not_starve_its_neighbours(tmp_path, caplog):
    site = _site(
        tmp_path, [{"id": "good", "points": _holding("good", [0, 1])}, {"id": "bad", "points": _holding("bad", [0])}]
    )
    # A point beyond the protocol's address range, as from a site file the validator did not see:
    # pymodbus raises ValueError before anything is sent.
    g = site.gateways[0]
    bad = g.meters[1]
    bad = bad.model_copy(update={"points": [bad.points[0].model_copy(update={"address": 70000})]})
    agent_site = site.model_copy(update={"gateways": [g.model_copy(update={"meters": [g.meters[0], bad]})]})
    sink = RecordingSink()
    [poller] = pollers_for(agent_site, sink)

    async def main():
        sims = SiteSimulator(site)
        await sims.start()
        try:
            sims.meter("good").hold("good.h0", 42.0)
            await _run(poller, 6.5)
        finally:
            await sims.stop()

    with caplog.at_level(logging.ERROR, logger="carbonwatch.edge.poller"):
        asyncio.run(main())  # the bus task never crashes: run() returns only when stopped
    good = [r for r in sink.got if r["p"] == "good.h0"]
    assert good and all(r["q"] == "good" and r["v"] == 42.0 for r in good)
    slots = [int(_epoch(r["t"])) for r in good[1:]]
    assert slots == list(range(slots[0], slots[0] + len(slots))) and len(slots) >= 4, slots
    assert poller.metrics.slots_missed.labels("good")._value.get() == 0
    bad_reads = [r for r in sink.got if r["p"] == "bad.h0"]
    assert len(bad_reads) >= 3 and all(r["q"] == "bad" and r["v"] is None for r in bad_reads)
    device = poller.devices["bad"]
    assert device.state == "down" and device.suspect, "its circuit opened"
    assert "ValueError" in device.last_error and "70000" in device.last_error
    assert ("bad", "degraded", "down") in sink.changes
    assert poller.metrics.requests.labels("bad", "error")._value.get() == len(bad_reads)
    # the probes of a device that fails at once back off: 1 s, 2 s, 4 s
    assert len(bad_reads) <= 4
    logged = [r for r in caplog.records if "ValueError" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None, "logged once, with its traceback"


# --- late answers on an RTU line ---------------------------------------------------------------


def test_late_answers_on_an_rtu_line_are_never_taken_for_other_requests(tmp_path):
    # "slow" answers in 0.2 s (its timeout is 0.3 s) but now and then takes 0.45 s. Modbus RTU
    # has no transaction id: the late answer arrives while the retry, or the next request to the
    # same unit (another register area), is waiting, and would be taken as its answer.
    # Its neighbours' 8 s interval leaves 2 s of slack, room for a retry after a late answer
    # (timeout, the wait for the answer, then the retry's own worst case).
    slow_points = _holding("slow", range(4)) + [
        {"id": f"slow.i{a}", "area": "input", "address": a, "type": "uint16", "unit": "kW"} for a in range(2)
    ]
    meters = [
        {"id": "a", "timeout": 0.3, "poll_interval": 8, "points": _holding("a", range(4))},
        {"id": "slow", "timeout": 0.3, "retries": 1, "poll_interval": 1, "points": slow_points},
        {"id": "b", "timeout": 0.3, "poll_interval": 8, "points": _holding("b", range(4))},
    ]
    site = _site(tmp_path, meters, serial=True)
    sink = RecordingSink()
    [poller] = pollers_for(site, sink)
    assert poller.settles and poller.line_quiet == 0.05
    expected = {f"{m}.h{a}": base + a for m, base in (("a", 100), ("slow", 200), ("b", 300)) for a in range(4)}
    expected |= {"slow.i0": 900.0, "slow.i1": 901.0}

    async def main():
        sims = SiteSimulator(site, pty=True)
        await sims.start()
        try:
            _hold(sims, expected)
            slow = sims.meter("slow").faults
            slow.delay = 0.2

            async def now_and_then_very_late():
                for _ in range(6):
                    slow.delay_next = [0.45]
                    await asyncio.sleep(2.0)

            await _run(poller, 12, now_and_then_very_late)
        finally:
            await sims.stop()
        return sorted((r, m) for m in ("a", "slow", "b") for r in sims.meter(m).request_log)

    log = asyncio.run(main())
    wrong = [r for r in sink.got if r["q"] != "bad" and r["v"] != expected[r["p"]]]
    assert not wrong, f"values stored as good that belong to other requests: {wrong[:4]}"
    for m in ("a", "b"):
        mine = [r for r in sink.got if r["p"].startswith(m + ".")]
        assert len(mine) >= 8 and all(r["q"] == "good" for r in mine), m
    slow_good = [r for r in sink.got if r["p"].startswith("slow.") and r["q"] == "good"]
    assert len(slow_good) >= 6 * 6, "the slow unit itself reads right most of the time"
    late = [i for i, (r, m) in enumerate(log) if m == "slow" and r.delay > 0.3]
    assert len(late) >= 4, "the test made late answers"
    # The answer came after the timeout: the next request on the line waited until it had
    # arrived and the line was quiet again, so no late answer met a waiting request.
    for i in late:
        if i + 1 < len(log):
            request, nxt = log[i][0], log[i + 1][0]
            assert nxt.t >= request.t + request.delay + poller.line_quiet - 0.01, (request, nxt)
    strays = poller.metrics.requests.labels("slow", "error")._value.get()
    assert strays == 0, "a late answer arrived while another request was waiting"


def test_a_late_answer_is_never_taken_by_a_read_of_the_same_size(tmp_path):
    # Two reads of two registers from one unit (timeout 0.3 s, normally answering in 0.2 s).
    # Read A's answer comes at 0.45 s: after its timeout, before its retry's answer. Waiting a
    # quiet 50 ms is not enough: the retry would go out at 0.37 s and take A's late answer, and
    # read B would take the retry's answer, A's values, as registers 100 and 101 with quality good.
    site = _site(
        tmp_path,
        [{"id": "slow", "timeout": 0.3, "retries": 1, "points": _holding("slow", [0, 1, 100, 101])}],
        serial=True,
    )
    sink = RecordingSink()
    [poller] = pollers_for(site, sink)
    device = poller.devices["slow"]
    assert [(r.address, r.count) for r in device.reads] == [(0, 2), (100, 2)]
    expected = {"slow.h0": 200.0, "slow.h1": 201.0, "slow.h100": 300.0, "slow.h101": 301.0}

    async def main():
        sims = SiteSimulator(site, pty=True)
        await sims.start()
        try:
            _hold(sims, expected)
            faults = sims.meter("slow").faults
            faults.delay = 0.2
            assert await poller.open()
            for _ in range(3):
                faults.delay_next = [0.45]  # read A answers late
                await poller.poll(device)
        finally:
            poller.close()
            await sims.stop()
        return list(sims.meter("slow").request_log)

    log = asyncio.run(main())
    wrong = [r for r in sink.got if r["v"] != expected[r["p"]]]
    assert not wrong, f"values stored for other registers (or bad): {wrong[:4]}"
    assert len(sink.got) == 3 * 4 and all(r["q"] == "good" for r in sink.got)
    # At the meter: A, A's retry, B in every poll; the retry went out only after A's late answer.
    assert [(r.address, r.count) for r in log] == [(0, 2), (0, 2), (100, 2)] * 3
    for a, retry in zip(log[0::3], log[1::3], strict=True):
        assert a.delay == 0.45 and retry.t >= a.t + a.delay, (a, retry)
    m = poller.metrics
    assert m.requests.labels("slow", "timeout")._value.get() == 3
    assert m.requests.labels("slow", "error")._value.get() == 0, "no answer met the wrong request"
    assert device.state == "ok"


def test_a_dead_unit_is_waited_for_one_timeout_of_quiet_line(tmp_path):
    # The unit answers nothing: after its timeout the next request on the line waits a full
    # timeout more for an answer that might still come, then goes.
    site = _site(
        tmp_path,
        [{"id": "dead", "timeout": 0.3, "points": _holding("dead", [0])}, {"id": "ok", "points": _holding("ok", [0])}],
        serial=True,
    )
    sink = RecordingSink()
    [poller] = pollers_for(site, sink)

    async def main():
        sims = SiteSimulator(site, pty=True)
        await sims.start()
        try:
            sims.meter("dead").faults.dead = True
            assert await poller.open()
            await poller.poll(poller.devices["dead"])
            await poller.poll(poller.devices["ok"])
        finally:
            poller.close()
            await sims.stop()
        return sims.meter("dead").request_log[0], sims.meter("ok").request_log[0]

    dead, ok = asyncio.run(main())
    assert ok.t >= dead.t + 2 * 0.3, (dead, ok)
    assert sink.latest()["ok.h0"]["q"] == "good" and poller.devices["dead"].suspect


# --- answers of the wrong size -----------------------------------------------------------------


@pytest.mark.parametrize("serial", [False, True], ids=["tcp", "rtu"])
def test_an_answer_of_the_wrong_size(tmp_path, serial):
    # "short" answers one register fewer than asked; "padded" answers coils with a byte more.
    # Over TCP the transaction id matched: a quirk of the device, an error for that read only.
    # Over RTU the size is what tells a late answer to another read: a stray frame, no answer.
    coils = [{"id": f"padded.c{a}", "area": "coil", "address": a, "type": "bool", "unit": "1"} for a in range(3)]
    site = _site(
        tmp_path,
        [
            {"id": "short", "max_gap": 0, "timeout": 0.3, "points": _holding("short", [0, 1, 100])},
            {"id": "padded", "timeout": 0.3, "points": coils},
        ],
        serial=serial,
    )
    sink = RecordingSink()
    [poller] = pollers_for(site, sink)
    short, padded = poller.devices["short"], poller.devices["padded"]
    assert [(r.address, r.count) for r in short.reads] == [(0, 2), (100, 1)]

    async def main():
        sims = SiteSimulator(site, pty=serial)
        await sims.start()
        try:
            _hold(sims, {"short.h0": 7.0, "short.h1": 8.0, "short.h100": 9.0})
            _hold(sims, {"padded.c0": 1.0, "padded.c1": 0.0, "padded.c2": 1.0})
            sims.meter("short").faults.wrong_size = -1
            sims.meter("padded").faults.wrong_size = 1
            assert await poller.open()
            await poller.poll(short)
            await poller.poll(padded)
        finally:
            poller.close()
            await sims.stop()

    asyncio.run(main())
    got = {p: (r["v"], r["q"]) for p, r in sink.latest().items()}
    errors = poller.metrics.requests.labels("short", "error")._value.get()
    if not serial:
        assert got["short.h0"] == got["short.h1"] == (None, "bad")
        # 100+1 answered with no register at all: that read's error too
        assert got["short.h100"] == (None, "bad") and errors == 2
        assert short.state == "degraded" and not short.suspect, "an answering device stays on its schedule"
        assert "1 values in an answer to a request for 2" in short.last_error
        # coils padded with a byte more than the request's: accepted, the first three are the values
        assert [got[f"padded.c{a}"] for a in range(3)] == [(1.0, "good"), (0.0, "good"), (1.0, "good")]
        assert padded.state == "ok" and not padded.suspect
    else:
        assert all(q == "bad" for _, q in got.values())
        assert short.suspect and padded.suspect and "late answer" in short.last_error
        assert errors == 1  # the first stray frame: no retries, the rest of the poll reads bad
