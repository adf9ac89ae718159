"""The agent's decoder against the simulator's encoder, for every type and byte/word order."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from carbonwatch.contracts.site import DataType, Half, Kind, Order, Point, order_label
from carbonwatch.edge.registers import (
    as_text,
    decimals,
    decode,
    decode_all,
    decode_bit,
    decode_byte,
    decode_point,
    set_bits,
    to_engineering,
)
from carbonwatch.simulators.meters import encode

RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}


def _point(dtype: DataType, byte_order: Order, word_order: Order, scale: float = 1.0, offset: float = 0.0) -> Point:
    return Point(
        id="p",
        address=0,
        type=dtype,
        byte_order=byte_order,
        word_order=word_order,
        scale=scale,
        offset=offset,
        unit="kWh",
        kind=Kind.GAUGE,
    )


orders = st.sampled_from(list(Order))


@given(dtype=st.sampled_from(list(RANGES)), byte_order=orders, word_order=orders, data=st.data())
def test_integers_round_trip_in_every_order(dtype, byte_order, word_order, data):
    lo, hi = RANGES[dtype]
    raw = data.draw(st.integers(lo, hi))
    p = _point(dtype, byte_order, word_order)
    regs = encode(float(raw), p) if abs(raw) < 2**52 else None
    if regs is None:  # beyond float precision the engineering round trip is not exact; test raw packing
        return
    assert len(regs) == dtype.registers and all(0 <= r <= 0xFFFF for r in regs)
    assert decode(regs, dtype, byte_order, word_order) == raw


@given(
    dtype=st.sampled_from([DataType.FLOAT32, DataType.FLOAT64]),
    byte_order=orders,
    word_order=orders,
    value=st.floats(allow_nan=False, allow_infinity=False, width=32),
)
def test_floats_round_trip_in_every_order(dtype, byte_order, word_order, value):
    p = _point(dtype, byte_order, word_order)
    assert decode(encode(value, p), dtype, byte_order, word_order) == value


@given(value=st.floats(0, 1e6), scale=st.sampled_from([0.001, 0.01, 0.1, 1.0, 10.0]), offset=st.floats(-100, 100))
def test_scale_and_offset_give_back_the_engineering_value(value, scale, offset):
    p = _point(DataType.UINT32, Order.BIG, Order.LITTLE, scale=scale, offset=offset)
    regs = encode(value + offset, p)
    got = to_engineering(decode(regs, p.type, p.byte_order, p.word_order), scale, offset)
    assert math.isclose(got, value + offset, abs_tol=scale / 2 + 1e-9)


def test_known_cdab_float_from_a_meter_manual():
    # 230.5 V as float32 is 0x43668000: ABCD registers [0x4366, 0x8000], CDAB [0x8000, 0x4366]
    assert decode([0x4366, 0x8000], DataType.FLOAT32, Order.BIG, Order.BIG) == 230.5
    assert decode([0x8000, 0x4366], DataType.FLOAT32, Order.BIG, Order.LITTLE) == 230.5
    assert decode([0x6643, 0x0080], DataType.FLOAT32, Order.LITTLE, Order.BIG) == 230.5
    assert decode([0x0080, 0x6643], DataType.FLOAT32, Order.LITTLE, Order.LITTLE) == 230.5


def test_unsigned_counter_wraps_at_register_width():
    p = _point(DataType.UINT16, Order.BIG, Order.BIG)
    assert encode(65536.0 + 7, p) == [7]


def test_decode_all_labels_every_order_once():
    found = {(t, label) for t, label, _ in decode_all([0x8000, 0x4366, 0, 0])}
    assert ("float32", "CDAB") in found and ("float32", "ABCD") in found
    assert ("float64", "ABCDEFGH") in found
    assert sum(1 for t, _ in found if t == "uint32") == 4
    assert sum(1 for t, _ in found if t == "uint16") == 2
    value = {(t, label): v for t, label, v in decode_all([0x8000, 0x4366])}
    assert value[("float32", "CDAB")] == 230.5


@given(
    raw=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([0.1, 0.01, 0.001, 1.0, 10.0]),
    offset=st.sampled_from([0, -273.15]),
)
def test_integer_registers_read_exactly_their_decimal_value(raw, scale, offset):
    from decimal import Decimal

    digits = decimals(DataType.UINT32, scale, offset)
    exact = float(Decimal(raw) * Decimal(repr(scale)) + Decimal(repr(offset)))
    assert to_engineering(raw, scale, offset, digits) == exact
    assert decimals(DataType.FLOAT32, scale, offset) is None


# --- bits, 8-bit halves, 48-bit values, text -----------------------------------------------------


def _part(dtype: DataType, **kw) -> Point:
    return Point(id="p", address=0, type=dtype, unit="state", **kw)


@given(bits=st.lists(st.booleans(), min_size=16, max_size=16), high=st.integers(0, 255), low=st.integers(-128, 127))
def test_bits_and_bytes_of_one_register_decode_to_what_the_meter_encoded(bits, high, low):
    # The simulator's encoder builds each point's share of the register; a real status word is their OR.
    bit_points = [_part(DataType.BOOL, bit=b) for b in range(16)]
    status = 0
    for p, on in zip(bit_points, bits, strict=True):
        [part] = encode(float(on), p)
        assert part & ~(1 << p.bit) == 0, "a bit point touches only its own bit"
        status |= part
    assert [decode_point([status], p) for p in bit_points] == [int(on) for on in bits]

    hi, lo = _part(DataType.UINT8, byte="high"), _part(DataType.INT8, byte="low")
    register = encode(float(high), hi)[0] | encode(float(low), lo)[0]
    assert decode_point([register], hi) == high and decode_point([register], lo) == low
    assert decode_byte(register, DataType.INT8, Half.HIGH) == (high - 256 if high >= 128 else high)


def test_known_status_word_and_byte_values():
    assert [b for b in range(16) if decode_bit(0x8009, b)] == [0, 3, 15] == set_bits(0x8009)
    assert decode_byte(0xFF80, DataType.UINT8, Half.HIGH) == 255
    assert decode_byte(0xFF80, DataType.INT8, Half.HIGH) == -1
    assert decode_byte(0xFF80, DataType.INT8, Half.LOW) == -128
    assert decode_byte(0xFF80, DataType.UINT8, Half.LOW) == 128


@given(dtype=st.sampled_from([DataType.INT48, DataType.UINT48]), byte_order=orders, word_order=orders, data=st.data())
def test_48_bit_values_round_trip_in_every_order(dtype, byte_order, word_order, data):
    lo, hi = (0, 2**48 - 1) if dtype.is_unsigned else (-(2**47), 2**47 - 1)
    raw = data.draw(st.integers(lo, hi))
    regs = encode(float(raw), _point(dtype, byte_order, word_order))
    assert len(regs) == 3 and all(0 <= r <= 0xFFFF for r in regs)
    assert decode(regs, dtype, byte_order, word_order) == raw


def test_known_48_bit_layouts():
    value = 0x0102_0304_0506
    for regs, byte_order, word_order, label in (
        ([0x0102, 0x0304, 0x0506], Order.BIG, Order.BIG, "ABCDEF"),
        ([0x0506, 0x0304, 0x0102], Order.BIG, Order.LITTLE, "EFCDAB"),
        ([0x0201, 0x0403, 0x0605], Order.LITTLE, Order.BIG, "BADCFE"),
        ([0x0605, 0x0403, 0x0201], Order.LITTLE, Order.LITTLE, "FEDCBA"),
    ):
        assert decode(regs, DataType.UINT48, byte_order, word_order) == value
        assert order_label(byte_order, word_order, 3) == label
        assert {(t, lab): v for t, lab, v in decode_all(regs)}[("uint48", label)] == value
    assert decode([0xFFFF] * 3, DataType.INT48) == -1
    assert decode([0xFFFF] * 3, DataType.UINT48) == 2**48 - 1
    assert decode([0x8000, 0, 0], DataType.INT48) == -(2**47)


def test_decode_all_adds_48_bit_orders_and_the_first_registers_bytes():
    found = {(t, label): v for t, label, v in decode_all([0xFF80, 0x0001, 0x0002])}
    assert sum(1 for t, _ in found if t == "int48") == 4 and sum(1 for t, _ in found if t == "uint48") == 4
    assert found[("int8", "high")] == -1 and found[("uint8", "low")] == 128
    assert not any(t.endswith("48") for t, _, _ in decode_all([1, 2])), "48-bit needs three registers"


def test_registers_as_text_in_both_byte_orders():
    regs = [0x4357, 0x2D33, 0x5000]  # "CW-3P\0", high byte first
    assert as_text(regs) == "CW-3P."
    assert as_text(regs, Order.LITTLE) == "WC3-.P"


def test_48_and_8_bit_counters_roll_over_at_their_width():
    from carbonwatch.contracts.payload import EventKind, Quality
    from carbonwatch.edge.counters import CounterGuard

    u48 = Point(id="c", address=0, type=DataType.UINT48, scale=0.001, unit="kvarh", kind=Kind.COUNTER)
    assert u48.rollover == 2**48 * 0.001
    assert Point(id="c", address=0, type=DataType.UINT8, byte="low", unit="n", kind=Kind.COUNTER).rollover == 256
    assert Point(id="c", address=0, type=DataType.INT48, unit="n", kind=Kind.COUNTER).rollover is None
    guard = CounterGuard()
    guard.judge(u48, u48.rollover - 5.0)
    wrapped = guard.judge(u48, 3.0)
    assert (wrapped.quality, wrapped.event) == (Quality.GOOD, EventKind.COUNTER_ROLLOVER)
    # at 2^32 x scale (a 32-bit register's width) a uint48 has not wrapped: a step back that far is suspect
    guard.judge(u48, 2**32 * 0.001 - 5.0)
    assert guard.judge(u48, 3.0).event is EventKind.COUNTER_BACKWARDS
