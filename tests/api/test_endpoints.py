"""The data endpoints over real PostgreSQL: figures from the rollups equal the accounting core on the
same quantities, periods are Beijing time, tokens are required, bad input is a clear 4xx."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from apikit import QINGHAI, SHANXI_A, SHANXI_B, degrade

from carbonwatch.accounting.rules import Activity, account

pytestmark = pytest.mark.timeout(120)


def get(api, who: str, path: str, **params) -> httpx.Response:
    return httpx.get(f"{api.url}/api/v1{path}", params=params, headers=api.headers(who), timeout=30)


def _quantities(db_url: str, code: str, start: datetime, end: datetime) -> list[tuple]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            """SELECT p.carrier, p.unit, p.direction, sum(i.quantity) FROM intervals_15m i
               JOIN points p ON p.id = i.point_id WHERE p.enterprise = %s AND p.carrier IS NOT NULL
               AND i.bucket >= %s AND i.bucket < %s GROUP BY 1, 2, 3""",
            (code, start, end),
        ).fetchall()


def test_enterprise_day_equals_the_accounting_core_on_raw_intervals(api):
    now = datetime.now(UTC)
    day_start = (now + timedelta(hours=8)).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(hours=8)
    start = day_start - timedelta(days=1)  # yesterday, Beijing time: whole day of seeded history
    r = get(
        api, "admin", "/energy", level="enterprise", period="day", start=start.isoformat(), end=day_start.isoformat()
    )
    assert r.status_code == 200, r.text
    body = r.json()
    rows = {row["key"]: row for row in body["rows"]}
    assert set(rows) >= {SHANXI_A, QINGHAI}
    for code, province in ((SHANXI_A, "140000"), (QINGHAI, "630000")):
        acts = [
            Activity(
                carrier=c, quantity=q, unit=u, province=province, direction="export" if d == "export" else "import"
            )
            for c, u, d, q in _quantities(api.db_url, code, start, day_start)
            if d in ("import", "export")
        ]
        loc = account(acts, start.year if (start + timedelta(hours=8)).year == start.year else start.year + 1)
        mkt = account(acts, loc.accounting_year, method="market")
        row = rows[code]
        assert row["period"] == (start + timedelta(hours=8)).strftime("%Y-%m-%d")
        assert row["tce"] == pytest.approx(loc.tce, rel=1e-9)
        assert row["tce_dual_control"] == pytest.approx(loc.tce_dual_control, rel=1e-9)
        assert row["co2_location_t"] == pytest.approx(loc.co2_location_t, rel=1e-9)
        assert row["co2_market_t"] == pytest.approx(mkt.co2_market_t, rel=1e-9)
        assert row["co2_market_t"] != pytest.approx(row["co2_location_t"])  # residual factor differs
    assert body["method_version"] and body["factor_set"].startswith("cw-factors-")


def test_levels_and_periods_add_up(api):
    yr = get(api, "admin", "/energy", level="province", period="year").json()["rows"]
    months = get(api, "admin", "/energy", level="province", period="month").json()["rows"]
    cities = get(api, "admin", "/energy", level="city", period="year").json()["rows"]
    hours = get(api, "admin", "/energy", level="province", period="hour").json()["rows"]
    assert {r["key"] for r in yr} == {"140000", "630000"}
    for prov in ("140000", "630000"):
        total = sum(r["tce"] for r in yr if r["key"] == prov)
        assert total > 0
        assert sum(r["tce"] for r in months if r["key"] == prov) == pytest.approx(total, rel=1e-9)
        in_prov = [r for r in cities if r["key"].startswith(prov[:2])]
        assert sum(r["tce"] for r in in_prov) == pytest.approx(total, rel=1e-9)
    assert {r["key"] for r in cities} == {"140100", "140200", "630100"}
    assert all(r["period"].endswith(":00") for r in hours)  # hour labels, Beijing time


def test_overviews_and_reference_data(api):
    ov = get(api, "shanxi", "/provinces/140000/overview").json()
    assert [c["city"] for c in ov["cities"]] == ["140100", "140200"]
    assert ov["totals"]["tce"] > 0 and ov["totals"]["co2_per_tce"] > 0
    assert any(t["comparator"] == "less_than" and t["value"] == 300 for t in ov["targets"])
    ent = get(api, "A", f"/enterprises/{SHANXI_A}/overview").json()
    assert {c["key"] for c in ent["carriers"]} == {"electricity", "natural_gas"}
    assert len(ent["days"]) >= 3 and ent["totals"]["co2_market_t"] > 0
    iv = get(api, "A", f"/enterprises/{SHANXI_A}/intervals", point="incomer.import_kwh").json()
    assert iv["intervals"] and all(x["tce"] is not None for x in iv["intervals"])
    targets = get(api, "operator", "/targets", province="640000").json()
    assert {t["comparator"] for t in targets["targets"]} >= {"about", "at_least", "reduce_by", "at_most"}
    fs = get(api, "operator", "/factor-sets").json()
    assert 2023 in fs["electricity_data_years"]
    assert get(api, "operator", "/fleet").json()["enterprises"] == 3


def test_tokens_are_required_and_roles_limited(api):
    assert httpx.get(f"{api.url}/api/v1/enterprises", timeout=10).status_code == 401
    bad = httpx.get(f"{api.url}/api/v1/enterprises", headers={"Authorization": "Bearer cw_nope"}, timeout=10)
    assert bad.status_code == 401 and "token" in bad.json()["detail"]
    r = get(api, "operator", "/energy")
    assert r.status_code == 403 and "operator" in r.json()["detail"]
    assert get(api, "operator", "/alerts").status_code == 200
    assert httpx.get(f"{api.url}/api/v1/health", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("path", "params", "needle"),
    [
        ("/energy", {"period": "15min", "start": "2025-01-01T00:00:00Z", "end": "2025-06-01T00:00:00Z"}, "coarser"),
        ("/energy", {"start": "2025-02-01T00:00:00Z", "end": "2025-01-01T00:00:00Z"}, "after start"),
        ("/energy", {"level": "galaxy"}, "level"),
        ("/energy", {"start": "1900-01-01T00:00:00Z"}, "2000"),
        ("/provinces/14/overview", {}, "pattern"),
        ("/completeness", {"start": "2020-01-01T00:00:00Z", "end": "2025-01-01T00:00:00Z"}, "366"),
    ],
)
def test_bad_input_is_a_clear_4xx(api, path, params, needle):
    r = get(api, "admin", path, **params)
    assert 400 <= r.status_code < 500, r.text
    assert needle in r.text


def test_report_csv_and_printable_page(api):
    year = (datetime.now(UTC) + timedelta(hours=8)).year
    r = get(api, "A", f"/enterprises/{SHANXI_A}/report", year=year, period="quarter", format="csv", lang="en")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    lines = list(csv.reader(io.StringIO(r.text.lstrip("\ufeff"))))
    meta = {row[0]: row[1] for row in lines[1:10]}
    assert meta["Unified social credit code"] == SHANXI_A and meta["Method version"].startswith("cw-")
    total = next(row for row in lines if row and row[0] == "Total")
    ov = get(api, "A", f"/enterprises/{SHANXI_A}/overview", year=year).json()["totals"]
    assert float(total[4]) == pytest.approx(ov["tce"], rel=1e-6)
    assert float(total[6]) == pytest.approx(ov["co2_market_t"], rel=1e-6)
    elec = next(row for row in lines if row and row[0] == "electricity" and row[1] == "import")
    assert "公告" in elec[9] and elec[8] == "2023"  # factor document and data year in the report
    assert any(row and row[0] == f"{year}-Q4" for row in lines)
    page = get(api, "A", f"/enterprises/{SHANXI_A}/report", year=year, format="html")
    assert page.status_code == 200 and "@media print" in page.text and "企业碳排放报告" in page.text
    assert get(api, "operator", f"/enterprises/{SHANXI_A}/report").status_code == 403


def test_alerts_name_down_meters_anomalies_silent_points_and_low_completeness(api):
    degrade(api.db_url, SHANXI_A)
    body = get(api, "A", "/alerts").json()
    kinds = {(a["kind"], a["meter"], a["point"]) for a in body["alerts"]}
    assert ("meter_down", "gas", None) in kinds
    assert ("counter_anomaly", "incomer", "incomer.import_kwh") in kinds
    assert ("point_stale", "incomer", "incomer.import_kwh") in kinds
    assert ("completeness_low", "incomer", "incomer.import_kwh") in kinds
    anomaly = next(a for a in body["alerts"] if a["kind"] == "counter_anomaly")
    assert anomaly["detail"] == "reset"
    low = get(api, "A", "/completeness", below=0.9).json()["points"]
    assert {p["point"] for p in low} >= {"incomer.import_kwh", "gas.volume_nm3"}
    assert all(0.4 < p["ratio"] < 0.6 for p in low if p["point"] == "incomer.import_kwh")
    # another enterprise's token sees none of it
    assert get(api, "B", "/alerts").json()["counts"].get("meter_down", 0) == 0


def test_point_keys_name_their_enterprise_when_several_are_in_scope(api):
    rows = get(api, "shanxi", "/energy", level="point", period="year").json()["rows"]
    keys = {r["key"] for r in rows}
    assert f"{SHANXI_A}:incomer.import_kwh" in keys and f"{SHANXI_B}:incomer.import_kwh" in keys
    own = get(api, "A", "/energy", level="point", period="year").json()["rows"]
    assert "incomer.import_kwh" in {r["key"] for r in own}
