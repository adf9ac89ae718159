"""What meters measure of the plans' indicators, over real PostgreSQL: product intensity for every
shipped indicator unit (kgce/t, kWh/t, gce/kWh, PUE), benchmark attainment per product (F-32) with
the baseline and limit counts (F-30, F-31), targets measured over the monitored enterprises, and the
green-power and non-fossil shares (F-42).

A figure is compared and counted only when it means something: energy metered (> 0), a PUE of at
least 1, and the 15-minute data of its energy and output points at least 90% complete; otherwise
it is not_comparable with its reason. Process-level indicators (steel, methanol, coke, the aluminium
AC electricity) are scored only when the output point names them; each enterprise counts once per
share target.

Every expectation is computed here from the raw 15-minute intervals (apikit.plants_from_intervals)
with the coefficients, levels and rules written out below, not through the API's code.
"""

from __future__ import annotations

import math
import re

import httpx
import psycopg
import pytest
from apikit import KGCE_PER_KWH, QINGHAI, SHANXI_A, Plant, plants_from_intervals, product_world

from carbonwatch.api.auth import create_token

pytestmark = pytest.mark.timeout(120)

# levels of the shipped table (accounting/data/product_energy_levels.yaml), as the tests expect them
BLAST_FURNACE = {"benchmark": 361, "grade_3": 415, "baseline": 435}
CONVERTER = {"benchmark": -30, "grade_3": -12, "baseline": -10}
COKE_STAMP = {"benchmark": 110, "grade_3": 140, "baseline": 140}
ALUMINIUM_LIQUID_LIMIT = 13350  # kWh/t, grade 3
NX_PUE_TARGET = 1.2
RULE = 0.9  # the national completeness rule: 90% of the 15-minute values


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


def boundary(plant: Plant, fuel_only: bool = False) -> list[str]:
    """The points whose sum is the energy of a kgce/t (or, fuel only, a gce/kWh) figure: every carrier
    point at the boundary, imports and exports."""
    return [
        n
        for n, p in plant.points.items()
        if p.carrier is not None and p.direction in ("import", "export")
        and not (fuel_only and p.carrier == "electricity")
    ]  # fmt: skip


def outputs_of(plant: Plant, product: str) -> list[str]:
    return [n for n, p in plant.points.items() if p.product == product]


def comparable(plant: Plant, energy: float, energy_points: list[str], product: str) -> bool:
    """The rule, restated: energy metered and every energy and output point at least 90% complete."""
    names = energy_points + outputs_of(plant, product)
    return energy > 0 and plant.outputs.get(product, 0) > 0 and min(plant.completeness(names).values()) >= RULE


def kgce_figures(plants, product: str) -> list[tuple[str, float, float]]:
    """(code, kgce/t, t) of every comparable figure on ``product`` (an indicator named on the point)."""
    return [
        (p.code, p.tce * 1000 / p.outputs[product], p.outputs[product])
        for p in plants
        if product in p.outputs and comparable(p, p.tce, boundary(p), product)
    ]


def test_drill_down_intensity_for_every_unit_and_green_power(api):
    codes = product_world(api.db_url)
    plants = {
        k: v for prov in ("140000", "630000", "640000") for k, v in plants_from_intervals(api.db_url, prov).items()
    }
    p = {key: plants[code] for key, code in codes.items()}

    # kgce/t: comprehensive energy on the boundary; the PV's generation is not added, its export subtracts
    s1 = items(get(api, "admin", f"/enterprises/{codes['steel_1']}/overview"))
    bf = s1["steel.blast_furnace"]
    assert bf["value"] == pytest.approx(p["steel_1"].tce * 1000 / 1000, rel=1e-9)
    assert bf["value"] == pytest.approx((3_000_000 - 100_000) * KGCE_PER_KWH / 1000, rel=1e-9)  # 356.41
    assert (bf["unit"], bf["output"], bf["output_unit"], bf["status"]) == ("kgce/t", 1000, "t", "compared")
    assert {lv["kind"]: lv["met"] for lv in bf["levels"]} == {
        "grade_1": True, "grade_2": True, "grade_3": True, "benchmark": True, "baseline": True,
    }  # fmt: skip
    assert bf["alerts"] == [] and list(s1) == ["steel.blast_furnace"]  # only the indicator the point names
    # every boundary point and the output counter are complete: the figure is compared
    assert sorted(bf["energy_points"]) == sorted(boundary(p["steel_1"])) == ["grid.export_kwh", "grid.import_kwh"]
    assert bf["completeness"]["rule"] == RULE and bf["completeness"]["energy"] >= 0.98
    assert min(p["steel_1"].completeness([*boundary(p["steel_1"]), "bf.hot_metal_t"]).values()) >= 0.98

    s3 = items(get(api, "admin", f"/enterprises/{codes['steel_3']}/overview"))["steel.blast_furnace"]
    assert s3["value"] == pytest.approx(p["steel_3"].tce, rel=1e-9) and s3["value"] > BLAST_FURNACE["baseline"]
    assert any("baseline" in a for a in s3["alerts"]) and any("limit" in a for a in s3["alerts"])

    # gce/kWh: fuel energy (electricity left out) over net supply, by the export meter or an MWh counter
    for key in ("coal_1", "coal_2"):
        c = items(get(api, "admin", f"/enterprises/{codes[key]}/overview"))["coal_power.net_coal_consumption"]
        expected = p[key].tce_fuel * 1e6 / p[key].outputs["coal_power"]
        assert c["unit"] == "gce/kWh" and c["value"] == pytest.approx(expected, rel=1e-9)
        assert "without electricity" in c["energy_basis"] and c["energy_points"] == ["coal.bituminous_t"]
    assert p["coal_1"].tce_fuel * 1e6 / 24e6 == pytest.approx(306.0, abs=0.1)  # the world is what it says

    # the aluminium smelter: liquid AC electricity where the point names it (kWh/t on electricity used);
    # the bare product name gives the whole-site kgce/t only, with a note on the process-level ones
    al = items(get(api, "admin", f"/enterprises/{codes['aluminium']}/overview"))
    assert set(al) == {
        "electrolytic_aluminium.liquid_ac_electricity",
        "electrolytic_aluminium.ingot_comprehensive_energy",
    }
    liquid = al["electrolytic_aluminium.liquid_ac_electricity"]
    assert liquid["unit"] == "kWh/t" and liquid["value"] == pytest.approx(p["aluminium"].used / 100, rel=1e-9)
    assert liquid["value"] > ALUMINIUM_LIQUID_LIMIT and liquid["grade"] == "worse_than_grade_3"
    assert any("limit" in a for a in liquid["alerts"]) and liquid["output_points"] == ["potline.liquid_t"]
    comprehensive = al["electrolytic_aluminium.ingot_comprehensive_energy"]
    assert comprehensive["value"] == pytest.approx(p["aluminium"].tce * 1000 / 100, rel=1e-9)
    assert comprehensive["output_points"] == ["cast.aluminium_t"]
    assert "ingot_ac_electricity" in comprehensive["note"] and "name" in comprehensive["note"]

    # copper: no levels shipped, said so rather than guessed
    (cu,) = get(api, "admin", f"/enterprises/{codes['copper']}/overview")["intensity"]
    assert cu["product"] == "copper" and "no levels" in cu["error"] and "value" not in cu
    assert cu["status"] == "no_levels"

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


def _percent(reason: str, side: str) -> int:
    m = re.search(rf"{side} data (\d+)% complete", reason)
    assert m, reason
    return int(m.group(1))


def test_missing_or_incomplete_data_is_not_comparable(api):
    codes = product_world(api.db_url)
    plants = {
        k: v for prov in ("140000", "630000", "640000") for k, v in plants_from_intervals(api.db_url, prov).items()
    }
    p = {key: plants[code] for key, code in codes.items()}

    def item(key: str, indicator: str) -> dict:
        return items(get(api, "admin", f"/enterprises/{codes[key]}/overview"))[indicator]

    def not_comparable(it: dict) -> None:
        assert it["status"] == "not_comparable" and it["value"] is None
        assert it["grade"] is None and it["alerts"] == [] and it["levels"] == []

    # an output counter and no energy meter: 0 kgce/t would pass every level; it is no figure at all
    coke = p["coke_blind"]
    assert coke.tce == 0 and boundary(coke) == [] and coke.outputs["coke.stamp_charging"] == 1000
    blind = item("coke_blind", "coke.stamp_charging")
    not_comparable(blind)
    assert "no energy metered" in blind["reason"] and blind["energy"] == 0 and blind["output"] == 1000

    # a data centre without an import meter: its PV over the IT load is a PUE below 1
    dc = p["dc_3"]
    assert dc.kwh.get("import", 0) == 0 and dc.used / dc.outputs["data_centre"] == pytest.approx(0.25)
    pue = item("dc_3", "data_centre.pue")
    not_comparable(pue)
    assert f"PUE {dc.used / dc.outputs['data_centre']:.3f} is below 1" in pue["reason"]
    assert "no energy metered" not in pue["reason"]  # energy there is: only the PUE rule applies

    # the incomer fell silent: its share of the slots, from the raw intervals, against the 90% rule
    gappy = p["steel_gappy"]
    share = gappy.completeness([*boundary(gappy), "bf.hot_metal_t"])
    assert share["grid.import_kwh"] < RULE and share["bf.hot_metal_t"] >= RULE
    assert gappy.tce * 1000 / 1000 <= BLAST_FURNACE["benchmark"]  # compared, it would read as at benchmark
    bf = item("steel_gappy", "steel.blast_furnace")
    not_comparable(bf)
    assert abs(_percent(bf["reason"], "energy") - math.floor(share["grid.import_kwh"] * 100)) <= 1
    assert "(grid.import_kwh;" in bf["reason"] and "output data" not in bf["reason"]
    assert bf["completeness"]["energy"] == pytest.approx(share["grid.import_kwh"], abs=0.011)
    assert bf["completeness"]["energy_point"] == "grid.import_kwh"

    # an incomer registered late: complete since its registration, not over the output's span
    late = p["steel_late"]
    share = late.completeness([*boundary(late), "bf.hot_metal_t"])
    assert (
        share["grid.import_kwh"] < RULE and late.points["grid.import_kwh"].since > late.points["bf.hot_metal_t"].since
    )
    assert late.completeness(["grid.import_kwh"])["grid.import_kwh"] >= RULE  # alone, it looks complete
    lbf = item("steel_late", "steel.blast_furnace")
    not_comparable(lbf)
    assert abs(_percent(lbf["reason"], "energy") - math.floor(share["grid.import_kwh"] * 100)) <= 1
    assert lbf["completeness"]["start"] == late.points["bf.hot_metal_t"].since.isoformat().replace("+00:00", "Z")

    # the output (export) meter sent half its slots: the coal plant's gce/kWh is not comparable
    coal = p["coal_gappy"]
    share = coal.completeness([*boundary(coal, fuel_only=True), *outputs_of(coal, "coal_power")])
    assert share["grid.export_kwh"] < RULE and share["coal.bituminous_t"] >= RULE
    assert coal.tce_fuel * 1e6 / coal.outputs["coal_power"] < 300  # compared, it would meet the target
    c = item("coal_gappy", "coal_power.net_coal_consumption")
    not_comparable(c)
    assert abs(_percent(c["reason"], "output") - math.floor(share["grid.export_kwh"] * 100)) <= 1
    assert "energy data" not in c["reason"] and "(grid.export_kwh;" in c["reason"]


def test_process_level_indicators_need_the_process_named(api):
    codes = product_world(api.db_url)
    shanxi = plants_from_intervals(api.db_url, "140000")

    # "steel": sintering, blast furnace and converter all use kgce/t; whole-site energy scores none of them
    bare = shanxi[codes["steel_bare"]]
    assert bare.tce * 1000 / bare.outputs["steel"] == pytest.approx(549.98, abs=0.01)
    (steel,) = get(api, "admin", f"/enterprises/{codes['steel_bare']}/overview")["intensity"]
    assert (steel["product"], steel["indicator"], steel["status"]) == ("steel", None, "process_not_named")
    assert "name the process" in steel["error"] and "steel.blast_furnace" in steel["error"]
    assert "value" not in steel and "alerts" not in steel and steel["output"] == 1000
    (methanol,) = get(api, "admin", f"/enterprises/{codes['methanol_bare']}/overview")["intensity"]
    assert methanol["status"] == "process_not_named" and "methanol.bituminous_coal_route" in methanol["error"]

    # an integrated works naming both processes: both figures, each saying the energy is the site's
    both = items(get(api, "admin", f"/enterprises/{codes['steel_5']}/overview"))
    works = shanxi[codes["steel_5"]]
    assert set(both) == {"steel.blast_furnace", "steel.converter"}
    assert both["steel.blast_furnace"]["value"] == pytest.approx(works.tce * 1000 / 1000, rel=1e-9)
    assert both["steel.converter"]["value"] == pytest.approx(works.tce * 1000 / 1100, rel=1e-9)
    assert "steel.converter" in both["steel.blast_furnace"]["note"]
    assert "steel.blast_furnace" in both["steel.converter"]["note"]

    # the province: the bare output is listed as not scored and in no indicator's row
    ov = get(api, "shanxi", "/provinces/140000/overview")
    (unscored,) = ov["outputs_not_scored"]
    assert (unscored["product"], unscored["output"], unscored["enterprises"]) == ("steel", 1000, 1)
    assert "name the process" in unscored["note"]
    rows = {f"{r['product']}.{r['indicator']}": r for r in ov["benchmarks"]}
    named = {k: [p for p in shanxi.values() if k in p.outputs] for k in ("steel.blast_furnace", "steel.converter")}
    for key in ("steel.blast_furnace", "steel.converter"):
        assert rows[key]["enterprises"] + rows[key]["enterprises_not_comparable"] == len(named[key])
    assert rows["steel.sintering"]["enterprises"] == 0 and rows["steel.sintering"]["output"] == 0


def _attainment(plants, product: str, levels: dict) -> dict:
    """Output-weighted standing of the comparable figures on ``product``, from the plants' own figures."""
    got = [(v, q) for _, v, q in kgce_figures(plants, product)]
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


def _share_counted_once(plants, levels: dict[str, dict]) -> tuple[float, int]:
    """Share at benchmark over the comparable figures on ``levels``' indicators, each enterprise once:
    weighted by its largest output, at benchmark only when every one of its figures is."""
    per: dict[str, list[tuple[float, float, float]]] = {}
    for product, lv in levels.items():
        for code, v, q in kgce_figures(plants, product):
            per.setdefault(code, []).append((v, q, lv["benchmark"]))
    weight = {code: max(q for _, q, _ in figs) for code, figs in per.items()}
    at = sum(weight[code] for code, figs in per.items() if all(v <= b for v, _, b in figs))
    return at / sum(weight.values()), len(per)


def test_province_overview_attainment_targets_and_green_power(api):
    codes = product_world(api.db_url)
    shanxi = plants_from_intervals(api.db_url, "140000")
    ov = get(api, "shanxi", "/provinces/140000/overview")
    rows = {f"{r['product']}.{r['indicator']}": r for r in ov["benchmarks"]}

    # benchmark attainment over the comparable figures: the silent incomer's plant is left out
    bf = _attainment(shanxi.values(), "steel.blast_furnace", BLAST_FURNACE)
    bof = _attainment(shanxi.values(), "steel.converter", CONVERTER)
    assert (bf["enterprises"], bf["output"], bf["share_at_benchmark"]) == (4, 5000, 0.4)
    for key, want in (("steel.blast_furnace", bf), ("steel.converter", bof)):
        row = rows[key]
        for name, value in want.items():
            assert row[name] == pytest.approx(value, rel=1e-9), (key, name)
        assert row["benchmark"] is not None and row["output_unit"] == "t"
    (left,) = rows["steel.blast_furnace"]["not_comparable"]
    assert left["enterprise"] == codes["steel_gappy"] and "energy data" in left["reason"]
    assert rows["steel.blast_furnace"]["enterprises_not_comparable"] == 1
    assert rows["steel.converter"]["enterprises_not_comparable"] == 0
    al = rows["electrolytic_aluminium.liquid_ac_electricity"]
    assert al["enterprises"] == 1 and al["share_at_benchmark"] is None and "no benchmark" in al["note"]
    assert al["enterprises_worse_than_limit"] == 1 and al["enterprises_worse_than_baseline"] is None
    assert rows["electrolytic_aluminium.ingot_ac_electricity"]["enterprises"] == 0  # not named by any point
    assert rows["steel.sintering"]["enterprises"] == 0 and rows["steel.sintering"]["output"] == 0
    assert rows["cement_clinker.comprehensive_energy"]["share_at_benchmark"] is None
    assert len(rows) == 19  # every shipped indicator, monitored or not
    (cu,) = ov["products_without_levels"]
    assert (cu["product"], cu["output"], cu["enterprises"]) == ("copper", 50, 1)

    # targets: capacity shares at benchmark over the monitored enterprises, each enterprise once (the
    # integrated works with blast furnace and converter is one plant of 1100 t, not at benchmark)
    targets = {t["indicator"]: t for t in ov["targets"] if t["year"] == 2025}
    steel = targets["steel_capacity_share_at_benchmark"]
    share, n = _share_counted_once(
        shanxi.values(), {"steel.blast_furnace": BLAST_FURNACE, "steel.converter": CONVERTER}
    )
    assert (share, n) == (pytest.approx(1000 / 6100), 5)
    assert steel["measured"] == pytest.approx(100 * share, rel=1e-9) and steel["measured_status"] == "measured"
    assert f"over {n} enterprise(s)" in steel["measured_scope"] and "each counted once" in steel["measured_scope"]
    assert "monitored enterprises only" in steel["measured_scope"]
    assert (
        codes["steel_gappy"] in steel["measured_note"]
        and "1 enterprise figure(s) not comparable" in steel["measured_note"]
    )
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
    assert coal["measured_note"] is None
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

    # Ningxia: PUE over the data centres with a PUE of at least 1 (not the one without an import meter)
    nx = get(api, token(api, "province", "640000"), "/provinces/640000/overview")
    ningxia = plants_from_intervals(api.db_url, "640000")
    nxt = {t["indicator"]: t for t in nx["targets"] if t["year"] == 2025}
    dcs = [p for p in ningxia.values() if "data_centre" in p.outputs]
    fit = [p for p in dcs if p.used > 0 and p.used / p.outputs["data_centre"] >= 1]
    assert (len(dcs), len(fit)) == (3, 2)
    pue = sum(p.used for p in fit) / sum(p.outputs["data_centre"] for p in fit)
    assert nxt["data_centre_pue"]["measured"] == pytest.approx(pue, rel=1e-9) and pue > NX_PUE_TARGET
    assert (
        codes["dc_3"] in nxt["data_centre_pue"]["measured_note"]
        and "2 enterprise(s)" in nxt["data_centre_pue"]["measured_scope"]
    )
    # coal power: the only plant's output meter is half complete, so nothing is measured, and says why
    assert nxt["coal_power_net_coal_consumption"]["measured"] is None
    assert nxt["coal_power_net_coal_consumption"]["measured_status"] == "not_comparable"
    assert "output data" in nxt["coal_power_net_coal_consumption"]["measured_note"]
    # every key industry with a benchmark: coke only here; the plant without an energy meter is left out
    coke = _share_counted_once(ningxia.values(), {"coke.stamp_charging": COKE_STAMP})
    assert coke == (0.0, 1)  # 122.9 kgce/t against 110; counting the blind plant's 0 would make it 50%
    measured = nxt["capacity_share_at_benchmark"]
    assert measured["measured"] == pytest.approx(100 * coke[0]) and measured["measured_status"] == "measured"
    assert codes["coke_blind"] in measured["measured_note"] and "no energy metered" in measured["measured_note"]
    nrows = {f"{r['product']}.{r['indicator']}": r for r in nx["benchmarks"]}
    stamp = nrows["coke.stamp_charging"]
    assert (stamp["enterprises"], stamp["enterprises_not_comparable"], stamp["output"]) == (1, 1, 1000)
    assert stamp["intensity"] == pytest.approx(1_000_000 * KGCE_PER_KWH / 1000, rel=1e-9)
    (methanol,) = nx["outputs_not_scored"]
    assert (methanol["product"], methanol["output"]) == ("methanol", 500)
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
    assert bf["not_comparable"] == [] and ov["outputs_not_scored"] == []
    assert ov["green_power"]["enterprises"] == 1 and ov["green_power"]["share"] == 0.0
    steel = next(t for t in ov["targets"] if t["indicator"] == "steel_capacity_share_at_benchmark")
    assert steel["measured"] == 0.0 and steel["measured_note"] is None
    text = str(ov)
    assert all(code not in text for key, code in codes.items() if key != "steel_2")
