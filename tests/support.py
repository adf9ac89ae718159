"""Helpers shared by the test suites (importable as ``support`` from any test)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml

from carbonwatch.contracts.site import Site

REPO = Path(__file__).resolve().parent.parent
SITES = REPO / "simulators" / "sites"


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition"
):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def site_from_file(name: str, **gateway_overrides: Any) -> dict:
    """A packaged site file as a dict, for a test to adjust before validating."""
    raw = yaml.safe_load((SITES / name).read_text("utf-8"))
    for g in raw["gateways"]:
        g.update(gateway_overrides)
    return raw


def localise(raw: dict, tmp: Path, broker_port: int, ports: dict[int, int], poll_interval: float = 1.0) -> Site:
    """Point a site dict at a test's broker, free Modbus ports and temporary buffer folder."""
    from carbonwatch.embedded import free_port

    for g in raw["gateways"]:
        g["poll_interval"] = poll_interval
        g["mqtt"] = {"host": "127.0.0.1", "port": broker_port}
        g["buffer"] = {"path": str(tmp / f"{g['id']}.sqlite"), "max_bytes": "64MiB"}
        for m in g["meters"]:
            c = m["connection"]
            if c["type"] == "tcp":
                c["port"] = ports.setdefault(c["port"], free_port())
    return Site.model_validate(raw)


class BackgroundLoop:
    """An asyncio loop in a thread, so a synchronous test can run servers and agents beside it."""

    def __init__(self) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)

    def __enter__(self) -> BackgroundLoop:
        self._thread.start()
        return self

    def run(self, coro, timeout: float = 30.0):
        """Run a coroutine on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro):
        """Start a coroutine on the loop; returns a concurrent Future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn, *args):
        """Run a plain function on the loop thread (for objects that are not thread-safe)."""

        async def _call():
            return fn(*args)

        return self.run(_call())

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class UvicornThread:
    """A real uvicorn server on a loopback port, in a thread."""

    def __init__(self, app, port: int) -> None:
        import threading

        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.server.install_signal_handlers = lambda: None
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> UvicornThread:
        self._thread.start()
        wait_until(lambda: self.server.started, 20, what="uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(10)


class CollectorThread:
    """A real collector running in a thread until the ``with`` block ends."""

    def __init__(self, db_url: str, broker_port: int, **settings: Any) -> None:
        import threading

        from carbonwatch.collector.ingest import Collector, CollectorSettings

        settings.setdefault("client_id", f"test-collector-{broker_port}")
        settings.setdefault("flush_interval", 0.2)
        self.collector = Collector(CollectorSettings(db_url, mqtt_port=broker_port, **settings))
        self.stop_event = threading.Event()
        self._thread = threading.Thread(target=self.collector.run, args=(self.stop_event,), daemon=True)

    def __enter__(self):
        self._thread.start()
        wait_until(lambda: self.collector.wait_connected(0.1), 20, what="collector to connect")
        return self.collector

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self._thread.join(20)


def make_pki(d: Path, client_cn: str = "gw-sample") -> Path:
    """A test CA (ca.pem) in ``d``, a server certificate for localhost/127.0.0.1 (server.pem/.key)
    and a client certificate with CN ``client_cn`` (client.pem/.key), made with openssl."""
    import subprocess

    def run(*cmd: str) -> None:
        subprocess.run(cmd, cwd=d, check=True, capture_output=True, timeout=60)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=cw CA")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, cn, ext in (("server", "localhost", ("-extfile", "san.ext")), ("client", client_cn, ())):
        run("openssl", "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        run(
            "openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", *ext,
        )  # fmt: skip
    return d


class StreamReader:
    """Reads a server-sent-event stream in a thread, keeping the parsed ``data`` of each event."""

    def __init__(self, url: str, token: str) -> None:
        self.events: list[dict] = []
        self.status: int | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=30))
        self._thread = threading.Thread(target=self._run, args=(url, token), daemon=True)

    def _run(self, url: str, token: str) -> None:
        try:
            with self._client.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as r:
                self.status = r.status_code
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by the test

    def __enter__(self) -> StreamReader:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._client.close()
        self._thread.join(10)


def add_interval(db_url: str, code: str, kwh: float) -> None:
    """A new 15-minute interval on the enterprise's incomer, in the current bucket (as the collector writes)."""
    now = datetime.now(UTC)
    bucket = now - timedelta(minutes=now.minute % 15, seconds=now.second, microseconds=now.microsecond)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            """INSERT INTO intervals_15m (point_id, bucket, quantity)
               SELECT id, %s, %s FROM points WHERE enterprise = %s AND point = 'incomer.import_kwh'
               ON CONFLICT (point_id, bucket) DO UPDATE SET quantity = intervals_15m.quantity + EXCLUDED.quantity""",
            (bucket, kwh, code),
        )
