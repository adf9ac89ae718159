"""The API tests' world: three enterprises (two in Shanxi, one in Qinghai), days of 15-minute history
with rollups, and one token per role."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

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


# --- a world of product plants: intensities, benchmark attainment, green power -------------------------
#
# Each plant: (key, region, industry, points); a point is (id, unit, carrier, direction, renewable,
# product, quantity in its unit[, (begin, end)]). Every point is registered at the world's start (the
# last day, or the start of the current Beijing year when that is later) and holds one 15-minute
# interval per slot from then to the last whole 15 minutes: its whole quantity in the first, zeros
# after (a meter reporting nothing used). ``(begin, end)``: shares of those slots; the point is
# registered at ``begin`` (a meter added late) and its intervals stop at ``end`` (a meter fallen
# silent). The plants carry only electricity and bituminous coal, whose equivalent coefficients the
# tests state themselves.
WORLD = [
    # Shanxi blast furnaces: 356.41, 394.51 and 454.73 kgce/t against benchmark 361 / limit 415 / baseline 435
    (
        "steel_1",
        "140105",
        "3110",
        [
            ("grid.import_kwh", "kWh", "electricity", "import", False, None, 3_000_000),
            ("grid.export_kwh", "kWh", "electricity", "export", False, None, 100_000),
            ("pv.generation_kwh", "kWh", "electricity", "generation", True, None, 400_000),
            ("bf.hot_metal_t", "t", None, None, False, "steel.blast_furnace", 1000),
        ],
    ),
    (
        "steel_2",
        "140202",
        "3110",
        [
            ("grid.import_kwh", "kWh", "electricity", "import", False, None, 6_500_000),
            ("grid.export_kwh", "kWh", "electricity", "export", False, None, 80_000),  # more than the PV makes
            ("pv.generation_kwh", "kWh", "electricity", "generation", True, None, 50_000),
            ("bf.hot_metal_t", "t", None, None, False, "steel.blast_furnace", 2000),
        ],
    ),
    (
        "steel_3",
        "140105",
        "3110",
        [
            ("grid.import_kwh", "kWh", "electricity", "import", False, None, 3_700_000),
            ("bf.hot_metal_t", "t", None, None, False, "steel.blast_furnace", 1000),
        ],
    ),
    (
        "steel_4",
        "140202",
        "3120",
        [  # a converter using energy on net: worse than every level
            ("grid.import_kwh", "kWh", "electricity", "import", False, None, 200_000),
            ("bof.crude_steel_t", "t", None, None, False, "steel.converter", 1000),
        ],
    ),
    (
        "steel_5",
        "140105",
        "3110",
        [  # an integrated works naming both processes: 344.12 kgce/t of hot metal, 312.84 of crude steel
            ("grid.import_kwh", "kWh", "electricity", "import", False, None, 2_800_000),
            ("bf.hot_metal_t", "t", None, None, False, "steel.blast_furnace", 1000),
            ("bof.crude_steel_t", "t", None, None, False, "steel.converter", 1100),
        ],
    ),
    (
        "steel_bare",
        "140202",
        "3110",
        [  # output named only "steel": 549.98 kgce/t of whole-site energy, no process to score it on
            ("grid.import_kwh", "kWh", "electricity", "import", False, None, 4_475_000),
            ("works.steel_t", "t", None, None, False, "steel", 1000),
        ],
    ),
    (
        "steel_gappy",
        "140105",
        "3110",
        [  # the incomer fell silent after 62.5% of the slots: 307.25 kgce/t would look at benchmark
            ("grid.import_kwh", "kWh", "electricity", "import", False, None, 2_500_000, (0.0, 0.625)),
            ("bf.hot_metal_t", "t", None, None, False, "steel.blast_furnace", 1000),
        ],
    ),
    # Shanxi coal power: the export meter is the output of the first, an output counter in MWh of the second
    (
        "coal_1",
        "140105",
        "4411",
        [
            ("coal.bituminous_t", "t", "bituminous_coal", "import", False, None, 11_000),
            ("grid.import_kwh", "kWh", "electricity", "import", False, None, 100_000),
            ("gen.gross_kwh", "kWh", "electricity", "generation", False, None, 25_500_000),
            ("grid.export_kwh", "kWh", "electricity", "export", False, "coal_power", 24_000_000),
        ],
    ),
    (
        "coal_2",
        "140202",
        "4411",
        [
            ("coal.bituminous_t", "t", "bituminous_coal", "import", False, None, 5_000),
            ("gen.gross_mwh", "MWh", "electricity", "generation", False, None, 11_600),
            ("grid.export_mwh", "MWh", "electricity", "export", False, None, 11_000),
            ("supply.net_mwh", "MWh", None, None, False, "coal_power", 11_000),
        ],
    ),
    (
        "aluminium",
        "140105",
        "3216",
        [  # liquid aluminium named by its indicator; ingots named only by the product (its whole-site kgce/t)
            ("potline.import_kwh", "kWh", "electricity", "import", False, None, 1_350_000),
            ("potline.liquid_t", "t", None, None, False, "electrolytic_aluminium.liquid_ac_electricity", 100),
            ("cast.aluminium_t", "t", None, None, False, "electrolytic_aluminium", 100),
        ],
    ),
    (
        "copper",
        "140105",
        "3211",
        [  # no levels shipped for copper
            ("grid.import_kwh", "kWh", "electricity", "import", False, None, 100_000),
            ("anode.copper_t", "t", None, None, False, "copper", 50),
        ],
    ),
    # Qinghai: the incomer was registered 40% into the blast furnace's span; its output counter ran throughout
    (
        "steel_late",
        "630102",
        "3110",
        [
            ("grid.import_kwh", "kWh", "electricity", "import", False, None, 2_000_000, (0.4, 1.0)),
            ("bf.hot_metal_t", "t", None, None, False, "steel.blast_furnace", 1000),
        ],
    ),
    # Ningxia data centres: PUE 1.25 (with PV) and 1.111; the IT load meter is a sub-meter or a plain counter
    (
        "dc_1",
        "640104",
        "6450",
        [
            ("grid.import_kwh", "kWh", "electricity", "import", False, None, 12_000_000),
            ("pv.generation_kwh", "kWh", "electricity", "generation", True, None, 500_000),
            ("it.load_kwh", "kWh", "electricity", "consumption", False, "data_centre", 10_000_000),
        ],
    ),
    (
        "dc_2",
        "640502",
        "6450",
        [
            ("grid.import_kwh", "kWh", "electricity", "import", False, None, 3_000_000),
            ("it.load_kwh", "kWh", None, None, False, "data_centre", 2_700_000),
        ],
    ),
    (
        "dc_3",
        "640104",
        "6450",
        [  # no import meter registered: PV over the IT load would be a PUE of 0.25
            ("pv.generation_kwh", "kWh", "electricity", "generation", True, None, 500_000),
            ("it.load_kwh", "kWh", None, None, False, "data_centre", 2_000_000),
        ],
    ),
    # Ningxia coke (the only product with a benchmark there): 122.9 kgce/t, and a plant with no energy meter
    (
        "coke_1",
        "640104",
        "2521",
        [
            ("grid.import_kwh", "kWh", "electricity", "import", False, None, 1_000_000),
            ("oven.coke_t", "t", None, None, False, "coke.stamp_charging", 1000),
        ],
    ),
    (
        "coke_blind",
        "640502",
        "2521",
        [("oven.coke_t", "t", None, None, False, "coke.stamp_charging", 1000)],  # 0 kgce/t if it were scored
    ),
    (
        "methanol_bare",
        "640502",
        "2614",
        [  # output named only "methanol": which of the five routes is not said
            ("coal.bituminous_t", "t", "bituminous_coal", "import", False, None, 1000),
            ("synthesis.methanol_t", "t", None, None, False, "methanol", 500),
        ],
    ),
    (
        "coal_gappy",
        "640104",
        "4411",
        [  # the output (export) meter sent half of its slots: 278.2 gce/kWh would meet the 300 target
            ("coal.bituminous_t", "t", "bituminous_coal", "import", False, None, 5_000),
            ("gen.gross_kwh", "kWh", "electricity", "generation", False, None, 12_600_000),
            ("grid.export_kwh", "kWh", "electricity", "export", False, "coal_power", 12_000_000, (0.0, 0.5)),
        ],
    ),
]
# equivalent standard-coal coefficients the world's expectations use (GB/T 2589; electricity 当量值)
KGCE_PER_KWH = 0.1229
KGCE_PER_KG_BITUMINOUS = 19.570 / 29.3076  # no published coefficient: NCV 19.570 GJ/t over 29.3076 GJ/tce
KGCE_PER_NM3_GAS = 1.33
KGCE = {"electricity": KGCE_PER_KWH, "bituminous_coal": KGCE_PER_KG_BITUMINOUS * 1000, "natural_gas": KGCE_PER_NM3_GAS}
TO_BASE = {"kWh": 1.0, "MWh": 1000.0, "t": 1.0, "Nm3": 1.0}  # kWh, t, Nm3


def world_code(region: str, n: int) -> str:
    first = f"91{region}MA{n:07d}"
    return first + uscc_check_digit(first)


def year_start() -> datetime:
    """00:00 Beijing time on 1 January of the current Beijing year, in UTC."""
    now = datetime.now(UTC) + timedelta(hours=8)
    return datetime(now.year, 1, 1, tzinfo=UTC) - timedelta(hours=8)


def last_slot_end(now: datetime | None = None) -> datetime:
    """The end of the last whole 15 minutes (UTC-aligned, as the 15-minute buckets are)."""
    t = int((now or datetime.now(UTC)).timestamp())
    return datetime.fromtimestamp(t - t % 900, UTC)


def world_start() -> datetime:
    return max(year_start(), last_slot_end() - timedelta(days=1))


def product_world(db_url: str) -> dict[str, str]:
    """Register the WORLD plants with their points and intervals; returns key -> credit code."""
    start, end = world_start(), last_slot_end()
    slots = int((end - start).total_seconds()) // 900
    if slots < 32:
        pytest.skip("the first eight hours of a Beijing year: too few 15-minute slots for the product world")
    codes, pids = {}, []
    with psycopg.connect(db_url) as conn:
        for n, (key, region, industry, points) in enumerate(WORLD, start=1):
            code = codes[key] = world_code(region, n)
            conn.execute(
                """INSERT INTO enterprises (code, name, name_en, region, province, city, industry)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                (code, f"示范{key}", f"Demo {key}", region, region[:2] + "0000", region[:4] + "00", industry),
            )
            (gw,) = conn.execute(
                "INSERT INTO gateways (enterprise, gateway) VALUES (%s, 'gw-1') RETURNING id", (code,)
            ).fetchone()
            (meter,) = conn.execute(
                "INSERT INTO meters (gateway_id, meter) VALUES (%s, 'main') RETURNING id", (gw,)
            ).fetchone()
            for point, unit, carrier, direction, renewable, product, quantity, *span in points:
                begin, end = span[0] if span else (0.0, 1.0)
                first, last = math.floor(slots * begin), math.ceil(slots * end)
                (pid,) = conn.execute(
                    """INSERT INTO points (enterprise, gateway_id, meter_id, point, kind, unit, carrier, direction,
                                          renewable, product, registered_at)
                       VALUES (%s, %s, %s, %s, 'counter', %s, %s, %s, %s, %s, %s) RETURNING id""",
                    (code, gw, meter, point, unit, carrier, direction, renewable, product,
                     start + first * timedelta(minutes=15)),
                ).fetchone()  # fmt: skip
                conn.execute(
                    """INSERT INTO intervals_15m (point_id, bucket, quantity)
                       SELECT %(p)s, %(start)s + k * interval '15 minutes',
                              CASE WHEN k = %(first)s THEN %(q)s ELSE 0 END
                       FROM generate_series(%(first)s, %(last)s - 1) k""",
                    {"p": pid, "start": start, "q": quantity, "first": first, "last": last},
                )
                pids.append(pid)
    refresh_rollups_of(db_url, pids)
    return codes


@dataclass
class PointData:
    """One point of a plant over the year, from its raw intervals."""

    carrier: str | None
    direction: str | None
    product: str | None
    since: datetime  # registration, or its first interval when earlier
    covered: float = 0.0  # sum of the intervals' coverage: 15-minute slots backed by readings


@dataclass
class Plant:
    """One enterprise's year from its raw 15-minute intervals, computed here without the API."""

    code: str
    city: str
    kwh: dict[str, float] = field(default_factory=dict)  # import, export, generation, renewable
    tce: float = 0.0  # on the boundary: imports add, exports subtract
    tce_fuel: float = 0.0  # the same without electricity
    outputs: dict[str, float] = field(default_factory=dict)  # product -> quantity in t or kWh
    points: dict[str, PointData] = field(default_factory=dict)

    @property
    def used(self) -> float:
        return self.kwh.get("import", 0) - self.kwh.get("export", 0) + self.kwh.get("generation", 0)

    @property
    def green(self) -> float:
        return max(0.0, self.kwh.get("renewable", 0) - self.kwh.get("export", 0))

    def completeness(self, names: list[str], now: datetime | None = None) -> dict[str, float]:
        """Each named point's covered slots over the slots from the earliest start of any of them
        (the year's start at the earliest) to the last whole 15 minutes."""
        pts = [self.points[n] for n in names]
        start = max(year_start(), min(p.since for p in pts))
        slots = int((last_slot_end(now) - start).total_seconds()) // 900
        return {n: min(1.0, self.points[n].covered / slots) for n in names}


def plants_from_intervals(db_url: str, province: str) -> dict[str, Plant]:
    """Every enterprise of ``province``: sums of its raw intervals over the current Beijing year."""
    lo = year_start()
    hi = lo.replace(year=lo.year + 1)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            """SELECT e.code, e.city, p.point, p.registered_at, p.carrier, p.direction, p.renewable, p.product,
                      p.unit, i.bucket, i.quantity, i.coverage
               FROM enterprises e LEFT JOIN points p ON p.enterprise = e.code
               LEFT JOIN intervals_15m i ON i.point_id = p.id AND i.bucket >= %s AND i.bucket < %s
               WHERE e.province = %s""",
            (lo, hi, province),
        ).fetchall()
    out: dict[str, Plant] = {}
    for code, city, point, registered, carrier, direction, renewable, product, unit, bucket, quantity, cov in rows:
        plant = out.setdefault(code, Plant(code, city))
        if point is None:
            continue
        pd = plant.points.setdefault(point, PointData(carrier, direction, product, registered))
        if quantity is None:
            continue
        pd.since = min(pd.since, bucket)
        pd.covered += cov
        q = quantity * TO_BASE[unit]
        if product is not None:
            plant.outputs[product] = plant.outputs.get(product, 0.0) + q
        if carrier is None:
            continue
        if carrier == "electricity" and direction in ("import", "export", "generation"):
            plant.kwh[direction] = plant.kwh.get(direction, 0.0) + q
            if direction == "generation" and renewable:
                plant.kwh["renewable"] = plant.kwh.get("renewable", 0.0) + q
        sign = {"import": 1, "export": -1}.get(direction, 0)
        tce = sign * q * KGCE[carrier] / 1000
        plant.tce += tce
        if carrier != "electricity":
            plant.tce_fuel += tce
    return out
