"""The upload adapter against two local HTTPS receivers (a test CA made with openssl), one of
which fails for a while: first acknowledging only part of a batch, then answering 503, then not
listening at all (connection refused), across a restart of the uploader. Every indicator
arrives exactly once at both, in the order it was built, with the right figures; the healthy
destination is never held back.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from carbonwatch.accounting.factors import ELECTRICITY_TCE_PER_MWH, electricity_factor
from carbonwatch.collector.intervals import build_intervals
from carbonwatch.collector.registry import Registry, register_site
from carbonwatch.collector.upload.config import load_upload_config
from carbonwatch.collector.upload.service import Uploader
from carbonwatch.collector.validate import Message, parse_message
from carbonwatch.collector.writer import prepare, write_batch
from carbonwatch.contracts.payload import encode_telemetry, topic, utc_iso
from carbonwatch.contracts.site import Site, SiteConfigError
from carbonwatch.embedded import free_port

from support import REPO, make_pki, site_from_file, wait_until

pytestmark = pytest.mark.timeout(120)

BEIJING = timedelta(hours=8)
START = datetime(2026, 2, 28, 0, 0, tzinfo=UTC) - BEIJING  # 2026-02-28 00:00 Beijing
KWH_PER_STEP = 10.0  # every 5 minutes: 30 kWh per 15 minutes


class Receiver:
    """A platform: HTTPS on 127.0.0.1, stores indicators by key and acknowledges them, or
    answers 503 while ``failing``. ``stop()``/``start()`` make it refuse connections meanwhile."""

    def __init__(self, pki, name: str) -> None:
        self.name, self.port = name, free_port()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
        self.failing = False
        self.partial_ack = False  # answer 200 but leave the first key out of the acknowledgement
        self.arrivals: list[str] = []  # indicator keys stored, in arrival order (duplicates kept)
        self.docs: dict[str, dict] = {}
        self.refused_503 = 0
        self.partial_acks = 0
        self.headers: list[str] = []
        self._server = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.failing:
                    receiver.refused_503 += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                keys = [doc["key"] for doc in body["indicators"]]
                if receiver.partial_ack:  # the platform refused the first indicator: stores nothing
                    receiver.partial_acks += 1
                    out = json.dumps({"ack": keys[1:]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                    return
                receiver.headers.append(self.headers.get("Idempotency-Key", ""))
                for doc in body["indicators"]:
                    receiver.arrivals.append(doc["key"])
                    receiver.docs.setdefault(doc["key"], doc)
                out = json.dumps({"ack": keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.socket = self.ctx.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/indicators"


@pytest.fixture
def pki(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (Debian package openssl); .ci/run installs it")
    d = tmp_path / "pki"
    d.mkdir()
    return make_pki(d)


def load_history(db_url: str) -> Site:
    """The Shanxi demo enterprise with 25 hours of its incomer's import counter, built into intervals."""
    site = Site.model_validate(site_from_file("demo-shanxi-chemical.yaml"))
    with psycopg.connect(db_url) as conn:
        register_site(conn, site)
    code, gateway = site.enterprise.code, site.gateways[0].id
    readings = [
        {"p": "incomer.import_kwh", "t": utc_iso(START + timedelta(minutes=5 * k)), "v": 1000 + KWH_PER_STEP * k,
         "q": "good"}
        for k in range(25 * 12 + 2)
    ]  # fmt: skip
    payload = encode_telemetry(code, gateway, 1, readings, datetime.now(UTC))
    with psycopg.connect(db_url, autocommit=True) as conn:
        prepare(conn)
        msg = Message(topic(code, gateway, "telemetry"), payload, 1, 1)
        write_batch(conn, [parse_message(msg, Registry(db_url), 600.0)])
        while build_intervals(conn).batches:
            pass
    return site


def write_config(tmp_path, pki, a: Receiver, b: Receiver):
    path = tmp_path / "upload.yaml"
    path.write_text(
        f"""
version: 1
since: "2026-02-28T00:00:00+08:00"
until: "2026-03-01T01:00:00+08:00"
settle: 0
build_interval: 0.2
batch_size: 10
destinations:
  - {{name: national, url: "{a.url}", ca_file: pki/ca.pem, backoff_min: 0.05, backoff_max: 0.4}}
  - {{name: province, url: "{b.url}", ca_file: pki/ca.pem, backoff_min: 0.05, backoff_max: 0.4}}
"""
    )
    return load_upload_config(path)


class Running:
    def __init__(self, uploader: Uploader) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=uploader.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def destination(db_url: str, name: str) -> tuple:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT acked_id, attempts, coalesce(last_error, '') FROM upload_destinations WHERE name = %s", (name,)
        ).fetchone() or (0, 0, "")


def test_both_platforms_get_every_indicator_once_in_order(db_url, tmp_path, pki):
    site = load_history(db_url)
    a, b = Receiver(pki, "national").start(), Receiver(pki, "province").start()
    b.partial_ack = True
    config = write_config(tmp_path, pki, a, b)
    expected_count = 100 + 1 + 1  # 15-minute periods from 00:00 to 01:00 next day, Feb 28, February
    try:
        with Running(Uploader(config, db_url)):
            wait_until(lambda: b.partial_acks >= 2, 30, what="a partial acknowledgement to be retried")
            assert "not acknowledged" in destination(db_url, "province")[2]
            b.partial_ack, b.failing = False, True
            wait_until(lambda: len(a.arrivals) == expected_count, 60, what="every indicator at the healthy platform")
            wait_until(lambda: b.refused_503 >= 3, 30, what="the failing platform to be tried again")
        assert b.arrivals == []
        # The failing platform goes away entirely; a new uploader process resumes from the database.
        b.stop()
        with Running(Uploader(config, db_url)):
            wait_until(lambda: "refused" in destination(db_url, "province")[2].lower(), 30, what="connection refused")
            assert destination(db_url, "province")[0] == 0
            b.failing = False
            b.start()
            wait_until(lambda: len(b.arrivals) == expected_count, 60, what="every indicator at the recovered platform")
            wait_until(lambda: destination(db_url, "province")[1] == 0, 10, what="the cursor to record the ack")
    finally:
        a.stop()
        b.stop()

    with psycopg.connect(db_url) as conn:
        built = [k for (k,) in conn.execute("SELECT key FROM upload_indicators ORDER BY id")]
        last_id = conn.execute("SELECT max(id) FROM upload_indicators").fetchone()[0]
    assert len(built) == len(set(built)) == expected_count
    # Exactly once and in order at both: nothing acknowledged was sent again, even across the restart.
    assert a.arrivals == built and b.arrivals == built
    assert a.docs == b.docs
    assert destination(db_url, "national")[0] == destination(db_url, "province")[0] == last_id
    assert all(len(h) == 32 for h in a.headers + b.headers)

    code = site.enterprise.code
    quarter = [d for d in a.docs.values() if d["period"] == "15min"]
    assert [d["period_start"] for d in quarter][:2] == ["2026-02-28T00:00:00+08:00", "2026-02-28T00:15:00+08:00"]
    assert quarter[-1]["period_start"] == "2026-03-01T00:45:00+08:00"
    factor = electricity_factor("140000", 2026).value
    mwh = 3 * KWH_PER_STEP / 1000
    for doc in quarter:
        assert doc["enterprise"] == code and doc["key"].startswith(f"{code}/15min/")
        ind = doc["indicators"]
        assert ind["by_carrier"]["electricity"]["quantity"] == pytest.approx(mwh)
        assert ind["by_carrier"]["electricity"]["unit"] == "MWh"
        assert ind["energy_tce"] == pytest.approx(mwh * ELECTRICITY_TCE_PER_MWH)
        assert ind["energy_dual_control_tce"] == pytest.approx(mwh * ELECTRICITY_TCE_PER_MWH)
        assert ind["co2_t"] == pytest.approx(mwh * factor)
        assert doc["method_version"] and doc["factor_set"]
    [day] = [d for d in a.docs.values() if d["period"] == "day"]
    assert (day["period_start"], day["period_end"]) == ("2026-02-28T00:00:00+08:00", "2026-03-01T00:00:00+08:00")
    assert day["indicators"]["by_carrier"]["electricity"]["quantity"] == pytest.approx(96 * mwh)
    [month] = [d for d in a.docs.values() if d["period"] == "month"]
    assert month["period_start"] == "2026-02-01T00:00:00+08:00"
    assert month["indicators"]["energy_tce"] == pytest.approx(day["indicators"]["energy_tce"])


def test_bad_upload_configuration_names_the_field(tmp_path):
    path = tmp_path / "upload.yaml"
    path.write_text(
        'since: "2026-01-01T00:00:00+08:00"\ndestinations:\n  - {name: national, url: "http://platform/x"}\n'
        "batch_sise: 5\n"
    )
    with pytest.raises(SiteConfigError) as err:
        load_upload_config(path)
    text = str(err.value)
    assert f"{path}:3: destinations[0].url: Value error, must be an https:// URL" in text
    assert f"{path}:4: batch_sise: unknown field; did you mean 'batch_size'?" in text


def test_shipped_sample_configuration_loads():
    config = load_upload_config(REPO / "collector" / "upload" / "upload.yaml")
    assert [d.name for d in config.destinations] == ["national", "province"]
    assert all(d.url.startswith("https://") for d in config.destinations)
    assert config.periods == ["15min", "day", "month"]


def test_cli_refuses_a_bad_configuration(tmp_path):
    path = tmp_path / "upload.yaml"
    path.write_text('since: "2026-01-01T00:00:00"\ndestinations: []\n')
    done = subprocess.run(
        [sys.executable, "-m", "carbonwatch", "upload", "--config", str(path)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"{path}:1: since: Input should have timezone info" in done.stderr
    assert f"{path}:2: destinations: List should have at least 1 item" in done.stderr


def test_cli_refuses_an_unregistered_enterprise(db_url, tmp_path):
    path = tmp_path / "upload.yaml"
    path.write_text(
        'since: "2026-01-01T00:00:00+08:00"\nenterprises: ["91140105MA0K7Q2B30"]\n'
        'destinations: [{name: national, url: "https://127.0.0.1:1/x"}]\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "carbonwatch", "upload", "--config", str(path), "--database-url", db_url],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "enterprises: not registered: 91140105MA0K7Q2B30" in done.stderr
