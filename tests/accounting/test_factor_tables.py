"""The shipped tables load, carry provenance on every record, and bad tables are refused."""

from __future__ import annotations

import re
import shutil
from importlib import resources
from pathlib import Path

import pytest

from carbonwatch.accounting.tables import FactorTableError, load_factor_set, shipped
from carbonwatch.contracts.regions import GRID_REGIONS

DATA = Path(str(resources.files("carbonwatch.accounting").joinpath("data")))


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(DATA, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_shipped_set_is_complete():
    fs = shipped()
    assert fs.electricity_years() == [2021, 2022, 2023]
    for year in (2021, 2022, 2023):
        recs = [r for r in fs.electricity if r.data_year == year]
        nat = {r.variant for r in recs if r.level == "national"}
        assert nat == {"average", "excluding_market_non_fossil", "fossil_only"}
        assert {r.area for r in recs if r.level == "region"} == set(GRID_REGIONS)
        provinces = {r.area for r in recs if r.level == "province"}
        assert len(provinces) == 30 and "540000" not in provinces
        assert all(r.document and r.url and r.published_on.year > year for r in recs)
    assert set(fs.fuel_families) == {"A", "B"}
    assert len(fs.fuel_families["B"].fuels) == 25
    assert fs.heat.value == 0.11
    assert fs.standard_coal.coefficients["electricity"].value == 0.1229


def test_every_record_names_its_source_and_trust():
    fs = shipped()
    for rec in fs.electricity:
        assert rec.trust in ("O", "R2", "R1") and rec.document
    for fam in fs.fuel_families.values():
        for p in fam.fuels.values():
            assert p.trust in ("O", "R2", "R1") and p.document
    for lv in fs.levels:
        assert lv.trust in ("O", "R2", "R1") and lv.document and lv.source


def test_national_values_match_the_official_announcements():
    fs = shipped()
    nat = {(r.data_year, r.variant): r.value for r in fs.electricity if r.level == "national"}
    assert nat[(2021, "average")] == 0.5568 and nat[(2021, "excluding_market_non_fossil")] == 0.5942
    assert nat[(2022, "average")] == 0.5366 and nat[(2022, "fossil_only")] == 0.8325
    assert nat[(2023, "average")] == 0.5306 and nat[(2023, "excluding_market_non_fossil")] == 0.6096


def test_factor_set_id_changes_with_the_numbers(data_copy):
    same = load_factor_set(data_copy)
    assert same.id == shipped().id
    edit(data_copy / "heat.yaml", "value: 0.11", "value: 0.12")
    changed = load_factor_set(data_copy)
    assert changed.heat.value == 0.12
    assert changed.id != same.id and re.match(r"cw-factors-\d{4}\.\d+\+[0-9a-f]{12}$", changed.id)


def test_refuses_a_fuel_table_that_mixes_families(data_copy):
    # a family-A coke row pasted into the family-B table
    edit(
        data_copy / "fuels_family_b.yaml",
        "  coke:              {unit: t, ncv: 28.435, carbon_content: 0.0295,  oxidation_rate: 0.93, ef_check: 2.8604, "
        "trust: R2}",
        "  coke:              {unit: t, ncv: 28.446, carbon_content: 0.0294,  oxidation_rate: 0.93, family: A}",
    )
    with pytest.raises(FactorTableError, match=r"fuels.coke.*family 'A'.*never mixed"):
        load_factor_set(data_copy)


def test_refuses_two_tables_of_one_family(data_copy):
    edit(data_copy / "fuels_family_a.yaml", "family: A", "family: B")
    with pytest.raises(FactorTableError, match=r"second table for fuel family B"):
        load_factor_set(data_copy)


def test_refuses_a_mistyped_fuel_parameter(data_copy):
    # NCV 42.652 mistyped as 24.652: the derived factor no longer matches the published one
    edit(data_copy / "fuels_family_b.yaml", "{unit: t, ncv: 42.652", "{unit: t, ncv: 24.652")
    with pytest.raises(FactorTableError, match=r"fuels.diesel.*disagrees with ef_check 3.0959"):
        load_factor_set(data_copy)


def test_refuses_a_unit_slip_in_standard_coal(data_copy):
    # 0.0013 "kgce/m3" for natural gas: a real-world unit bug (should be ~1.33 kgce/m3)
    edit(data_copy / "standard_coal.yaml", "value: 13.300", "value: 0.013")
    with pytest.raises(FactorTableError, match=r"coefficients.natural_gas: tce per 10\^4Nm3 = 0.013 is outside"):
        load_factor_set(data_copy)


def test_refuses_wrong_units(data_copy):
    edit(data_copy / "fuels_family_b.yaml", "natural_gas:       {unit: 10^4Nm3", "natural_gas:       {unit: m3")
    with pytest.raises(FactorTableError, match=r"fuels.natural_gas: unit must be 10\^4Nm3"):
        load_factor_set(data_copy)


def test_refuses_an_electricity_factor_out_of_range(data_copy):
    # a kgCO2/kWh value typed as gCO2/kWh
    edit(data_copy / "electricity.yaml", '"370000": 0.6191', '"370000": 619.1')
    with pytest.raises(FactorTableError, match=r"provinces.370000 = 619.1 is outside"):
        load_factor_set(data_copy)


def test_refuses_a_missing_province(data_copy):
    edit(data_copy / "electricity.yaml", '      "630000": 0.1796  # 青海\n', "")
    with pytest.raises(FactorTableError, match=r"announcements\[2\].*missing \['630000'\]"):
        load_factor_set(data_copy)


def test_refuses_duplicate_keys(data_copy):
    edit(data_copy / "electricity.yaml", '"630000": 0.1796  # 青海\n', '"630000": 0.1796\n      "630000": 0.18\n')
    with pytest.raises(FactorTableError, match=r"electricity.yaml: line \d+: duplicate key '630000'"):
        load_factor_set(data_copy)


def test_refuses_unverified_values(data_copy):
    edit(data_copy / "heat.yaml", "trust: R2", "trust: U")
    with pytest.raises(FactorTableError, match=r"unverified values are not shipped"):
        load_factor_set(data_copy)


def test_refuses_a_record_without_its_document(data_copy):
    edit(data_copy / "electricity.yaml", "    document: 公告2025年第47号\n", "")
    with pytest.raises(FactorTableError, match=r"document is required"):
        load_factor_set(data_copy)
