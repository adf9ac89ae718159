"""Store and forward: the gateway's durable, bounded, ordered outbox (SQLite in WAL mode).

Two stages, both on disk:

1. **pending**: every poll result is written here as one chunk (a JSON array of readings) the
   moment it is read, in one transaction, before anything is sent.
2. **messages**: pending chunks are *sealed* into MQTT messages of at most ``batch_max_items``
   items once enough have gathered or the oldest has waited ``batch_max_age`` seconds. Sealing
   gives a message its sequence number in the same transaction, so a message keeps its
   ``seq`` across retransmissions, restarts and ``kill -9``.

The publisher sends messages in order and deletes one only when the broker has acknowledged
it (PUBACK), so broker outages, restarts and ``kill -9`` lose nothing that was stored. Each
stream (``telemetry``, ``events``) has its own sequence, persistent in the file: it never goes
back, even when the outbox empties.

Bound: ``max_bytes`` of stored payload (the file is somewhat larger: SQLite pages and indexes).
When a new chunk would exceed it, ``drop_oldest`` deletes the oldest messages (then the oldest
pending chunks) and counts every dropped message and item, so the newest data survives a very
long outage; ``stop_polling`` refuses the chunk (:class:`BufferFull`) and the agent stops
polling until the backlog drains. A corrupt file is moved aside (never deleted) and a new one
started.

The methods are blocking (SQLite commits wait for the disk); the ``a*`` variants run them on
the outbox's own thread, one at a time and in call order, so the event loop never waits for a
disk flush.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("carbonwatch.edge.buffer")

TELEMETRY = "telemetry"
EVENTS = "events"
STREAMS = (TELEMETRY, EVENTS)
SCHEMA_VERSION = 2
RESUME_AT = 0.9  # stop_polling: polling resumes once the outbox is back under 90% of its bound


class BufferFull(RuntimeError):
    """The outbox is at its bound and the policy is ``stop_polling``."""


class OutboxError(RuntimeError):
    """The outbox file cannot be used (not writable, not a database)."""


@dataclass(frozen=True)
class Message:
    id: int  # global order of sealing
    stream: str
    seq: int  # per stream, +1 per message, persistent
    created: float  # epoch seconds when its oldest item was stored
    count: int  # items (readings or events)
    payload: bytes  # JSON array of the items


_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, created REAL NOT NULL,
    count INTEGER NOT NULL, items BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, seq INTEGER NOT NULL,
    created REAL NOT NULL, count INTEGER NOT NULL, payload BLOB NOT NULL, UNIQUE (stream, seq));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class Outbox:
    def __init__(
        self,
        path: str | Path,
        max_bytes: int,
        when_full: str = "drop_oldest",
        batch_max_items: int = 500,
        batch_max_age: float = 1.0,
        synchronous: str = "FULL",
    ) -> None:
        if when_full not in ("drop_oldest", "stop_polling"):
            raise ValueError(f"when_full must be drop_oldest or stop_polling, not {when_full!r}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.when_full = when_full
        self.batch_max_items = batch_max_items
        self.batch_max_age = batch_max_age
        self._lock = threading.RLock()
        self._refusing = False  # stop_polling refused a chunk: full until the backlog drains
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="outbox")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._open(synchronous)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"buffer {self.path}: cannot open: {exc}") from None

    # --- opening ------------------------------------------------------------------------------

    def _open(self, synchronous: str) -> sqlite3.Connection:
        try:
            return self._prepare(sqlite3.connect(self.path, isolation_level=None, check_same_thread=False), synchronous)
        except sqlite3.OperationalError:
            raise  # permissions, a full disk: the user must fix it, nothing is moved
        except sqlite3.DatabaseError as exc:
            aside = self._move_aside()
            log.error("buffer %s is not a usable database (%s); moved to %s, starting a new one", self.path, exc, aside)
            return self._prepare(sqlite3.connect(self.path, isolation_level=None, check_same_thread=False), synchronous)

    def _prepare(self, db: sqlite3.Connection, synchronous: str) -> sqlite3.Connection:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.executescript(_SCHEMA)
            self._migrate(db)
            self._db = db  # _refresh reads through it
            self._refresh()
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                src.rename(Path(str(aside) + suffix))
        return aside

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")
        old = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").fetchone()
        if old:  # schema 1: one table of telemetry messages
            db.execute(
                "INSERT INTO messages (stream, seq, created, count, payload) "
                "SELECT 'telemetry', seq, created, json_array_length(payload), payload FROM outbox ORDER BY seq"
            )
            db.execute("DROP TABLE outbox")
            db.execute("UPDATE meta SET key = 'last_seq:telemetry' WHERE key = 'last_seq'")
            db.execute("UPDATE meta SET key = 'dropped_messages' WHERE key = 'dropped_total'")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")

    def _refresh(self) -> None:
        """Reload the in-memory counters from the file."""
        with self._lock:
            q = self._db.execute
            self._pending_bytes = q("SELECT coalesce(sum(length(items)), 0) FROM pending").fetchone()[0]
            self._pending = dict.fromkeys(STREAMS, 0)
            for stream, n in q("SELECT stream, sum(count) FROM pending GROUP BY stream"):
                self._pending[stream] = int(n)
            self._message_bytes, self._depth = q(
                "SELECT coalesce(sum(length(payload)), 0), count(*) FROM messages"
            ).fetchone()
            self._stream_depth = dict.fromkeys(STREAMS, 0)
            for stream, n in q("SELECT stream, count(*) FROM messages GROUP BY stream"):
                self._stream_depth[stream] = int(n)
            self.dropped_messages_total = self._meta("dropped_messages")
            self.dropped_items_total = self._meta("dropped_items")
            self._oldest = self._query_oldest()
            self._oldest_pending = self._query_oldest_pending()

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _query_oldest_pending(self) -> float | None:
        row = self._db.execute("SELECT created FROM pending ORDER BY id LIMIT 1").fetchone()
        return float(row[0]) if row else None

    def _query_oldest(self) -> float | None:
        q = self._db.execute
        rows = [
            q("SELECT created FROM messages ORDER BY id LIMIT 1").fetchone(),
            q("SELECT created FROM pending ORDER BY id LIMIT 1").fetchone(),
        ]
        times = [float(r[0]) for r in rows if r]
        return min(times) if times else None

    # --- writing ------------------------------------------------------------------------------

    def add(self, stream: str, items: bytes, count: int, created: float | None = None) -> None:
        """Persist one chunk (a JSON array of ``count`` items). Durable when this returns."""
        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}")
        created = time.time() if created is None else created
        with self._lock:
            if self.when_full == "stop_polling" and self.bytes + len(items) > self.max_bytes:
                self._refusing = True
                raise BufferFull(f"outbox holds {self.bytes} bytes, limit {self.max_bytes}")
            self._transaction(self._add, stream, items, count, created)

    def _add(self, stream: str, items: bytes, count: int, created: float) -> None:
        self._db.execute(
            "INSERT INTO pending (stream, created, count, items) VALUES (?, ?, ?, ?)", (stream, created, count, items)
        )
        self._pending_bytes += len(items)
        self._pending[stream] += count
        if self._oldest is None:
            self._oldest = created
        if self._oldest_pending is None:
            self._oldest_pending = created
        if self._pending[stream] >= self.batch_max_items:
            self._seal(time.time(), only_full=True)
        self._enforce_bound()

    def seal(self, now: float | None = None, force: bool = False) -> int:
        """Seal pending chunks into messages: full batches, and partial ones that waited
        ``batch_max_age`` (or all, with ``force``). Returns the number of messages sealed."""
        with self._lock:
            if not self.pending_items:
                return 0
            return self._transaction(self._seal, time.time() if now is None else now, False, force)

    def _seal(self, now: float, only_full: bool, force: bool = False) -> int:
        rows = self._db.execute("SELECT id, stream, created, count, items FROM pending ORDER BY id").fetchall()
        sealed = 0
        for stream in STREAMS:
            batch: list = []
            items = 0
            for chunk in (r for r in rows if r[1] == stream):
                if batch and items + chunk[3] > self.batch_max_items:
                    sealed += self._write_message(stream, batch)  # the next chunk does not fit: full
                    batch, items = [], 0
                batch.append(chunk)
                items += chunk[3]
            if batch:
                aged = now - batch[0][2] >= self.batch_max_age
                if items >= self.batch_max_items or (not only_full and (force or aged)):
                    sealed += self._write_message(stream, batch)
        self._oldest_pending = self._query_oldest_pending()
        return sealed

    def _write_message(self, stream: str, chunks: list) -> int:
        seq = self._meta(f"last_seq:{stream}") + 1
        payload = b"[" + b",".join(bytes(c[4])[1:-1] for c in chunks if c[3]) + b"]"
        count = sum(c[3] for c in chunks)
        self._db.execute(
            "INSERT INTO messages (stream, seq, created, count, payload) VALUES (?, ?, ?, ?, ?)",
            (stream, seq, chunks[0][2], count, payload),
        )
        self._set_meta(f"last_seq:{stream}", seq)
        ids = [c[0] for c in chunks]
        self._db.execute(f"DELETE FROM pending WHERE id IN ({','.join('?' * len(ids))})", ids)
        self._pending_bytes -= sum(len(c[4]) for c in chunks)
        self._pending[stream] -= count
        self._message_bytes += len(payload)
        self._depth += 1
        self._stream_depth[stream] += 1
        return 1

    def _enforce_bound(self) -> None:
        if self.when_full != "drop_oldest" or self.bytes <= self.max_bytes:
            return
        dropped_messages = dropped_items = 0
        q = self._db.execute
        while self.bytes > self.max_bytes:
            row = q("SELECT id, count, length(payload), stream FROM messages ORDER BY id LIMIT 1").fetchone()
            if row is not None:
                q("DELETE FROM messages WHERE id = ?", (row[0],))
                self._message_bytes -= row[2]
                self._depth -= 1
                self._stream_depth[row[3]] -= 1
                dropped_messages += 1
            else:
                row = q("SELECT id, count, length(items), stream FROM pending ORDER BY id LIMIT 1").fetchone()
                if row is None or self.pending_items == row[1]:
                    break  # keep the newest chunk whatever its size
                q("DELETE FROM pending WHERE id = ?", (row[0],))
                self._pending_bytes -= row[2]
                self._pending[row[3]] -= row[1]
            dropped_items += row[1]
        self.dropped_messages_total += dropped_messages
        self.dropped_items_total += dropped_items
        self._set_meta("dropped_messages", self.dropped_messages_total)
        self._set_meta("dropped_items", self.dropped_items_total)
        self._oldest = self._query_oldest()
        self._oldest_pending = self._query_oldest_pending()

    def _transaction(self, fn, *args):
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(*args)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._refresh()
            raise
        return result

    # --- reading and acknowledging --------------------------------------------------------------

    def peek(self, after_id: int = 0, limit: int = 100) -> list[Message]:
        """The oldest sealed messages with id > after_id, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, stream, seq, created, count, payload FROM messages WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [Message(int(i), s, int(q), float(c), int(n), bytes(p)) for i, s, q, c, n, p in rows]

    def peek_streams(self, after_seqs: dict[str, int], limit: int = 100) -> list[Message]:
        """The oldest sealed messages of the given streams with seq > that stream's ``after_seqs``
        entry, in order of sealing (each stream is read through its (stream, seq) index)."""
        out: list[Message] = []
        with self._lock:
            for stream, after in after_seqs.items():
                rows = self._db.execute(
                    "SELECT id, stream, seq, created, count, payload FROM messages "
                    "WHERE stream = ? AND seq > ? ORDER BY seq LIMIT ?",
                    (stream, after, limit),
                ).fetchall()
                out += [Message(int(i), s, int(q), float(c), int(n), bytes(p)) for i, s, q, c, n, p in rows]
        out.sort(key=lambda m: m.id)
        return out[:limit]

    def ack(self, ids: Iterable[int]) -> int:
        """The broker has these messages: forget them. Returns how many were still stored."""
        ids = list(ids)
        if not ids:
            return 0
        with self._lock:
            marks = ",".join("?" * len(ids))
            self._db.execute("BEGIN IMMEDIATE")
            try:
                found = self._db.execute(
                    f"SELECT stream, count(*), coalesce(sum(length(payload)), 0) FROM messages "
                    f"WHERE id IN ({marks}) GROUP BY stream",
                    ids,
                ).fetchall()
                self._db.execute(f"DELETE FROM messages WHERE id IN ({marks})", ids)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            n = sum(row[1] for row in found)
            self._depth -= n
            self._message_bytes -= sum(row[2] for row in found)
            for stream, count, _ in found:
                self._stream_depth[stream] -= count
            self._oldest = self._query_oldest()
            if self.bytes <= RESUME_AT * self.max_bytes:
                self._refusing = False
            return n

    # --- state ------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Sealed messages waiting for the broker's acknowledgement."""
        return self._depth

    def has(self, stream: str) -> bool:
        """Whether anything of ``stream`` is stored, sealed or pending."""
        return self._stream_depth[stream] > 0 or self._pending[stream] > 0

    @property
    def pending_items(self) -> int:
        """Items stored but not yet sealed into a message."""
        return sum(self._pending.values())

    @property
    def bytes(self) -> int:
        return self._pending_bytes + self._message_bytes

    @property
    def full(self) -> bool:
        """At the bound; under ``stop_polling`` it stays full until acks free a tenth of it."""
        return self._refusing or self.bytes >= self.max_bytes

    def oldest_created(self) -> float | None:
        """When the oldest stored item (sealed or not) was written, epoch seconds."""
        return self._oldest

    def last_seq(self, stream: str = TELEMETRY) -> int:
        with self._lock:
            return self._meta(f"last_seq:{stream}")

    def next_seal_due(self) -> float | None:
        """When the oldest pending chunk will be due for sealing (epoch seconds), if any."""
        return None if self._oldest_pending is None else self._oldest_pending + self.batch_max_age

    # --- async facade: the same calls, on the outbox thread ------------------------------------

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def aadd(self, stream: str, items: bytes, count: int, created: float | None = None) -> None:
        await self._run(self.add, stream, items, count, created)

    async def aseal(self, now: float | None = None, force: bool = False) -> int:
        return await self._run(self.seal, now, force)

    async def apeek(self, after_id: int = 0, limit: int = 100) -> list[Message]:
        return await self._run(self.peek, after_id, limit)

    async def apeek_streams(self, after_seqs: dict[str, int], limit: int = 100) -> list[Message]:
        return await self._run(self.peek_streams, after_seqs, limit)

    async def aack(self, ids: Iterable[int]) -> int:
        return await self._run(self.ack, list(ids))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            self._db.close()
