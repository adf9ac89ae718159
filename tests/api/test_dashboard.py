"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright):
it logs in from a ready link, shows the province overview, the enterprise drill-down with charts,
the data-quality view, switches language, and shows live numbers that change when the simulated
plant advances (simulator -> agent -> Mosquitto -> collector -> PostgreSQL -> NOTIFY -> SSE).
Screenshots are kept in test-artifacts/."""

from __future__ import annotations

import asyncio
import os
import re

import psycopg
import pytest
from apikit import SHANXI_A, degrade

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
