"""The read plan: every point read exactly once, in the fewest requests the limits allow."""

from __future__ import annotations

import math
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from carbonwatch.contracts.site import Area, DataType, Meter, Point
from carbonwatch.edge.plan import plan_reads

WIDTHS = {1: DataType.UINT16, 2: DataType.FLOAT32, 4: DataType.UINT64}


def _meter(points: list[Point], **kw) -> Meter:
    return Meter(id="m", connection={"type": "tcp", "host": "127.0.0.1"}, address_base=0, points=points, **kw)


def _points(layout: list[tuple[int, int]], area: Area = Area.HOLDING) -> list[Point]:
    """Points from (gap before it, width in registers); addresses never overlap. A negative
    width -k in a register area is k bool points on bits of one register (a status word)."""
    points, addr = [], 0
    for i, (gap, width) in enumerate(layout):
        addr += gap
        if width < 0 and not area.is_bit:
            for b in range(-width):
                points.append(Point(id=f"p{i}b{b}", area=area, address=addr, type=DataType.BOOL, bit=b, unit="state"))
            addr += 1
            continue
        dtype = DataType.BOOL if area.is_bit else WIDTHS[width]
        points.append(Point(id=f"p{i}", area=area, address=addr, type=dtype, unit="kWh"))
        addr += 1 if area.is_bit else width
    return points


def fewest_requests(points: list[Point], limit: int, max_gap: int, one_per_point: bool) -> int:
    """Exhaustive search over every way to cut the address-ordered points into requests.

    ``one_per_point`` allows only the points that read the same registers in one request
    (bits of one status word)."""
    pts = sorted(points, key=lambda p: p.address)

    def fits(i: int, j: int) -> bool:  # points i..j-1 in one request
        if one_per_point and any((p.address, p.registers) != (pts[i].address, pts[i].registers) for p in pts[i:j]):
            return False
        end = pts[i].address + pts[i].registers
        for p in pts[i + 1 : j]:
            if p.address - end > max_gap:
                return False
            end = max(end, p.address + p.registers)
        return end - pts[i].address <= limit

    @cache
    def best(i: int) -> float:
        if i == len(pts):
            return 0
        return 1 + min((best(j) for j in range(i + 1, len(pts) + 1) if fits(i, j)), default=math.inf)

    return int(best(0))


def _check_plan(meter: Meter) -> list:
    reads = plan_reads(meter)
    seen = [p.id for r in reads for p, _ in r.points]
    assert sorted(seen) == sorted(p.id for p in meter.points), "every point exactly once"
    for r in reads:
        limit = meter.max_bits_per_request if r.area.is_bit else meter.max_registers_per_request
        assert 1 <= r.count <= limit
        for p, offset in r.points:
            assert p.area is r.area
            assert r.address + offset == meter.protocol_address(p)
            assert offset + p.registers <= r.count
    return reads


layouts = st.lists(st.tuples(st.integers(0, 40), st.sampled_from([1, 2, 4, -1, -3, -16])), min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(layout=layouts, limit=st.integers(4, 125), max_gap=st.integers(0, 20), one=st.booleans())
def test_register_plan_is_the_fewest_requests(layout, limit, max_gap, one):
    meter = _meter(_points(layout), max_registers_per_request=limit, max_gap=max_gap, one_request_per_point=one)
    reads = _check_plan(meter)
    assert len(reads) == fewest_requests(meter.points, limit, max_gap, one)


@settings(max_examples=100, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 30), min_size=1, max_size=60),
    limit=st.integers(1, 2000),
    max_gap=st.integers(0, 20),
)
def test_bit_plan_is_the_fewest_requests(gaps, limit, max_gap):
    points = _points([(g, 1) for g in gaps], Area.COIL)
    meter = _meter(points, max_bits_per_request=limit, max_gap=max_gap)
    reads = _check_plan(meter)
    assert len(reads) == fewest_requests(points, limit, max_gap, False)


def test_contiguous_maps_need_the_ceiling_of_their_width_over_125():
    meter = _meter(_points([(0, 1)] * 1000))
    assert len(_check_plan(meter)) == math.ceil(1000 / 125) == 8
    # A float32 never straddles two requests: 62 floats (124 registers) fit in the first.
    reads = _check_plan(_meter(_points([(0, 2)] * 100)))
    assert [r.count for r in reads] == [124, 76]


def test_limits_can_be_lowered_per_device_and_areas_are_separate():
    points = [
        *_points([(0, 2)] * 10),
        Point(id="c0", area=Area.COIL, address=0, type=DataType.BOOL, unit="state"),
        Point(id="i0", area=Area.INPUT, address=0, type=DataType.UINT16, unit="V"),
    ]
    assert len(plan_reads(_meter(points))) == 3
    assert len(plan_reads(_meter(points, max_registers_per_request=4))) == 5 + 2
    assert len(plan_reads(_meter(points, one_request_per_point=True))) == 12


def test_address_base_one_reads_the_register_below(make_site):
    gas = next(m for m in make_site().gateways[0].meters if m.id == "gas")
    assert gas.address_base == 1
    [inputs, discrete] = plan_reads(gas)
    assert (inputs.area, inputs.address, inputs.count) == (Area.INPUT, 0, 12)  # manual 30001..30012
    assert (discrete.area, discrete.address, discrete.count) == (Area.DISCRETE, 0, 1)


def test_sample_site_plan():
    from carbonwatch.contracts.site import load_site

    from support import SITES

    site = load_site(SITES / "sample-all-models.yaml")
    counts = {m.id: len(plan_reads(m)) for m in site.gateways[0].meters}
    # one request per register area a meter uses (the models keep their gaps under max_gap)
    assert counts == {"incomer": 2, "pv": 2, "gas": 2, "steam": 1, "belt": 3}


def test_bits_of_one_register_are_one_read_even_one_request_per_point(make_site):
    incomer = next(m for m in make_site().gateways[0].meters if m.id == "incomer")
    status = {"incomer.alarm_voltage_loss", "incomer.alarm_reverse_power", "incomer.alarm_clock_battery"}
    halves = {"incomer.tariff", "incomer.internal_temperature_c"}
    [holding, _coil] = _check_plan(incomer)
    at = {p.id: holding.address + offset for p, offset in holding.points}
    assert {at[p] for p in status} == {20} and {at[p] for p in halves} == {21}
    assert at["incomer.reactive_import_kvarh"] == 22 and holding.count == 36

    one = incomer.model_copy(update={"one_request_per_point": True})
    reads = _check_plan(one)
    by_points = {frozenset(p.id for p, _ in r.points): (r.address, r.count) for r in reads}
    assert by_points[frozenset(status)] == (20, 1), "three bits of one status word: one read of it"
    assert by_points[frozenset(halves)] == (21, 1), "two bytes of one register: one read of it"
    assert by_points[frozenset({"incomer.reactive_import_kvarh"})] == (22, 3)
    # every other point still alone in its request
    assert len(reads) == len(incomer.points) - (len(status) - 1) - (len(halves) - 1)
