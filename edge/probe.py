"""``carbonwatch probe``: read raw registers from an unknown meter and print every decoding.

Word order and off-by-one addresses are the commonest trouble when mapping a new meter.
The probe reads a window of registers once and prints, for each start offset, every type
and byte/word order, labelled ABCD/CDAB/BADC/DCBA, so the user can spot the value the
meter's display shows and copy the matching type and orders into the site file.
"""

from __future__ import annotations

import argparse
import asyncio

from pymodbus.exceptions import ModbusException

from carbonwatch.contracts.site import SerialConnection, TcpConnection

from .poller import make_client
from .registers import decode_all

_ORDERS = {
    "ABCD": "byte_order: big,    word_order: big",
    "CDAB": "byte_order: big,    word_order: little",
    "BADC": "byte_order: little, word_order: big",
    "DCBA": "byte_order: little, word_order: little",
}


def format_decodings(start: int, registers: list[int]) -> str:
    lines = [f"raw registers from address {start}:"]
    for i, r in enumerate(registers):
        lines.append(f"  [{start + i}] 0x{r:04X}  {r:6d}")
    for offset in range(len(registers)):
        window = registers[offset:]
        lines.append(f"\nvalue starting at address {start + offset}:")
        for dtype, label, value in decode_all(window):
            shown = f"{value:.6g}" if isinstance(value, float) else str(value)
            orders = _ORDERS.get(label[:4], "") if len(label) >= 4 else ""
            lines.append(f"  {dtype:<8} {label:<8} {shown:>24}   {orders}")
    return "\n".join(lines)


async def _read(args: argparse.Namespace) -> list[int]:
    if args.serial:
        conn = SerialConnection(port=args.serial, baudrate=args.baudrate, parity=args.parity, stopbits=args.stopbits)
    elif args.host:
        conn = TcpConnection(host=args.host, port=args.port)
    else:
        raise SystemExit("probe: give --host (Modbus TCP) or --serial DEVICE")
    client = make_client(conn, args.timeout)
    if not await client.connect():
        raise ConnectionError(f"cannot connect to {conn.bus_key}")
    try:
        fn = client.read_holding_registers if args.area == "holding" else client.read_input_registers
        rr = await fn(args.address, count=args.count, device_id=args.unit)
        if rr.isError():
            raise ModbusException(f"device answered with an exception: {rr}")
        return list(rr.registers)
    finally:
        client.close()


def run_probe(args: argparse.Namespace) -> int:
    try:
        registers = asyncio.run(_read(args))
    except (ModbusException, ConnectionError, OSError) as exc:
        print(f"probe failed: {exc}")
        print("hint: exception 2 (illegal data address) often means the manual counts from 1: try --address minus 1")
        return 1
    print(format_decodings(args.address, registers))
    return 0
