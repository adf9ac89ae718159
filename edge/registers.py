"""Decoding 16-bit Modbus registers into engineering values.

A value of N registers is laid out as 2N bytes. ``word_order`` says whether the most
significant register comes first (big) or last (little); ``byte_order`` says whether each
register carries its high byte first (big, the Modbus norm) or last (little). The four
combinations for 32-bit values are the labels meter manuals use:

    ABCD  byte big,    word big      (Modbus default)
    CDAB  byte big,    word little   ("word swap", most common on meters)
    BADC  byte little, word big      ("byte swap")
    DCBA  byte little, word little

48-bit values (three registers) follow the same rules: ABCDEF, EFCDAB, BADCFE, FEDCBA.

Narrower than a register: a ``bool`` with ``bit`` is one bit of a register's value as read
(bit 0 the least significant, ``value >> bit & 1``), and an ``int8``/``uint8`` with ``byte`` is
its high (bits 15..8) or low (bits 7..0) half. Strings are not decoded here: readings are
numbers (``carbonwatch probe`` prints registers as text to find a serial number).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from decimal import Decimal

from carbonwatch.contracts.site import EIGHT_BIT, DataType, Half, Order, Point, order_label

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
_WIDE = (DataType.INT48, DataType.UINT48)  # no struct code: read as a big-endian integer of 6 bytes
# Whole-register types in the order ``carbonwatch probe`` prints them.
NUMERIC = (
    DataType.INT16,
    DataType.UINT16,
    DataType.INT32,
    DataType.UINT32,
    DataType.INT48,
    DataType.UINT48,
    DataType.INT64,
    DataType.UINT64,
    DataType.FLOAT32,
    DataType.FLOAT64,
)


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
    """Raw number (int or float) held by ``registers`` for a whole-register type; no scale applied."""
    if dtype not in _STRUCT and dtype not in _WIDE:
        raise ValueError(f"{dtype.value} is part of a register: decode it with decode_bit or decode_byte")
    if len(registers) != dtype.registers:
        raise ValueError(f"{dtype.value} needs {dtype.registers} registers, got {len(registers)}")
    raw = registers_to_bytes(registers, byte_order, word_order)
    if dtype in _WIDE:
        return int.from_bytes(raw, "big", signed=not dtype.is_unsigned)
    return struct.unpack(">" + _STRUCT[dtype], raw)[0]


def decode_bit(register: int, bit: int) -> int:
    """Bit ``bit`` (0 = least significant) of a register's value as read: 0 or 1."""
    if not 0 <= bit <= 15:
        raise ValueError(f"bit {bit} is not in 0..15")
    return (register >> bit) & 1


def decode_byte(register: int, dtype: DataType, half: Half) -> int:
    """The high (bits 15..8) or low (bits 7..0) byte of a register as ``int8`` or ``uint8``."""
    if dtype not in EIGHT_BIT:
        raise ValueError(f"{dtype.value} is not an 8-bit type")
    n = (register >> 8) & 0xFF if half is Half.HIGH else register & 0xFF
    return n - 256 if dtype is DataType.INT8 and n >= 128 else n


def decode_point(registers: Sequence[int], point: Point):
    """Raw number held by a register-area point's registers: its bit, its byte or its whole value."""
    if point.bit is not None:
        return decode_bit(registers[0], point.bit)
    if point.byte is not None:
        return decode_byte(registers[0], point.type, point.byte)
    return decode(registers, point.type, point.byte_order, point.word_order)


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

    Returns (type, label, value) for each type whose width fits the window, starting at the
    first register: whole-register types in all four byte/word orders (16-bit types have two),
    labelled ABCD/CDAB/BADC/DCBA, then the first register's two bytes as ``uint8``/``int8``,
    labelled ``high``/``low``.
    """
    out: list[tuple[str, str, float | int]] = []
    for dtype in NUMERIC:
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
    if registers:
        for dtype in (DataType.UINT8, DataType.INT8):
            for half in Half:
                out.append((dtype.value, half.value, decode_byte(registers[0], dtype, half)))
    return out


def set_bits(register: int) -> list[int]:
    """The bits (0 = least significant) set in a register's value, for ``carbonwatch probe``."""
    return [b for b in range(16) if register >> b & 1]


def as_text(registers: Sequence[int], byte_order: Order = Order.BIG) -> str:
    """The registers as ASCII, two characters each (high byte first unless ``byte_order`` is
    little); anything not printable shows as ``.``. For finding serial numbers and model names
    with ``carbonwatch probe``: strings are never readings."""
    raw = registers_to_bytes(registers, byte_order, Order.BIG)
    return "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in raw)
