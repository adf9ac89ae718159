"""The API tests' world: three enterprises (two in Shanxi, one in Qinghai), days of 15-minute history
with rollups, and one token per role."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from carbonwatch.api.auth import create_token
from carbonwatch.collector.registry import register_site
from carbonwatch.collector.rollups import refresh_continuous_aggregates, refresh_rollups
from carbonwatch.contracts.site import Site, uscc_check_digit
from carbonwatch.history import seed_history

from support import site_from_file

SHANXI_A = "91140105MA0K7Q2B30"  # Taiyuan coal chemical (demo site)
QINGHAI = "91630100MA7U1F5R8L"  # Xining aluminium with PV (demo site)
SHANXI_B = "91140200MA0B8C9D1" + uscc_check_digit("91140200MA0B8C9D1")  # a second Shanxi plant, in Datong


def second_shanxi_site() -> Site:
    """The Shanxi demo plant copied under another code and city, with the same point names."""
    raw = site_from_file("demo-shanxi-chemical.yaml")
    raw["enterprise"].update(
        code=SHANXI_B, name="大同示范化工有限公司", name_en="Datong Demo Chemical", region="140202"
    )
    return Site.model_validate(raw)


@dataclass
class ApiEnv:
    url: str
    db_url: str
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def seed(db_url: str, days: float = 3) -> dict[str, str]:
    with psycopg.connect(db_url) as conn:
        for site in (
            Site.model_validate(site_from_file("demo-shanxi-chemical.yaml")),
            Site.model_validate(site_from_file("demo-qinghai-pv.yaml")),
            second_shanxi_site(),
        ):
            register_site(conn, site, actor="test")
        seed_history(conn, days)
        return {
            "A": create_token(conn, "enterprise", SHANXI_A, "plant A energy manager"),
            "B": create_token(conn, "enterprise", SHANXI_B, "plant B energy manager"),
            "shanxi": create_token(conn, "province", "140000", "Shanxi centre"),
            "qinghai": create_token(conn, "province", "630000", "Qinghai centre"),
            "operator": create_token(conn, "operator", None, "on-call operator"),
            "admin": create_token(conn, "admin", None, "administrator"),
        }


def refresh_rollups_of(db_url: str, point_ids: list[int]) -> None:
    """After a test rewrote 15-minute intervals: bring the hour, day and month rollups up to date on
    either storage path (plain tables rewritten here, TimescaleDB aggregates refreshed)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        lo, hi = conn.execute(
            "SELECT min(bucket), max(bucket) + interval '15 minutes' FROM intervals_15m WHERE point_id = ANY(%s)",
            (point_ids,),
        ).fetchone()
        refresh_rollups(conn, point_ids, [lo] * len(point_ids), [hi] * len(point_ids))
        refresh_continuous_aggregates(conn, lo, hi)


def degrade(db_url: str, code: str) -> None:
    """Data-quality trouble at one enterprise: its gas meter down, a counter reset yesterday, a silent
    incomer (last reading an hour ago) and about half the expected 15-minute values in the last day."""
    with psycopg.connect(db_url) as conn:
        conn.execute(
            """INSERT INTO device_health (gateway_id, meter, state, consecutive_failures, last_error, reported_at)
               SELECT g.id, 'gas', 'down', 12, 'timeout after 1.0 s', now() FROM gateways g WHERE g.enterprise = %s""",
            (code,),
        )
        (incomer,) = conn.execute(
            "SELECT id FROM points WHERE enterprise = %s AND point = 'incomer.import_kwh'", (code,)
        ).fetchone()
        conn.execute(
            """UPDATE intervals_15m SET flags = flags | 4
               WHERE point_id = %(p)s AND bucket = (SELECT max(bucket) FROM intervals_15m WHERE point_id = %(p)s)""",
            {"p": incomer},
        )
        conn.execute(
            "UPDATE points SET registered_at = now() - interval '2 days' WHERE enterprise = %s AND kind = 'counter'",
            (code,),
        )
        # readings every 30 minutes for the last day: half of the 15-minute slots hold a value
        conn.execute(
            """INSERT INTO readings (point_id, ts, value)
               SELECT p.id, ts, extract(epoch FROM ts) / 1000 FROM points p,
                      generate_series(now() - interval '1 day', now() - interval '1 hour', interval '30 minutes') ts
               WHERE p.enterprise = %s AND p.kind = 'counter'""",
            (code,),
        )
        conn.execute(
            """INSERT INTO completeness_1mon (point_id, bucket, slots)
               SELECT r.point_id, date_trunc('month', r.ts, 'Asia/Shanghai'),
                      bit_or(cw_slot_bit(
                          (extract(epoch FROM r.ts - date_trunc('month', r.ts, 'Asia/Shanghai')) / 900)::int))
               FROM readings r JOIN points p ON p.id = r.point_id WHERE p.enterprise = %s GROUP BY 1, 2
               ON CONFLICT (point_id, bucket) DO UPDATE SET slots = completeness_1mon.slots | EXCLUDED.slots""",
            (code,),
        )
    refresh_rollups_of(db_url, [incomer])
