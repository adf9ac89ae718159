"""The ``carbonwatch`` command: one entry point, one subcommand per part of the system.

Handlers import their part lazily, so ``carbonwatch edge`` on a gateway never imports numba,
FastAPI or psycopg (which the gateway install does not have). argparse rather than typer keeps
the gateway install free of extra dependencies.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from carbonwatch import __version__

log = logging.getLogger("carbonwatch")


class CommandError(Exception):
    """An error the user can fix; printed without a traceback."""


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("pymodbus", "aiomqtt", "amqtt", "transitions", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def run_until_signalled(main: Callable[[asyncio.Event], object]) -> None:
    """Run an async ``main(stop)`` until SIGINT/SIGTERM sets ``stop``; then let it finish cleanly."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


# --- subcommand handlers ------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from carbonwatch.demo import run_demo

    return run_demo(args)


def cmd_simulate(args: argparse.Namespace) -> int:
    from carbonwatch.contracts.site import load_site
    from carbonwatch.simulators.meters import apply_fault
    from carbonwatch.simulators.server import SiteSimulator

    site = load_site(args.site)
    try:
        ports = dict(_pair(m, "--serial-port") for m in args.serial_port)
        sim = SiteSimulator(site, pty=args.pty, serial_ports=ports)
        for spec in args.fault:
            apply_fault(sim.meters, spec)
    except ValueError as exc:
        raise CommandError(str(exc)) from None

    async def main(stop: asyncio.Event) -> None:
        try:
            await sim.start()
        except (OSError, RuntimeError) as exc:
            raise CommandError(str(exc)) from None
        buses = ", ".join(f"{m.meter.id} ({m.model.name}) unit {m.meter.unit_id}" for m in sim.meters.values())
        print(f"simulating {len(sim.meters)} meters of {site.enterprise.name}: {buses}; Ctrl-C to stop", flush=True)
        await stop.wait()
        await sim.stop()

    run_until_signalled(main)
    return 0


def _pair(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise ValueError(f"{option} {text!r}: write KEY=VALUE")
    return key, value


def cmd_edge(args: argparse.Namespace) -> int:
    from carbonwatch.contracts.site import load_site
    from carbonwatch.edge.agent import Agent, StartupError

    site = load_site(args.site)
    try:
        agent = Agent(site, args.gateway)
        run_until_signalled(agent.run)
    except StartupError as exc:
        raise CommandError(str(exc)) from None
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from carbonwatch.edge.probe import run_probe

    return run_probe(args)


def cmd_collector(args: argparse.Namespace) -> int:
    import os
    import threading

    from carbonwatch.collector.db import database_url
    from carbonwatch.collector.ingest import Collector, CollectorSettings

    password = args.mqtt_password
    if args.mqtt_password_file:
        with open(args.mqtt_password_file, encoding="utf-8") as f:
            password = f.read().strip()
    settings = CollectorSettings(
        database_url=database_url(args.database_url),
        mqtt_host=args.mqtt_host,
        mqtt_port=args.mqtt_port,
        mqtt_protocol=args.mqtt_protocol,
        mqtt_username=args.mqtt_username,
        mqtt_password=password or os.environ.get("CARBONWATCH_MQTT_PASSWORD"),
        mqtt_tls_ca=args.mqtt_tls_ca,
        mqtt_tls_cert=args.mqtt_tls_cert,
        mqtt_tls_key=args.mqtt_tls_key,
        shared_group=args.shared_group or None,
        batch_rows=args.batch_rows,
        flush_interval=args.flush_interval,
        receive_maximum=args.receive_maximum,
        session_expiry=args.session_expiry,
        interval_period=args.interval_period,
        writers=args.writers,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )
    if args.client_id:
        settings.client_id = args.client_id
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    Collector(settings).run(stop)
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    import threading

    import psycopg

    from carbonwatch.collector.db import database_url
    from carbonwatch.collector.upload.config import load_upload_config
    from carbonwatch.collector.upload.service import Uploader

    config = load_upload_config(args.config)
    url = database_url(args.database_url or config.database_url)
    uploader = Uploader(config, url)
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            uploader.check(conn)
    except (psycopg.Error, ValueError) as exc:
        raise CommandError(f"{args.config}: {exc}") from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    uploader.run(stop, args.metrics_port, args.metrics_host)
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from carbonwatch.api.app import create_app
    from carbonwatch.collector.db import database_url

    app = create_app(database_url(args.database_url))
    # live streams would otherwise hold a shutdown open until every browser tab closes
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=3)
    return 0


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from carbonwatch.collector.db import connect, migrate

    with connect(args.database_url) as conn:
        applied = migrate(conn, timescale={"auto": None, "yes": True, "no": False}[args.timescale])
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


def cmd_db_register(args: argparse.Namespace) -> int:
    from carbonwatch.collector.db import connect
    from carbonwatch.collector.registry import register_site
    from carbonwatch.contracts.site import load_site

    with connect(args.database_url) as conn:
        for path in args.sites:
            site = load_site(path)
            counts = register_site(conn, site)
            print(f"{path}: {site.enterprise.code} {site.enterprise.name}: {counts}")
    return 0


def cmd_db_acl(args: argparse.Namespace) -> int:
    from carbonwatch.collector.acl import mosquitto_acl
    from carbonwatch.contracts.site import load_site

    print(mosquitto_acl([load_site(p) for p in args.sites], args.collector_user or ["collector"]), end="")
    return 0


def cmd_db_targets(args: argparse.Namespace) -> int:
    import os
    import tempfile

    from carbonwatch.collector.db import connect
    from carbonwatch.collector.fleet import render_targets, scrape_targets

    try:
        args.address.format(province="140000", enterprise="E", gateway="G")
    except (KeyError, IndexError, ValueError) as exc:
        raise CommandError(
            f"--address {args.address!r}: {exc!r}; the fields are {{province}}, {{enterprise}} and {{gateway}}"
        ) from None
    with connect(args.database_url) as conn:
        groups = scrape_targets(conn, args.address, args.province or (), args.exclude or ())
    text = render_targets(groups)
    if args.output is None:
        print(text, end="")
    else:
        # Written beside the target and renamed: Prometheus never reads a half-written file.
        out = os.path.abspath(args.output)
        fd, tmp = tempfile.mkstemp(prefix=".targets-", dir=os.path.dirname(out))
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
        print(f"{args.output}: {len(groups)} gateways", file=sys.stderr)
    return 0


def cmd_db_token(args: argparse.Namespace) -> int:
    from carbonwatch.api.auth import TokenError, create_token, list_tokens, revoke_token
    from carbonwatch.collector.db import connect

    with connect(args.database_url) as conn:
        try:
            if args.action == "create":
                if not args.role or not args.label:
                    raise CommandError("token create needs --role and --label")
                print(create_token(conn, args.role, args.scope, args.label))
            elif args.action == "list":
                for tid, role, scope, label, created, revoked in list_tokens(conn):
                    state = f"revoked {revoked:%Y-%m-%d %H:%M}" if revoked else "active"
                    print(f"{tid}\t{role}\t{scope or '-'}\t{label}\t{created:%Y-%m-%d %H:%M}\t{state}")
            else:
                if args.id is None:
                    raise CommandError("token revoke needs --id (see token list)")
                if not revoke_token(conn, args.id):
                    raise CommandError(f"no active token with id {args.id}")
                print(f"revoked token {args.id}")
        except TokenError as exc:
            raise CommandError(str(exc)) from None
    return 0


def cmd_account(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from carbonwatch.accounting.activity import read_activities
    from carbonwatch.accounting.rules import AccountingError, account, read_overrides

    try:
        if args.file == "-":
            text, source = sys.stdin.read(), "stdin"
        else:
            text, source = Path(args.file).read_text(encoding="utf-8-sig"), args.file
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {args.file}: {exc}") from None
    try:
        result = account(
            read_activities(text, source),
            args.year,
            method=args.method,
            overrides=read_overrides(args.factor),
            fuel_family=args.fuel_family,
            electricity_equal_value_tce_per_mwh=args.electricity_equal_value,
        )
    except AccountingError as exc:
        raise CommandError(str(exc)) from None
    print(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
    return 0


def cmd_factors(args: argparse.Namespace) -> int:
    import json

    from carbonwatch.accounting.catalogue import COLUMNS, TABLES, format_rows, rows, summary
    from carbonwatch.accounting.tables import shipped

    fs = shipped()
    if args.action == "list":
        print("\n".join(summary(fs)))
        return 0
    if args.table not in TABLES:
        raise CommandError(f"factors show TABLE: choose one of {', '.join(TABLES)}")
    try:
        records = rows(
            fs, args.table, data_year=args.data_year, place=args.place, family=args.family, product=args.product
        )
    except (LookupError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps({"factor_set": fs.id, "table": args.table, "rows": records}, ensure_ascii=False, indent=2))
    else:
        print(f"{args.table} ({fs.id})")
        print("\n".join(format_rows(records, COLUMNS[args.table])))
    return 0


# --- parser -------------------------------------------------------------------------------


def _db_url_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database-url",
        help="PostgreSQL URL (default: $CARBONWATCH_DATABASE_URL or postgresql://postgres@127.0.0.1:5432/carbonwatch)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carbonwatch",
        description="Real-time energy and CO2 monitoring for key energy-using enterprises.",
    )
    parser.add_argument("--version", action="version", version=f"carbonwatch {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("demo", help="run the whole system on simulated plants and print the dashboard URL")
    p.add_argument("--port", type=int, default=8080, help="HTTP port of the API and dashboard (default 8080)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--data-dir", help="where the embedded database and buffers live (default: a temporary folder)")
    p.add_argument("--mqtt-url", help="use this broker (mqtt://host:port) instead of starting one")
    p.add_argument(
        "--broker",
        choices=["auto", "mosquitto", "amqtt"],
        default="auto",
        help="broker to start when --mqtt-url is not given (auto: mosquitto if installed, else amqtt)",
    )
    _db_url_option(p)
    p.add_argument("--poll-interval", type=float, default=5.0, help="seconds between meter polls (default 5)")
    p.add_argument("--duration", type=float, help="stop by itself after this many seconds")
    p.add_argument(
        "--history-days", type=float, default=3, help="days of synthetic 15-minute history for the charts (default 3)"
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("simulate", help="serve the meters of a site file over Modbus")
    p.add_argument("--site", required=True, help="site YAML file")
    p.add_argument(
        "--pty", action="store_true", help="serve serial buses on socat pty pairs linked at the site file's ports"
    )
    p.add_argument(
        "--serial-port",
        action="append",
        default=[],
        metavar="SITE_PORT=DEVICE",
        help="serve the bus the site file puts on SITE_PORT on DEVICE instead (e.g. the other end of a null modem)",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="METER:KIND[=VALUE]",
        help="switch on a fault: dead, drop=0.2, exception=4, delay=0.5, zero-once=CHANNEL, rollover=CHANNEL, "
        "replace=CHANNEL (repeatable)",
    )
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("edge", help="run the gateway agent for a site file")
    p.add_argument("--site", required=True, help="site YAML file")
    p.add_argument("--gateway", help="gateway id in the file (default: the first)")
    p.set_defaults(func=cmd_edge)

    p = sub.add_parser("probe", help="read raw registers and print every decoding, to map an unknown meter")
    p.add_argument("--host", help="Modbus TCP host")
    p.add_argument("--port", type=int, default=502, help="TCP port (default 502)")
    p.add_argument("--serial", metavar="DEVICE", help="serial port instead of TCP, e.g. /dev/ttyUSB0")
    p.add_argument("--baudrate", type=int, default=9600)
    p.add_argument("--parity", choices=["N", "E", "O"], default="N")
    p.add_argument("--stopbits", type=int, choices=[1, 2], default=1)
    p.add_argument("--framer", choices=["socket", "rtu", "ascii"], help="default: socket on TCP, rtu on serial")
    p.add_argument("--unit", type=int, default=1, help="unit (slave) id")
    p.add_argument("--address", type=int, required=True, help="first register, protocol (0-based) address")
    p.add_argument("--count", type=int, default=4, help="registers (or bits) to read (default 4)")
    p.add_argument("--area", choices=["holding", "input", "coil", "discrete"], default="holding")
    p.add_argument("--timeout", type=float, default=2.0)
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("collector", help="consume telemetry from MQTT into the database")
    _db_url_option(p)
    p.add_argument("--mqtt-host", default="127.0.0.1")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--mqtt-protocol", choices=["5", "3.1.1"], default="5")
    p.add_argument("--mqtt-username")
    p.add_argument("--mqtt-password", help="(prefer --mqtt-password-file or $CARBONWATCH_MQTT_PASSWORD)")
    p.add_argument("--mqtt-password-file", help="file holding the broker password")
    p.add_argument("--mqtt-tls-ca", metavar="FILE", help="CA certificate; turns TLS on")
    p.add_argument("--mqtt-tls-cert", metavar="FILE", help="client certificate (certificate authentication)")
    p.add_argument("--mqtt-tls-key", metavar="FILE", help="key of the client certificate")
    p.add_argument("--shared-group", default="collectors", help="MQTT 5 shared-subscription group ('' for none)")
    p.add_argument(
        "--client-id",
        help="MQTT client id; keep it stable across restarts, one per collector (default: cw-collector-HOSTNAME)",
    )
    p.add_argument("--batch-rows", type=int, default=20_000, help="readings per transaction, at most (default 20000)")
    p.add_argument(
        "--flush-interval", type=float, default=0.5, help="seconds from a message to its commit, at most (default 0.5)"
    )
    p.add_argument(
        "--receive-maximum", type=int, default=2000, help="unacknowledged messages in flight (MQTT 5, default 2000)"
    )
    p.add_argument(
        "--session-expiry", type=int, default=7 * 24 * 3600, help="seconds the broker keeps our session (7 days)"
    )
    p.add_argument(
        "--interval-period", type=float, default=5.0, help="seconds between interval builds when idle (default 5)"
    )
    p.add_argument("--writers", type=int, default=2, help="transactions in flight at once (default 2)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address for /metrics (default 127.0.0.1)")
    p.set_defaults(func=cmd_collector)

    p = sub.add_parser("upload", help="send indicators to the online monitoring platforms over HTTPS")
    p.add_argument("--config", required=True, help="upload configuration YAML (sample: collector/upload/upload.yaml)")
    p.add_argument("--database-url", help="PostgreSQL URL (default: the file's, else $CARBONWATCH_DATABASE_URL)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address for /metrics (default 127.0.0.1)")
    p.set_defaults(func=cmd_upload)

    p = sub.add_parser("api", help="serve the HTTP API and the dashboard")
    _db_url_option(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("db", help="database schema and registry")
    dbsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    q = dbsub.add_parser("migrate", help="create or upgrade the schema (idempotent)")
    _db_url_option(q)
    q.add_argument("--timescale", choices=["auto", "yes", "no"], default="auto", help="TimescaleDB path")
    q.set_defaults(func=cmd_db_migrate)
    q = dbsub.add_parser("register", help="load site files into the registry")
    _db_url_option(q)
    q.add_argument("sites", nargs="+", help="site YAML files")
    q.set_defaults(func=cmd_db_register)
    q = dbsub.add_parser("acl", help="print the broker ACL (Mosquitto acl_file) for site files")
    q.add_argument("sites", nargs="+", help="site YAML files")
    q.add_argument("--collector-user", action="append", default=None, help="broker user of a collector (repeatable)")
    q.set_defaults(func=cmd_db_acl)
    q = dbsub.add_parser(
        "targets", help="print (or write) the Prometheus file_sd targets of the registered gateway agents"
    )
    _db_url_option(q)
    q.add_argument(
        "--address",
        default="{gateway}.{enterprise}:9108",
        help="host:port of an agent's metrics, a template with {province} {enterprise} {gateway} "
        "(default: {gateway}.{enterprise}:9108)",
    )
    q.add_argument("--province", action="append", help="only gateways of this GB/T 2260 province code (repeatable)")
    q.add_argument(
        "--exclude", action="append", help="leave out an enterprise CODE or a gateway CODE/GATEWAY (repeatable)"
    )
    q.add_argument("--output", "-o", help="write this file atomically instead of printing")
    q.set_defaults(func=cmd_db_targets)
    q = dbsub.add_parser("token", help="API tokens: create (prints the token once), list, revoke")
    _db_url_option(q)
    q.add_argument("action", choices=["create", "list", "revoke"])
    q.add_argument("--role", choices=["enterprise", "province", "operator", "admin"])
    q.add_argument("--scope", help="enterprise: its unified social credit code; province: its GB/T 2260 code")
    q.add_argument("--label", help="who or what the token is for")
    q.add_argument("--id", type=int, help="revoke: the token id shown by list")
    q.set_defaults(func=cmd_db_token)

    p = sub.add_parser(
        "account",
        help="compute tce and CO2 offline from an activity-data CSV",
        description="CSV columns: carrier,quantity,unit,province (optional use, direction, green_certificate_mwh, "
        "enthalpy_kj_per_kg). Prints one JSON object.",
    )
    p.add_argument("file", help="activity-data CSV ('-' for standard input)")
    p.add_argument("--year", type=int, required=True, help="accounting year (electricity uses data year Y-2)")
    p.add_argument("--method", choices=["location", "market"], default="location", help="which CO2 is co2_t")
    p.add_argument(
        "--factor",
        action="append",
        default=[],
        metavar="CARRIER[.PARAM]=VALUE",
        help="a measured or given value: CARRIER=tCO2 per unit, or CARRIER.ncv/.cc/.of/.tce=VALUE (repeatable)",
    )
    p.add_argument("--fuel-family", choices=["B", "A"], default="B", help="default fuel parameter family (B)")
    p.add_argument(
        "--electricity-equal-value",
        type=float,
        metavar="TCE_PER_MWH",
        help="the year's thermal-power coal rate, to report the equal-value (等价值) total too",
    )
    p.set_defaults(func=cmd_account)

    p = sub.add_parser("factors", help="list and show the shipped factor tables")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("table", nargs="?", help="for show: electricity, fuels, standard-coal, heat or levels")
    p.add_argument("--data-year", type=int, help="electricity: only this data year")
    p.add_argument("--place", help="electricity: a province, grid region or 'national'")
    p.add_argument("--family", choices=["B", "A"], default="B", help="fuels / standard-coal: the fuel family")
    p.add_argument("--product", help="levels: only this product")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_factors)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(-1 if args.quiet else args.verbose)
    from carbonwatch.contracts.site import SiteConfigError

    try:
        return int(args.func(args) or 0)
    except (CommandError, SiteConfigError) as exc:
        print(f"carbonwatch {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
