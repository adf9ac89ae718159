"""The gateway agent: poll the site's meters, keep every reading on disk, forward to the broker.

``carbonwatch edge --site FILE [--gateway ID]`` runs one :class:`Agent`. Meters are grouped
into buses by connection (one TCP endpoint or one serial port); each bus is polled by its
own task, so a dead meter or a dead bus never delays another bus, and the circuit breaker
in :mod:`.poller` keeps a dead meter from delaying its neighbours on a shared bus.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from datetime import UTC, datetime

from carbonwatch import __version__
from carbonwatch.contracts.payload import utc_iso
from carbonwatch.contracts.site import Gateway, Meter, Site

from .buffer import Outbox
from .poller import BusPoller
from .publisher import Publisher

log = logging.getLogger("carbonwatch.edge")


class Agent:
    def __init__(self, site: Site, gateway_id: str | None = None) -> None:
        self.site = site
        self.gateway: Gateway = site.gateway(gateway_id) if gateway_id else site.gateways[0]
        self.enterprise = site.enterprise.code
        buf = self.gateway.buffer
        self.outbox = Outbox(buf.path, buf.max_bytes, buf.when_full)
        self.publisher = Publisher(self.enterprise, self.gateway, self.outbox, self.status_payload)
        buses: dict[str, list[Meter]] = defaultdict(list)
        for m in self.gateway.meters:
            buses[m.connection.bus_key].append(m)
        self.pollers = [BusPoller(meters, self.gateway.poll_interval, self._store) for meters in buses.values()]
        self.readings_total = 0

    async def _store(self, meter: Meter, readings: list[dict]) -> None:
        payload = json.dumps(readings, separators=(",", ":"), ensure_ascii=False).encode()
        self.outbox.append(payload)
        self.readings_total += len(readings)
        self.publisher.wakeup.set()

    def status_payload(self) -> bytes:
        devices = {}
        for poller in self.pollers:
            for s in poller.states.values():
                devices[s.meter.id] = {
                    "state": s.health,
                    "last_success": utc_iso(datetime.fromtimestamp(s.last_success, UTC)) if s.last_success else None,
                    "consecutive_failures": s.consecutive_failures,
                    "last_error": s.last_error,
                }
        oldest = self.outbox.oldest_created()
        doc = {
            "v": 1,
            "enterprise": self.enterprise,
            "gateway": self.gateway.id,
            "state": "online",
            "ts": utc_iso(datetime.now(UTC)),
            "agent_version": __version__,
            "devices": devices,
            "buffer": {
                "depth": self.outbox.depth,
                "bytes": self.outbox.bytes,
                "oldest": utc_iso(datetime.fromtimestamp(oldest, UTC)) if oldest else None,
                "dropped_total": self.outbox.dropped_total,
            },
        }
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

    async def run(self, stop: asyncio.Event) -> None:
        log.info(
            "gateway %s of %s: %d meters on %d buses, outbox %s (%d waiting)",
            self.gateway.id,
            self.enterprise,
            len(self.gateway.meters),
            len(self.pollers),
            self.outbox.path,
            self.outbox.depth,
        )
        tasks = [asyncio.create_task(p.run(stop), name=f"bus {p.connection.bus_key}") for p in self.pollers]
        tasks.append(asyncio.create_task(self.publisher.run(stop), name="publisher"))
        try:
            await stop.wait()
        finally:
            await asyncio.gather(*tasks, return_exceptions=True)
            self.outbox.close()
