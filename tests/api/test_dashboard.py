"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright):
it logs in from a ready link, shows the province overview, the enterprise drill-down with charts,
the data-quality view, switches language, and shows live numbers that change when the simulated
plant advances (simulator -> agent -> Mosquitto -> collector -> PostgreSQL -> NOTIFY -> SSE).
Benchmark attainment, measured targets, green-power and non-fossil shares and every product
intensity show the numbers computed here from the raw intervals, in both languages.
Screenshots are kept in test-artifacts/."""

from __future__ import annotations

import asyncio
import os
import re

import psycopg
import pytest
from apikit import SHANXI_A, degrade, plants_from_intervals, product_world

from carbonwatch.api.app import create_app
from carbonwatch.api.auth import create_token
from carbonwatch.collector.registry import register_site
from carbonwatch.edge.agent import Agent
from carbonwatch.embedded import free_port
from carbonwatch.simulators.server import SiteSimulator

from support import REPO, BackgroundLoop, CollectorThread, UvicornThread, localise, site_from_file, wait_until

pytestmark = pytest.mark.timeout(180)

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (bash .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is needed for browser tests")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _number(text: str) -> float:
    return float(re.sub(r"[^0-9.\-]", "", text) or "nan")


def test_views_in_both_languages(api, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{api.url}/#token={api.tokens['shanxi']}")
    page.wait_for_selector("text=碳排放强度 tCO2/tce")
    assert "token=" not in page.url  # the token left the address bar
    rows = page.locator("main table").first.locator("tbody tr")
    assert rows.count() == 2  # the two Shanxi cities, nothing of Qinghai
    assert page.locator("#c-months canvas").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "dashboard-province-zh.png"), full_page=True)
    page.click("#lang")
    page.wait_for_selector("text=Carbon intensity tCO2/tce")
    page.screenshot(path=str(ARTIFACTS / "dashboard-province-en.png"), full_page=True)
    page.click("#lang")

    page.goto(f"{api.url}/#/enterprise/{SHANXI_A}")
    page.wait_for_selector("#c-days canvas")
    assert "太原示范煤化工" in page.inner_text("h1")
    assert page.locator("text=天然气").count() >= 1
    page.click("#lang")
    page.wait_for_selector("text=Carbon intensity tCO2/tce")
    assert "Taiyuan Demonstration Coal Chemical" in page.inner_text("h1")
    page.click('[data-point="incomer.import_kwh"]')
    page.wait_for_selector("#c-point canvas")
    assert "incomer.import_kwh" in page.inner_text("#point-title")
    page.screenshot(path=str(ARTIFACTS / "dashboard-enterprise.png"), full_page=True)

    degrade(api.db_url, SHANXI_A)
    page.goto(f"{api.url}/#/quality")
    page.wait_for_selector("#alerts")
    alerts = page.inner_text("#alerts")
    for kind in ("Meter down", "Counter anomaly", "Point silent", "Low completeness"):
        assert kind in alerts, alerts
    page.screenshot(path=str(ARTIFACTS / "dashboard-quality.png"), full_page=True)
    assert errors == []


def _pct(v: float) -> str:
    return f"{v * 100:.1f}%"


def _green(plants) -> float:
    return sum(p.green for p in plants) / sum(p.used for p in plants)


def test_benchmarks_green_power_and_intensities(api, browser):
    codes = product_world(api.db_url)
    shanxi = plants_from_intervals(api.db_url, "140000")
    # the blast furnaces with complete data (the silent incomer's plant is not comparable)
    gappy = codes["steel_gappy"]
    blast = [(p.tce * 1000 / p.outputs["steel.blast_furnace"], p.outputs["steel.blast_furnace"])
             for p in shanxi.values() if "steel.blast_furnace" in p.outputs and p.code != gappy]  # fmt: skip
    assert shanxi[gappy].completeness(["grid.import_kwh", "bf.hot_metal_t"])["grid.import_kwh"] < 0.9
    output = sum(q for _, q in blast)
    at_benchmark = sum(q for v, q in blast if v <= 361)  # the shipped benchmark level, kgce/t
    coal = [shanxi[codes["coal_1"]], shanxi[codes["coal_2"]]]
    coal_rate = sum(p.tce_fuel for p in coal) * 1e6 / sum(p.outputs["coal_power"] for p in coal)
    # the steel share counts each enterprise once: the integrated works (at benchmark on its blast
    # furnace, not on its converter) with its larger output, not at benchmark
    works = shanxi[codes["steel_5"]]
    works_bf = works.tce * 1000 / works.outputs["steel.blast_furnace"]
    converters = sum(p.outputs["steel.converter"] for p in shanxi.values() if "steel.converter" in p.outputs)
    steel_output = output - works.outputs["steel.blast_furnace"] + converters
    steel_at = at_benchmark - (works.outputs["steel.blast_furnace"] if works_bf <= 361 else 0)
    renewable_tce = sum(p.kwh.get("renewable", 0) for p in shanxi.values()) * 0.1229 / 1000
    non_fossil = (
        sum(p.green for p in shanxi.values()) * 0.1229 / 1000 / (sum(p.tce for p in shanxi.values()) + renewable_tce)
    )

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{api.url}/#token={api.tokens['shanxi']}")
    page.wait_for_selector("#benchmarks")
    row = '[data-bench="steel.blast_furnace"]'
    cell = lambda r, c: page.inner_text(f'{r} [data-cell="{c}"]').strip()  # noqa: E731
    assert cell(row, "share") == _pct(at_benchmark / output) == "40.0%"
    assert cell(row, "enterprises") == str(len(blast)) and cell(row, "not_comparable") == "1"
    assert "energy data" in page.get_attribute(f'{row} [data-cell="not_comparable"]', "title")
    assert cell(row, "output") == f"{output:,.2f} t"
    assert cell(row, "intensity") == f"{sum(v * q for v, q in blast) / output:,.2f} kgce/t"
    assert (cell(row, "baseline"), cell(row, "limit")) == ("1", "1")
    assert cell('[data-bench="steel.converter"]', "share") == "0.0%"
    assert cell('[data-bench="electrolytic_aluminium.liquid_ac_electricity"]', "share") == "—"
    assert "copper" in page.inner_text("#unlevelled")
    measured = '[data-target="{}-2025"]'
    steel_share = 100 * steel_at / steel_output
    assert cell(measured.format("steel_capacity_share_at_benchmark"), "measured") == f"{steel_share:,.2f}%"
    assert "steel 1,000.00 t (1)" in page.inner_text("#unscored")  # named only "steel": no process scored
    assert "90%" in page.inner_text("#benchmarks + p")
    assert cell(measured.format("coal_power_net_coal_consumption"), "measured") == f"{coal_rate:,.2f}gce/kWh"
    assert "未收录标杆水平" in page.inner_text(measured.format("aluminium_copper_capacity_share_at_benchmark"))
    assert page.inner_text("#kpi-green") == _pct(_green(shanxi.values()))
    assert page.inner_text("#kpi-non-fossil") == _pct(non_fossil)
    for city in ("140100", "140200"):
        mine = [p for p in shanxi.values() if p.city == city]
        assert page.inner_text(f'[data-city-green="{city}"]') == _pct(_green(mine))
    assert "绿证和绿电交易未计量" in page.inner_text("main")
    page.screenshot(path=str(ARTIFACTS / "dashboard-benchmarks-zh.png"), full_page=True)
    page.click("#lang")
    page.wait_for_selector("text=Benchmark attainment (monitored enterprises, output-weighted)")
    cement = page.inner_text(measured.format("cement_clinker_capacity_share_at_benchmark"))
    assert "no benchmark level shipped" in cement
    assert cell(row, "share") == "40.0%" and "No green certificates" in page.inner_text("main")
    assert "name the process" in page.get_attribute("#unscored span", "title")
    page.screenshot(path=str(ARTIFACTS / "dashboard-benchmarks-en.png"), full_page=True)

    # drill-downs: green power and every product intensity, in English now
    steel = shanxi[codes["steel_1"]]
    page.goto(f"{api.url}/#/enterprise/{codes['steel_1']}")
    page.wait_for_selector("#green")
    assert cell("#green", "share") == page.inner_text("#kpi-green") == _pct(steel.green / steel.used) == "9.1%"
    assert cell("#green", "el_green") == f"{steel.green:,.0f}" and cell("#green", "el_used") == f"{steel.used:,.0f}"
    bf = cell('[data-intensity="steel.blast_furnace"]', "value")
    assert bf.startswith(f"{steel.tce * 1000 / 1000:,.1f} kgce/t") and "comprehensive energy" in bf
    aluminium = shanxi[codes["aluminium"]]
    page.goto(f"{api.url}/#/enterprise/{codes['aluminium']}")
    page.wait_for_selector('[data-intensity="electrolytic_aluminium.liquid_ac_electricity"]')
    assert page.locator("#intensity tbody tr").count() == 2  # ingot AC electricity: not named by a point
    liquid = cell('[data-intensity="electrolytic_aluminium.liquid_ac_electricity"]', "value")
    assert liquid.startswith(f"{aluminium.used / 100:,.1f} kWh/t") and "electricity used" in liquid
    comprehensive = cell('[data-intensity="electrolytic_aluminium.ingot_comprehensive_energy"]', "value")
    assert comprehensive.startswith(f"{aluminium.tce * 1000 / 100:,.1f} kgce/t")
    assert "worse than the limit" in page.inner_text('[data-intensity="electrolytic_aluminium.liquid_ac_electricity"]')
    assert "process-level" in cell('[data-intensity="electrolytic_aluminium.ingot_comprehensive_energy"]', "note")
    page.screenshot(path=str(ARTIFACTS / "dashboard-intensity-en.png"), full_page=True)
    # not comparable: no value, the reason instead; a bare "steel" asks for the process
    page.goto(f"{api.url}/#/enterprise/{gappy}")
    page.wait_for_selector('[data-intensity="steel.blast_furnace"] [data-cell="reason"]')
    assert cell('[data-intensity="steel.blast_furnace"]', "value").startswith("—")
    assert "not comparable" in cell('[data-intensity="steel.blast_furnace"]', "value")
    assert "energy data" in cell('[data-intensity="steel.blast_furnace"]', "reason")
    page.goto(f"{api.url}/#/enterprise/{codes['steel_bare']}")
    page.wait_for_selector('[data-intensity="steel."] [data-cell="error"]')
    assert "steel.blast_furnace" in cell('[data-intensity="steel."]', "error")
    page.click("#lang")
    page.wait_for_selector('[data-intensity="steel."]')
    page.goto(f"{api.url}/#/enterprise/{gappy}")
    page.wait_for_selector("text=绿电：就地可再生能源发电自用")
    assert "不可比" in cell('[data-intensity="steel.blast_furnace"]', "value")
    page.goto(f"{api.url}/#/enterprise/{codes['aluminium']}")
    page.wait_for_selector('[data-intensity="electrolytic_aluminium.liquid_ac_electricity"]')
    assert "用电量" in cell('[data-intensity="electrolytic_aluminium.liquid_ac_electricity"]', "value")
    assert errors == []


def test_login_form_refuses_a_bad_token(api, browser):
    page = browser.new_page()
    page.goto(api.url + "/")
    page.fill("#token", "cw_not_a_token")
    page.click("#login button")
    page.wait_for_selector("text=令牌无效或已撤销")
    page.fill("#token", api.tokens["A"])
    page.click("#login button")
    page.wait_for_selector("#c-days canvas")


def test_live_numbers_change_as_the_simulated_plant_runs(db_url, broker, tmp_path, browser):
    site = localise(site_from_file("demo-shanxi-chemical.yaml"), tmp_path, broker.port, {}, poll_interval=1.0)
    with psycopg.connect(db_url) as conn:
        register_site(conn, site)
        token = create_token(conn, "enterprise", site.enterprise.code, "live test")
    with (
        CollectorThread(db_url, broker.port, interval_period=0.5),
        BackgroundLoop() as bg,
        UvicornThread(create_app(db_url, stream_heartbeat=1.0), free_port()) as server,
    ):
        sim = SiteSimulator(site)
        bg.run(sim.start())
        agent = bg.call(Agent, site)
        stop = asyncio.Event()
        done = bg.spawn(agent.run(stop))
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{server.url}/#token={token}")
            cell = page.locator(f'.kpi [data-co2="{SHANXI_A}"]')
            cell.wait_for()
            first = wait_until(lambda: _positive(cell.inner_text()), 60, 0.5, "live CO2 above zero on the page")
            wait_until(lambda: _positive(cell.inner_text()) not in (None, first), 60, 0.5, "the live CO2 to change")
            assert page.get_attribute("#live", "data-state") == "on"
            page.screenshot(path=str(ARTIFACTS / "dashboard-live.png"), full_page=True)
        finally:
            page.close()  # ends the stream before the server stops
            bg.loop.call_soon_threadsafe(stop.set)
            done.result(20)
            bg.run(sim.stop())


def _positive(text: str) -> float | None:
    value = _number(text)
    return value if value > 0 else None
