"""A plant metering raw coal (原煤) on belt scales, with lab-measured fuel parameters in its site file:
the API's figures (energy by level, the exact-window emissions, the report) and the upload indicators
equal the formula computed here from the raw intervals, q x NCV x CC x OF x 44/12 and q x NCV /
29.3076, each belt with its own values; results say measured values were used. Without measured
values (a registry written around the site contract) the answer is a clear 422, not a figure."""

from __future__ import annotations

import csv
import io
from datetime import UTC, timedelta

import httpx
import psycopg
import pytest
from apikit import refresh_rollups_of, year_start

from carbonwatch.api.app import create_app
from carbonwatch.api.auth import create_token
from carbonwatch.collector.registry import register_site
from carbonwatch.collector.upload.indicators import build_indicators
from carbonwatch.contracts.site import parse_site, uscc_check_digit
from carbonwatch.embedded import free_port

from support import UvicornThread

pytestmark = pytest.mark.timeout(120)

CODE = "91140900MA0C0A1B2" + uscc_check_digit("91140900MA0C0A1B2")  # a Xinzhou (Shanxi) coal user
GJ_PER_TCE = 29.3076
C_TO_CO2 = 44 / 12
# point -> (quantity in t, NCV GJ/t, carbon content tC/GJ, oxidation rate): the two belts' lab values
# (belt B's oxidation rate is not measured: raw coal has no default, complete oxidation is taken) and
# a bituminous-coal feeder on the family B defaults (19.570 GJ/t, 0.0261 tC/GJ, 93%)
EXPECTED = {
    "belt_a.total_t": (123.4, 20.9, 0.0263, 0.94),
    "belt_b.total_t": (56.7, 17.2, 0.0271, 1.0),
    "feeder.total_t": (10.0, 19.570, 0.0261, 0.93),
}

SITE = f"""
version: 1
enterprise: {{code: {CODE}, name: 忻州示范热电有限公司, region: "140902", industry: "4430"}}
gateways:
  - id: gw-coal
    meters:
      - id: belt_a
        connection: {{type: tcp, host: 127.0.0.1, port: 15030}}
        unit_id: 1
        address_base: 0
        points:
          - {{id: belt_a.total_t, address: 0, type: uint32, scale: 0.001, unit: t, kind: counter,
             carrier: raw_coal, direction: import,
             fuel: {{ncv: 20.9, carbon_content: 0.0263, oxidation_rate: 0.94, source: lab report 2026-03}}}}
      - id: belt_b
        connection: {{type: tcp, host: 127.0.0.1, port: 15030}}
        unit_id: 2
        address_base: 0
        points:
          - {{id: belt_b.total_t, address: 0, type: uint32, scale: 0.001, unit: t, kind: counter,
             carrier: raw_coal, direction: import,
             fuel: {{ncv: "4108 kcal/kg", carbon_content: "27.1 tC/TJ", source: lab report 2026-02}}}}
      - id: feeder
        connection: {{type: tcp, host: 127.0.0.1, port: 15030}}
        unit_id: 3
        address_base: 0
        points:
          - {{id: feeder.total_t, address: 0, type: uint32, scale: 0.001, unit: t, kind: counter,
             carrier: bituminous_coal, direction: import}}
"""


def by_hand(point: str) -> tuple[float, float]:
    q, ncv, cc, of = EXPECTED[point]
    ncv = 4108 * 4.1868e-3 if point == "belt_b.total_t" else ncv  # as the file writes it
    return q * ncv * cc * of * C_TO_CO2, q * ncv / GJ_PER_TCE


def _seed(db_url: str) -> str:
    site = parse_site(SITE, "coal-plant.yaml")
    with psycopg.connect(db_url) as conn:
        register_site(conn, site, actor="test")
        ids = dict(conn.execute("SELECT point, id FROM points WHERE enterprise = %s", (CODE,)).fetchall())
        for point, (q, *_) in EXPECTED.items():
            conn.execute(
                "INSERT INTO intervals_15m (point_id, bucket, quantity) VALUES (%s, %s, %s)",
                (ids[point], year_start(), q),
            )
        token = create_token(conn, "enterprise", CODE, "coal plant energy manager")
    refresh_rollups_of(db_url, list(ids.values()))
    return token


def _get(url: str, token: str, path: str, **params) -> httpx.Response:
    return httpx.get(f"{url}/api/v1{path}", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_figures_of_measured_raw_coal_equal_the_formula(db_url):
    token = _seed(db_url)
    lo = year_start()
    day = {"start": lo.isoformat(), "end": (lo + timedelta(days=1)).isoformat()}
    co2 = {p: by_hand(p)[0] for p in EXPECTED}
    tce = {p: by_hand(p)[1] for p in EXPECTED}
    with UvicornThread(create_app(db_url), free_port()) as api:
        ent = _get(api.url, token, "/energy", level="enterprise", period="day", enterprise=CODE, **day)
        assert ent.status_code == 200, ent.text
        body = ent.json()
        (row,) = body["rows"]
        assert row["co2_location_t"] == pytest.approx(sum(co2.values()), rel=1e-12)
        assert row["co2_market_t"] == pytest.approx(sum(co2.values()), rel=1e-12)
        assert row["tce"] == pytest.approx(sum(tce.values()), rel=1e-12)
        assert row["tce_dual_control"] == pytest.approx(sum(tce.values()), rel=1e-12)
        # provenance: both belts' measured values, with their sources and the factors they gave
        measured = {m["source"]: m for m in body["measured_fuel"]}
        assert set(measured) == {"lab report 2026-03", "lab report 2026-02"}
        a = measured["lab report 2026-03"]
        assert (a["carrier"], a["ncv"], a["carbon_content"], a["oxidation_rate"]) == ("raw_coal", 20.9, 0.0263, 0.94)
        assert a["co2_factor"]["trust"] == "measured" and a["co2_factor"]["value"] == pytest.approx(
            co2["belt_a.total_t"] / 123.4
        )
        assert a["tce_factor"]["value"] == pytest.approx(20.9 / GJ_PER_TCE)

        points = _get(api.url, token, "/energy", level="point", period="year", enterprise=CODE).json()["rows"]
        for r in points:
            assert r["co2_location_t"] == pytest.approx(co2[r["key"]], rel=1e-12), r["key"]
            assert r["tce"] == pytest.approx(tce[r["key"]], rel=1e-12), r["key"]
        carriers = {
            r["key"]: r for r in _get(api.url, token, "/energy", level="carrier", period="month").json()["rows"]
        }
        assert carriers["raw_coal"]["tce"] == pytest.approx(tce["belt_a.total_t"] + tce["belt_b.total_t"], rel=1e-12)

        em = _get(api.url, token, f"/enterprises/{CODE}/emissions", **day)
        assert em.status_code == 200, em.text
        em = em.json()
        assert em["co2_t"] == pytest.approx(sum(co2.values()), rel=1e-12)
        assert em["tce"] == pytest.approx(sum(tce.values()), rel=1e-12)
        by_point = {p["point"]: p for p in em["points"]}
        belt_b = by_point["belt_b.total_t"]
        assert belt_b["co2_t"] == pytest.approx(co2["belt_b.total_t"], rel=1e-12)
        assert belt_b["measured_fuel"]["source"] == "lab report 2026-02"
        assert belt_b["factor"]["trust"] == "measured" and "oxidation rate 1 assumed" in belt_b["factor"]["source"]
        assert belt_b["factor"]["value"] == pytest.approx(co2["belt_b.total_t"] / 56.7, rel=1e-12)
        assert by_point["feeder.total_t"]["measured_fuel"] is None
        assert "family B" in by_point["feeder.total_t"]["factor"]["source"]

        year = (lo + timedelta(hours=8)).year
        rep = _get(api.url, token, f"/enterprises/{CODE}/report", year=year, format="csv", lang="en")
        assert rep.status_code == 200, rep.text
        lines = list(csv.reader(io.StringIO(rep.text.lstrip("\ufeff"))))
        total = next(r for r in lines if r and r[0] == "Total")
        assert float(total[4]) == pytest.approx(sum(tce.values()), abs=1e-6)
        assert float(total[5]) == pytest.approx(sum(co2.values()), abs=1e-6)
        coal_rows = [r for r in lines if r and r[0] == "raw_coal"]
        assert {r[9] for r in coal_rows} == {"lab report 2026-03", "lab report 2026-02"}  # the factor's document

    start = lo.astimezone(UTC)
    with psycopg.connect(db_url) as conn:
        (doc,) = build_indicators(conn, CODE, "day", [start])
    assert doc["indicators"]["co2_t"] == pytest.approx(sum(co2.values()), rel=1e-12)
    assert doc["indicators"]["energy_tce"] == pytest.approx(sum(tce.values()), rel=1e-12)
    assert doc["indicators"]["by_carrier"]["raw_coal"]["tce"] == pytest.approx(
        tce["belt_a.total_t"] + tce["belt_b.total_t"], rel=1e-12
    )
    assert doc["measured_fuel"]["belt_a.total_t"]["source"] == "lab report 2026-03"
    assert set(doc["measured_fuel"]) == {"belt_a.total_t", "belt_b.total_t"}


def test_raw_coal_without_measured_values_is_a_clear_422(db_url):
    token = _seed(db_url)
    with psycopg.connect(db_url) as conn:  # a registry written around the site contract
        conn.execute("UPDATE points SET fuel_ncv = NULL, fuel_carbon_content = NULL WHERE point = 'belt_a.total_t'")
    with UvicornThread(create_app(db_url), free_port()) as api:
        r = _get(api.url, token, "/energy", level="enterprise", period="year", enterprise=CODE)
    assert r.status_code == 422
    assert "raw_coal" in r.json()["detail"] and "measured" in r.json()["detail"]
