"""The interval builder: counter readings to 15-minute consumption, crash-safe and set-based.

The writer queues a dirty span (point, earliest and latest new reading) in the same
transaction as the readings. The builder claims queued spans, merges them per point, and
in one transaction: locks the points (so two collectors never interleave on one point),
reads the readings around every span with one query, lets the accounting core turn them
into consumption per bucket, replaces the affected buckets of ``intervals_15m``, refreshes
the rollups (plain PostgreSQL), and deletes the spans. A crash at any point leaves the spans
queued and the work is redone.

Which buckets a span affects. New readings change the pairs from the last good reading before
them to the first one after, so at least the buckets from the one holding that previous
reading to the one holding the next are rewritten. The core keeps its baseline through a
backwards step (a transient zero is skipped, not counted from) and skips a lone jump that the
next reading takes back (a garbage register read), so a window must start on a reading the
core accepted, and a late reading can change whether the readings around it are accepted.
A reading that is not below any earlier one and not above the reading after it is accepted
whatever came before (counted, or with a plausible rate limit, a new level not counted): from
it on a computation over the whole history and one over the window agree. Hence the window
starts, among the last few readings before the first bucket, at the latest such reading, and
it ends after the first such reading following the span. The baseline search looks
``LOOKBACK`` readings back (runs of backwards readings are shorter in practice); the end
search loads more readings as needed, up to ``MAX_TAIL`` (after a register rollover, readings
stay below those before the wrap for a long time). A property test checks the agreement, with
transient drops, lone spikes, rollovers, a rate limit and readings arriving in any order.

Each counter's limits come from the points registry: ``rollover`` (the register width) and
``max_rate_per_hour`` (the site file's ``max_rate``), passed to the core per second.

A wrapping counter without ``max_rate`` has its wraps beyond 1/16 of the register judged by its own
observed rate: the largest clean 15-minute bucket among the ``RATE_WINDOW_BUCKETS`` (a day) before
the wrap (see :mod:`carbonwatch.accounting.kernels`). A window computation does not hold that day,
and the bucket its first reading falls in lacks what came before, so the builder passes those
buckets in from ``intervals_15m`` itself (``prior``): stored buckets before the rewrite are what a
computation over the whole history gives (that is what the builder maintains), and a verdict on a
wrap never changes which buckets are clean, so they are final. They are read only where they can
change something: a rate can only turn a reset into a rollover, so the window is computed first
with no history (every earlier bucket taken as not clean) and computed again with the stored
buckets only when it has a RESET. The other way round, rewritten buckets change the rate of
wraps up to a day after them, so for such counters the rewrite runs on to the first reading
accepted whatever came before at least ``RATE_WINDOW_BUCKETS`` after the end found above (no cost
when the new readings are the latest, the usual case).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import psycopg

from carbonwatch.accounting.flags import FLAG_PARTIAL, FLAG_RESET, FLAG_ROLLOVER, RATE_WINDOW_BUCKETS
from carbonwatch.accounting.intervals import BUCKET_SECONDS, counter_intervals

from .copy_format import HEADER, PG_EPOCH_US, TRAILER
from .fleet import FleetRefresher
from .metrics import COUNTER_FLAGS, CollectorMetrics
from .rollups import refresh_rollups

log = logging.getLogger("carbonwatch.collector.intervals")

LOOKBACK = 8  # readings before a span searched for a baseline, and first readings after it loaded
MAX_TAIL = 5000  # readings after a span loaded at most while looking for where the rewrite can end
_LOCK_CLASS = 0x63770002  # advisory lock class of per-point builder locks ("cw" + 2)

_CLAIM = """
DELETE FROM interval_dirty WHERE id IN (
    SELECT id FROM interval_dirty
    WHERE not_before IS NULL OR not_before <= now()
    ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING point_ids, lo, hi, attempts"""

_REQUEUE = """
INSERT INTO interval_dirty (point_ids, lo, hi, attempts, not_before)
VALUES (ARRAY[%(p)s], ARRAY[%(lo)s], ARRAY[%(hi)s], %(n)s,
        now() + least(interval '1 hour', interval '10 seconds' * power(2, %(n)s - 1)))"""

_EPOCH_ARRAY = "array_agg(extract(epoch FROM u.ts)::float8 ORDER BY u.ts), array_agg(u.value ORDER BY u.ts)"

# Per span: the counter's limits, the last readings before the span (to find the baseline the
# new readings are counted from) and the first reading after it.
_SPANS = f"""
SELECT d.point_id, p.rollover, p.max_rate_per_hour, x.*,
       (SELECT min(r.ts) FROM readings r WHERE r.point_id = d.point_id AND r.quality < 2 AND r.ts > d.hi)
FROM unnest(%s::int4[], %s::timestamptz[], %s::timestamptz[]) AS d(point_id, lo, hi)
JOIN points p ON p.id = d.point_id AND p.kind = 'counter'
CROSS JOIN LATERAL (
    SELECT {_EPOCH_ARRAY} FROM (
        SELECT r.ts, r.value FROM readings r
        WHERE r.point_id = d.point_id AND r.quality < 2 AND r.ts < d.lo ORDER BY r.ts DESC LIMIT {LOOKBACK}
    ) u
) x
ORDER BY d.point_id"""

# Per window [lo, hi): its readings, the last readings before it and the first ones after it.
_WINDOWS = f"""
SELECT w.point_id, x.*
FROM unnest(%s::int4[], %s::timestamptz[], %s::timestamptz[]) AS w(point_id, lo, hi)
CROSS JOIN LATERAL (
    SELECT {_EPOCH_ARRAY} FROM (
        (SELECT r.ts, r.value FROM readings r
         WHERE r.point_id = w.point_id AND r.quality < 2 AND r.ts < w.lo ORDER BY r.ts DESC LIMIT {LOOKBACK})
        UNION ALL
        (SELECT r.ts, r.value FROM readings r
         WHERE r.point_id = w.point_id AND r.quality < 2 AND r.ts >= w.lo AND r.ts < w.hi)
        UNION ALL
        (SELECT r.ts, r.value FROM readings r
         WHERE r.point_id = w.point_id AND r.quality < 2 AND r.ts >= w.hi ORDER BY r.ts LIMIT %s)
    ) u
) x
ORDER BY w.point_id"""

# Per window: the stored clean buckets (complete, neither a rollover nor a reset) from a day before
# the bucket of its first reading through that bucket; they give the core the counter's observed rate.
_PRIOR = f"""
SELECT w.point_id, array_agg(extract(epoch FROM i.bucket)::float8), array_agg(i.quantity)
FROM unnest(%s::int4[], %s::timestamptz[], %s::timestamptz[]) AS w(point_id, lo, hi)
JOIN intervals_15m i ON i.point_id = w.point_id AND i.bucket >= w.lo AND i.bucket <= w.hi
WHERE i.flags & {FLAG_PARTIAL | FLAG_ROLLOVER | FLAG_RESET} = 0
GROUP BY w.point_id"""
RATE_SPAN = RATE_WINDOW_BUCKETS * BUCKET_SECONDS  # seconds of history the observed rate looks at

_DELETE = """
DELETE FROM intervals_15m i USING unnest(%s::int4[], %s::timestamptz[], %s::timestamptz[]) AS s(point_id, lo, hi)
WHERE i.point_id = s.point_id AND i.bucket >= s.lo AND i.bucket < s.hi"""

_IV_DTYPE = np.dtype(
    [("n", ">i2"), ("l_p", ">i4"), ("p", ">i4"), ("l_b", ">i4"), ("b", ">i8"), ("l_q", ">i4"), ("q", ">f8"),
     ("l_f", ">i4"), ("f", ">i4"), ("l_c", ">i4"), ("c", ">f4")]
)  # fmt: skip


@dataclass
class BuildResult:
    batches: int = 0  # queue rows claimed (one per committed batch of readings)
    points: int = 0
    buckets: int = 0  # intervals written
    failed: list[int] = field(default_factory=list)  # points postponed after an error
    flags: dict[int, int] = field(default_factory=dict)  # flag bit -> intervals written with it


def _confirmed(values: np.ndarray, last: bool) -> np.ndarray:
    """Per reading: the reading after it does not fall back between the readings so far and it
    (it is at or above it, or below every reading so far: a drop the core judges on its own), so
    the core does not take it for a lone jump. ``last``: the verdict for the last reading."""
    out = np.empty(len(values), dtype=bool)
    lowest = np.minimum.accumulate(values)
    out[:-1] = (values[1:] >= values[:-1]) | (values[1:] < lowest[:-1])
    if len(values):
        out[-1] = last
    return out


def baseline_index(values: np.ndarray, n: int | None = None, *, complete: bool = False) -> int:
    """Index of the reading to start from among the first ``n`` (default: all) readings: the
    latest one that is not below any earlier one and that the reading after it confirms (see
    :func:`_confirmed`), so that the core accepts it whatever follows. ``values[n:]`` are
    readings after them, if loaded; the last reading of all is confirmed only when nothing
    follows it (``complete``). 0 if no reading qualifies (the earliest loaded: the best that can
    be done) or there are none."""
    n = len(values) if n is None else n
    if n == 0:
        return 0
    upto = values[: n + 1]
    confirmed = _confirmed(upto, complete)[:n]
    head = values[:n]
    found = np.flatnonzero((head >= np.maximum.accumulate(head)) & confirmed)
    return int(found[-1]) if len(found) else 0


def window_end(ts: np.ndarray, values: np.ndarray, hi: float, min_end: float, tail_complete: bool) -> float | None:
    """End (exclusive, a bucket boundary) of the buckets to rewrite: through the bucket of the
    first reading after ``hi`` that is not below any reading before it and that the reading
    after it confirms (:func:`_confirmed`), at least to ``min_end``; None when the readings
    loaded do not show such a reading (load more).

    A bucket is fully described when the readings loaded reach past its end (the core decides on
    a reading with the next one in view), or when they are all there are (``tail_complete``).
    """
    if len(ts) == 0:
        return min_end
    running = np.maximum.accumulate(values)
    bucket_end = ts - ts % BUCKET_SECONDS + BUCKET_SECONDS
    described = (bucket_end <= ts[-1]) | tail_complete
    confirmed = _confirmed(values, tail_complete)  # the last: confirmed if nothing follows
    stable = np.flatnonzero((ts > hi) & (values >= running) & confirmed & described)
    if len(stable):
        return max(bucket_end[stable[0]], min_end)
    if tail_complete:
        return max(_floor(ts[-1]) + BUCKET_SECONDS, min_end)
    return None


def _judged_by_rate(rollover: float | None, max_rate: float | None) -> bool:
    """True when the core judges the counter's wraps beyond the floor by its own observed rate: it
    wraps (a register width) and has no plausible rate configured (as ``accounting.intervals``)."""
    wraps = rollover is not None and math.isfinite(rollover) and rollover > 0
    rated = max_rate is not None and math.isfinite(max_rate) and max_rate >= 0
    return wraps and not rated


def _floor(t: float) -> float:
    return t - t % BUCKET_SECONDS


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _merge(rows) -> tuple[dict[int, tuple[datetime, datetime]], dict[int, int]]:
    """Queue rows to one span per point (earliest to latest new reading), and failed attempts so far."""
    spans: dict[int, tuple[datetime, datetime]] = {}
    attempts: dict[int, int] = {}
    for point_ids, los, his, tries in rows:
        for point_id, lo, hi in zip(point_ids, los, his, strict=True):
            old = spans.get(point_id)
            spans[point_id] = (lo, hi) if old is None else (min(lo, old[0]), max(hi, old[1]))
            attempts[point_id] = max(tries, attempts.get(point_id, 0))
    return spans, attempts


def _encode(point_id: int, bucket: np.ndarray, qty: np.ndarray, flags: np.ndarray, cov: np.ndarray) -> bytes:
    rows = np.empty(len(bucket), dtype=_IV_DTYPE)
    rows["n"] = 5
    rows["l_p"], rows["l_b"], rows["l_q"], rows["l_f"], rows["l_c"] = 4, 8, 8, 4, 4
    rows["p"] = point_id
    rows["b"] = bucket.astype(np.int64) * 1_000_000 - PG_EPOCH_US
    rows["q"], rows["f"], rows["c"] = qty, flags, cov
    return rows.tobytes()


def build_intervals(conn: psycopg.Connection, max_batches: int = 500) -> BuildResult:
    """Claim queued work and rebuild the intervals it names, in one transaction. Returns what was
    done; ``batches == 0`` means the queue was empty. A point whose computation raises is put
    back in the queue with back-off (``failed``); the others are written."""
    if not conn.autocommit:
        raise RuntimeError("build_intervals needs an autocommit connection")
    result = BuildResult()
    with conn.transaction(), conn.cursor() as cur:
        rows = cur.execute(_CLAIM, (max_batches,)).fetchall()
        if not rows:
            return result
        spans, attempts = _merge(rows)
        ids = sorted(spans)
        result.batches, result.points = len(rows), len(ids)
        # Sorted lock order: two builders sharing points wait instead of deadlocking.
        cur.execute("SELECT pg_advisory_xact_lock(%s, p) FROM unnest(%s::int4[]) AS p", (_LOCK_CLASS, ids))
        # Where each span's rewrite starts and (at least) ends: from the bucket of the baseline the
        # new readings are counted from, to the bucket of the first reading after them.
        first = {}  # point -> (start bucket, minimum end bucket, latest new reading)
        limits = {}  # point -> (rollover, max rate per second), None where not configured
        for point_id, rollover, max_rate_per_hour, ts_before, values_before, next_ts in cur.execute(
            _SPANS, (ids, [spans[p][0] for p in ids], [spans[p][1] for p in ids])
        ).fetchall():
            lo, hi = spans[point_id]
            if ts_before:
                # the last reading before the span is followed by a new one: never confirmed here
                k = baseline_index(np.array(values_before, dtype=np.float64))
                start = _floor(ts_before[k])
            else:
                start = _floor(lo.timestamp())
            first[point_id] = (start, _floor((next_ts or hi).timestamp()) + BUCKET_SECONDS, hi.timestamp())
            limits[point_id] = (rollover, None if max_rate_per_hour is None else max_rate_per_hour / 3600.0)
        # Load each window with a few readings after it; where those do not show where the rewrite
        # can end (a long run below an earlier reading, e.g. after a rollover), load more.
        # Counters whose wraps their own observed rate judges (a register width, no max_rate).
        by_rate = {p for p, (rollover, max_rate) in limits.items() if _judged_by_rate(rollover, max_rate)}
        windows: dict[int, tuple[np.ndarray, np.ndarray, float, bool]] = {}
        pending, tail_limit = list(first), LOOKBACK + 1
        while pending:
            retry = []
            for point_id, ts_list, value_list in cur.execute(
                _WINDOWS,
                (pending, [_utc(first[p][0]) for p in pending], [_utc(first[p][1]) for p in pending], tail_limit),
            ).fetchall():
                lo, min_hi, new_hi = first[point_id]
                ts = np.array(ts_list or [], dtype=np.float64)
                values = np.array(value_list or [], dtype=np.float64)
                # the readings after the window start are loaded: a reading with none after it is the last
                before = int(np.searchsorted(ts, lo))
                start = baseline_index(values, before, complete=True)
                ts, values = ts[start:], values[start:]
                complete = len(ts) - np.searchsorted(ts, min_hi) < tail_limit
                done = complete or tail_limit >= MAX_TAIL
                end = window_end(ts, values, new_hi, min_hi, done)
                if end is not None and point_id in by_rate:
                    # the buckets rewritten give the observed rate of wraps up to a day after them
                    end = window_end(ts, values, end + RATE_SPAN, end, done)
                if end is None:
                    retry.append(point_id)
                else:
                    windows[point_id] = (ts, values, end, before == 0)  # nothing before: the whole history
            pending, tail_limit = retry, min(tail_limit * 8, MAX_TAIL)

        def compute(point_id: int, prior: np.ndarray | None):
            ts, values, _, _ = windows[point_id]
            rollover, max_rate = limits[point_id]
            extra = {} if prior is None else {"prior": prior}
            try:
                return counter_intervals(ts, values, rollover, BUCKET_SECONDS, max_rate=max_rate, **extra)
            except Exception:
                log.exception("intervals of point %d failed to build; retried later", point_id)
                lo_dt, hi_dt = spans[point_id]
                n = attempts[point_id] + 1
                cur.execute(_REQUEUE, {"p": point_id, "lo": lo_dt, "hi": hi_dt, "n": n})
                result.failed.append(point_id)
                return None

        # First without the stored history of the observed rate (every bucket before the window taken
        # as not clean); a wrap judged a rollover stays one with the history, a reset may not.
        computed = {}
        recheck: dict[int, float] = {}  # point -> bucket (epoch seconds) of its window's first reading
        for point_id, (ts, values, hi, whole) in windows.items():
            lo = first[point_id][0]
            finite = ts[np.isfinite(values)]
            window_first = _floor(finite[0]) if len(finite) else lo
            history = point_id in by_rate and not whole and window_first < lo
            iv = compute(point_id, np.zeros(1) if history else None)
            if iv is None:
                continue
            computed[point_id] = iv
            if history and (iv.flags[(iv.bucket >= lo) & (iv.bucket < hi)] & FLAG_RESET).any():
                recheck[point_id] = window_first
        if recheck:
            ids_ = list(recheck)
            priors = {p: np.zeros(RATE_WINDOW_BUCKETS + 1) for p in ids_}
            for point_id, buckets, quantities in cur.execute(
                _PRIOR,
                (ids_, [_utc(recheck[p] - RATE_SPAN) for p in ids_], [_utc(recheck[p]) for p in ids_]),
            ).fetchall():
                at = np.rint((np.array(buckets) - (recheck[point_id] - RATE_SPAN)) / BUCKET_SECONDS).astype(np.int64)
                priors[point_id][at] = quantities
            for point_id in ids_:
                iv = compute(point_id, priors[point_id])
                if iv is None:
                    del computed[point_id]
                else:
                    computed[point_id] = iv

        body: list[bytes] = []
        affected: tuple[list, list, list] = ([], [], [])
        for point_id, iv in computed.items():
            lo, hi = first[point_id][0], windows[point_id][2]
            affected[0].append(point_id)
            affected[1].append(_utc(lo))
            affected[2].append(_utc(hi))
            keep = (iv.bucket >= lo) & (iv.bucket < hi)
            if keep.any():
                body.append(_encode(point_id, iv.bucket[keep], iv.quantity[keep], iv.flags[keep], iv.coverage[keep]))
                result.buckets += int(keep.sum())
                flagged = iv.flags[keep]
                for bit in COUNTER_FLAGS.values():
                    if n := int(np.count_nonzero(flagged & bit)):
                        result.flags[bit] = result.flags.get(bit, 0) + n

        cur.execute(_DELETE, affected)
        if body:
            with cur.copy(
                "COPY intervals_15m (point_id, bucket, quantity, flags, coverage) FROM STDIN (FORMAT BINARY)"
            ) as cp:
                cp.write(HEADER + b"".join(body) + TRAILER)
        refresh_rollups(conn, *affected)
    return result


class IntervalBuilder:
    """Runs :func:`build_intervals` in a thread every ``period`` seconds, or right away while it
    is falling behind. Waiting lets the work of many batches gather into one build (a point's
    open bucket is read once, not once per batch) and leaves the machine to ingestion."""

    def __init__(
        self,
        database_url: str,
        metrics: CollectorMetrics,
        period: float = 5.0,
        max_batches: int = 500,
        fleet_period: float = 60.0,
    ) -> None:
        self.database_url = database_url
        self.metrics = metrics
        self.fleet = FleetRefresher(metrics, fleet_period)
        self.period = period
        self.max_batches = max_batches  # queue rows per transaction
        self.wakeup = threading.Event()

    def run(self, stop: threading.Event, drain_timeout: float = 10.0) -> None:
        """Build until ``stop`` is set, then bring the intervals up to date (for at most
        ``drain_timeout`` seconds) so that a stopped collector leaves current intervals behind."""
        conn: psycopg.Connection | None = None
        backoff = 0.5
        while not stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=10)
                done = self._cycle(conn)
                backoff = 0.5
                if done.batches < self.max_batches:  # not falling behind: let work gather, and ingest run
                    self.wakeup.wait(self.period)
                    self.wakeup.clear()
            except psycopg.OperationalError as exc:
                log.warning("interval builder: database unavailable (%s); retrying", exc)
                if conn is not None:
                    conn.close()
                conn = None
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception:  # the queue keeps the work; the backlog metric shows it is not moving
                log.exception("interval build failed; retrying in %.0f s", self.period)
                stop.wait(self.period)
        deadline = time.monotonic() + drain_timeout
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)
            while time.monotonic() < deadline and self._cycle(conn).batches:
                pass
        except psycopg.Error as exc:
            log.warning("intervals left queued on stop (%s); the next start builds them", exc)
        finally:
            if conn is not None:
                conn.close()

    def _cycle(self, conn: psycopg.Connection) -> BuildResult:
        done = build_intervals(conn, self.max_batches)
        self.metrics.intervals_written.inc(done.buckets)
        self.metrics.interval_failures.inc(len(done.failed))
        for name, bit in COUNTER_FLAGS.items():
            if bit in done.flags:
                self.metrics.flagged_intervals.labels(name).inc(done.flags[bit])
        (backlog,) = conn.execute("SELECT coalesce(sum(cardinality(point_ids)), 0) FROM interval_dirty").fetchone()
        self.metrics.interval_backlog.set(backlog)
        self.fleet.maybe_refresh(conn)
        return done
