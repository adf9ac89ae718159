"""One batch of parsed messages into the database, in one transaction.

Order of work, the same in every collector so that two collectors writing overlapping rows
wait for each other instead of deadlocking: readings (binary COPY into a temporary staging
table, then ``INSERT ... ON CONFLICT DO NOTHING`` in (point, time) order; or, see
:class:`DirectCopy`, a COPY straight into ``readings`` in the same order), completeness bits,
the interval builder's dirty spans, dead letters, gateway sequence numbers (the latest, and each
message's in ``telemetry_received`` for the gap check of sequence.py). Everything a batch
implies is committed together or not at all, so the builder can never miss readings.

A database that refuses part of a batch for a reason other than being unavailable (a
constraint an operator added, an unsupported insert into a compressed chunk) must not stall
the collector: the batch is split until the refused messages are isolated, and those go to
the dead letters with the database's message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

from .copy_format import COLUMNS, encode_readings
from .timebase import slot_keys, unpack_slot_keys
from .validate import REJECTED_BY_DATABASE, DeadLetter, Parsed

STAGING = "cw_staging"
# Rows older than this are checked against existing rows before the insert. On TimescaleDB they
# may sit in compressed chunks, where ON CONFLICT is slow and has had bugs (timescaledb#5801,
# #7672); on plain PostgreSQL the check costs one index probe per late row.
LATE_AFTER_US = 7 * 86_400 * 1_000_000

_INSERT_READINGS = f"""
INSERT INTO readings (point_id, ts, value, quality)
SELECT s.point_id, s.ts, s.value, s.quality FROM {STAGING} s
WHERE s.ts >= %(late)s
ORDER BY s.point_id, s.ts
ON CONFLICT DO NOTHING"""

_INSERT_LATE_READINGS = f"""
INSERT INTO readings (point_id, ts, value, quality)
SELECT s.point_id, s.ts, s.value, s.quality FROM {STAGING} s
WHERE s.ts < %(late)s AND NOT EXISTS (SELECT 1 FROM readings r WHERE r.point_id = s.point_id AND r.ts = s.ts)
ORDER BY s.point_id, s.ts
ON CONFLICT DO NOTHING"""

_EPOCH_US = "timestamptz 'epoch' + interval '1 microsecond' * "

# Only the months whose bits change are written: in steady operation a point's current slot is
# already set by its first reading, so most batches change nothing here.
_COMPLETENESS = f"""
WITH k AS (
    SELECT s.point_id, {_EPOCH_US} s.month_us AS bucket, bit_or(cw_slot_bit(s.slot)) AS slots
    FROM unnest(%s::int4[], %s::int8[], %s::int4[]) AS s(point_id, month_us, slot)
    GROUP BY 1, 2
)
INSERT INTO completeness_1mon AS c (point_id, bucket, slots)
SELECT k.point_id, k.bucket, k.slots FROM k
LEFT JOIN completeness_1mon o ON o.point_id = k.point_id AND o.bucket = k.bucket
WHERE o.slots IS NULL OR o.slots | k.slots <> o.slots
ORDER BY 1, 2
ON CONFLICT (point_id, bucket) DO UPDATE SET slots = c.slots | EXCLUDED.slots"""

_DIRTY = f"""
INSERT INTO interval_dirty (point_ids, lo, hi)
SELECT array_agg(s.point_id ORDER BY s.point_id), array_agg({_EPOCH_US} s.lo_us ORDER BY s.point_id),
       array_agg({_EPOCH_US} s.hi_us ORDER BY s.point_id)
FROM unnest(%s::int4[], %s::int8[], %s::int8[]) AS s(point_id, lo_us, hi_us)
JOIN points p ON p.id = s.point_id AND p.kind = 'counter'
HAVING count(*) > 0"""

_DEAD = """
INSERT INTO dead_letters (topic, payload, reason, detail, digest)
SELECT * FROM unnest(%s::text[], %s::bytea[], %s::text[], %s::text[], %s::bytea[]) ORDER BY 5
ON CONFLICT (digest) DO NOTHING"""

_GATEWAYS = """
UPDATE gateways g SET last_seq = GREATEST(COALESCE(g.last_seq, -1), s.seq), last_seen = now()
FROM (SELECT * FROM unnest(%s::int4[], %s::int8[]) AS s(id, seq) ORDER BY 1) s
WHERE g.id = s.id"""

_RECEIVED = """
INSERT INTO telemetry_received (gateway_id, seq)
SELECT * FROM unnest(%s::int4[], %s::int8[]) AS s(id, seq) ORDER BY 1, 2
ON CONFLICT DO NOTHING"""


class DirectCopy:
    """When to try the fast path: a binary COPY of the batch straight into ``readings``.

    Most batches hold only new, recent rows, and for them the staging table and the
    ``INSERT ... ON CONFLICT`` from it cost about twice the COPY itself. A duplicate (a
    redelivery, a row another collector committed) makes the COPY fail: the batch is rolled back
    to a savepoint and takes the staging path, which skips duplicates. Duplicates come in runs
    (a collector's session redelivered after a crash), so after a failure the next ``pause``
    batches go straight to the staging path.
    """

    def __init__(self, pause: int = 50) -> None:
        self.pause = pause
        self._skip = 0
        self.attempts = 0
        self.fallbacks = 0

    def wanted(self) -> bool:
        if self._skip:
            self._skip -= 1
            return False
        return True

    def failed(self) -> None:
        self.fallbacks += 1
        self._skip = self.pause


@dataclass
class WriteResult:
    inserted: int = 0  # new reading rows
    readings: int = 0  # reading rows offered, duplicates included
    stored: list[Parsed] = field(default_factory=list)  # messages whose readings are committed
    dead: list[DeadLetter] = field(default_factory=list)  # dead letters committed


def prepare(conn: psycopg.Connection) -> None:
    """Create this connection's staging table (once per connection)."""
    conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} "
        "(point_id int4, ts timestamptz, value float8, quality int2) ON COMMIT DELETE ROWS"
    )


def _int_array(values: np.ndarray) -> str:
    """An integer array as a PostgreSQL array literal: for thousands of elements several times
    cheaper to send than a Python list, which psycopg adapts element by element."""
    return "{" + ",".join(map(str, values.tolist())) + "}"


class SlotCache:
    """The latest completeness slot each point is known to have committed, so that the writer
    sends only slots that may be new (in steady operation, one per point per 15 minutes)."""

    def __init__(self) -> None:
        self._last: dict[int, int] = {}

    def new(self, keys: np.ndarray) -> np.ndarray:
        last = self._last
        return keys[[last.get(k >> 32) != k for k in keys.tolist()]]

    def remember(self, keys: np.ndarray) -> None:
        last = self._last
        for k in keys.tolist():  # sorted, so each point ends with its latest slot
            if k > last.get(k >> 32, -1):
                last[k >> 32] = k


def _clean(text: str) -> str:
    return text.replace("\x00", "\\x00")  # PostgreSQL text cannot hold NUL


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order of ``keys`` and the start index of each run of equal keys in that order."""
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    return order, np.flatnonzero(np.r_[True, k[1:] != k[:-1]])


def _copy_direct(cur: psycopg.Cursor, pid, ts_us, value, quality, direct: DirectCopy) -> int | None:
    """Rows inserted by a COPY straight into ``readings``; None when a duplicate refused it."""
    order = np.lexsort((ts_us, pid))  # (point, time), the order of the staging insert
    direct.attempts += 1
    try:
        with cur.connection.transaction():  # a savepoint: a refused COPY leaves the batch intact
            with cur.copy(f"COPY readings ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as cp:
                cp.write(encode_readings(pid[order], ts_us[order], value[order], quality[order]))
            return cur.rowcount
    except psycopg.errors.UniqueViolation:
        direct.failed()
        return None


def write_batch(
    conn: psycopg.Connection,
    batch: list[Parsed],
    slots: SlotCache | None = None,
    direct: DirectCopy | None = None,
) -> WriteResult:
    """Write ``batch`` in one transaction; returns what was committed. Raises psycopg errors.

    With ``direct``, a batch of recent readings is first tried as a COPY into ``readings``.
    """
    # An autocommit connection makes the block below a real BEGIN/COMMIT. On a connection with
    # autocommit off it would be a SAVEPOINT inside an implicit transaction that never commits,
    # and the caller would acknowledge messages whose rows are not durable.
    if not conn.autocommit or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("write_batch needs an idle autocommit connection, or acknowledged rows may not commit")
    good = [p for p in batch if p.dead is None]
    dead = [p.dead for p in batch if p.dead is not None]
    result = WriteResult(stored=good, dead=dead)
    keys = None
    with conn.transaction(), conn.cursor() as cur:
        if any(p.rows for p in good):
            pid = np.concatenate([p.point_id for p in good])
            ts_us = np.concatenate([p.ts_us for p in good])
            value = np.concatenate([p.value for p in good])
            quality = np.concatenate([p.quality for p in good])
            result.readings = len(pid)
            late = datetime.now(UTC) - timedelta(microseconds=LATE_AFTER_US)
            has_late = ts_us.min() < late.timestamp() * 1e6
            inserted = None
            if direct is not None and not has_late and direct.wanted():
                inserted = _copy_direct(cur, pid, ts_us, value, quality, direct)
            if inserted is None:
                with cur.copy(f"COPY {STAGING} ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.write(encode_readings(pid, ts_us, value, quality))
                cur.execute(_INSERT_READINGS, {"late": late})
                inserted = cur.rowcount
                if has_late:
                    cur.execute(_INSERT_LATE_READINGS, {"late": late})
                    inserted += cur.rowcount
            result.inserted = inserted

            # A value was read (good, or uncertain: kept as read but doubtful, e.g. a counter that
            # went backwards): it counts as received and goes to the counter intervals.
            ok = quality < 2
            if ok.any():
                keys = slot_keys(pid[ok], ts_us[ok])
                fresh = keys if slots is None else slots.new(keys)
                if len(fresh):
                    cur.execute(_COMPLETENESS, [_int_array(a) for a in unpack_slot_keys(fresh)])
                order, starts = _groups(pid[ok])
                t = ts_us[ok][order]
                cur.execute(
                    _DIRTY,
                    (
                        _int_array(pid[ok][order][starts]),
                        _int_array(np.minimum.reduceat(t, starts)),
                        _int_array(np.maximum.reduceat(t, starts)),
                    ),
                )
        if dead:
            cur.execute(
                _DEAD,
                (
                    [_clean(d.topic) for d in dead],
                    [d.payload for d in dead],
                    [d.reason for d in dead],
                    [_clean(d.detail) for d in dead],
                    [hashlib.sha256(d.topic.encode() + d.payload).digest() for d in dead],
                ),
            )
        seqs: dict[int, int] = {}
        for p in good:
            seqs[p.gateway_id] = max(p.seq, seqs.get(p.gateway_id, -1))
        if seqs:
            cur.execute(_GATEWAYS, (list(seqs), list(seqs.values())))
        arrived = [(p.gateway_id, p.seq) for p in batch if p.gateway_id is not None and p.seq is not None]
        if arrived:
            cur.execute(_RECEIVED, ([g for g, _ in arrived], [q for _, q in arrived]))
    if slots is not None and keys is not None:
        slots.remember(keys)  # only now: the bits are committed
    return result


def write_isolating(
    conn: psycopg.Connection, batch: list[Parsed], slots: SlotCache | None = None, direct: DirectCopy | None = None
) -> WriteResult:
    """:func:`write_batch`, splitting the batch when the database refuses it for a reason other
    than being unavailable; a single refused message becomes a dead letter. Operational errors
    (connection lost, deadlock, shutdown) propagate so that the caller retries the whole batch.
    """
    try:
        return write_batch(conn, batch, slots, direct)
    except psycopg.OperationalError:
        raise
    except psycopg.DatabaseError as exc:
        if len(batch) == 1:
            p = batch[0]
            m = p.message
            if p.dead is not None:
                raise  # even the dead letter was refused: nothing sensible is left to do
            detail = f"{type(exc).__name__}: {exc}"
            dead = DeadLetter(m.topic, m.payload, REJECTED_BY_DATABASE, detail)
            return write_batch(conn, [Parsed(m, dead=dead, gateway_id=p.gateway_id, seq=p.seq)])
    half = len(batch) // 2
    first = write_isolating(conn, batch[:half], slots, direct)
    second = write_isolating(conn, batch[half:], slots, direct)
    return WriteResult(
        inserted=first.inserted + second.inserted,
        readings=first.readings + second.readings,
        stored=first.stored + second.stored,
        dead=first.dead + second.dead,
    )
