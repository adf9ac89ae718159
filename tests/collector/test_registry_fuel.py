"""The registry keeps a point's measured fuel parameters (migration 0010): ``register_site`` fills
them, registering again replaces them (or clears them when the file no longer gives them), and the
database refuses values no site file could carry."""

from __future__ import annotations

import psycopg
import pytest

from carbonwatch.collector.registry import FUEL_COLUMNS, register_site
from carbonwatch.contracts.site import Site

from support import site_from_file


def _site(fuel: dict | None, carrier: str = "raw_coal") -> Site:
    raw = site_from_file("sample-all-models.yaml")
    for m in raw["gateways"][0]["meters"]:
        for p in m["points"]:
            if p["id"] == "belt.total_t":
                p["carrier"] = carrier
                p.pop("fuel", None)
                if fuel is not None:
                    p["fuel"] = fuel
    return Site.model_validate(raw)


def _stored(conn: psycopg.Connection, site: Site) -> tuple:
    return conn.execute(
        f"SELECT carrier, {', '.join(FUEL_COLUMNS)} FROM points WHERE enterprise = %s AND point = 'belt.total_t'",
        (site.enterprise.code,),
    ).fetchone()


def test_measured_fuel_parameters_round_trip_and_follow_the_file(db_url):
    first = _site({"ncv": "5000 kcal/kg", "carbon_content": 0.0263, "oxidation_rate": 0.94, "source": "lab 2026-03"})
    with psycopg.connect(db_url) as conn:
        register_site(conn, first)
        carrier, ncv, cc, of, source = _stored(conn, first)
        assert carrier == "raw_coal" and ncv == pytest.approx(5000 * 4.1868e-3)
        assert (cc, of, source) == (0.0263, 0.94, "lab 2026-03")
        # points without measured values store none
        others = conn.execute(
            "SELECT count(*) FROM points WHERE enterprise = %s AND point <> 'belt.total_t' AND "
            "(fuel_ncv IS NOT NULL OR fuel_carbon_content IS NOT NULL OR fuel_oxidation_rate IS NOT NULL "
            "OR fuel_source IS NOT NULL)",
            (first.enterprise.code,),
        ).fetchone()[0]
        assert others == 0

        # a new lab report: registering again replaces every value (an unmeasured one becomes NULL)
        second = _site({"ncv": 19.8, "carbon_content": 0.0270, "source": "lab 2026-06"})
        register_site(conn, second)
        assert _stored(conn, second) == ("raw_coal", 19.8, 0.0270, None, "lab 2026-06")

        # the rank as carrier instead: the measured values are cleared, the family applies again
        third = _site(None, carrier="bituminous_coal")
        register_site(conn, third)
        assert _stored(conn, third) == ("bituminous_coal", None, None, None, None)
        n = conn.execute("SELECT count(*) FROM points WHERE enterprise = %s", (third.enterprise.code,)).fetchone()[0]
        assert n == sum(1 for _ in third.iter_points())  # updated in place, no new rows


@pytest.mark.parametrize(
    ("column", "value"), [("fuel_ncv", 0.0), ("fuel_carbon_content", -0.02), ("fuel_oxidation_rate", 1.2)]
)
def test_the_database_refuses_impossible_values(db_url, column, value):
    site = _site({"ncv": 20.9, "carbon_content": 0.0263})
    with psycopg.connect(db_url) as conn:
        register_site(conn, site)
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(f"UPDATE points SET {column} = %s WHERE point = 'belt.total_t'", (value,))
