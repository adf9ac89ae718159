"""The simulator models against the agent's decoder, over real Modbus TCP and RTU on a socat pty.

Every channel of every model is held at a chosen value in the simulator, read by the agent's
bus poller through pymodbus and decoded; the reading must be the simulator's value. Between
them the models cover every data type, all four byte/word orders, scale and offset, coils,
discrete inputs, holding and input registers (checked here too).
"""

from __future__ import annotations

import asyncio
import math
import random
import struct
from collections import Counter as Counter_
from decimal import Decimal

import pytest
from edgekit import RecordingSink, localise_sample, pollers_for, sample_raw

from carbonwatch.contracts.site import Area, DataType, Half, Kind, order_label
from carbonwatch.simulators.meters import SimulatedMeter, apply_fault
from carbonwatch.simulators.models import MODELS, Channel, Counter, template_points
from carbonwatch.simulators.server import SiteSimulator

pytestmark = pytest.mark.timeout(120)


def test_sample_site_is_exactly_the_models_register_maps(make_site):
    site = make_site()
    meters = site.gateways[0].meters
    assert {m.simulation.model for m in meters} == set(MODELS), "the sample has one meter of each model"
    raw = {m["id"]: m for m in sample_raw()["gateways"][0]["meters"]}
    for m in meters:
        expected = template_points(MODELS[m.simulation.model], m.id, m.address_base)
        # A fuel analysis (raw coal's measured NCV and carbon content) belongs to the plant, not
        # to the meter model's register map.
        points = [{k: v for k, v in p.items() if k != "fuel"} for p in raw[m.id]["points"]]
        assert points == expected, f"{m.id} drifted from model {m.simulation.model}"


def test_models_cover_every_type_order_area_scale_and_offset():
    channels = [c for model in MODELS.values() for c in model.channels]
    assert {c.type for c in channels} == set(DataType)
    assert {c.area for c in channels} == set(Area)
    multi = [c for c in channels if c.registers == 2]
    assert {order_label(c.byte_order, c.word_order) for c in multi} == {"ABCD", "CDAB", "BADC", "DCBA"}
    wide = [c for c in channels if c.registers == 4]
    assert len({(c.byte_order, c.word_order) for c in wide}) >= 3
    assert any(c.scale != 1 for c in channels) and any(c.offset != 0 for c in channels)
    assert sum(c.kind is Kind.COUNTER for c in channels) >= 5
    # narrower than a register: several bits of one status word, both halves of a register
    bits = [c for c in channels if c.bit is not None]
    assert all(not c.area.is_bit and c.type is DataType.BOOL for c in bits)
    assert max(Counter_([(c.area, c.address) for c in bits]).values()) >= 3 and {0, 15} <= {c.bit for c in bits}
    halves = {(c.type, c.byte) for c in channels if c.byte is not None}
    assert {h for _, h in halves} == set(Half) and {t for t, _ in halves} == {DataType.INT8, DataType.UINT8}
    three = [c for c in channels if c.registers == 3]
    assert len({(c.byte_order, c.word_order) for c in three}) >= 2
    assert any(c.type is DataType.UINT48 and c.kind is Kind.COUNTER for c in three), "a 48-bit counter rolls over"
    assert any(model.texts for model in MODELS.values()), "a model name or serial number for probe's text"


def representable(c: Channel, rng: random.Random) -> float:
    """A value the channel's register holds exactly (or to float precision for 64-bit)."""
    if c.type is DataType.BOOL:
        return float(rng.randint(0, 1))
    if c.type is DataType.FLOAT32:
        return struct.unpack(">f", struct.pack(">f", rng.uniform(-1e4, 1e6) * c.scale + c.offset))[0]
    if c.type is DataType.FLOAT64:
        return rng.uniform(-1e6, 1e12)
    bits = c.type.bits
    lo, hi = (0, 2**bits - 1) if c.type.is_unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    lo, hi = max(lo, -(2**53)), min(hi, 2**53)  # engineering values are floats: exact up to 2**53
    raw = rng.choice([lo, hi, rng.randint(lo, hi), rng.randint(max(lo, -1000), min(hi, 1000))])
    return float(Decimal(raw) * Decimal(repr(c.scale)) + Decimal(repr(c.offset)))


async def _hold_all_and_poll(site, sims: SiteSimulator, rng: random.Random) -> tuple[dict, dict]:
    expected = {}
    for g in site.gateways:
        for m in g.meters:
            sim = sims.meter(m.id)
            for p in m.points:
                value = representable(sim.channel(p.id), rng)
                sim.hold(p.id, value)
                expected[p.id] = value
    sink = RecordingSink()
    for poller in pollers_for(site, sink):
        assert await poller.open(), f"cannot connect to {poller.bus_key}"
        try:
            for device in poller.devices.values():
                await poller.poll(device)
        finally:
            poller.close()
    return expected, sink.latest()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_encoding_decodes_to_the_simulators_value_over_tcp_and_rtu(make_site, seed):
    site = make_site()

    async def main():
        sims = SiteSimulator(site, pty=True)
        await sims.start()
        try:
            return await _hold_all_and_poll(site, sims, random.Random(seed))
        finally:
            await sims.stop()

    expected, got = asyncio.run(main())
    assert set(got) == set(expected)
    for point, value in expected.items():
        reading = got[point]
        assert reading["q"] == "good", reading
        assert reading["v"] is not None
        assert math.isclose(reading["v"], value, rel_tol=1e-12, abs_tol=1e-9), (point, reading["v"], value)


def test_a_wrong_word_order_in_the_site_file_reads_garbage_as_from_a_real_meter(make_site, tmp_path):
    raw = sample_raw()
    incomer = raw["gateways"][0]["meters"][0]
    kwh = next(p for p in incomer["points"] if p["id"] == "incomer.import_kwh")
    del kwh["word_order"]  # the manual says CDAB; this site file says ABCD
    site = localise_sample(raw, tmp_path, meters={"incomer"})

    async def main():
        sims = SiteSimulator(site)
        await sims.start()
        try:
            sims.meter("incomer").hold("import_kwh", 1234.56)
            sink = RecordingSink()
            [poller] = pollers_for(site, sink)
            assert await poller.open()
            await poller.poll(poller.devices["incomer"])
            poller.close()
            return sink.latest()["incomer.import_kwh"]["v"]
        finally:
            await sims.stop()

    value = asyncio.run(main())
    assert value != pytest.approx(1234.56)
    raw = (123456).to_bytes(4, "big")  # 1234.56 kWh at 0.01 kWh per count, CDAB on the wire
    assert value == pytest.approx(int.from_bytes(raw[2:] + raw[:2]) * 0.01)  # read back as ABCD


def test_counters_follow_the_load_profile_and_a_daily_register_restarts_at_beijing_midnight(make_site):
    site = make_site()
    pv = next(m for m in site.gateways[0].meters if m.id == "pv")
    clock = [(1_790_000_000 // 86400) * 86400 + 4 * 3600.0]  # 04:00 UTC is noon in Beijing
    sim = SimulatedMeter(pv, clock=lambda: clock[0])

    def advance(seconds: float) -> None:
        for _ in range(int(seconds // 60)):
            clock[0] += 60
            sim.advance()

    start = sim.value_of("generation_kwh")
    advance(3600)
    noon_hour = sim.value_of("generation_kwh") - start
    assert noon_hour == pytest.approx(400 * 1.55, rel=0.03)  # near the solar peak of base x 1.57
    advance(12 * 3600)  # 01:00 in Beijing
    night_start = sim.value_of("generation_kwh")
    advance(3600)
    assert sim.value_of("generation_kwh") == night_start  # no sun, no generation
    assert sim.value_of("daily_kwh") == 0.0  # restarted at 00:00 Beijing time
    assert isinstance(sim.channel("daily_kwh").source, Counter)


def test_fault_switches(make_site):
    site = make_site(meters={"incomer", "pv"})
    sims = SiteSimulator(site)
    apply_fault(sims.meters, "pv:dead")
    apply_fault(sims.meters, "incomer:delay=0.25")
    apply_fault(sims.meters, "incomer:zero-once=incomer.import_kwh")
    apply_fault(sims.meters, "pv:wrong-size=-1")
    assert sims.meter("pv").faults.wrong_size == -1
    limit = sims.meter("incomer").near_rollover("import_kwh", counts=5)
    assert sims.meter("pv").faults.dead and sims.meter("incomer").faults.delay == 0.25
    assert "import_kwh" in sims.meter("incomer").faults.zero_once
    assert limit == pytest.approx(2**32 * 0.01)
    assert sims.meter("incomer").value_of("import_kwh") == pytest.approx(limit - 0.05, abs=0.01)
    apply_fault(sims.meters, "incomer:replace=import_kwh")
    assert sims.meter("incomer").value_of("import_kwh") < 1
    with pytest.raises(ValueError, match="no meter 'nope'"):
        apply_fault(sims.meters, "nope:dead")
    with pytest.raises(ValueError, match="unknown kind"):
        apply_fault(sims.meters, "pv:explode")
    with pytest.raises(ValueError, match="not an unsigned integer counter"):
        apply_fault(sims.meters, "incomer:rollover=voltage_l1_v")
    with pytest.raises(ValueError, match="no channel or point"):
        apply_fault(sims.meters, "pv:zero-once=nothing")


def test_simulate_command_names_bad_fault_and_port_options(tmp_path):
    import subprocess
    import sys

    from edgekit import write_site

    raw = sample_raw()
    localise_sample(raw, tmp_path)
    site = str(write_site(raw, tmp_path / "site.yaml"))
    for extra, expect in (
        (["--fault", "gas:melt"], "--fault gas:melt: unknown kind 'melt'"),
        (["--fault", "tank:dead"], "no meter 'tank'"),
        (["--serial-port", "nothing"], "--serial-port 'nothing': write KEY=VALUE"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "carbonwatch", "simulate", "--site", site, *extra],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2 and expect in out.stderr, out.stderr


# Held values at the edges of each new encoding: bit 15 (the sign bit of the status word), the
# extremes of both 8-bit halves, the largest uint48 and the most negative int48; then the other way.
EDGES = [
    {
        "incomer.alarm_voltage_loss": 1.0,
        "incomer.alarm_reverse_power": 0.0,
        "incomer.alarm_clock_battery": 1.0,
        "incomer.tariff": 255.0,
        "incomer.internal_temperature_c": -128.0,
        "incomer.reactive_import_kvarh": (2**48 - 1) * 0.001,
        "belt.alarm_belt_slip": 0.0,
        "belt.alarm_overload": 1.0,
        "belt.load_percent": 255.0,
        "belt.net_total_t": -(2**47) * 0.001,
    },
    {
        "incomer.alarm_voltage_loss": 0.0,
        "incomer.alarm_reverse_power": 1.0,
        "incomer.alarm_clock_battery": 0.0,
        "incomer.tariff": 0.0,
        "incomer.internal_temperature_c": 127.0,
        "incomer.reactive_import_kvarh": 0.001,
        "belt.alarm_belt_slip": 1.0,
        "belt.alarm_overload": 0.0,
        "belt.load_percent": 1.0,
        "belt.net_total_t": (2**47 - 1) * 0.001,
    },
]


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_bits_bytes_and_48_bit_values_decode_to_the_simulators_value_over_tcp_and_rtu(tmp_path, transport):
    raw = sample_raw()
    meters = {m["id"]: m for m in raw["gateways"][0]["meters"]}
    incomer, belt = meters["incomer"], meters["belt"]
    # Both meters on one bus of the transport under test (unit ids 1 and 3).
    if transport == "tcp":
        belt["connection"] = dict(incomer["connection"])
    else:
        incomer["connection"] = dict(belt["connection"])
        incomer["timeout"] = "500ms"
    belt["one_request_per_point"] = True  # the status word's two bits are still one read of it
    site = localise_sample(raw, tmp_path, meters={"incomer", "belt"})

    async def main():
        sims = SiteSimulator(site, pty=transport == "rtu")
        await sims.start()
        sink = RecordingSink()
        [poller] = pollers_for(site, sink)
        assert await poller.open()
        try:
            polls = []
            for values in EDGES:
                for point, value in values.items():
                    sims.meter(point.split(".")[0]).hold(point, value)
                sink.got.clear()
                await poller.poll(poller.devices["incomer"])
                await poller.poll(poller.devices["belt"])
                polls.append(sink.latest())
            # A uint48 counter wraps at 2^48 counts: the reading after the wrap is good, with an event.
            sims.meter("incomer").hold("reactive_import_kvarh", (2**48 - 3) * 0.001)
            await poller.poll(poller.devices["incomer"])
            sink.got_events.clear()
            sims.meter("incomer").hold("reactive_import_kvarh", 0.002)
            sink.got.clear()
            await poller.poll(poller.devices["incomer"])
            wrapped = sink.latest()["incomer.reactive_import_kvarh"]
            return polls, wrapped, list(sims.meter("belt").request_log), sink.got_events
        finally:
            poller.close()
            await sims.stop()

    polls, wrapped, belt_requests, events = asyncio.run(main())
    for values, got in zip(EDGES, polls, strict=True):
        for point, value in values.items():
            assert got[point]["q"] == "good", got[point]
            assert math.isclose(got[point]["v"], value, rel_tol=1e-15, abs_tol=1e-9), (point, got[point]["v"], value)
    assert (wrapped["q"], wrapped["v"]) == ("good", 0.002)
    [event] = [e for e in events if e["point"] == "incomer.reactive_import_kvarh"]
    assert event["kind"] == "counter_rollover" and event["previous"] == pytest.approx((2**48 - 3) * 0.001)
    status_reads = [r for r in belt_requests if r.area is Area.HOLDING and r.address <= 8 < r.address + r.count]
    assert len(status_reads) == len(EDGES), "one read of the status word per poll, for both of its bits"
    assert all((r.address, r.count) == (8, 1) for r in status_reads)


def test_the_auto_model_serves_a_site_files_bits_bytes_and_48_bit_points():
    from carbonwatch.contracts.site import Meter
    from carbonwatch.edge.registers import decode_point

    meter = Meter(
        id="m",
        connection={"type": "tcp", "host": "127.0.0.1"},
        address_base=1,
        points=[
            {"id": "m.run", "address": 5, "type": "bool", "bit": 0, "unit": "state"},
            {"id": "m.trip", "address": 5, "type": "bool", "bit": 9, "unit": "state"},
            {"id": "m.mode", "address": 6, "type": "uint8", "byte": "high", "unit": "mode"},
            {"id": "m.temp", "address": 6, "type": "int8", "byte": "low", "unit": "degC"},
            {
                "id": "m.kwh",
                "address": 7,
                "type": "uint48",
                "byte_order": "little",
                "scale": 0.01,
                "unit": "kWh",
                "kind": "counter",
                "carrier": "electricity",
                "direction": "import",
            },
        ],
    )
    sim = SimulatedMeter(meter)
    held = {"m.run": 1.0, "m.trip": 1.0, "m.mode": 200.0, "m.temp": -40.0, "m.kwh": 12345678901.23}
    for point, value in held.items():
        sim.hold(point, value)
    image = sim.register_image(Area.HOLDING)
    assert sorted(image) == [4, 5, 6, 7, 8]
    assert image[4] == 1 | 1 << 9
    for p in meter.points:
        first = meter.protocol_address(p)
        raw = decode_point([image[first + i] for i in range(p.registers)], p)
        assert raw * p.scale == pytest.approx(held[p.id], rel=1e-15), p.id
    sim.hold("m.trip", 0.0)
    assert sim.register_image(Area.HOLDING, 4, 1) == {4: 1}, "the other bit of the word is untouched"
