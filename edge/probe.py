"""``carbonwatch probe``: read raw registers from an unknown meter and print every decoding.

Word order and off-by-one addresses are the commonest trouble when mapping a new meter. The
probe reads a window of registers once and prints each register (hex, uint16, int16, its two
bytes, as two characters of text, the bits set in it), the window as text in both byte orders
(a serial number or model name), then, for each start address, every type in every byte/word
order, labelled ABCD/CDAB/BADC/DCBA (ABCDEF... for 48-bit, high/low for 8-bit halves) with the
``byte_order``/``word_order``/``byte``/``bit`` to copy into the site file, so the user can spot
the value the meter's display shows. Over Modbus TCP (``--host``) or RTU on a serial port
(``--serial``); coils and discrete inputs print their bits.
"""

from __future__ import annotations

import argparse
import asyncio

from pymodbus.exceptions import ModbusException

from carbonwatch.contracts.site import Order, SerialConnection, TcpConnection

from .poller import make_client
from .registers import as_text, decode_all, set_bits

_ORDERS = {
    "AB": "byte_order: big",
    "BA": "byte_order: little",
    "ABCD": "byte_order: big,    word_order: big",
    "CDAB": "byte_order: big,    word_order: little",
    "BADC": "byte_order: little, word_order: big",
    "DCBA": "byte_order: little, word_order: little",
    "ABCDEF": "byte_order: big,    word_order: big",
    "EFCDAB": "byte_order: big,    word_order: little",
    "BADCFE": "byte_order: little, word_order: big",
    "FEDCBA": "byte_order: little, word_order: little",
    "ABCDEFGH": "byte_order: big,    word_order: big",
    "GHEFCDAB": "byte_order: big,    word_order: little",
    "BADCFEHG": "byte_order: little, word_order: big",
    "HGFEDCBA": "byte_order: little, word_order: little",
    "high": "byte: high",
    "low": "byte: low",
}


def _bits(register: int) -> str:
    return ",".join(str(b) for b in set_bits(register)) or "-"


def format_decodings(start: int, registers: list[int]) -> str:
    lines = [
        f"raw registers from protocol address {start} ({len(registers)}):",
        "                 hex  uint16   int16  high  low  text  bits set (0 = least significant)",
    ]
    for i, r in enumerate(registers):
        int16 = r - 65536 if r >= 32768 else r
        lines.append(
            f"  [{start + i}]".ljust(14)
            + f"0x{r:04X}  {r:6d}  {int16:6d}  {r >> 8:4d} {r & 0xFF:4d}  {as_text([r])!s:<4}  {_bits(r)}"
        )
    if registers:
        lines.append("\nas text (a serial number or model name; strings are not readings, see docs/edge.md):")
        lines.append(f'  high byte first (byte_order: big):    "{as_text(registers, Order.BIG)}"')
        lines.append(f'  low byte first  (byte_order: little): "{as_text(registers, Order.LITTLE)}"')
    for offset in range(len(registers)):
        lines.append(f"\nvalue starting at address {start + offset} (address_base 0; {start + offset + 1} if 1-based):")
        for dtype, label, value in decode_all(registers[offset:]):
            shown = f"{value:.9g}" if isinstance(value, float) else str(value)
            lines.append(f"  {dtype:<8} {label:<8} {shown:>26}   type: {dtype}, {_ORDERS[label]}")
        lines.append(
            f"  {'bool':<8} {'bits':<8} {_bits(registers[offset]):>26}   type: bool, bit: N"
            "   (each set bit N, 0 = least significant, is a point of its own)"
        )
    return "\n".join(lines)


def format_bits(start: int, bits: list[bool]) -> str:
    lines = [f"bits from protocol address {start} ({len(bits)}):"]
    lines += [f"  [{start + i}] {int(b)}" for i, b in enumerate(bits)]
    return "\n".join(lines)


def _connection(args: argparse.Namespace) -> TcpConnection | SerialConnection:
    if args.serial:
        return SerialConnection(
            port=args.serial,
            baudrate=args.baudrate,
            parity=args.parity,
            stopbits=args.stopbits,
            framer=args.framer or "rtu",
        )
    if args.host:
        return TcpConnection(host=args.host, port=args.port, framer=args.framer or "socket")
    raise ValueError("give --host (Modbus TCP) or --serial DEVICE (Modbus RTU)")


async def read_window(args: argparse.Namespace) -> list[int] | list[bool]:
    conn = _connection(args)
    client = make_client(conn, args.timeout)
    if not await client.connect():
        raise ConnectionError(f"cannot connect to {conn.bus_key}")
    try:
        fn = {
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
        }[args.area]
        rr = await fn(args.address, count=args.count, device_id=args.unit)
        if rr.isError():
            raise ModbusException(f"device answered with exception {getattr(rr, 'exception_code', rr)}")
        return list(rr.bits[: args.count]) if args.area in ("coil", "discrete") else list(rr.registers)
    finally:
        client.close()


def run_probe(args: argparse.Namespace) -> int:
    limit = 2000 if args.area in ("coil", "discrete") else 125
    if not 1 <= args.count <= limit:
        print(f"probe: --count must be 1..{limit} for {args.area}")
        return 2
    try:
        values = asyncio.run(read_window(args))
    except ValueError as exc:
        print(f"probe: {exc}")
        return 2
    except (ModbusException, ConnectionError, OSError) as exc:
        print(f"probe failed: {exc}")
        print(
            "hints: exception 2 (illegal data address) often means the manual counts from 1: try --address minus 1; "
            "no answer: check --unit, the wiring, baud rate and parity"
        )
        return 1
    if args.area in ("coil", "discrete"):
        print(format_bits(args.address, values))
    else:
        print(format_decodings(args.address, values))
    return 0
