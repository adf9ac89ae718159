"""Keep ``intervals_15m`` in step with ``readings`` for the counters a batch touched.

For each touched counter the affected buckets run from the last good reading before the
new ones to the first good reading after them (late data changes both neighbours). The
readings around that span are loaded, the accounting core turns them into consumption per
bucket, and the buckets in the span are replaced.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import psycopg

from carbonwatch.accounting.intervals import BUCKET_SECONDS, counter_intervals


def _floor(ts: float) -> float:
    return ts - ts % BUCKET_SECONDS


def rebuild_intervals(conn: psycopg.Connection, touched: dict[int, list[datetime]]) -> int:
    """Recompute the 15-minute buckets of touched counters; return the number of buckets written."""
    if not touched:
        return 0
    counters = dict(
        conn.execute(
            "SELECT id, rollover FROM points WHERE id = ANY(%s) AND kind = 'counter'", (list(touched),)
        ).fetchall()
    )
    written = 0
    with conn.transaction():
        for point_id, rollover in counters.items():
            times = touched[point_id]
            lo, hi = min(times), max(times)
            prev = conn.execute(
                "SELECT max(ts) FROM readings WHERE point_id = %s AND ts < %s AND quality < 2", (point_id, lo)
            ).fetchone()[0]
            nxt = conn.execute(
                "SELECT min(ts) FROM readings WHERE point_id = %s AND ts > %s AND quality < 2", (point_id, hi)
            ).fetchone()[0]
            span_lo = _floor((prev or lo).timestamp())
            span_hi = _floor((nxt or hi).timestamp()) + BUCKET_SECONDS
            rows = conn.execute(
                """SELECT extract(epoch FROM ts), value FROM readings
                   WHERE point_id = %(p)s AND quality < 2 AND ts >= coalesce(
                       (SELECT max(ts) FROM readings WHERE point_id = %(p)s AND quality < 2 AND ts < %(lo)s), %(lo)s)
                     AND ts <= coalesce(
                       (SELECT min(ts) FROM readings WHERE point_id = %(p)s AND quality < 2 AND ts >= %(hi)s), %(hi)s)
                   ORDER BY ts""",
                {"p": point_id, "lo": _dt(span_lo), "hi": _dt(span_hi)},
            ).fetchall()
            if len(rows) < 2:
                continue
            arr = np.array(rows, dtype=np.float64)
            iv = counter_intervals(arr[:, 0], arr[:, 1], rollover)
            keep = (iv.bucket >= span_lo) & (iv.bucket < span_hi)
            out = [
                (point_id, _dt(b), float(q), int(f), float(c))
                for b, q, f, c in zip(
                    iv.bucket[keep], iv.quantity[keep], iv.flags[keep], iv.coverage[keep], strict=True
                )
            ]
            conn.execute(
                "DELETE FROM intervals_15m WHERE point_id = %s AND bucket >= %s AND bucket < %s",
                (point_id, _dt(span_lo), _dt(span_hi)),
            )
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO intervals_15m (point_id, bucket, quantity, flags, coverage)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    out,
                )
            written += len(out)
    return written


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(float(epoch), tz=UTC)
