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
GRACE = timedelta(minutes=10)  # a hole younger than this may still fill: not yet a gap
HORIZON = timedelta(days=7)  # a gap is reported this long, then forgotten

# Rows folded into the existing ranges: islands of consecutive numbers, merged with the ranges
# they touch or overlap (a redelivered number falls inside a range and changes nothing). Only a
# gateway's ranges that reach its lowest new number can merge with the new ones (ranges are
# maximal), so in steady operation one range per gateway is rewritten: its last.
_FOLD = """
WITH moved AS (
    DELETE FROM telemetry_received RETURNING gateway_id, seq, received_at
), lows AS (
    SELECT gateway_id, min(seq) AS low FROM moved GROUP BY gateway_id
), touched AS (
    DELETE FROM telemetry_ranges r USING lows l WHERE r.gateway_id = l.gateway_id AND r.hi >= l.low - 1
    RETURNING r.gateway_id, r.lo, r.hi, r.first_received, r.last_received
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

# Gaps past the horizon are forgotten, so that a gateway keeps a handful of ranges: its ranges up
# to the last one noticed before the horizon become one.
_FORGET = """
WITH old AS (
    SELECT gateway_id, max(lo) AS cut FROM telemetry_ranges
    WHERE first_received < now() - %(horizon)s GROUP BY gateway_id
), merging AS (
    SELECT o.gateway_id, o.cut FROM old o
    WHERE (SELECT count(*) FROM telemetry_ranges r WHERE r.gateway_id = o.gateway_id AND r.lo <= o.cut) > 1
), gone AS (
    DELETE FROM telemetry_ranges r USING merging m WHERE r.gateway_id = m.gateway_id AND r.lo <= m.cut
    RETURNING r.gateway_id, r.lo, r.hi, r.first_received, r.last_received
)
INSERT INTO telemetry_ranges (gateway_id, lo, hi, first_received, last_received)
SELECT gateway_id, min(lo), max(hi), min(first_received), max(last_received) FROM gone GROUP BY gateway_id
"""

_HOLES = """
SELECT gateway_id, prev_hi + 1 AS first_missing, lo - 1 AS last_missing, first_received
FROM (
    SELECT gateway_id, lo, first_received, lag(hi) OVER (PARTITION BY gateway_id ORDER BY lo) AS prev_hi
    FROM telemetry_ranges
) s
WHERE prev_hi IS NOT NULL AND lo > prev_hi + 1
  AND first_received < now() - %(grace)s AND first_received >= now() - %(horizon)s
"""

_GAPS = f"""
SELECT e.province, g.enterprise, g.gateway, h.first_missing, h.last_missing, h.first_received
FROM ({_HOLES}) h
JOIN gateways g ON g.id = h.gateway_id
JOIN enterprises e ON e.code = g.enterprise
ORDER BY g.enterprise, g.gateway, h.first_missing
"""

_MISSING = f"""
SELECT e.province, g.enterprise, g.gateway, sum(h.last_missing - h.first_missing + 1)
FROM ({_HOLES}) h
JOIN gateways g ON g.id = h.gateway_id
JOIN enterprises e ON e.code = g.enterprise
GROUP BY e.province, g.enterprise, g.gateway
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


def fold_received(conn: psycopg.Connection, horizon: timedelta = HORIZON) -> bool:
    """Fold the received numbers into ranges and forget gaps older than ``horizon``; False when
    another collector holds the turn.

    Needs a connection outside a transaction (autocommit) or inside one the caller commits.
    """
    with conn.transaction():
        if not conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_LOCK_KEY,)).fetchone()[0]:
            return False
        conn.execute(_FOLD)
        conn.execute(_FORGET, {"horizon": horizon})
    return True


def open_gaps(conn: psycopg.Connection, grace: timedelta = GRACE, horizon: timedelta = HORIZON) -> list[Gap]:
    """Gaps noticed more than ``grace`` ago and less than ``horizon`` ago, oldest number first."""
    rows = conn.execute(_GAPS, {"grace": grace, "horizon": horizon}).fetchall()
    return [Gap(*row) for row in rows]


def missing_messages(
    conn: psycopg.Connection, grace: timedelta = GRACE, horizon: timedelta = HORIZON
) -> dict[tuple[str, str, str], int]:
    """Messages missing in :func:`open_gaps`, summed per (province, enterprise, gateway)."""
    rows = conn.execute(_MISSING, {"grace": grace, "horizon": horizon}).fetchall()
    return {(province, enterprise, gateway): int(n) for province, enterprise, gateway, n in rows}
