"""Factor lookups: the Y-2 rule, places, variants, and clear errors where nothing is published."""

from __future__ import annotations

import pytest

from carbonwatch.accounting.factors import FactorNotFound, electricity_factor, fuel_parameters, tce_coefficient


@pytest.mark.parametrize(
    ("year", "data_year", "value"), [(2023, 2021, 0.7222), (2024, 2022, 0.7096), (2025, 2023, 0.6634)]
)
def test_accounting_year_uses_data_year_minus_two(year, data_year, value):
    f = electricity_factor("山西", year)
    assert (f.data_year, f.value, f.province, f.level) == (data_year, value, "140000", "province")
    assert "公告" in f.source and f.document


def test_latest_published_year_when_y_minus_2_is_not_out():
    assert electricity_factor("shanxi", 2026).data_year == 2023
    assert electricity_factor("shanxi", 2030).data_year == 2023


def test_too_early_a_year_is_refused():
    with pytest.raises(FactorNotFound, match=r"usable from accounting year 2023"):
        electricity_factor("140000", 2022)


@pytest.mark.parametrize("name", ["140000", "140100", "山西", "山西省", "shanxi", " Shanxi "])
def test_province_forms(name):
    assert electricity_factor(name, 2025).value == 0.6634


def test_shanxi_and_shaanxi_are_different():
    assert electricity_factor("shaanxi", 2025).value == 0.6335  # 陕西
    assert electricity_factor("shanxi", 2025).value == 0.6634  # 山西


def test_regions_and_national():
    assert electricity_factor("华北", 2025).value == 0.6361
    assert electricity_factor("southwest", 2024).value == 0.2268
    nat = electricity_factor("national", 2024)
    assert (nat.value, nat.level, nat.province) == (0.5366, "national", None)


def test_variants_are_national():
    f = electricity_factor("青海", 2025, variant="excluding_market_non_fossil")
    assert (f.value, f.level, f.trust) == (0.6096, "national", "O")
    assert electricity_factor("全国", 2023, variant="fossil_only").value == 0.8426


def test_explicit_data_year_for_recomputation():
    assert electricity_factor("shandong", 2025, data_year=2021).value == 0.6838
    with pytest.raises(FactorNotFound, match=r"no electricity factor for data year 2020"):
        electricity_factor("shandong", 2025, data_year=2020)


def test_tibet_has_no_provincial_factor():
    with pytest.raises(FactorNotFound, match=r"西藏 \(540000\).*--factor electricity="):
        electricity_factor("xizang", 2025)


def test_unknown_place_and_variant():
    with pytest.raises(FactorNotFound, match=r"unknown province 'atlantis'"):
        electricity_factor("atlantis", 2025)
    with pytest.raises(FactorNotFound, match=r"unknown electricity variant"):
        electricity_factor("shandong", 2025, variant="green")


def test_fuel_families_are_kept_apart():
    assert fuel_parameters("coke", "B").ncv == 28.435
    assert fuel_parameters("coke", "A").ncv == 28.446
    with pytest.raises(FactorNotFound, match=r"family A .* no default parameters for 'natural_gas'.*never mixed"):
        fuel_parameters("natural_gas", "A")


def test_standard_coal_published_and_derived():
    assert tce_coefficient("diesel").value == 1.4571
    derived = tce_coefficient("coke_oven_gas")
    assert derived.trust == "D" and derived.value == pytest.approx(179.81 / 29.3076)
    # within the yearbook's 0.5714-0.6143 kgce/m3 range for coke-oven gas
    assert 5.714 <= derived.value <= 6.143
    assert tce_coefficient("steam").value == 0.03412
    with pytest.raises(FactorNotFound, match=r"biomass.*--factor biomass.tce="):
        tce_coefficient("biomass")
