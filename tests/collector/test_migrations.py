"""`carbonwatch db migrate`: idempotent, and the plain or TimescaleDB path as the server allows."""

from __future__ import annotations

import psycopg
import pytest

from carbonwatch.collector.db import available_migrations, migrate, schema_variant, timescaledb_available


def test_migrate_twice_changes_nothing(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert migrate(conn) == []  # the template was migrated already
        versions = [r[0] for r in conn.execute("SELECT version FROM cw_schema_migrations ORDER BY 1")]
        assert versions == sorted({m.version for m in available_migrations()})
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"enterprises", "gateways", "meters", "points", "readings", "intervals_15m", "dead_letters"} <= tables


def test_fresh_database_gets_the_variant_the_server_supports(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        expected = "timescale" if timescaledb_available(conn) else "plain"
        assert schema_variant(conn) == expected


def test_cli_migrate_is_idempotent(db_url):
    from carbonwatch.cli import main

    assert main(["db", "migrate", "--database-url", db_url]) == 0
    assert main(["db", "migrate", "--database-url", db_url]) == 0


def test_timescale_path_makes_hypertables(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        if not timescaledb_available(conn):
            pytest.skip("the timescaledb extension is not installed on this PostgreSQL; plain path tested instead")
        rows = conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables").fetchall()
        assert {"readings", "intervals_15m"} <= {r[0] for r in rows}


def test_pending_migrations_are_reported_until_applied(pg_admin_url):
    from fleet import scratch_database

    from carbonwatch.collector.db import pending_migrations

    with scratch_database(pg_admin_url) as url, psycopg.connect(url, autocommit=True) as conn:
        assert pending_migrations(conn) == sorted({m.version for m in available_migrations()})
        migrate(conn)
        assert pending_migrations(conn) == []
