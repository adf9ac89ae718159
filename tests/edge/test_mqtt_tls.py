"""MQTT over TLS against a private Mosquitto with a CA made for the test: username/password,
client certificates, refused credentials, an untrusted server, and a broker ACL that rejects
a publish (the message must stay in the outbox)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from edgekit import Subscriber, localise_sample, sample_raw

from carbonwatch.edge.agent import Agent
from carbonwatch.edge.buffer import TELEMETRY
from carbonwatch.embedded import LocalMosquitto, free_port
from carbonwatch.simulators.server import SiteSimulator

from support import make_pki

pytestmark = pytest.mark.timeout(120)

ENTERPRISE = "91130200MA0CW3T1X0"


def _run(*cmd: str, cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate with CN gw-sample."""
    for tool in ("openssl", "mosquitto_passwd"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian packages openssl, mosquitto); .ci/run installs them")
    d = make_pki(tmp_path_factory.mktemp("pki"))
    _run("mosquitto_passwd", "-b", "-c", "passwd", "gw-sample", "s3cret", cwd=d)
    _run("mosquitto_passwd", "-b", "passwd", "gw-other", "other", cwd=d)
    (d / "secret").write_text("s3cret\n")
    # Anonymous clients (the test's subscriber) may read; each gateway writes only its own topics.
    (d / "acl").write_text(
        f"topic read cw/v1/#\n\nuser gw-sample\ntopic write cw/v1/{ENTERPRISE}/gw-sample/#\n\n"
        f"user gw-other\ntopic write cw/v1/{ENTERPRISE}/gw-other/#\n"
    )
    return d


@pytest.fixture
def tls_broker(pki, tmp_path):
    """Plain listener (the subscriber), TLS + password listener, TLS + client certificate listener."""
    password_port, cert_port = free_port(), free_port()
    tls = f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'server.pem'}\nkeyfile {pki / 'server.key'}\n"
    extra = (
        f"password_file {pki / 'passwd'}\nacl_file {pki / 'acl'}\n"
        f"listener {password_port} 127.0.0.1\n{tls}"
        f"listener {cert_port} 127.0.0.1\n{tls}require_certificate true\nuse_identity_as_username true\n"
    )
    broker = LocalMosquitto(tmp_path / "mosquitto", extra_config=extra).start()
    broker.password_port, broker.cert_port = password_port, cert_port
    yield broker
    broker.stop()


def _run_agent(site, seconds: float, until=None) -> Agent:
    async def main():
        sims = SiteSimulator(site)
        await sims.start()
        agent = Agent(site)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline and not (until and until(agent)):
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await task
            await sims.stop()
        return agent

    return asyncio.run(main())


def _site(tmp_path, port: int, **mqtt):
    return localise_sample(
        sample_raw(), tmp_path, meters={"incomer"}, poll_interval=0.5, mqtt={"host": "127.0.0.1", "port": port, **mqtt}
    )


def test_username_and_password_over_tls(tmp_path, pki, tls_broker):
    sub = Subscriber(tls_broker.port)
    try:
        site = _site(
            tmp_path,
            tls_broker.password_port,
            username="gw-sample",
            password_file=str(pki / "secret"),
            tls={"ca_file": str(pki / "ca.pem")},
        )
        agent = _run_agent(site, 30, until=lambda a: a.publisher.published_total >= 3)
        assert agent.publisher.published_total >= 3
        sub.wait(lambda s: len(s.of("telemetry")) >= 3, 20, "telemetry over TLS")
    finally:
        sub.close()


def test_client_certificate_authentication(tmp_path, pki, tls_broker):
    sub = Subscriber(tls_broker.port)
    try:
        site = _site(
            tmp_path,
            tls_broker.cert_port,
            tls={
                "ca_file": str(pki / "ca.pem"),
                "cert_file": str(pki / "client.pem"),
                "key_file": str(pki / "client.key"),
            },
        )
        agent = _run_agent(site, 30, until=lambda a: a.publisher.published_total >= 3)
        assert agent.publisher.published_total >= 3
        sub.wait(lambda s: len(s.of("telemetry")) >= 3, 20, "telemetry with a client certificate")
    finally:
        sub.close()


def test_refused_credentials_and_untrusted_servers_keep_the_data(tmp_path, pki, tls_broker, caplog):
    ca = {"ca_file": str(pki / "ca.pem")}
    cases = [
        (tls_broker.password_port, {"username": "gw-sample", "password": "wrong", "tls": ca}),
        (tls_broker.password_port, {"username": "gw-sample", "password": "s3cret", "tls": {}}),  # system CAs only
        (tls_broker.cert_port, {"tls": ca}),  # no client certificate
    ]
    for i, (port, mqtt) in enumerate(cases):
        (tmp_path / str(i)).mkdir()
        site = _site(tmp_path / str(i), port, **mqtt)
        with caplog.at_level(logging.WARNING, logger="carbonwatch.edge.publisher"):
            agent = _run_agent(site, 4)
        assert agent.publisher.published_total == 0, mqtt
        assert agent.metrics.mqtt_connects.labels("failed")._value.get() >= 1
        assert agent.metrics.mqtt_connects.labels("ok")._value.get() == 0
        assert agent.readings_total > 0, "polling goes on"
        assert agent.outbox.depth + agent.outbox.pending_items > 0, "and the data is kept"
    refused = [r for r in caplog.records if "refused the connection: Not authorized" in r.getMessage()]
    assert refused and refused[0].levelno == logging.ERROR
    assert any("CERTIFICATE_VERIFY_FAILED" in r.getMessage() for r in caplog.records)


def test_a_publish_the_broker_rejects_stays_in_the_outbox(tmp_path, pki, tls_broker):
    # gw-other may only write under its own gateway id: every telemetry publish of gw-sample is refused.
    site = _site(
        tmp_path, tls_broker.password_port, username="gw-other", password="other", tls={"ca_file": str(pki / "ca.pem")}
    )
    agent = _run_agent(site, 30, until=lambda a: a.metrics.publishes.labels("telemetry", "rejected")._value.get() >= 2)
    assert agent.metrics.publishes.labels("telemetry", "rejected")._value.get() >= 2
    assert agent.publisher.published_total == 0
    from carbonwatch.edge.buffer import Outbox

    box = Outbox(site.gateways[0].buffer.path, 10**9)
    try:
        assert [m.seq for m in box.peek(0, 3) if m.stream == TELEMETRY][:1] == [1], "nothing was deleted"
    finally:
        box.close()
    assert "rejected" in (agent.publisher.last_error or "")
