"""Database connections and schema migrations (``carbonwatch db migrate``).

Migrations are SQL files in ``migrations/`` applied in name order, each once, inside a
transaction, under an advisory lock so that several collectors starting together do not
race. ``NNNN_name.timescale.sql`` is applied only where the ``timescaledb`` extension is
available and ``NNNN_name.plain.sql`` only where it is not; the version recorded is
``NNNN_name`` with the variant that ran.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources

import psycopg

DATABASE_URL_ENV = "CARBONWATCH_DATABASE_URL"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/carbonwatch"
_LOCK_KEY = 0x63770001  # advisory lock id for migrations ("cw" + 1)


def database_url(explicit: str | None = None) -> str:
    return explicit or os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL


def connect(url: str | None = None, **kwargs) -> psycopg.Connection:
    return psycopg.connect(database_url(url), **kwargs)


@dataclass(frozen=True)
class Migration:
    version: str
    variant: str  # "all", "timescale" or "plain"
    sql: str


def available_migrations() -> list[Migration]:
    folder = resources.files("carbonwatch.collector").joinpath("migrations")
    out = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        stem = entry.name[: -len(".sql")]
        version, _, variant = stem.partition(".")
        out.append(Migration(version, variant or "all", entry.read_text("utf-8")))
    return out


def timescaledb_available(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    return row is not None


def timescaledb_installed(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row is not None


def migrate(conn: psycopg.Connection, timescale: bool | None = None) -> list[str]:
    """Apply pending migrations; return the versions applied now. Safe to run again."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS cw_schema_migrations ("
            " version text PRIMARY KEY, variant text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r[0] for r in conn.execute("SELECT version FROM cw_schema_migrations")}
        if timescale is None:
            timescale = timescaledb_installed(conn) or timescaledb_available(conn)
        wanted = "timescale" if timescale else "plain"
        for m in available_migrations():
            if m.version in done or m.variant not in ("all", wanted):
                continue
            conn.execute(m.sql)
            conn.execute("INSERT INTO cw_schema_migrations (version, variant) VALUES (%s, %s)", (m.version, m.variant))
            applied_now.append(f"{m.version} ({m.variant})")
    return applied_now


def pending_migrations(conn: psycopg.Connection) -> list[str]:
    """Versions not yet applied to this database (empty when the schema is current)."""
    if conn.execute("SELECT to_regclass('cw_schema_migrations')").fetchone()[0] is None:
        return sorted({m.version for m in available_migrations()})
    done = {r[0] for r in conn.execute("SELECT version FROM cw_schema_migrations")}
    return sorted({m.version for m in available_migrations()} - done)


def schema_variant(conn: psycopg.Connection) -> str:
    """'timescale' or 'plain', as the storage migrations were applied."""
    row = conn.execute(
        "SELECT variant FROM cw_schema_migrations WHERE variant <> 'all' ORDER BY version DESC LIMIT 1"
    ).fetchone()
    return row[0] if row else "plain"
