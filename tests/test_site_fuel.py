"""Site files: a fuel counter's measured fuel parameters (``fuel``), their units and ranges, and the
raw-coal rule (measured NCV and carbon content, or the coal rank as carrier)."""

from __future__ import annotations

import pytest
import yaml

from carbonwatch.accounting.tables import shipped
from carbonwatch.contracts.site import NCV_RANGE, Point, SiteConfigError, load_site, parse_site

from support import SITES

BELT = """          - {id: belt.total_t, address: 0, type: uint64, byte_order: little, word_order: little, scale: 0.001,
             unit: t, kind: counter, carrier: raw_coal, direction: consumption,
             fuel: {ncv: 20.908, carbon_content: 0.0263, oxidation_rate: 0.94,
                    source: "illustrative values, not a lab report: replace with the plant's measured coal analysis"}}
"""


def _sample(belt: str) -> str:
    text = (SITES / "sample-all-models.yaml").read_text("utf-8")
    assert BELT in text
    return text.replace(BELT, belt, 1)


def _belt(**fields) -> str:
    """The sample's belt-scale counter with other fields (a dict is written as YAML flow)."""
    base = {
        "id": "belt.total_t",
        "address": 0,
        "type": "uint64",
        "byte_order": "little",
        "word_order": "little",
        "scale": 0.001,
        "unit": "t",
        "kind": "counter",
        "carrier": "raw_coal",
        "direction": "consumption",
    }
    base.update(fields)
    base = {k: v for k, v in base.items() if v is not None}
    return "          - " + yaml.safe_dump(base, default_flow_style=True, width=10_000, allow_unicode=True)


def _belt_point(site):
    return next(p for _, _, p in site.iter_points() if p.id == "belt.total_t")


def test_the_shipped_sample_meters_raw_coal_with_illustrative_measured_values():
    belt = _belt_point(load_site(SITES / "sample-all-models.yaml"))
    assert belt.carrier == "raw_coal" and belt.fuel is not None
    assert belt.fuel.ncv == 20.908 and belt.fuel.carbon_content == 0.0263 and belt.fuel.oxidation_rate == 0.94
    assert "illustrative" in belt.fuel.source


@pytest.mark.parametrize(
    ("fuel", "missing"),
    [
        (None, "fuel.ncv and fuel.carbon_content required"),
        ({"ncv": 20.9, "source": "lab"}, "fuel.carbon_content required"),
        ({"carbon_content": 0.0263, "oxidation_rate": 0.9}, "fuel.ncv required"),
    ],
)
def test_raw_coal_without_measured_values_is_refused_naming_the_field(fuel, missing):
    with pytest.raises(SiteConfigError) as err:
        parse_site(_sample(_belt(fuel=fuel)), "site.yaml")
    msg = str(err.value)
    assert msg.startswith("site.yaml:")
    assert "gateways[0].meters[4].points[0]" in msg and missing in msg
    assert "give the measured values" in msg
    assert "use the coal rank as carrier (anthracite, bituminous_coal, lignite)" in msg


def test_raw_coal_with_measured_values_or_a_rank_or_as_feedstock_is_accepted():
    site = parse_site(_sample(_belt(fuel={"ncv": 20.9, "carbon_content": 0.0263})), "site.yaml")
    f = _belt_point(site).fuel
    assert (f.ncv, f.carbon_content, f.oxidation_rate, f.source) == (20.9, 0.0263, None, None)
    for rank in ("anthracite", "bituminous_coal", "lignite"):
        assert _belt_point(parse_site(_sample(_belt(carrier=rank)), "site.yaml")).fuel is None
    # feedstock raw coal is not burned: no carbon content needed (its tce is GB/T 2589's 0.7143)
    assert _belt_point(parse_site(_sample(_belt(use="feedstock")), "site.yaml")).fuel is None


def test_values_written_with_their_units_are_converted():
    fuel = {"ncv": "5000 kcal/kg", "carbon_content": "26.37 tC/TJ", "oxidation_rate": "94%", "source": "lab 2026-03"}
    f = _belt_point(parse_site(_sample(_belt(fuel=fuel)), "site.yaml")).fuel
    assert f.ncv == pytest.approx(5000 * 4.1868e-3) and f.carbon_content == pytest.approx(0.02637)
    assert f.oxidation_rate == pytest.approx(0.94)
    assert _belt_point(parse_site(_sample(_belt(fuel={"ncv": "20908 kJ/kg", "carbon_content": 0.026})))).fuel.ncv == (
        pytest.approx(20.908)
    )
    gas = Point(
        id="gas.total_nm3", address=0, unit="Nm3", kind="counter", carrier="natural_gas", direction="import",
        fuel={"ncv": "38.931 MJ/Nm3"},
    )  # fmt: skip
    assert gas.fuel.ncv == pytest.approx(389.31)


@pytest.mark.parametrize(
    ("fuel", "expect"),
    [
        ({"ncv": 20908, "carbon_content": 0.0263}, ["fuel.ncv 20908 GJ/t is outside", "kJ/kg (20.91 GJ/t)"]),
        ({"ncv": 20.9, "carbon_content": 26.37}, ["carbon_content", "looks like tC/TJ", "0.02637 tC/GJ"]),
        ({"ncv": 20.9, "carbon_content": 0.6}, ["carbon_content", "carbon mass fraction"]),
        ({"ncv": 20.9, "carbon_content": 0.0263, "oxidation_rate": 94}, ["oxidation_rate", "a percentage?"]),
        ({"ncv": "38.9 MJ/Nm3", "carbon_content": 0.0263}, ["is per volume, but raw_coal is accounted by mass"]),
        ({"ncv": "20 BTU/lb", "carbon_content": 0.0263}, ["fuel.ncv", "unit 'BTU/lb' is not one of"]),
        ({"ncv": 20.9, "carbon_content": "0.0263 tC/t"}, ["fuel.carbon_content", "tC/GJ, tC/TJ, kgC/GJ"]),
        ({"ncv": 30, "carbon_content": 0.05}, ["1.5 t of carbon per tonne of fuel"]),
        ({"ncv": float("nan"), "carbon_content": 0.0263}, ["fuel.ncv", "finite number"]),
        ({"ncv": "twenty", "carbon_content": 0.0263}, ["fuel.ncv", "not a number, nor a number with its unit"]),
        ({"source": "lab"}, ["at least one measured value"]),
        ({"ncv": 20.9, "carbon_content": 0.0263, "sauce": "lab"}, ["fuel.sauce", "did you mean 'source'"]),
    ],
)
def test_unit_slips_and_implausible_values_fail_at_load_with_the_field_named(fuel, expect):
    with pytest.raises(SiteConfigError) as err:
        parse_site(_sample(_belt(fuel=fuel)), "site.yaml")
    for fragment in expect:
        assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("fields", "expect"),
    [
        ({"unit": "kWh", "carrier": "electricity", "fuel": {"ncv": 20.0}}, "not to carrier electricity"),
        ({"unit": "t", "carrier": "biomass", "fuel": {"ncv": 15.0}}, "not to carrier biomass"),
        ({"unit": "t", "carrier": "coke", "kind": "gauge", "fuel": {"ncv": 28.0}}, "applies to counters of a fuel"),
        ({"unit": "Nm3", "carrier": "natural_gas", "fuel": {"ncv": 38.9}}, "looks like MJ/Nm3 (389 GJ/10^4Nm3)"),
    ],
)
def test_fuel_parameters_belong_to_fuel_counters(fields, expect):
    with pytest.raises(ValueError, match=expect.replace("(", r"\(").replace(")", r"\)").replace("^", r"\^")):
        Point(**{"id": "x.total", "address": 0, "kind": "counter", "direction": "import", **fields})


def test_ncv_ranges_hold_every_shipped_default():
    """The plausibility bands are around the factor tables: every family default NCV lies inside."""
    fs = shipped()
    for family in ("A", "B"):
        for carrier, params in fs.fuels(family).fuels.items():
            lo, hi = NCV_RANGE[carrier]
            assert lo <= params.ncv <= hi, (family, carrier, params.ncv)
    assert NCV_RANGE["raw_coal"][0] <= 20.908 <= NCV_RANGE["raw_coal"][1]  # GB/T 2589 average
