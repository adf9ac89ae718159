"""What meters measure of the plans' indicators, over real PostgreSQL: product intensity for every
shipped indicator unit (kgce/t, kWh/t, gce/kWh, PUE), benchmark attainment per product (F-32) with
the baseline and limit counts (F-30, F-31), targets measured over the monitored enterprises, and the
green-power and non-fossil shares (F-42).

Every expectation is computed here from the raw 15-minute intervals (apikit.plants_from_intervals)
with the coefficients and levels written out below, not through the API's code.
"""

from __future__ import annotations

import httpx
import psycopg
import pytest
from apikit import KGCE_PER_KWH, QINGHAI, SHANXI_A, plants_from_intervals, product_world

from carbonwatch.api.auth import create_token

pytestmark = pytest.mark.timeout(120)

# levels of the shipped table (accounting/data/product_energy_levels.yaml), as the tests expect them
BLAST_FURNACE = {"benchmark": 361, "grade_3": 415, "baseline": 435}
CONVERTER = {"benchmark": -30, "grade_3": -12, "baseline": -10}
ALUMINIUM_LIQUID_LIMIT = 13350  # kWh/t, grade 3
NX_PUE_TARGET = 1.2


def get(api, who: str, path: str, **params) -> dict:
    headers = {"Authorization": f"Bearer {who}"} if who.startswith("cw_") else api.headers(who)
    r = httpx.get(f"{api.url}/api/v1{path}", params=params, headers=headers, timeout=30)
    assert r.status_code == 200, (path, r.status_code, r.text[:500])
    return r.json()


def token(api, role: str, scope: str) -> str:
    with psycopg.connect(api.db_url) as conn:
        return create_token(conn, role, scope, f"{role} {scope}")


def items(ov: dict) -> dict[str, dict]:
    return {f"{i['product']}.{i['indicator']}": i for i in ov["intensity"]}


def green_share(plants) -> float | None:
    used = sum(p.used for p in plants)
    return sum(p.green for p in plants) / used if used > 0 else None


def test_drill_down_intensity_for_every_unit_and_green_power(api):
    codes = product_world(api.db_url)
    plants = plants_from_intervals(api.db_url, "140000") | plants_from_intervals(api.db_url, "640000")
    p = {key: plants[code] for key, code in codes.items()}

    # kgce/t: comprehensive energy on the boundary; the PV's generation is not added, its export subtracts
    s1 = items(get(api, "admin", f"/enterprises/{codes['steel_1']}/overview"))
    bf = s1["steel.blast_furnace"]
    assert bf["value"] == pytest.approx(p["steel_1"].tce * 1000 / 1000, rel=1e-9)
    assert bf["value"] == pytest.approx((3_000_000 - 100_000) * KGCE_PER_KWH / 1000, rel=1e-9)  # 356.41
    assert (bf["unit"], bf["output"], bf["output_unit"]) == ("kgce/t", 1000, "t")
    assert {lv["kind"]: lv["met"] for lv in bf["levels"]} == {
        "grade_1": True, "grade_2": True, "grade_3": True, "benchmark": True, "baseline": True,
    }  # fmt: skip
    assert bf["alerts"] == [] and list(s1) == ["steel.blast_furnace"]  # only the indicator the point names

    s3 = items(get(api, "admin", f"/enterprises/{codes['steel_3']}/overview"))["steel.blast_furnace"]
    assert s3["value"] == pytest.approx(p["steel_3"].tce, rel=1e-9) and s3["value"] > BLAST_FURNACE["baseline"]
    assert any("baseline" in a for a in s3["alerts"]) and any("limit" in a for a in s3["alerts"])

    # gce/kWh: fuel energy (electricity left out) over net supply, by the export meter or an MWh counter
    for key in ("coal_1", "coal_2"):
        c = items(get(api, "admin", f"/enterprises/{codes[key]}/overview"))["coal_power.net_coal_consumption"]
        expected = p[key].tce_fuel * 1e6 / p[key].outputs["coal_power"]
        assert c["unit"] == "gce/kWh" and c["value"] == pytest.approx(expected, rel=1e-9)
        assert "without electricity" in c["energy_basis"]
    assert p["coal_1"].tce_fuel * 1e6 / 24e6 == pytest.approx(306.0, abs=0.1)  # the world is what it says

    # the aluminium smelter: all three indicators, kWh/t on electricity used, kgce/t on tce
    al = items(get(api, "admin", f"/enterprises/{codes['aluminium']}/overview"))
    assert set(al) == {
        "electrolytic_aluminium.liquid_ac_electricity",
        "electrolytic_aluminium.ingot_ac_electricity",
        "electrolytic_aluminium.ingot_comprehensive_energy",
    }
    liquid = al["electrolytic_aluminium.liquid_ac_electricity"]
    assert liquid["unit"] == "kWh/t" and liquid["value"] == pytest.approx(p["aluminium"].used / 100, rel=1e-9)
    assert liquid["value"] > ALUMINIUM_LIQUID_LIMIT and liquid["grade"] == "worse_than_grade_3"
    assert any("limit" in a for a in liquid["alerts"])
    comprehensive = al["electrolytic_aluminium.ingot_comprehensive_energy"]
    assert comprehensive["value"] == pytest.approx(p["aluminium"].tce * 1000 / 100, rel=1e-9)

    # copper: no levels shipped, said so rather than guessed
    (cu,) = get(api, "admin", f"/enterprises/{codes['copper']}/overview")["intensity"]
    assert cu["product"] == "copper" and "no levels" in cu["error"] and "value" not in cu

    # PUE: electricity used (PV included) over the IT load, against Ningxia's 1.2
    for key, met in (("dc_1", False), ("dc_2", True)):
        ov = get(api, "admin", f"/enterprises/{codes[key]}/overview")
        pue = items(ov)["data_centre.pue"]
        assert pue["unit"] == "1" and pue["value"] == pytest.approx(p[key].used / p[key].outputs["data_centre"])
        assert [lv["met"] for lv in pue["levels"] if lv["kind"] == "target"] == [met]
    assert p["dc_1"].used / 10_000_000 == pytest.approx(1.25)

    # green power: on-site renewable used over electricity used, export taken from the PV first
    for key, share in (("steel_1", 300_000 / 3_300_000), ("steel_2", 0.0), ("dc_1", 500_000 / 12_500_000)):
        ov = get(api, "admin", f"/enterprises/{codes[key]}/overview")
        g = ov["green_power"]
        assert g["share"] == pytest.approx(share, abs=1e-12) and g["share"] == pytest.approx(green_share([p[key]]))
        assert g["electricity_used_kwh"] == pytest.approx(p[key].used)
        assert "max(0" in g["rule"] and "no green certificates" in g["certificates"]
        nf = ov["non_fossil"]
        expected = p[key].green * KGCE_PER_KWH / 1000 / (p[key].tce + p[key].kwh["renewable"] * KGCE_PER_KWH / 1000)
        assert nf["share"] == pytest.approx(expected, rel=1e-9) and "equivalent-value basis" in nf["scope"]
    # an enterprise with no generation: share zero, never a gap
    assert get(api, "A", f"/enterprises/{SHANXI_A}/overview")["green_power"]["share"] == 0.0


def _attainment(plants, product: str, levels: dict) -> dict:
    """Output-weighted standing of the plants with ``product`` output, from their own figures."""
    got = [(p.tce * 1000 / p.outputs[product], p.outputs[product]) for p in plants if product in p.outputs]
    out = sum(q for _, q in got)
    return {
        "enterprises": len(got),
        "output": out,
        "intensity": sum(v * q for v, q in got) / out,
        "share_at_benchmark": sum(q for v, q in got if v <= levels["benchmark"]) / out,
        "output_at_benchmark": sum(q for v, q in got if v <= levels["benchmark"]),
        "enterprises_worse_than_baseline": sum(v > levels["baseline"] for v, _ in got),
        "enterprises_worse_than_limit": sum(v > levels["grade_3"] for v, _ in got),
    }


def test_province_overview_attainment_targets_and_green_power(api):
    codes = product_world(api.db_url)
    shanxi = plants_from_intervals(api.db_url, "140000")
    ov = get(api, "shanxi", "/provinces/140000/overview")
    rows = {f"{r['product']}.{r['indicator']}": r for r in ov["benchmarks"]}

    # benchmark attainment: blast furnaces 1000 of 4000 t at benchmark, one worse than baseline and limit
    bf = _attainment(shanxi.values(), "steel.blast_furnace", BLAST_FURNACE)
    bof = _attainment(shanxi.values(), "steel.converter", CONVERTER)
    assert (bf["share_at_benchmark"], bf["enterprises_worse_than_baseline"]) == (0.25, 1)
    for key, want in (("steel.blast_furnace", bf), ("steel.converter", bof)):
        row = rows[key]
        for name, value in want.items():
            assert row[name] == pytest.approx(value, rel=1e-9), (key, name)
        assert row["benchmark"] is not None and row["output_unit"] == "t"
    al = rows["electrolytic_aluminium.liquid_ac_electricity"]
    assert al["enterprises"] == 1 and al["share_at_benchmark"] is None and "no benchmark" in al["note"]
    assert al["enterprises_worse_than_limit"] == 1 and al["enterprises_worse_than_baseline"] is None
    assert rows["steel.sintering"]["enterprises"] == 0 and rows["steel.sintering"]["output"] == 0
    assert rows["cement_clinker.comprehensive_energy"]["share_at_benchmark"] is None
    assert len(rows) == 19  # every shipped indicator, monitored or not
    (cu,) = ov["products_without_levels"]
    assert (cu["product"], cu["output"], cu["enterprises"]) == ("copper", 50, 1)

    # targets: capacity shares at benchmark, output-weighted over the monitored enterprises
    targets = {t["indicator"]: t for t in ov["targets"] if t["year"] == 2025}
    steel = targets["steel_capacity_share_at_benchmark"]
    expected_share = 100 * (bf["output_at_benchmark"] + bof["output_at_benchmark"]) / (bf["output"] + bof["output"])
    assert steel["measured"] == pytest.approx(expected_share) and steel["measured"] == pytest.approx(20.0)
    assert steel["measured_status"] == "measured" and "monitored enterprises only" in steel["measured_scope"]
    alcu = targets["aluminium_copper_capacity_share_at_benchmark"]
    assert alcu["measured"] is None and alcu["measured_status"] == "no_levels"
    assert "copper: no levels are shipped" in alcu["measured_note"]
    assert "electrolytic_aluminium: no benchmark" in alcu["measured_note"]
    assert targets["cement_clinker_capacity_share_at_benchmark"]["measured"] is None
    coal = targets["coal_power_net_coal_consumption"]
    plants = [shanxi[codes["coal_1"]], shanxi[codes["coal_2"]]]
    weighted = sum(p.tce_fuel for p in plants) * 1e6 / sum(p.outputs["coal_power"] for p in plants)
    assert coal["measured"] == pytest.approx(weighted, rel=1e-9) and coal["measured"] > 300  # not yet met
    assert "2 enterprise(s)" in coal["measured_scope"] and "not the regional statistic" in coal["measured_scope"]
    nonfossil = targets["non_fossil_share_of_energy"]
    assert nonfossil["measured"] is None and nonfossil["measured_status"] == "not_compared"
    assert targets["clean_share_of_capacity"]["measured_status"] == "regional"

    # green power per city and for the province: sums of each enterprise's own max(0, ...) rule
    for city in ov["cities"]:
        mine = [p for p in shanxi.values() if p.city == city["city"]]
        assert city["green_power_share"] == pytest.approx(green_share(mine), rel=1e-9), city["city"]
        assert city["electricity_used_kwh"] == pytest.approx(sum(p.used for p in mine), rel=1e-9)
    g = ov["green_power"]
    assert g["share"] == pytest.approx(green_share(shanxi.values()), rel=1e-9)
    assert g["green_used_kwh"] == pytest.approx(300_000)  # steel_2 exports more than its PV makes: 0, not -30,000
    nf = ov["non_fossil_monitored"]
    energy = sum(p.tce for p in shanxi.values()) + sum(p.kwh.get("renewable", 0) for p in shanxi.values()) * (
        KGCE_PER_KWH / 1000
    )
    assert nf["energy_tce"] == pytest.approx(energy, rel=1e-9)
    assert nf["share"] == pytest.approx(300_000 * KGCE_PER_KWH / 1000 / energy, rel=1e-9)
    assert "monitored enterprises only" in nf["scope"] and "not compared" in nf["scope"]

    # Ningxia: PUE measured over the two data centres, nothing for the coal-power or benchmark targets
    nx = get(api, token(api, "province", "640000"), "/provinces/640000/overview")
    ningxia = plants_from_intervals(api.db_url, "640000")
    nxt = {t["indicator"]: t for t in nx["targets"] if t["year"] == 2025}
    pue = sum(p.used for p in ningxia.values()) / sum(p.outputs["data_centre"] for p in ningxia.values())
    assert nxt["data_centre_pue"]["measured"] == pytest.approx(pue, rel=1e-9) and pue > NX_PUE_TARGET
    assert nxt["coal_power_net_coal_consumption"]["measured_status"] == "no_output"
    assert nxt["capacity_share_at_benchmark"]["measured_status"] == "no_output"
    assert nx["green_power"]["share"] == pytest.approx(green_share(ningxia.values()), rel=1e-9)

    # Qinghai's demo smelter runs PV from the seeded history: its share from those intervals
    qh = get(api, "qinghai", "/provinces/630000/overview")
    qinghai = plants_from_intervals(api.db_url, "630000")
    assert qh["green_power"]["share"] == pytest.approx(green_share(qinghai.values()))
    assert 0 < qh["green_power"]["share"] < 1 and QINGHAI not in str(ov)


def test_enterprise_token_sees_only_its_own_standing(api):
    codes = product_world(api.db_url)
    tok = token(api, "enterprise", codes["steel_2"])
    ov = get(api, tok, "/provinces/140000/overview")
    bf = next(r for r in ov["benchmarks"] if r["indicator"] == "blast_furnace")
    assert (bf["enterprises"], bf["output"], bf["share_at_benchmark"]) == (1, 2000, 0.0)
    assert ov["green_power"]["enterprises"] == 1 and ov["green_power"]["share"] == 0.0
    steel = next(t for t in ov["targets"] if t["indicator"] == "steel_capacity_share_at_benchmark")
    assert steel["measured"] == 0.0
    text = str(ov)
    assert all(code not in text for key, code in codes.items() if key != "steel_2")
