"""Serving simulated meters over Modbus TCP, and Modbus RTU on a serial port, with pymodbus.

Meters of a site file that share a connection become one server with one device per unit id,
just as several meters share one RS-485 line or one TCP serial gateway in a plant. Every read
refreshes the requested registers from the meter model, so values are live.

Serial buses can be served on a pseudo-terminal pair (``pty=True``): the simulator starts
``socat``, links the agent's end at the port the site file names, and serves the other end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from carbonwatch.contracts.site import Area, Meter, SerialConnection, Site, TcpConnection

from .meters import Request, SimulatedMeter
from .serial import PtyPair

log = logging.getLogger("carbonwatch.simulators")

_FC_AREA = {1: Area.COIL, 2: Area.DISCRETE, 3: Area.HOLDING, 4: Area.INPUT}
_FRAMERS = {"socket": FramerType.SOCKET, "rtu": FramerType.RTU, "ascii": FramerType.ASCII}


class _RequestHandler(ServerRequestHandler):
    """pymodbus's handler, but answering each request with its own transaction and unit id.

    The stock handler reads ``self.last_pdu`` again after awaiting the datastore, so a slow
    answer would go out labelled as the next request. A slow device must stay merely slow.
    """

    async def handle_request(self):
        pdu, addr = self.last_pdu, self.last_addr
        if not pdu:
            return
        try:
            response = await pdu.datastore_update(self.server.context, pdu.dev_id)
        except NoSuchIdException:
            return  # no answer: the client times out, as with a dead unit on a real bus
        except Exception:  # the stock handler answers "device failure" too
            log.exception("simulated device %s failed a request", pdu.dev_id)
            response = ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)
        response.transaction_id = pdu.transaction_id
        response.dev_id = pdu.dev_id
        sim = getattr(self.server, "sims", {}).get(pdu.dev_id)
        if sim is not None and sim.faults.wrong_size and not response.isError():
            _resize(response, sim.faults.wrong_size)
        self.server_send(response, addr)


def _resize(response, more: int) -> None:
    """Make a read answer ``more`` registers (bytes of bits) longer, or shorter if negative."""
    if response.function_code in (1, 2):
        bits = list(response.bits)
        response.bits = bits + [False] * (8 * more) if more > 0 else bits[: max(0, len(bits) + 8 * more)]
    elif response.function_code in (3, 4):
        regs = list(response.registers)
        response.registers = regs + [0] * more if more > 0 else regs[: max(0, len(regs) + more)]


class _Handlers:
    def callback_new_connection(self):
        return _RequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class _TcpServer(_Handlers, ModbusTcpServer):
    pass


class _SerialServer(_Handlers, ModbusSerialServer):
    pass


def _span(sim: SimulatedMeter, area: Area) -> tuple[int, int]:
    places = [(c.address, c.registers) for c in (*sim.model.channels, *sim.model.texts) if c.area is area]
    if not places:
        return 0, 1  # pymodbus wants every area defined; an unused one holds one register
    return min(a for a, _ in places), max(a + n for a, n in places)


def sim_device(sim: SimulatedMeter) -> SimDevice:
    """A pymodbus device whose registers are refreshed from ``sim`` on every request."""
    blocks: list[list[SimData]] = []
    for area in (Area.COIL, Area.DISCRETE, Area.HOLDING, Area.INPUT):
        lo, hi = _span(sim, area)
        datatype = SimType.BITS if area.is_bit else SimType.REGISTERS
        blocks.append([SimData(lo, count=hi - lo, values=False if area.is_bit else 0, datatype=datatype)])

    async def action(func_code, start_address, address, count, registers, set_values):
        faults = sim.faults
        area = _FC_AREA.get(func_code)
        arrived = time.time()
        dropped = sim.drops_request()
        delay = 0.0 if dropped else faults.next_delay()
        if area is not None and set_values is None:
            sim.request_log.append(Request(arrived, area, address, count, not dropped, delay))
        if dropped:
            raise NoSuchIdException("simulated: no answer")
        if delay:
            await asyncio.sleep(delay)
        if faults.exception_code is not None:
            return ExcCodes(faults.exception_code)
        if area is None or set_values is not None:
            return None
        sim.requests += 1
        if area.is_bit:
            # Bits are stored 16 to a register, LSB first, and pymodbus passes ``count`` in
            # registers here: rebuild the touched words from the model.
            first = address // 16
            words = dict.fromkeys(range(first, first + count), 0)
            for addr, bit in sim.register_image(area, first * 16, count * 16).items():
                words[addr // 16] |= int(bit) << (addr % 16)
            for w, value in words.items():
                if 0 <= w - start_address < len(registers):
                    registers[w - start_address] = value
        else:
            for addr, value in sim.register_image(area, address, count).items():
                i = addr - start_address
                if 0 <= i < len(registers):
                    registers[i] = value
        return None

    return SimDevice(id=sim.meter.unit_id, simdata=tuple(blocks), action=action)


@dataclass
class SiteSimulator:
    """All simulated meters of a site, grouped by connection, ready to serve.

    ``pty=True`` serves each serial bus on a socat pseudo-terminal pair whose agent end is
    linked at the port the site file names. ``serial_ports`` maps a site-file port to another
    device to serve instead (e.g. the second adapter of a null-modem cable).
    """

    site: Site
    pty: bool = False
    serial_ports: dict[str, str] = field(default_factory=dict)
    meters: dict[str, SimulatedMeter] = field(init=False)
    servers: list = field(init=False, default_factory=list)
    ptys: list[PtyPair] = field(init=False, default_factory=list)

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
        try:
            for meters in self._buses.values():
                await self._serve(meters)
        except BaseException:
            await self.stop()
            raise

    async def _serve(self, meters: list[Meter]) -> None:
        devices = [sim_device(self.meters[m.id]) for m in meters]
        conn = meters[0].connection
        if isinstance(conn, TcpConnection):
            server = _TcpServer(
                devices, framer=_FRAMERS[conn.framer], address=(conn.host, conn.port), ignore_missing_devices=True
            )
        else:
            assert isinstance(conn, SerialConnection)
            port = self.serial_ports.get(conn.port, conn.port)
            if self.pty:
                pair = PtyPair(Path(conn.port))
                await asyncio.to_thread(pair.start)
                self.ptys.append(pair)
                port = str(pair.other)
            server = _SerialServer(
                devices,
                framer=_FRAMERS[conn.framer],
                port=port,
                baudrate=conn.baudrate,
                parity=conn.parity,
                stopbits=conn.stopbits,
                bytesize=conn.bytesize,
                ignore_missing_devices=True,
            )
        server.sims = {m.unit_id: self.meters[m.id] for m in meters}  # for faults in the answers
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            hint = " (no such serial device? --pty makes a pseudo-terminal pair)" if not self.pty else ""
            raise RuntimeError(f"cannot serve {conn.bus_key}: {exc}{hint}") from None
        self.servers.append(server)
        log.info("serving %d simulated meters on %s", len(meters), conn.bus_key)

    async def stop(self) -> None:
        for server in self.servers:
            await server.shutdown()
        self.servers.clear()
        for pair in self.ptys:
            pair.stop()
        self.ptys.clear()
