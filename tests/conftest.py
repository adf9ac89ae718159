"""Fixtures for real services: a PostgreSQL database per test and a private Mosquitto broker.

PostgreSQL: the server at $CARBONWATCH_TEST_PG (default postgresql://postgres@127.0.0.1:5432/postgres).
A migrated template database is made once per session; each test gets a copy and it is dropped
after. Mosquitto: each test that asks gets its own broker on a free loopback port, so a test can
stop and restart it without disturbing others.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest

PG_ADMIN_URL = os.environ.get("CARBONWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _with_db(url: str, dbname: str) -> str:
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**info)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    psycopg = pytest.importorskip("psycopg", reason="the centre install (psycopg) is needed for database tests")
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=5, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}); .ci/run starts it", pytrace=False)
    return PG_ADMIN_URL


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: str) -> Iterator[str]:
    import psycopg

    from carbonwatch.collector.db import migrate

    name = f"cw_tmpl_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(_with_db(pg_admin_url, name), autocommit=True) as conn:
            migrate(conn)
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            # A template must have no sessions; TimescaleDB runs a scheduler in every database
            # that allows connections, so close the template to new ones and end the old ones.
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
        yield name
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_admin_url: str, pg_template: str) -> Iterator[str]:
    """URL of a fresh, migrated database that is dropped after the test."""
    import psycopg

    name = f"cw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        for attempt in range(50):
            try:
                admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
                break
            except psycopg.errors.ObjectInUse:  # a background worker was just leaving the template
                if attempt == 49:
                    raise
                time.sleep(0.1)
    try:
        yield _with_db(pg_admin_url, name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def broker(tmp_path_factory):
    """A private Mosquitto on a free loopback port; stop()/start() simulate an outage."""
    from carbonwatch.embedded import LocalMosquitto

    b = LocalMosquitto(tmp_path_factory.mktemp("mosquitto"))
    b.start()
    try:
        yield b
    finally:
        b.stop()
