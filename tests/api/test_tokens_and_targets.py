"""Token administration through the CLI (create prints once, list, revoke; bad role or scope named),
the targets registry's validation, and product intensity against the shipped levels."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from apikit import SHANXI_A, refresh_rollups_of

from carbonwatch.accounting.intensity import compare
from carbonwatch.api.targets import COMPARATORS, TargetsError, load_targets, parse_targets

pytestmark = pytest.mark.timeout(120)


def cw(db_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "carbonwatch", "db", "token", *args, "--database-url", db_url],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_token_cli(db_url):
    from apikit import seed

    seed(db_url, days=0.1)
    made = cw(db_url, "create", "--role", "province", "--scope", "140000", "--label", "Shanxi desk")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("cw_") and len(token) > 40
    listed = cw(db_url, "list")
    assert "Shanxi desk" in listed.stdout and token not in listed.stdout  # never shown again
    with psycopg.connect(db_url) as conn:
        tid = conn.execute("SELECT id FROM api_tokens WHERE label = 'Shanxi desk'").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM audit_log WHERE action = 'token.create'").fetchone()[0] >= 1
    assert cw(db_url, "revoke", "--id", str(tid)).returncode == 0
    assert "revoked" in cw(db_url, "list").stdout
    again = cw(db_url, "revoke", "--id", str(tid))
    assert again.returncode == 2 and f"no active token with id {tid}" in again.stderr

    for args, needle in [
        (("--role", "enterprise", "--scope", "140000"), "unified social credit code"),
        (("--role", "province", "--scope", "14"), "GB/T 2260"),
        (("--role", "operator", "--scope", "140000"), "takes no scope"),
        (("--role", "enterprise", "--scope", "91110000MA00000009"), "no enterprise"),
    ]:
        bad = cw(db_url, "create", *args, "--label", "x")
        assert bad.returncode == 2 and needle in bad.stderr, bad.stderr


def test_targets_registry_is_valid_and_complete():
    reg = load_targets()
    assert {t.province for t in reg.targets} == {"140000", "630000", "640000", "370000"}
    assert {t.comparator for t in reg.targets} == set(COMPARATORS)
    nx_coal = next(t for t in reg.targets if t.region == "640000" and t.indicator == "coal_power_net_coal_consumption")
    assert (nx_coal.comparator, nx_coal.value, nx_coal.unit) == ("less_than", 300, "gce/kWh")
    assert reg.documents["NX"]["status"] == "draft"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (("comparator: less_than", "comparator: below"), "comparator"),
        (('region: "640000"', 'region: "64"'), "region"),
        (("document: NX", "document: XX"), "document"),
        (("value: 300,", "value: .nan,"), "value"),
        (("measured_by: coal_power.net_coal_consumption", "measured_by: coal_power.x"), "measured_by"),
    ],
)
def test_targets_registry_refuses_bad_entries(change, needle):
    from importlib import resources

    text = resources.files("carbonwatch.api").joinpath("data/targets.yaml").read_text("utf-8")
    assert change[0] in text
    with pytest.raises(TargetsError, match=needle):
        parse_targets(text.replace(change[0], change[1], 1))


def test_product_intensity_against_levels(api):
    """A calcium-carbide output counter: the drill-down compares energy per tonne with GB 21343 grades."""
    year = (datetime.now(UTC) + timedelta(hours=8)).year
    with psycopg.connect(api.db_url) as conn:
        gw, meter = conn.execute(
            "SELECT gateway_id, meter_id FROM points WHERE enterprise = %s LIMIT 1", (SHANXI_A,)
        ).fetchone()
        (pid,) = conn.execute(
            """INSERT INTO points (enterprise, gateway_id, meter_id, point, kind, unit, product)
               VALUES (%s, %s, %s, 'furnace.output_t', 'counter', 't', 'calcium_carbide') RETURNING id""",
            (SHANXI_A, gw, meter),
        ).fetchone()
        # 50 t of output in the first 15 minutes of the seeded history, then a counter at rest for the
        # rest of it: as complete as the plant's energy meters, so the figure is comparable
        conn.execute(
            """INSERT INTO intervals_15m (point_id, bucket, quantity)
               SELECT %s, b, CASE WHEN b = min(b) OVER () THEN 50 ELSE 0 END
               FROM (SELECT DISTINCT i.bucket AS b FROM intervals_15m i JOIN points p ON p.id = i.point_id
                     WHERE p.enterprise = %s) x""",
            (pid, SHANXI_A),
        )
    refresh_rollups_of(api.db_url, [pid])
    ov = httpx.get(f"{api.url}/api/v1/enterprises/{SHANXI_A}/overview", params={"year": year},
                   headers=api.headers("A"), timeout=30).json()  # fmt: skip
    by = {i["indicator"]: i for i in ov["intensity"]}
    assert set(by) == {"comprehensive_energy", "furnace_electricity"}  # every indicator of the product
    item = by["comprehensive_energy"]
    expected = ov["totals"]["tce"] * 1000 / 50  # kgce per tonne
    assert item["status"] == "compared" and item["completeness"]["output"] >= 0.9, item
    assert item["product"] == "calcium_carbide" and item["value"] == pytest.approx(expected, rel=1e-9)
    assert item["grade"] == compare("calcium_carbide", "comprehensive_energy", expected, region="140000").grade
    assert {lv["kind"] for lv in item["levels"]} >= {"grade_1", "grade_2", "grade_3"}
    # kWh per tonne: electricity used (import - export) from the plant's raw intervals of the year
    lo = datetime(year, 1, 1, tzinfo=UTC) - timedelta(hours=8)
    with psycopg.connect(api.db_url) as conn:
        (used,) = conn.execute(
            """SELECT sum(CASE p.direction WHEN 'export' THEN -i.quantity ELSE i.quantity END)
               FROM intervals_15m i JOIN points p ON p.id = i.point_id
               WHERE p.enterprise = %s AND p.carrier = 'electricity' AND p.unit = 'kWh'
                 AND p.direction IN ('import', 'export', 'generation') AND i.bucket >= %s AND i.bucket < %s""",
            (SHANXI_A, lo, lo.replace(year=year + 1)),
        ).fetchone()
    furnace = by["furnace_electricity"]
    assert furnace["unit"] == "kWh/t" and furnace["value"] == pytest.approx(used / 50, rel=1e-9)
