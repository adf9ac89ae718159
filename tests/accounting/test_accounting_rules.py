"""The accounting rules on activity data: methods, exports, certificates, biomass, feedstock, dual control,
warnings, errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonwatch.accounting.rules import AccountingError, Activity, account, parse_override, read_overrides

ELEC_SHANDONG_2025 = 0.6191
RESIDUAL_2023 = 0.6096


def test_location_and_market_are_both_reported():
    r = account([Activity("electricity", 1000, "MWh", "shandong", green_certificate_mwh=400)], 2025, method="market")
    assert r.co2_location_t == pytest.approx(1000 * ELEC_SHANDONG_2025)
    assert r.co2_market_t == pytest.approx(600 * RESIDUAL_2023)
    assert r.co2_t == r.co2_market_t
    line = r.by_carrier[0]
    assert line.factor.variant == "average" and line.market_factor.variant == "excluding_market_non_fossil"
    loc = account([Activity("electricity", 1000, "MWh", "shandong", green_certificate_mwh=400)], 2025)
    assert loc.co2_t == loc.co2_location_t == pytest.approx(619.1)


def test_certificates_beyond_consumption_do_not_go_negative():
    r = account([Activity("electricity", 100, "MWh", "qinghai", green_certificate_mwh=250)], 2025, method="market")
    assert r.co2_market_t == 0.0
    assert r.green_certificate_mwh == 250 and r.green_certificate_mwh_unused == 150
    assert r.tce_new_renewable == pytest.approx(100 * 0.1229)


def test_new_renewable_and_feedstock_left_out_of_dual_control_but_kept_in_total():
    r = account(
        [
            Activity("electricity", 1000, "MWh", "ningxia", green_certificate_mwh=300),
            Activity("raw_coal", 2000, "t", use="feedstock"),
            Activity("natural_gas", 10, "10^4Nm3"),
        ],
        2025,
    )
    elec, coal, gas = 1000 * 0.1229, 2000 * 0.7143, 10 * 13.3
    assert r.tce == pytest.approx(elec + coal + gas)
    assert r.tce_feedstock == pytest.approx(coal)
    assert r.tce_new_renewable == pytest.approx(300 * 0.1229)
    assert r.tce_dual_control == pytest.approx(elec + gas - 300 * 0.1229)
    # feedstock is not burned: no combustion CO2, and no carbon-content default needed for raw coal
    assert r.co2_t == pytest.approx(1000 * 0.6187 + 10 * 21.62188809)


def test_exported_electricity_and_heat_are_subtracted():
    r = account(
        [
            Activity("electricity", 1000, "MWh", "shanxi"),
            Activity("electricity", 200, "MWh", "shanxi", direction="export"),
            Activity("heat", 500, "GJ"),
            Activity("steam", 100, "t", direction="export", enthalpy_kj_per_kg=2800),
        ],
        2025,
    )
    assert r.co2_t == pytest.approx(800 * 0.6634 + (500 - 280) * 0.11)
    assert r.tce == pytest.approx(800 * 0.1229 + (500 - 280) * 0.03412)
    exports = [line for line in r.by_carrier if line.direction == "export"]
    assert {line.carrier for line in exports} == {"electricity", "steam"} and all(line.co2_t < 0 for line in exports)


def test_biomass_reported_not_counted():
    r = account(
        [Activity("biomass", 100, "t"), Activity("diesel", 1, "t")],
        2025,
        overrides={"biomass": 1.5, "biomass.tce": 0.5},
    )
    assert r.biomass_co2_t == pytest.approx(150)
    assert r.co2_t == pytest.approx(3.095909637)
    assert r.tce == pytest.approx(50 + 1.4571)


def test_measured_parameters_take_precedence():
    r = account([Activity("coke", 10, "t")], 2025, overrides={"coke.ncv": 29.0, "coke.cc": 0.03})
    f = r.by_carrier[0].factor
    assert f.value == pytest.approx(29.0 * 0.03 * 0.93 * 44 / 12)
    assert "measured cc, ncv" in f.source and f.trust == "given"
    # tce follows the measured NCV (GB/T 2589: actual calorific value / 29.3076)
    assert r.tce == pytest.approx(10 * 29.0 / 29.3076)
    assert account([Activity("electricity", 10, "MWh", "xizang")], 2025, overrides={"electricity": 0.3}).co2_t == 3.0


def test_family_a_is_used_whole_or_not_at_all():
    a = account([Activity("diesel", 10, "t")], 2025, fuel_family="A")
    assert a.co2_t == pytest.approx(10 * 43.33 * 0.0202 * 0.98 * 44 / 12)
    assert a.fuel_family == "A"
    with pytest.raises(AccountingError, match=r"family A .*natural_gas"):
        account([Activity("natural_gas", 1, "10^4Nm3", label="line 2")], 2025, fuel_family="A")


def test_equal_value_total_only_with_a_coal_rate():
    acts = [Activity("electricity", 1000, "MWh", "shandong"), Activity("diesel", 1, "t")]
    assert account(acts, 2025).tce_equal_value is None
    r = account(acts, 2025, electricity_equal_value_tce_per_mwh=0.3)
    assert r.tce_equal_value == pytest.approx(300 + 1.4571)


def test_result_names_method_version_and_factor_set():
    d = account([Activity("heat", 1, "GJ")], 2025).as_dict()
    assert d["method_version"].startswith("cw-") and d["factor_set"].startswith("cw-factors-")
    assert {"co2_t", "tce", "tce_dual_control", "by_carrier"} <= set(d)
    row = d["by_carrier"][0]
    assert row["factor"]["value"] == 0.11 and "GB/T 32150" in row["factor"]["source"]


BAD_RECORDS = [
    (dict(carrier="natual_gas", quantity=1, unit="t"), "unknown carrier 'natual_gas'; did you mean 'natural_gas'"),
    (dict(carrier="diesel", quantity=1, unit="litre"), "unknown unit 'litre'"),
    (dict(carrier="diesel", quantity=1, unit="MWh"), "unit 'MWh' is not a quantity of diesel"),
    (dict(carrier="diesel", quantity=-1, unit="t"), "quantity -1 is negative"),
    (dict(carrier="diesel", quantity=math.nan, unit="t"), "quantity nan is not a finite number"),
    (dict(carrier="electricity", quantity=1, unit="MWh"), "electricity needs a province"),
    (dict(carrier="electricity", quantity=1, unit="MWh", province="xizang"), "no electricity factor .*西藏"),
    (dict(carrier="steam", quantity=1, unit="t"), "steam in t needs its enthalpy"),
    (dict(carrier="raw_coal", quantity=1, unit="t"), "fuel family B .* no default parameters for 'raw_coal'"),
    (dict(carrier="biomass", quantity=1, unit="t"), "no default biomass CO2 factor"),
    (dict(carrier="diesel", quantity=1, unit="t", direction="export"), "only electricity, heat"),
    (dict(carrier="electricity", quantity=1, unit="MWh", province="sx", use="feedstock"), "electricity cannot be"),
    (dict(carrier="diesel", quantity=1, unit="t", green_certificate_mwh=1), "green certificates apply"),
    (dict(carrier="diesel", quantity=1, unit="t", direction="out"), "direction must be import or export"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_RECORDS)
def test_bad_records_give_named_errors(fields, message):
    with pytest.raises(AccountingError, match=f"f.csv:7: {message}"):
        account([Activity(**fields, label="f.csv:7")], 2025)


def test_overrides_are_parsed_and_checked():
    assert parse_override("natural_gas=21.5") == ("natural_gas", 21.5)
    assert parse_override("raw_coal.ncv=20.9") == ("raw_coal.ncv", 20.9)
    for bad, msg in [
        ("natural_gas", "expected CARRIER=VALUE"),
        ("gas=1", "unknown carrier 'gas'"),
        ("coke.foo=1", "parameter must be one of"),
        ("coke=abc", "is not a number"),
        ("coke.of=1.5", "out of range"),
        ("coke=-1", "out of range"),
    ]:
        with pytest.raises(AccountingError, match=msg):
            parse_override(bad)
    with pytest.raises(AccountingError, match=r"given twice"):
        read_overrides(["coke=1", "coke=2"])


# --- green certificates together with exports (market method) ------------------------------------


def _elec(qty, direction="import", gc=0.0, place="370000"):
    return Activity("electricity", qty, "MWh", place, direction=direction, green_certificate_mwh=gc)


def test_certificates_and_exports_never_give_negative_figures():
    """1,000 MWh imported with 1,000 MWh of certificates and 200 MWh exported (Shandong, 2025, market)
    used to give co2_market_t = -121.9 and tce_dual_control = -24.6: the certificates covered the
    exported power too. They cover the net purchase (800 MWh) at most."""
    r = account([_elec(1000, gc=1000), _elec(200, "export")], 2025, method="market")
    assert r.co2_market_t == pytest.approx(0.0, abs=1e-9) and r.co2_market_t >= 0
    assert r.co2_t == r.co2_market_t
    assert r.co2_location_t == pytest.approx(800 * ELEC_SHANDONG_2025)  # GB/T 32150: exports subtracted
    assert r.tce == pytest.approx(800 * 0.1229)
    assert r.tce_new_renewable == pytest.approx(800 * 0.1229)
    assert r.tce_dual_control == pytest.approx(0.0, abs=1e-9) and r.tce_dual_control >= 0
    assert r.green_certificate_mwh == 1000 and r.green_certificate_mwh_unused == pytest.approx(200)
    assert sum(line.co2_market_t for line in r.by_carrier) == pytest.approx(r.co2_market_t, abs=1e-9)
    assert r.warnings == []


def test_exports_reduce_the_uncovered_purchase_under_the_market_method():
    r = account([_elec(1000, gc=300), _elec(200, "export")], 2025, method="market")
    assert r.co2_market_t == pytest.approx((1000 - 200 - 300) * RESIDUAL_2023)
    assert r.tce_new_renewable == pytest.approx(300 * 0.1229) and r.green_certificate_mwh_unused == 0
    assert r.tce_dual_control == pytest.approx((800 - 300) * 0.1229)
    by_dir = {line.direction: line for line in r.by_carrier}
    assert by_dir["import"].co2_market_t == pytest.approx(700 * RESIDUAL_2023)
    assert by_dir["export"].co2_market_t == pytest.approx(-200 * RESIDUAL_2023)


def test_a_net_exporter_gets_no_market_credit_and_no_negative_dual_control():
    r = account([_elec(100, gc=50), _elec(300, "export")], 2025, method="market")
    assert r.co2_market_t == 0.0  # no certificate covers exported power; a net export earns no market credit
    assert r.green_certificate_mwh_unused == pytest.approx(50) and r.tce_new_renewable == 0.0
    assert r.co2_location_t == pytest.approx(-200 * ELEC_SHANDONG_2025)  # the location figure keeps GB/T 32150
    assert r.tce == pytest.approx(-200 * 0.1229)  # the signed total is kept ...
    assert r.tce_dual_control == 0.0  # ... and dual-control energy never goes below zero, with a warning
    assert any("dual-control energy" in w for w in r.warnings)


def test_heat_exports_are_subtracted_alike_by_both_methods():
    acts = [
        _elec(1000, gc=1000),
        Activity("heat", 100, "GJ", direction="export"),
        Activity("natural_gas", 10, "10^4Nm3"),
    ]
    r = account(acts, 2025, method="market")
    gas = 10 * 21.62188809
    assert r.co2_market_t == pytest.approx(gas - 100 * 0.11)
    assert r.co2_location_t == pytest.approx(1000 * ELEC_SHANDONG_2025 + gas - 100 * 0.11)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["import", "export"]),
            st.floats(0, 5000, allow_nan=False),
            st.floats(0, 5000, allow_nan=False),
            st.sampled_from(["370000", "qinghai", "national"]),
        ),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from([2023, 2024, 2025, 2026]),
)
def test_market_figures_follow_the_net_purchase(rows, year):
    acts = [_elec(q, d, gc if d == "import" else 0.0, place) for d, q, gc, place in rows]
    r = account(acts, year, method="market")
    imports = sum(q for d, q, _, _ in rows if d == "import")
    exports = sum(q for d, q, _, _ in rows if d == "export")
    certs = sum(gc for d, _, gc, _ in rows if d == "import")
    net = imports - exports
    used = min(certs, max(net, 0.0))
    residual = {2023: 0.5942, 2024: 0.5856, 2025: 0.6096, 2026: 0.6096}[year]
    assert r.co2_market_t >= 0 and r.tce_dual_control >= 0
    assert r.co2_market_t == pytest.approx(max(net - used, 0.0) * residual, rel=1e-9, abs=1e-9)
    assert r.tce_new_renewable == pytest.approx(used * 0.1229, rel=1e-9, abs=1e-9)
    assert r.tce_new_renewable <= max(net, 0.0) * 0.1229 + 1e-9
    assert r.green_certificate_mwh_unused == pytest.approx(certs - used, rel=1e-9, abs=1e-9)
    assert r.tce_dual_control == pytest.approx(max(net * 0.1229 - used * 0.1229, 0.0), rel=1e-9, abs=1e-9)
    assert sum(line.co2_market_t for line in r.by_carrier) == pytest.approx(r.co2_market_t, rel=1e-9, abs=1e-6)


# --- accounting years far beyond the latest published data year ----------------------------------


def test_a_year_far_beyond_the_latest_data_year_carries_a_warning(caplog):
    with caplog.at_level("WARNING", logger="carbonwatch.accounting"):
        r = account([_elec(1000)], 2030)
    line = r.by_carrier[0]
    assert line.factor.data_year == 2023  # the latest shipped is still used ...
    assert len(r.warnings) == 1 and "stale electricity factors" in r.warnings[0]  # ... and the result says so
    assert "2030" in r.warnings[0] and "data year 2023" in r.warnings[0]
    assert r.as_dict()["warnings"] == r.warnings
    assert any("stale electricity factors" in rec.getMessage() for rec in caplog.records)


@pytest.mark.parametrize(("year", "stale"), [(2023, False), (2025, False), (2026, False), (2027, True), (2030, True)])
def test_one_year_of_publication_delay_is_normal(year, stale):
    r = account([_elec(10), Activity("natural_gas", 1, "10^4Nm3")], year)
    assert bool(r.warnings) is stale


def test_no_stale_warning_when_the_factor_is_given_or_no_electricity():
    assert account([_elec(10)], 2030, overrides={"electricity": 0.55}).warnings == []
    assert account([Activity("natural_gas", 1, "10^4Nm3")], 2030).warnings == []
