"""The upload service: builds indicators for newly closed periods and sends them to every
destination, each on its own thread with its own durable cursor, retransmitting with
exponential back-off (and jitter) until acknowledged, in the order they were built.

State lives in PostgreSQL (migration 0007_upload.sql): what was built (``upload_indicators``,
unique by idempotency key), up to where (``upload_cursors``), and each destination's last
acknowledged indicator (``upload_destinations``). A restart resumes from there; one destination
being down never holds the other back.
"""

from __future__ import annotations

import logging
import random
import threading
from datetime import UTC, datetime, timedelta

import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from psycopg.types.json import Jsonb

from .config import Destination, UploadConfig
from .indicators import build_indicators, closed_periods, period_end
from .sender import NotAcknowledged, post_batch, ssl_context

log = logging.getLogger("carbonwatch.collector.upload")

MAX_PERIODS_PER_PASS = 2000  # a long backfill is built in steps, so sending starts early


class UploadMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "carbonwatch_upload_"
        self.pending = Gauge(
            p + "pending_indicators", "Indicators built, not yet acknowledged", ["destination"], registry=r
        )
        self.acked = Counter(p + "acknowledged_total", "Indicators acknowledged", ["destination"], registry=r)
        self.failures = Counter(p + "failures_total", "Requests not acknowledged", ["destination"], registry=r)
        self.last_ack = Gauge(
            p + "last_ack_timestamp_seconds", "Unix time of the last acknowledgement", ["destination"], registry=r
        )
        self.built = Counter(p + "built_total", "Indicators built, by period", ["period"], registry=r)


class Uploader:
    def __init__(self, config: UploadConfig, database_url: str) -> None:
        self.config = config
        self.database_url = database_url
        self.metrics = UploadMetrics()
        self.wakeup = {d.name: threading.Event() for d in config.destinations}
        for d in config.destinations:
            self.metrics.pending.labels(d.name)
            self.metrics.acked.labels(d.name)
            self.metrics.failures.labels(d.name)

    def check(self, conn: psycopg.Connection) -> None:
        """Refuse to start on configured enterprises the registry does not know."""
        if not self.config.enterprises:
            return
        known = {
            r[0] for r in conn.execute("SELECT code FROM enterprises WHERE code = ANY(%s)", (self.config.enterprises,))
        }
        missing = [e for e in self.config.enterprises if e not in known]
        if missing:
            raise ValueError(f"enterprises: not registered: {', '.join(missing)} (carbonwatch db register SITE.yaml)")

    # --- building ---------------------------------------------------------------------------

    def build_once(self, conn: psycopg.Connection, now: datetime | None = None) -> int:
        """Build the indicators of periods closed since the last pass; returns how many."""
        c = self.config
        until = (now or datetime.now(UTC)) - timedelta(seconds=c.settle)
        if c.until is not None:
            until = min(until, c.until)
        enterprises = c.enterprises or [r[0] for r in conn.execute("SELECT code FROM enterprises ORDER BY code")]
        built = 0
        for enterprise in enterprises:
            for period in c.periods:
                row = conn.execute(
                    "SELECT built_until FROM upload_cursors WHERE enterprise = %s AND period = %s", (enterprise, period)
                ).fetchone()
                after = max(c.since, row[0]) if row else c.since
                starts = closed_periods(period, after, until)[:MAX_PERIODS_PER_PASS]
                if not starts:
                    continue
                docs = build_indicators(conn, enterprise, period, starts)
                with conn.transaction():
                    with conn.cursor() as cur:
                        cur.executemany(
                            """INSERT INTO upload_indicators (key, enterprise, period, period_start, payload)
                               VALUES (%s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING""",
                            [(d["key"], enterprise, period, s, Jsonb(d)) for d, s in zip(docs, starts, strict=True)],
                        )
                    conn.execute(
                        """INSERT INTO upload_cursors (enterprise, period, built_until) VALUES (%s, %s, %s)
                           ON CONFLICT (enterprise, period) DO UPDATE SET built_until = EXCLUDED.built_until""",
                        (enterprise, period, period_end(starts[-1], period)),
                    )
                built += len(docs)
                self.metrics.built.labels(period).inc(len(docs))
        if built:
            for event in self.wakeup.values():
                event.set()
        return built

    # --- sending ----------------------------------------------------------------------------

    def send_loop(self, d: Destination, stop: threading.Event) -> None:
        """Send everything after this destination's cursor, in order, until ``stop``."""
        ctx = ssl_context(d)
        token = d.token_file.read_text("utf-8").strip() if d.token_file else None
        conn: psycopg.Connection | None = None
        delay = d.backoff_min
        while not stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=10)
                    conn.execute("INSERT INTO upload_destinations (name) VALUES (%s) ON CONFLICT DO NOTHING", (d.name,))
                (acked_id,) = conn.execute(
                    "SELECT acked_id FROM upload_destinations WHERE name = %s", (d.name,)
                ).fetchone()
                rows = conn.execute(
                    "SELECT id, payload FROM upload_indicators WHERE id > %s ORDER BY id LIMIT %s",
                    (acked_id, self.config.batch_size),
                ).fetchall()
                (pending,) = conn.execute(
                    "SELECT count(*) FROM upload_indicators WHERE id > %s", (acked_id,)
                ).fetchone()
                self.metrics.pending.labels(d.name).set(pending)
                if not rows:
                    self.wakeup[d.name].wait(self.config.build_interval)
                    self.wakeup[d.name].clear()
                    continue
                try:
                    post_batch(d, ctx, [payload for _, payload in rows], token)
                except NotAcknowledged as exc:
                    self.metrics.failures.labels(d.name).inc()
                    conn.execute(
                        """UPDATE upload_destinations SET attempts = attempts + 1, last_error = %s,
                                  last_attempt_at = now() WHERE name = %s""",
                        (str(exc)[:1000], d.name),
                    )
                    log.warning(
                        "%s: %d indicators not acknowledged (%s); retry in %.1f s", d.name, len(rows), exc, delay
                    )
                    stop.wait(delay * random.uniform(0.8, 1.2))
                    delay = min(delay * 2, d.backoff_max)
                    continue
                conn.execute(
                    """UPDATE upload_destinations SET acked_id = %s, acked_at = now(), attempts = 0, last_error = NULL,
                              last_attempt_at = now() WHERE name = %s""",
                    (rows[-1][0], d.name),
                )
                self.metrics.acked.labels(d.name).inc(len(rows))
                self.metrics.last_ack.labels(d.name).set_to_current_time()
                delay = d.backoff_min
            except psycopg.OperationalError as exc:
                log.warning("%s: database unavailable (%s); retrying", d.name, exc)
                if conn is not None:
                    conn.close()
                conn = None
                stop.wait(delay)
                delay = min(delay * 2, d.backoff_max)
        if conn is not None:
            conn.close()

    # --- the service ------------------------------------------------------------------------

    def run(self, stop: threading.Event, metrics_port: int | None = None, metrics_host: str = "127.0.0.1") -> None:
        """Build and send until ``stop`` is set."""
        server = None
        if metrics_port is not None:
            server, _ = start_http_server(metrics_port, addr=metrics_host, registry=self.metrics.registry)
        senders = [
            threading.Thread(target=self.send_loop, args=(d, stop), name=f"upload-{d.name}", daemon=True)
            for d in self.config.destinations
        ]
        for t in senders:
            t.start()
        conn: psycopg.Connection | None = None
        try:
            while not stop.is_set():
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=10)
                    n = self.build_once(conn)
                    if n:
                        log.info("built %d indicators", n)
                        continue  # a backfill in steps: build on at once
                except psycopg.OperationalError as exc:
                    log.warning("upload builder: database unavailable (%s); retrying", exc)
                    if conn is not None:
                        conn.close()
                    conn = None
                except Exception:  # e.g. a point the accounting refuses: senders go on, the cursor stays
                    log.exception("upload builder failed; retrying in %.0f s", self.config.build_interval)
                stop.wait(self.config.build_interval)
        finally:
            stop.set()
            for event in self.wakeup.values():
                event.set()
            for t in senders:
                t.join(30)
            if conn is not None:
                conn.close()
            if server is not None:
                server.shutdown()
                server.server_close()
