"""Every electricity factor cell shipped, pinned against an independent transcription.

The tables below were typed by hand from reference/accounting.md §5.2 (national, three variants),
§5.3 (grid regions) and §5.4 (30 provinces), in the layout of those tables: they are not read
from any file, and the shipped ``accounting/data/electricity.yaml`` is never used to build them.
A cell that differs, a cell shipped but not pinned here, or a cell pinned here but not shipped
fails the test. Values are kgCO2/kWh = tCO2/MWh.
"""

from __future__ import annotations

import pytest

from carbonwatch.accounting.factors import FactorNotFound, electricity_factor
from carbonwatch.accounting.tables import shipped
from carbonwatch.contracts.regions import province

YEARS = (2021, 2022, 2023)

# §5.2: data year -> (1) national average, (2) excluding market-traded non-fossil, (3) fossil-only
NATIONAL = {
    2021: (0.5568, 0.5942, 0.8426),
    2022: (0.5366, 0.5856, 0.8325),
    2023: (0.5306, 0.6096, 0.8273),
}
VARIANTS = ("average", "excluding_market_non_fossil", "fossil_only")

# §5.3: region -> (2021, 2022, 2023)
REGIONS = {
    "north": ("华北", 0.7120, 0.6776, 0.6361),
    "northeast": ("东北", 0.6012, 0.5564, 0.5122),
    "east": ("华东", 0.5992, 0.5617, 0.5500),
    "central": ("华中", 0.5354, 0.5395, 0.5271),
    "northwest": ("西北", 0.5951, 0.5857, 0.5543),
    "south": ("南方", 0.4326, 0.3869, 0.4042),
    "southwest": ("西南", 0.2113, 0.2268, 0.2472),
}

# §5.4: province (name, GB/T 2260 code, grid) -> (2021, 2022, 2023), in the reference's row order
PROVINCES = [
    ("北京", "110000", "north", 0.5688, 0.5580, 0.5554),
    ("天津", "120000", "north", 0.7355, 0.7041, 0.6796),
    ("河北", "130000", "north", 0.7901, 0.7252, 0.6516),
    ("山西", "140000", "north", 0.7222, 0.7096, 0.6634),
    ("内蒙古", "150000", None, 0.7025, 0.6849, 0.6479),  # 华北 (蒙西) / 东北 (蒙东)
    ("山东", "370000", "north", 0.6838, 0.6410, 0.6191),
    ("辽宁", "210000", "northeast", 0.5876, 0.5626, 0.4878),
    ("吉林", "220000", "northeast", 0.5629, 0.4932, 0.4671),
    ("黑龙江", "230000", "northeast", 0.6342, 0.5368, 0.5229),
    ("上海", "310000", "east", 0.5834, 0.5849, 0.5737),
    ("江苏", "320000", "east", 0.6451, 0.5978, 0.5827),
    ("浙江", "330000", "east", 0.5422, 0.5153, 0.4974),
    ("安徽", "340000", "east", 0.7075, 0.6782, 0.6553),
    ("福建", "350000", "east", 0.4711, 0.4092, 0.4211),
    ("江西", "360000", "central", 0.5835, 0.5752, 0.5836),
    ("河南", "410000", "central", 0.6369, 0.6058, 0.5897),
    ("湖北", "420000", "central", 0.3672, 0.4364, 0.4044),
    ("湖南", "430000", "central", 0.5138, 0.4900, 0.4976),
    ("广东", "440000", "south", 0.4715, 0.4403, 0.4419),
    ("广西", "450000", "south", 0.5154, 0.4044, 0.4476),
    ("海南", "460000", "south", 0.4524, 0.4184, 0.3648),
    ("贵州", "520000", "south", 0.5182, 0.4989, 0.5683),
    ("云南", "530000", "south", 0.1235, 0.1073, 0.1333),
    ("重庆", "500000", "southwest", 0.4743, 0.5227, 0.5581),
    ("四川", "510000", "southwest", 0.1255, 0.1404, 0.1564),
    ("陕西", "610000", "northwest", 0.6336, 0.6558, 0.6335),
    ("甘肃", "620000", "northwest", 0.4955, 0.4772, 0.4471),
    ("青海", "630000", "northwest", 0.1326, 0.1567, 0.1796),
    ("宁夏", "640000", "northwest", 0.6546, 0.6423, 0.6187),
    ("新疆", "650000", "northwest", 0.6577, 0.6231, 0.6021),
]


def pinned() -> dict[tuple, float]:
    """(data year, level, area, variant) -> value, from the tables above."""
    cells: dict[tuple, float] = {}
    for year, values in NATIONAL.items():
        for variant, value in zip(VARIANTS, values, strict=True):
            cells[(year, "national", None, variant)] = value
    for key, (_name, *values) in REGIONS.items():
        for year, value in zip(YEARS, values, strict=True):
            cells[(year, "region", key, "average")] = value
    for _name, code, _grid, *values in PROVINCES:
        for year, value in zip(YEARS, values, strict=True):
            cells[(year, "province", code, "average")] = value
    return cells


def test_the_transcription_is_complete():
    cells = pinned()
    assert len(PROVINCES) == 30 and len({p[1] for p in PROVINCES}) == 30
    assert len(cells) == 3 * 3 + 7 * 3 + 30 * 3 == 120


def test_every_shipped_cell_equals_the_reference_and_none_is_missing():
    shipped_cells = {(r.data_year, r.level, r.area, r.variant): r.value for r in shipped().electricity}
    want = pinned()
    assert sorted(shipped_cells, key=str) == sorted(want, key=str), "shipped cells differ from the reference's"
    wrong = {k: (shipped_cells[k], v) for k, v in want.items() if shipped_cells[k] != v}
    assert not wrong, f"shipped value != reference value: {wrong}"


@pytest.mark.parametrize(("name", "code", "grid", "v2021", "v2022", "v2023"), PROVINCES, ids=[p[1] for p in PROVINCES])
def test_province_lookup_by_name_code_and_accounting_year(name, code, grid, v2021, v2022, v2023):
    assert province(name).code == code
    if grid is not None:
        assert province(code).grid == grid
    for year, value in ((2021, v2021), (2022, v2022), (2023, v2023)):
        by_code = electricity_factor(code, year + 2)  # Y-2
        by_name = electricity_factor(name, year + 2)
        assert by_code.value == by_name.value == value
        assert by_code.data_year == year and by_code.level == "province" and by_code.area == code
    assert electricity_factor(code, 2026).value == v2023  # 2026 still uses 2023 until 2024 is published


@pytest.mark.parametrize("key", list(REGIONS))
def test_region_lookup(key):
    chinese, *values = REGIONS[key]
    for year, value in zip(YEARS, values, strict=True):
        for place in (key, chinese):
            f = electricity_factor(place, year + 2)
            assert (f.value, f.level, f.area, f.data_year) == (value, "region", key, year)


def test_national_lookup_and_the_variants_published_nationally_only():
    for year, values in NATIONAL.items():
        for variant, value in zip(VARIANTS, values, strict=True):
            f = electricity_factor("national", year + 2, variant=variant)
            assert (f.value, f.level, f.data_year) == (value, "national", year)
            # the residual and fossil-only variants are national whatever the place asked for
            if variant != "average":
                assert electricity_factor("370000", year + 2, variant=variant).value == value
                assert electricity_factor("西南", year + 2, variant=variant).value == value


def test_tibet_is_not_published():
    with pytest.raises(FactorNotFound, match="540000"):
        electricity_factor("540000", 2025)
