"""Product energy intensity and its comparison with the versioned levels."""

from __future__ import annotations

import pytest

from carbonwatch.accounting.intensity import IntensityError, compare, intensity, levels_for


def test_intensity_units():
    assert intensity(2400, "tce", 2600, "t", "kgce/t") == pytest.approx(923.0769, abs=1e-4)
    assert intensity(13.2, "GWh", 1000, "t", "kWh/t") == pytest.approx(13200)
    # coal power: T-02 / T-03 (synthetic inputs): 2.98e5 t of standard coal over 1e9 kWh supplied
    assert intensity(298_000, "tce", 1e9, "kWh", "gce/kWh") == pytest.approx(298.0)
    assert intensity(1.3e6, "kWh", 1.1e6, "kWh", "1") == pytest.approx(1.3 / 1.1)  # PUE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1, "tce", 0, "t", "kgce/t"), "output must be positive"),
        ((1, "tce", 1, "t", "kWh/t"), "cannot be expressed in kWh/t"),
        ((1, "kWh", 1, "t", "1"), "a ratio needs like quantities"),
        ((1, "barrel", 1, "t", "kgce/t"), "unknown unit 'barrel'"),
    ],
)
def test_intensity_errors(args, message):
    with pytest.raises(IntensityError, match=message):
        intensity(*args)


def test_grades_of_a_limit_standard():
    assert compare("calcium_carbide", "comprehensive_energy", 800).grade == "grade_1"
    mid = compare("calcium_carbide", "comprehensive_energy", 900)
    assert mid.grade == "grade_3" and not mid.alerts
    worse = compare("calcium_carbide", "comprehensive_energy", 941)
    assert worse.grade == "worse_than_grade_3"
    assert any("limit value" in a for a in worse.alerts)
    at_limit = compare("calcium_carbide", "comprehensive_energy", 940)  # "<=": the limit itself is met
    assert at_limit.grade == "grade_3"


def test_baseline_alert_and_negative_process_energy():
    c = compare("steel", "converter", -5)
    assert c.grade == "worse_than_grade_3"
    assert any("baseline" in a for a in c.alerts)
    assert compare("steel", "converter", -31).grade == "grade_1"


def test_provincial_targets_use_their_comparator_and_region():
    nx = compare("coal_power", "net_coal_consumption", 300.0, region="640000")
    assert [c.level.region for c in nx.checks] == ["640000"]
    assert not nx.checks[0].met and nx.alerts  # 以下: strictly below 300
    assert compare("coal_power", "net_coal_consumption", 299.9, region="640000").alerts == []
    assert compare("data_centre", "pue", 1.2, region="640000").checks[0].met  # 不高于: at most 1.2
    # Qinghai has no coal-power target and there is no national one: a named error, not an IndexError
    with pytest.raises(IntensityError, match="none for region 630000"):
        compare("coal_power", "net_coal_consumption", 290.0, region="630000")


def test_every_level_names_its_source():
    for lv in levels_for("methanol", "bituminous_coal_route"):
        assert lv.document.startswith("GB 29436") and lv.trust == "R1" and lv.source
    with pytest.raises(IntensityError, match=r"no levels for copper\.smelting"):
        compare("copper", "smelting", 300)
