"""Province-level administrative divisions (GB/T 2260) and their regional power grids.

Provinces are named three ways in the data users bring us: the six-digit GB/T 2260 code
(``140000``), the Chinese name with or without its suffix (``山西`` / ``山西省``) and pinyin
(``shanxi``). :func:`province` accepts all three. Shanxi (山西, ``shanxi``) and Shaanxi
(陕西, ``shaanxi``) are different provinces; the spelling matters.

The grid column follows Table 1 of the MEE 2021 electricity-factor calculation note: Inner
Mongolia is split between the North (west leagues) and Northeast (east prefectures 1504,
1505, 1507, 1522) grids; Tibet belongs to no published grid region.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GRID_REGIONS = {
    "north": "华北",
    "northeast": "东北",
    "east": "华东",
    "central": "华中",
    "northwest": "西北",
    "south": "南方",
    "southwest": "西南",
}


@dataclass(frozen=True)
class Province:
    code: str  # six-digit GB/T 2260 code, e.g. "140000"
    name: str  # short Chinese name, e.g. "山西"
    full_name: str  # e.g. "山西省"
    pinyin: str  # e.g. "shanxi"
    english: str
    grid: str | None  # key of GRID_REGIONS, None where no grid region is published

    @property
    def prefix(self) -> str:
        return self.code[:2]


_PROVINCES = [
    Province("110000", "北京", "北京市", "beijing", "Beijing", "north"),
    Province("120000", "天津", "天津市", "tianjin", "Tianjin", "north"),
    Province("130000", "河北", "河北省", "hebei", "Hebei", "north"),
    Province("140000", "山西", "山西省", "shanxi", "Shanxi", "north"),
    Province("150000", "内蒙古", "内蒙古自治区", "neimenggu", "Inner Mongolia", "north"),
    Province("210000", "辽宁", "辽宁省", "liaoning", "Liaoning", "northeast"),
    Province("220000", "吉林", "吉林省", "jilin", "Jilin", "northeast"),
    Province("230000", "黑龙江", "黑龙江省", "heilongjiang", "Heilongjiang", "northeast"),
    Province("310000", "上海", "上海市", "shanghai", "Shanghai", "east"),
    Province("320000", "江苏", "江苏省", "jiangsu", "Jiangsu", "east"),
    Province("330000", "浙江", "浙江省", "zhejiang", "Zhejiang", "east"),
    Province("340000", "安徽", "安徽省", "anhui", "Anhui", "east"),
    Province("350000", "福建", "福建省", "fujian", "Fujian", "east"),
    Province("360000", "江西", "江西省", "jiangxi", "Jiangxi", "central"),
    Province("370000", "山东", "山东省", "shandong", "Shandong", "north"),
    Province("410000", "河南", "河南省", "henan", "Henan", "central"),
    Province("420000", "湖北", "湖北省", "hubei", "Hubei", "central"),
    Province("430000", "湖南", "湖南省", "hunan", "Hunan", "central"),
    Province("440000", "广东", "广东省", "guangdong", "Guangdong", "south"),
    Province("450000", "广西", "广西壮族自治区", "guangxi", "Guangxi", "south"),
    Province("460000", "海南", "海南省", "hainan", "Hainan", "south"),
    Province("500000", "重庆", "重庆市", "chongqing", "Chongqing", "southwest"),
    Province("510000", "四川", "四川省", "sichuan", "Sichuan", "southwest"),
    Province("520000", "贵州", "贵州省", "guizhou", "Guizhou", "south"),
    Province("530000", "云南", "云南省", "yunnan", "Yunnan", "south"),
    Province("540000", "西藏", "西藏自治区", "xizang", "Tibet", None),
    Province("610000", "陕西", "陕西省", "shaanxi", "Shaanxi", "northwest"),
    Province("620000", "甘肃", "甘肃省", "gansu", "Gansu", "northwest"),
    Province("630000", "青海", "青海省", "qinghai", "Qinghai", "northwest"),
    Province("640000", "宁夏", "宁夏回族自治区", "ningxia", "Ningxia", "northwest"),
    Province("650000", "新疆", "新疆维吾尔自治区", "xinjiang", "Xinjiang", "northwest"),
    Province("710000", "台湾", "台湾省", "taiwan", "Taiwan", None),
    Province("810000", "香港", "香港特别行政区", "xianggang", "Hong Kong", None),
    Province("820000", "澳门", "澳门特别行政区", "aomen", "Macao", None),
]

PROVINCES: dict[str, Province] = {p.code: p for p in _PROVINCES}
_BY_PREFIX = {p.prefix: p for p in _PROVINCES}
_ALIASES: dict[str, Province] = {}
for _p in _PROVINCES:
    for _alias in (_p.code, _p.name, _p.full_name, _p.pinyin, _p.english.lower()):
        _ALIASES[_alias] = _p
_ALIASES["nei mongol"] = _ALIASES["inner mongolia"] = PROVINCES["150000"]
_ALIASES["hongkong"] = _ALIASES["hong kong"] = PROVINCES["810000"]
_ALIASES["macau"] = PROVINCES["820000"]
_ALIASES["tibet"] = PROVINCES["540000"]

# Prefectures of Inner Mongolia on the Northeast grid (MEE 2021 note, Table 1).
_MENGDONG_PREFIXES = {"1504", "1505", "1507", "1522"}

_REGION_CODE = re.compile(r"^\d{6}$")


class UnknownRegion(ValueError):
    """A province or region code that is not in GB/T 2260."""


def province(name_or_code: str | int) -> Province:
    """Return the province for a GB/T 2260 code (any level), Chinese name or pinyin."""
    key = str(name_or_code).strip()
    found = _ALIASES.get(key) or _ALIASES.get(key.lower().replace("-", "").replace("'", ""))
    if found is None and _REGION_CODE.match(key):
        found = _BY_PREFIX.get(key[:2])
    if found is None:
        raise UnknownRegion(
            f"unknown province {name_or_code!r}: use a GB/T 2260 code (140000), "
            "a Chinese name (山西 or 山西省) or pinyin (shanxi)"
        )
    return found


def validate_region_code(code: str) -> str:
    """Check a six-digit GB/T 2260 code whose first two digits name a known province."""
    if not _REGION_CODE.match(code):
        raise UnknownRegion(f"region code {code!r} must be six digits (GB/T 2260), e.g. 140100")
    if code[:2] not in _BY_PREFIX:
        raise UnknownRegion(f"region code {code!r}: no province has the prefix {code[:2]}")
    return code


def province_code(region_code: str) -> str:
    return region_code[:2] + "0000"


def city_code(region_code: str) -> str:
    """The prefecture-level code; for municipalities the province code itself."""
    if region_code[:2] in {"11", "12", "31", "50"}:
        return province_code(region_code)
    return region_code[:4] + "00"


def grid_region(region_code: str) -> str | None:
    """Regional grid of a place, resolving Inner Mongolia's east/west split by prefecture."""
    if region_code[:4] in _MENGDONG_PREFIXES:
        return "northeast"
    return province(region_code).grid
