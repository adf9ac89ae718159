"""Decoding 16-bit Modbus registers into engineering values.

A value of N registers is laid out as 2N bytes. ``word_order`` says whether the most
significant register comes first (big) or last (little); ``byte_order`` says whether each
register carries its high byte first (big, the Modbus norm) or last (little). The four
combinations for 32-bit values are the labels meter manuals use:

    ABCD  byte big,    word big      (Modbus default)
    CDAB  byte big,    word little   ("word swap", most common on meters)
    BADC  byte little, word big      ("byte swap")
    DCBA  byte little, word little
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from decimal import Decimal

from carbonwatch.contracts.site import DataType, Order, order_label

_STRUCT = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}


def registers_to_bytes(registers: Sequence[int], byte_order: Order, word_order: Order) -> bytes:
    """Big-endian byte string of the value the registers hold, undoing the device's orders."""
    regs = list(registers)
    if word_order is Order.LITTLE:
        regs.reverse()
    raw = b"".join(r.to_bytes(2, "big") for r in regs)
    if byte_order is Order.LITTLE:
        raw = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    return raw


def decode(registers: Sequence[int], dtype: DataType, byte_order: Order = Order.BIG, word_order: Order = Order.BIG):
    """Raw number (int or float) held by ``registers`` for one point; no scale applied."""
    if len(registers) != dtype.registers:
        raise ValueError(f"{dtype.value} needs {dtype.registers} registers, got {len(registers)}")
    return struct.unpack(">" + _STRUCT[dtype], registers_to_bytes(registers, byte_order, word_order))[0]


def to_engineering(raw: float | int | bool, scale: float, offset: float, digits: int | None = None) -> float:
    """``raw x scale + offset``, rounded to ``digits`` decimals when given (see :func:`decimals`)."""
    value = float(raw) * scale + offset
    return value if digits is None else round(value, digits)


def decimals(dtype: DataType, scale: float, offset: float) -> int | None:
    """Decimals that hold ``raw x scale + offset`` exactly for an integer register, so that
    2282 x 0.1 reads 228.2 and not 228.20000000000002. None for floats and odd scales."""
    if dtype.is_float or dtype is DataType.BOOL:
        return None
    places = [-Decimal(repr(float(x))).normalize().as_tuple().exponent for x in (scale, offset)]
    digits = max(0, *places)
    return digits if digits <= 12 else None


def is_plausible(value: float) -> bool:
    """False for NaN and infinities, which a float register can hold but a meter never means."""
    return math.isfinite(value)


def decode_all(registers: Sequence[int]) -> list[tuple[str, str, float | int]]:
    """Every decoding of a register window, labelled, for ``carbonwatch probe``.

    Returns (type, order label, value) for each type whose width fits the window, starting
    at the first register, for all four byte/word orders (16-bit types have two).
    """
    out: list[tuple[str, str, float | int]] = []
    for dtype in _STRUCT:
        n = dtype.registers
        if len(registers) < n:
            continue
        seen = set()
        for byte_order in (Order.BIG, Order.LITTLE):
            for word_order in (Order.BIG, Order.LITTLE):
                label = order_label(byte_order, word_order, n)
                if label in seen:
                    continue
                seen.add(label)
                out.append((dtype.value, label, decode(registers[:n], dtype, byte_order, word_order)))
    return out
