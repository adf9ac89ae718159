"""Gaps in each gateway's telemetry sequence: messages that never reached the database.

A gateway numbers its telemetry messages one by one for life, and the writers record each
number that arrives (``telemetry_received``, in the transaction that stores the message). Here
those rows are folded into ranges of consecutive numbers (``telemetry_ranges``), and the holes
between a gateway's ranges are its missing messages. A hole counts as *open* once the message
after it has been in the database for a grace period: messages of one gateway may be committed
out of order by two collectors, or wait for a collector's session to come back.

Why it exists: no single part can see every loss. A broker that restarts without its shared
subscriptions (Mosquitto 2.0) acknowledges and drops what a bridge forwards to it; a gateway's
bounded buffer discards its oldest messages when full. Either shows here as a gap, with the
gateway and the numbers, instead of as a quiet dip in a chart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

# One collector folds at a time; the others skip their turn (the work is the same).
_LOCK_KEY = 0x63775F736571  # "cw_seq"

# Rows folded into the existing ranges: islands of consecutive numbers, merged with the ranges
# they touch or overlap (a redelivered number falls inside a range and changes nothing).
_FOLD = """
WITH moved AS (
    DELETE FROM telemetry_received RETURNING gateway_id, seq, received_at
), touched AS (
    DELETE FROM telemetry_ranges r WHERE r.gateway_id IN (SELECT DISTINCT gateway_id FROM moved)
    RETURNING gateway_id, lo, hi, first_received, last_received
), pieces AS (
    SELECT m.gateway_id, m.seq AS lo, m.seq AS hi, m.received_at AS first_received, m.received_at AS last_received
    FROM moved m JOIN gateways g ON g.id = m.gateway_id
    UNION ALL
    SELECT * FROM touched
), marked AS (
    SELECT *, CASE WHEN lo <= max(hi) OVER (
                  PARTITION BY gateway_id ORDER BY lo, hi ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
              ) + 1 THEN 0 ELSE 1 END AS starts
    FROM pieces
), grouped AS (
    SELECT *, sum(starts) OVER (PARTITION BY gateway_id ORDER BY lo, hi) AS island FROM marked
)
INSERT INTO telemetry_ranges (gateway_id, lo, hi, first_received, last_received)
SELECT gateway_id, min(lo), max(hi), min(first_received), max(last_received)
FROM grouped GROUP BY gateway_id, island
"""

_GAPS = """
SELECT e.province, g.enterprise, g.gateway, s.prev_hi + 1, s.lo - 1, s.first_received
FROM (
    SELECT gateway_id, lo, first_received, lag(hi) OVER (PARTITION BY gateway_id ORDER BY lo) AS prev_hi
    FROM telemetry_ranges
) s
JOIN gateways g ON g.id = s.gateway_id
JOIN enterprises e ON e.code = g.enterprise
WHERE s.prev_hi IS NOT NULL AND s.lo > s.prev_hi + 1
  AND s.first_received < now() - %(grace)s AND s.first_received >= now() - %(horizon)s
ORDER BY g.enterprise, g.gateway, s.lo
"""


@dataclass(frozen=True)
class Gap:
    province: str
    enterprise: str
    gateway: str
    first_missing: int  # sequence numbers first_missing..last_missing never arrived
    last_missing: int
    noticed: datetime  # when the message after the gap arrived

    @property
    def messages(self) -> int:
        return self.last_missing - self.first_missing + 1


def fold_received(conn: psycopg.Connection) -> bool:
    """Fold the received numbers into ranges; False when another collector holds the turn.

    Needs a connection outside a transaction (autocommit) or inside one the caller commits.
    """
    with conn.transaction():
        if not conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_LOCK_KEY,)).fetchone()[0]:
            return False
        conn.execute(_FOLD)
    return True


def open_gaps(
    conn: psycopg.Connection, grace: timedelta = timedelta(minutes=10), horizon: timedelta = timedelta(days=7)
) -> list[Gap]:
    """Gaps noticed more than ``grace`` ago and less than ``horizon`` ago, oldest number first."""
    rows = conn.execute(_GAPS, {"grace": grace, "horizon": horizon}).fetchall()
    return [Gap(*row) for row in rows]
