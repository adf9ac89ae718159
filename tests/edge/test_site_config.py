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


def _sample_broken(old: str, new: str) -> tuple[str, int]:
    """The sample site with one point changed, and the line of that point."""
    text = (SITES / "sample-all-models.yaml").read_text("utf-8")
    assert text.count(old) == 1, old
    return text.replace(old, new), text[: text.index(old)].count("\n") + 1


STATUS_BIT = "{id: incomer.alarm_reverse_power, address: 20, type: bool, bit: 3, unit: state}"
TARIFF = "{id: incomer.tariff, address: 21, type: uint8, byte: high, unit: tariff}"
KVARH = "{id: incomer.reactive_import_kvarh, address: 22, type: uint48,"


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        (STATUS_BIT, STATUS_BIT.replace("bit: 3", "bit: 16"), ["points[12].bit", "less than or equal to 15"]),
        (STATUS_BIT, STATUS_BIT.replace("bit: 3", "bit: -1"), ["points[12].bit", "greater than or equal to 0"]),
        (STATUS_BIT, STATUS_BIT.replace("unit: state", "unit: state, kind: counter"), ["a counter cannot be a bit"]),
        (STATUS_BIT, STATUS_BIT.replace(", bit: 3", ""), ["type bool is only for coil and discrete areas", "bit:"]),
        (STATUS_BIT, STATUS_BIT.replace("type: bool", "type: uint16"), ["bit applies to type bool", "uint16"]),
        (STATUS_BIT, STATUS_BIT.replace("bit: 3", "bit: 3, scale: 10"), ["scale and offset do not apply"]),
        (
            STATUS_BIT,
            STATUS_BIT.replace("bit: 3", "bit: 3, byte_order: little"),
            ["byte_order: little does not apply to bit: 3"],
        ),
        (STATUS_BIT, STATUS_BIT.replace("bit: 3", "bit: 3, byte: low"), ["byte (high or low) applies to types int8"]),
        (TARIFF, TARIFF.replace(", byte: high", ""), ["type uint8 needs byte: high", "or low"]),
        (TARIFF, TARIFF.replace("byte: high", "byte: middle"), ["points[14].byte", "'high' or 'low'"]),
        (TARIFF, TARIFF.replace("type: uint8", "type: uint16"), ["byte (high or low) applies", "not to type uint16"]),
        (TARIFF, TARIFF.replace("byte: high", "byte: high, word_order: little"), ["word_order: little does not"]),
        (KVARH, KVARH.replace("type: uint48", "type: uint48, byte: low"), ["byte (high or low)", "uint48"]),
        (
            "{id: incomer.pulse_output, area: coil, address: 0, type: bool,",
            "{id: incomer.pulse_output, area: coil, address: 0, type: bool, bit: 0,",
            ["a coil is already a single bit"],
        ),
    ],
)
def test_bits_bytes_and_48_bit_values_fail_at_load_with_the_field_named(old, new, expect):
    text, line = _sample_broken(old, new)
    with pytest.raises(SiteConfigError) as err:
        parse_site(text, "site.yaml")
    message = str(err.value)
    assert f"site.yaml:{line}:" in message, message
    for fragment in expect:
        assert fragment in message, message


def test_a_48_bit_value_must_end_within_the_address_space():
    text, _ = _sample_broken(KVARH, KVARH.replace("address: 22", "address: 65534"))
    with pytest.raises(SiteConfigError, match=r"incomer.reactive_import_kvarh': address 65534 \(uint48\) ends past"):
        parse_site(text, "site.yaml")
    text, _ = _sample_broken(KVARH, KVARH.replace("address: 22", "address: 65533"))
    assert parse_site(text, "site.yaml")


def test_bits_bytes_and_48_bit_values_load_with_their_widths():
    site = load_site(SITES / "sample-all-models.yaml")
    points = {p.id: p for _, _, p in site.iter_points()}
    status = [points[f"incomer.{n}"] for n in ("alarm_voltage_loss", "alarm_reverse_power", "alarm_clock_battery")]
    assert [(p.bit, p.registers, p.kind.value, p.rollover) for p in status] == [
        (0, 1, "gauge", None),
        (3, 1, "gauge", None),
        (15, 1, "gauge", None),
    ]
    assert (points["incomer.tariff"].byte, points["incomer.tariff"].registers) == ("high", 1)
    kvarh = points["incomer.reactive_import_kvarh"]
    assert (kvarh.registers, kvarh.order, kvarh.rollover) == (3, "EFCDAB", 2**48 * 0.001)
    assert points["belt.net_total_t"].order == "BADCFE" and points["belt.net_total_t"].rollover is None
