"""Serving simulated meters over Modbus TCP (and RTU on a serial port) with pymodbus.

Meters of a site file that share a connection become one server with one device per unit
id, just as several meters share one RS-485 line or one TCP serial gateway in a plant.
Every read refreshes the requested registers from the meter model, so values are live.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from carbonwatch.contracts.site import Area, Meter, SerialConnection, Site, TcpConnection

from .meters import SimulatedMeter

log = logging.getLogger("carbonwatch.simulators")

_FC_AREA = {1: Area.COIL, 2: Area.DISCRETE, 3: Area.HOLDING, 4: Area.INPUT}
_FRAMERS = {"socket": FramerType.SOCKET, "rtu": FramerType.RTU, "ascii": FramerType.ASCII}


def _span(meter: Meter, area: Area) -> tuple[int, int] | None:
    pts = [p for p in meter.points if p.area is area]
    if not pts:
        return None
    lo = min(meter.protocol_address(p) for p in pts)
    hi = max(meter.protocol_address(p) + p.registers for p in pts)
    return lo, hi


def sim_device(sim: SimulatedMeter) -> SimDevice:
    """A pymodbus device whose registers are refreshed from ``sim`` on every request."""
    meter = sim.meter
    blocks: list[list[SimData]] = []
    for area in (Area.COIL, Area.DISCRETE, Area.HOLDING, Area.INPUT):
        span = _span(meter, area)
        if span is None:
            # pymodbus wants every area defined; an unused one holds a single register no point uses.
            span = (0, 1)
        lo, hi = span
        if area.is_bit:
            blocks.append([SimData(lo, count=hi - lo, values=False, datatype=SimType.BITS)])
        else:
            blocks.append([SimData(lo, count=hi - lo, values=0, datatype=SimType.REGISTERS)])

    async def action(func_code, start_address, address, count, registers, set_values):
        area = _FC_AREA.get(func_code)
        faults = sim.faults
        if faults.delay:
            await asyncio.sleep(faults.delay)
        if faults.timeout:
            await asyncio.sleep(3600)  # never answer; the client times out
        if faults.exception_code is not None:
            return ExcCodes(faults.exception_code)
        if area is None or set_values is not None:
            return None
        sim.reads += 1
        image = sim.register_image(area)
        if area.is_bit:
            # Bit blocks are stored 16 bits to a register, LSB first; rebuild the touched words.
            words: dict[int, int] = {}
            for addr, bit in image.items():
                w = addr // 16 - start_address
                words[w] = words.get(w, 0) | (int(bit) << (addr % 16))
            for w, v in words.items():
                if 0 <= w < len(registers):
                    registers[w] = v
        else:
            for addr, value in image.items():
                i = addr - start_address
                if 0 <= i < len(registers):
                    registers[i] = value
        return None

    return SimDevice(id=meter.unit_id, simdata=tuple(blocks), action=action)


@dataclass
class SiteSimulator:
    """All simulated meters of a site, grouped by connection, ready to serve."""

    site: Site
    meters: dict[str, SimulatedMeter] = field(init=False)
    servers: list = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.meters = {}
        self._buses: dict[str, list[Meter]] = defaultdict(list)
        for g in self.site.gateways:
            for m in g.meters:
                self.meters[m.id] = SimulatedMeter(m)
                self._buses[m.connection.bus_key].append(m)

    def meter(self, meter_id: str) -> SimulatedMeter:
        return self.meters[meter_id]

    async def start(self) -> None:
        for meters in self._buses.values():
            devices = [sim_device(self.meters[m.id]) for m in meters]
            conn = meters[0].connection
            if isinstance(conn, TcpConnection):
                server = ModbusTcpServer(devices, framer=_FRAMERS[conn.framer], address=(conn.host, conn.port))
            else:
                assert isinstance(conn, SerialConnection)
                server = ModbusSerialServer(
                    devices,
                    framer=_FRAMERS[conn.framer],
                    port=conn.port,
                    baudrate=conn.baudrate,
                    parity=conn.parity,
                    stopbits=conn.stopbits,
                    bytesize=conn.bytesize,
                )
            await server.serve_forever(background=True)
            self.servers.append(server)
            log.info("serving %d simulated meters on %s", len(meters), conn.bus_key)

    async def stop(self) -> None:
        for server in self.servers:
            await server.shutdown()
        self.servers.clear()
