"""Store and forward: the gateway's durable, bounded, ordered outbox (SQLite in WAL mode).

Every poll result is written here before anything is sent, as one row with the next
sequence number. The publisher sends rows in sequence order and deletes a row only when the
broker has acknowledged it (PUBACK), so broker outages, restarts and ``kill -9`` lose
nothing that was read. The sequence number is persistent: it never goes back, even when the
outbox empties or the agent restarts.

Bound: ``max_bytes`` of payload. When full, ``drop_oldest`` deletes the oldest rows (and
counts them in ``dropped_total``) so the newest data survives a very long outage;
``stop_polling`` refuses new rows (:class:`BufferFull`) and the agent pauses polling.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path


class BufferFull(RuntimeError):
    pass


@dataclass(frozen=True)
class Entry:
    seq: int
    created: float  # epoch seconds when the row was written
    payload: bytes  # JSON array of wire readings


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, created REAL NOT NULL, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class Outbox:
    def __init__(self, path: str | Path, max_bytes: int, when_full: str = "drop_oldest", synchronous: str = "FULL"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.when_full = when_full
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT coalesce(sum(length(payload)), 0), count(*) FROM outbox").fetchone()
        self._bytes, self._depth = int(row[0]), int(row[1])
        self.dropped_total = self._meta("dropped_total")

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def append(self, payload: bytes, created: float | None = None) -> int:
        """Persist one message; return its sequence number. Durable when this returns."""
        created = time.time() if created is None else created
        with self._lock:
            if self._bytes + len(payload) > self.max_bytes and self.when_full == "stop_polling":
                raise BufferFull(f"outbox holds {self._bytes} bytes, limit {self.max_bytes}")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = max(self._meta("last_seq"), self._max_seq()) + 1
                self._db.execute("INSERT INTO outbox (seq, created, payload) VALUES (?, ?, ?)", (seq, created, payload))
                self._set_meta("last_seq", seq)
                self._bytes += len(payload)
                self._depth += 1
                dropped = self._enforce_bound()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._reload_counts()
                raise
            self.dropped_total += dropped
            return seq

    def _max_seq(self) -> int:
        return int(self._db.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0])

    def _enforce_bound(self) -> int:
        dropped = 0
        while self._bytes > self.max_bytes and self._depth > 1:
            seq, size = self._db.execute("SELECT seq, length(payload) FROM outbox ORDER BY seq LIMIT 1").fetchone()
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._bytes -= size
            self._depth -= 1
            dropped += 1
        if dropped:
            self._set_meta("dropped_total", self._meta("dropped_total") + dropped)
        return dropped

    def _reload_counts(self) -> None:
        row = self._db.execute("SELECT coalesce(sum(length(payload)), 0), count(*) FROM outbox").fetchone()
        self._bytes, self._depth = int(row[0]), int(row[1])

    def peek(self, after_seq: int = 0, limit: int = 100) -> list[Entry]:
        """The oldest rows with seq > after_seq, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, created, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [Entry(int(s), float(c), bytes(p)) for s, c, p in rows]

    def ack(self, seq: int) -> None:
        """The broker has the message: forget it."""
        with self._lock:
            row = self._db.execute("SELECT length(payload) FROM outbox WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                return
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._bytes -= int(row[0])
            self._depth -= 1

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def bytes(self) -> int:
        return self._bytes

    def oldest_created(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT created FROM outbox ORDER BY seq LIMIT 1").fetchone()
        return float(row[0]) if row else None

    def close(self) -> None:
        with self._lock:
            self._db.close()
