"""End to end with real parts: simulated Modbus meter -> agent -> Mosquitto -> collector ->
PostgreSQL -> accounting -> API. A kWh value set in the simulator must come back from the
API as the right tCO2."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from carbonwatch.accounting.factors import ELECTRICITY_TCE_PER_MWH, electricity_factor
from carbonwatch.api.app import create_app
from carbonwatch.api.auth import create_token
from carbonwatch.collector.registry import register_site
from carbonwatch.edge.agent import Agent
from carbonwatch.embedded import free_port
from carbonwatch.simulators.server import SiteSimulator

from support import BackgroundLoop, CollectorThread, UvicornThread, localise, site_from_file, wait_until

pytestmark = pytest.mark.timeout(120)


def _readings(db_url: str, point: str) -> list[tuple[datetime, float]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT r.ts, r.value FROM readings r JOIN points p ON p.id = r.point_id "
            "WHERE p.point = %s AND r.quality = 0 ORDER BY r.ts",
            (point,),
        ).fetchall()


def test_kwh_set_in_simulator_comes_back_as_tco2(db_url, broker, tmp_path):
    site = localise(site_from_file("demo-shanxi-chemical.yaml"), tmp_path, broker.port, {}, poll_interval=1.0)
    with psycopg.connect(db_url) as conn:
        register_site(conn, site)
    point, meter = "incomer.import_kwh", "incomer"
    started = datetime.now(UTC)

    with CollectorThread(db_url, broker.port) as collector, BackgroundLoop() as bg:
        sim = SiteSimulator(site)
        bg.run(sim.start())
        bg.call(sim.meter(meter).hold, point, 1000.0)
        agent = bg.call(Agent, site)
        stop = asyncio.Event()
        agent_done = bg.spawn(agent.run(stop))
        try:
            wait_until(
                lambda: len([v for _, v in _readings(db_url, point) if v == 1000.0]) >= 2,
                30,
                what="two readings of 1000 kWh in the database",
            )
            bg.call(sim.meter(meter).hold, point, 3500.0)
            # a second reading of 3500 closes the interval after the step too
            wait_until(
                lambda: len([v for _, v in _readings(db_url, point) if v == 3500.0]) >= 2,
                30,
                what="two readings of 3500 kWh in the database",
            )
            assert collector.committed_messages > 0
        finally:
            bg.loop.call_soon_threadsafe(stop.set)
            agent_done.result(20)
            bg.run(sim.stop())

    expected_mwh = (3500.0 - 1000.0) / 1000.0
    factor = electricity_factor("140000", datetime.now(UTC).year)
    assert factor.value == 0.6634 and factor.data_year == 2023  # Shanxi, data year 2023 for 2025-2026

    with psycopg.connect(db_url) as conn:
        token = create_token(conn, "enterprise", site.enterprise.code, "pipeline test")
    with UvicornThread(create_app(db_url), free_port()) as api:
        r = httpx.get(
            f"{api.url}/api/v1/enterprises/{site.enterprise.code}/emissions",
            params={
                "start": (started - timedelta(hours=1)).isoformat(),
                "end": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            },
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
    assert r.status_code == 200, r.text
    body = r.json()
    incomer = next(p for p in body["points"] if p["point"] == point)
    assert incomer["quantity"] == pytest.approx(2500.0, abs=1e-6)
    assert incomer["co2_t"] == pytest.approx(expected_mwh * 0.6634, rel=1e-12)
    assert incomer["tce"] == pytest.approx(expected_mwh * ELECTRICITY_TCE_PER_MWH, rel=1e-12)
    # the enterprise total is every carrier on the boundary: imports add (gas too), exports subtract
    sign = {"import": 1, "export": -1}
    assert body["co2_t"] == pytest.approx(sum(sign[p["direction"]] * p["co2_t"] for p in body["points"]), rel=1e-9)
    assert body["tce"] == pytest.approx(sum(sign[p["direction"]] * p["tce"] for p in body["points"]), rel=1e-9)
    assert incomer["factor"]["data_year"] == 2023
