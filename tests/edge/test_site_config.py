"""A bad site file fails at start naming file, line and field."""

from __future__ import annotations

import pytest

from carbonwatch.contracts.site import SiteConfigError, load_site, parse_site, uscc_check_digit, validate_uscc

from support import SITES


@pytest.mark.parametrize("name", sorted(p.name for p in SITES.glob("*.yaml")))
def test_shipped_site_files_are_valid(name):
    site = load_site(SITES / name)
    assert site.gateways and all(g.meters for g in site.gateways)


def _broken(old: str, new: str) -> str:
    text = (SITES / "demo-shanxi-chemical.yaml").read_text("utf-8")
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        ("type: float32, unit: kW}", "type: flaot32, unit: kW}", ["site.yaml:27:", "points[2].type", "flaot32"]),
        (
            "    poll_interval: 60s",
            "    poll_intreval: 60s",
            ["site.yaml:12:", "poll_intreval", "did you mean 'poll_interval'"],
        ),
        ("port: 15020}", "port: 70000}", ["site.yaml:18:", "connection.port", "65535"]),
        ("code: 91140105MA0K7Q2B30", "code: 91140105MA0K7Q2B31", ["enterprise.code", "check digit"]),
        ('region: "140105"', 'region: "990105"', ["enterprise.region", "no province"]),
        ("carrier: natural_gas", "carrier: natral_gas", ["points[0].carrier", "did you mean 'natural_gas'"]),
        ("        address_base: 1\n", "", ["meters[1].address_base", "Field required"]),
        ("unit_id: 2", "unit_id: 1", ["two meters on tcp://127.0.0.1:15020 use unit id 1"]),
        ("poll_interval: 60s", "poll_interval: 60 parsecs", ["poll_interval", "not a duration"]),
        ("    meters:\n", "    meters:\n    meters:\n", ["duplicate key 'meters'"]),
        (
            "{id: incomer.power_kw, address: 4,",
            "{id: incomer.power_kw, address: 65535,",
            ["incomer.power_kw", "ends past the last Modbus address 65535"],
        ),
    ],
)
def test_errors_name_line_and_field(old, new, expect):
    with pytest.raises(SiteConfigError) as err:
        parse_site(_broken(old, new), "site.yaml")
    for fragment in expect:
        assert fragment in str(err.value)


def test_counter_unit_must_fit_its_carrier():
    with pytest.raises(SiteConfigError, match="is not a quantity of electricity"):
        parse_site(
            _broken(
                "scale: 0.01, unit: kWh,\n             kind: counter, carrier: electricity, direction: import",
                "scale: 0.01, unit: Nm3,\n             kind: counter, carrier: electricity, direction: import",
            ),
            "site.yaml",
        )


def test_uscc_check_digit():
    # Every character of the 31-symbol alphabet can be a check character; spot-check a known code.
    assert validate_uscc("91140105MA0K7Q2B30") == "91140105MA0K7Q2B30"
    assert uscc_check_digit("91350100M000100Y4") == "3"  # 91350100M000100Y43, a published example
    with pytest.raises(ValueError):
        validate_uscc("91140105MA0K7Q2BI0")  # I is not in the alphabet
