"""Counter readings of many points to tce and CO2 by point, meter, enterprise, industry, city,
province and period (Beijing time): the batch path behind dashboards and reports.

Steps: sort (only if needed) -> counter differences and 15-minute buckets, summed per point and
period (numba, parallel over points) -> unit conversion and factors per point and accounting year
(the rules of :mod:`.rules`, so the batch and the activity-data path agree) -> roll-up to groups.

Every roll-up carries the method version and the factor set. CO2 is location-based here: the
market-based figure needs the enterprise's certificate volumes and is computed on annual totals
by :func:`.rules.account`.

Group totals follow the enterprise boundary: import points add, export points subtract,
generation and sub-meter (consumption) points are reported per point but not added, so nothing is
counted twice. Dual-control energy leaves out feedstock points and imported electricity flagged
renewable and new since the base year.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from carbonwatch.contracts.carriers import CARRIERS

from . import METHOD_VERSION, kernels
from .factors import DEFAULT_FUEL_FAMILY, stale_factor_warning
from .intervals import BUCKET_SECONDS, BatchIntervals, point_limits, sort_readings
from .periods import bucket_years, period_map
from .rules import (
    AccountingError,
    Activity,
    MeasuredFuel,
    RecordFactors,
    canonical_quantity,
    check_activity,
    record_factors,
)
from .tables import FactorSet, shipped

LEVELS = ("point", "meter", "enterprise", "industry", "city", "province")
_SIGN = {"import": 1.0, "export": -1.0, "generation": 0.0, "consumption": 0.0}


@dataclass(frozen=True)
class PointInfo:
    """What the accounting needs to know about one counter point."""

    id: str
    unit: str
    carrier: str | None = None  # None: a non-energy counter, e.g. product output (quantity only)
    direction: str = "import"  # import | export | generation | consumption
    use: str = "fuel"  # fuel | feedstock
    province: str | None = None  # where the electricity is consumed (GB/T 2260 code, name or pinyin)
    renewable: bool = False
    new_since_base_year: bool = False
    rollover: float | None = None
    max_rate: float | None = None  # per second, in the point's unit
    enthalpy_kj_per_kg: float | None = None  # steam or hot water metered in tonnes
    keys: Mapping[str, str] = field(default_factory=dict)  # group label per level: meter, enterprise, ...
    # the point's measured fuel parameters (site file ``fuel``): they take precedence over the family
    # defaults and carrier-wide overrides, for CO2 and (NCV) for tce
    ncv: float | None = None  # GJ per the carrier's canonical unit (t or 10^4Nm3)
    carbon_content: float | None = None  # tC/GJ
    oxidation_rate: float | None = None  # fraction
    fuel_source: str | None = None  # e.g. "lab report 2026-03"

    @property
    def measured(self) -> MeasuredFuel | None:
        """The point's measured fuel parameters, or None when it has none."""
        if self.ncv is None and self.carbon_content is None and self.oxidation_rate is None:
            return None
        return MeasuredFuel(self.ncv, self.carbon_content, self.oxidation_rate, self.fuel_source)


@dataclass(frozen=True)
class GroupRollup:
    keys: list[str]
    tce: np.ndarray  # groups x periods, signed by direction
    tce_dual_control: np.ndarray
    co2_t: np.ndarray  # location-based, counted
    biomass_co2_t: np.ndarray


@dataclass(frozen=True)
class Rollup:
    period: str
    labels: list[str]  # period labels in Beijing time
    starts: np.ndarray  # UTC epoch seconds of each period start
    years: np.ndarray  # accounting year of each period
    quantity: np.ndarray  # points x periods, in each point's unit
    canonical: np.ndarray  # points x periods, in each carrier's canonical unit (MWh, GJ, t, 10^4Nm3)
    coverage: np.ndarray  # share of the period's 15-minute buckets spanned by counted steps
    completeness: np.ndarray  # share of the period's 15-minute buckets with a reading (national rule: >= 0.9)
    flags: np.ndarray  # OR of the buckets' FLAG_* per point and period
    tce: np.ndarray  # points x periods, the point's own (unsigned)
    co2_t: np.ndarray  # points x periods, the point's own (unsigned, 0 for biomass and feedstock)
    groups: dict[str, GroupRollup]
    electricity_data_years: dict[int, int]  # accounting year -> electricity data year used
    method: str = "location"
    method_version: str = METHOD_VERSION
    factor_set: str = ""
    fuel_family: str = DEFAULT_FUEL_FAMILY
    warnings: tuple[str, ...] = ()  # e.g. stale electricity factors for a year far beyond the latest data year
    measured: dict[str, dict] = field(default_factory=dict)  # point id -> its measured fuel values and factors


@dataclass(frozen=True)
class PointFactors:
    to_canonical: np.ndarray  # points
    tce: np.ndarray  # points x periods
    co2: np.ndarray  # points x periods (counted CO2 only)
    biomass_co2: np.ndarray  # points x periods
    sign: np.ndarray  # points: +1 import, -1 export, 0 not on the boundary
    dual_control: np.ndarray  # points: 1 when counted for dual control, else 0
    data_years: dict[int, int]
    measured: dict[int, dict] = field(default_factory=dict)  # point index -> measured values and factors used


def point_factors(
    points: Sequence[PointInfo],
    years: np.ndarray,
    overrides: Mapping[str, float] | None = None,
    fuel_family: str = DEFAULT_FUEL_FAMILY,
    factor_set: FactorSet | None = None,
) -> PointFactors:
    """Conversion and factor matrices for points over periods of the given accounting years."""
    fs = factor_set or shipped()
    overrides = dict(overrides or {})
    npts, nper = len(points), len(years)
    uniq_years = sorted({int(y) for y in years})
    col_year = np.searchsorted(uniq_years, years)
    sign = np.zeros(npts)
    dual = np.zeros(npts)
    key_of = np.full(npts, -1, dtype=np.int64)
    keys: dict[tuple, int] = {}  # points sharing carrier, unit and place are resolved once
    rows: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]] = []
    data_years: dict[int, int] = {}
    provenance: dict[int, dict] = {}  # row -> measured values and the factors they gave
    measured_points: dict[int, dict] = {}
    for p, info in enumerate(points):
        label = f"point {info.id}"
        if info.direction not in _SIGN:
            raise AccountingError(f"direction must be one of {', '.join(_SIGN)}, got {info.direction!r}", label)
        if info.carrier is None:
            continue
        if info.carrier not in CARRIERS:
            raise AccountingError(f"unknown carrier {info.carrier!r}", label)
        sign[p] = _SIGN[info.direction]
        new_renewable = info.carrier == "electricity" and info.renewable and info.new_since_base_year
        dual[p] = 0.0 if (info.use == "feedstock" or new_renewable) else 1.0
        measured = info.measured
        key = (
            info.carrier,
            info.unit,
            info.province,
            info.use,
            info.direction == "export",
            info.enthalpy_kj_per_kg,
            measured,
        )
        if key not in keys:
            a = Activity(
                carrier=info.carrier,
                quantity=1.0,
                unit=info.unit,
                province=info.province,
                use=info.use,
                direction="export" if info.direction == "export" else "import",
                enthalpy_kj_per_kg=info.enthalpy_kj_per_kg,
                label=label,
                measured=measured,
            )
            scale, _ = canonical_quantity(a)
            check_activity(a)
            by_year = [record_factors(a, year, overrides, fuel_family, fs) for year in uniq_years]
            tce_y = np.array([rf.tce.value for rf in by_year])
            co2_y = np.array([0.0 if rf.co2 is None or rf.biomass else rf.co2.value for rf in by_year])
            bio_y = np.array([rf.co2.value if rf.co2 is not None and rf.biomass else 0.0 for rf in by_year])
            for year, rf in zip(uniq_years, by_year, strict=True):
                if rf.co2 is not None and rf.co2.data_year is not None:
                    data_years[year] = rf.co2.data_year
            keys[key] = len(rows)
            rows.append((scale, tce_y[col_year], co2_y[col_year], bio_y[col_year]))
            if measured is not None and by_year:
                provenance[keys[key]] = measured_provenance(info.carrier, measured, by_year[0])
        key_of[p] = keys[key]
        if keys[key] in provenance:
            measured_points[p] = provenance[keys[key]]
    to_canonical = np.ones(npts)
    tce = np.zeros((npts, nper))
    co2 = np.zeros((npts, nper))
    bio = np.zeros((npts, nper))
    has = key_of >= 0
    if rows:
        k = key_of[has]
        to_canonical[has] = np.array([r[0] for r in rows])[k]
        tce[has] = np.stack([r[1] for r in rows])[k]
        co2[has] = np.stack([r[2] for r in rows])[k]
        bio[has] = np.stack([r[3] for r in rows])[k]
    return PointFactors(to_canonical, tce, co2, bio, sign, dual, data_years, measured_points)


def measured_provenance(carrier: str, measured: MeasuredFuel, rf: RecordFactors) -> dict:
    """What a result records about a point's measured fuel parameters: the values, their source and
    the CO2 and tce factors they gave (fuel factors do not depend on the year)."""
    out: dict = {
        "carrier": carrier,
        "ncv": measured.ncv,
        "carbon_content": measured.carbon_content,
        "oxidation_rate": measured.oxidation_rate,
        "source": measured.source,
        "tce_factor": rf.tce.as_dict(),
    }
    out["co2_factor"] = rf.co2.as_dict() if rf.co2 is not None else None
    return out


def rollup(
    point: np.ndarray,
    ts: np.ndarray,
    value: np.ndarray,
    points: Sequence[PointInfo],
    *,
    period: str = "day",
    levels: Sequence[str] = LEVELS,
    start: float | None = None,
    end: float | None = None,
    overrides: Mapping[str, float] | None = None,
    fuel_family: str = DEFAULT_FUEL_FAMILY,
    factor_set: FactorSet | None = None,
    bucket_seconds: int = BUCKET_SECONDS,
) -> Rollup:
    """Readings (point index into ``points``, UTC epoch seconds, counter value) to a roll-up.

    ``start``/``end`` (UTC epoch seconds) limit the buckets counted; readings just outside them
    should be included so the first and last buckets are complete.
    """
    fs = factor_set or shipped()
    for level in levels:
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r} (use {', '.join(LEVELS)})")
    npts = len(points)
    point = np.asarray(point)
    ts, value, point, offsets = sort_readings(point, np.asarray(ts), np.asarray(value, dtype=np.float64), npts)
    wrap, rate = point_limits(
        npts,
        np.array([p.rollover or 0.0 for p in points]),
        np.array([math.inf if p.max_rate is None else p.max_rate for p in points]),
    )
    lo_bucket, hi_bucket = kernels.bucket_range(ts, value, offsets, float(bucket_seconds))
    if hi_bucket < lo_bucket:
        raise ValueError("no readings with a finite value")
    pm = period_map(int(lo_bucket), int(hi_bucket), period, bucket_seconds, start, end)
    qty, cov, flags, with_reading = kernels.rollup_points(
        ts, value, offsets, wrap, rate, float(bucket_seconds), pm.origin, pm.index, len(pm.labels)
    )
    pf = point_factors(points, pm.years, overrides, fuel_family, fs)
    canonical = qty * pf.to_canonical[:, None]
    tce = canonical * pf.tce
    co2 = canonical * pf.co2
    biomass = canonical * pf.biomass_co2

    groups: dict[str, GroupRollup] = {}
    for level in levels:
        if level == "point":
            continue
        labels = [p.keys.get(level) for p in points]
        keys = sorted({k for k in labels if k is not None})
        code = {k: i for i, k in enumerate(keys)}
        gid = np.array([-1 if k is None else code[k] for k in labels], dtype=np.int64)
        groups[level] = GroupRollup(
            keys,
            kernels.group_rows(tce, gid, len(keys), pf.sign),
            kernels.group_rows(tce, gid, len(keys), pf.sign * pf.dual_control),
            kernels.group_rows(co2, gid, len(keys), pf.sign),
            kernels.group_rows(biomass, gid, len(keys), pf.sign),
        )
    return Rollup(
        period=period,
        labels=pm.labels,
        starts=pm.starts,
        years=pm.years,
        quantity=qty,
        canonical=canonical,
        coverage=cov / pm.buckets[None, :],
        completeness=with_reading / pm.buckets[None, :],
        flags=flags,
        tce=tce,
        co2_t=co2,
        groups=groups,
        electricity_data_years=pf.data_years,
        factor_set=fs.id,
        fuel_family=fuel_family,
        warnings=tuple(w for y, d in sorted(pf.data_years.items()) if (w := stale_factor_warning(y, d))),
        measured={points[i].id: m for i, m in pf.measured.items()},
    )


@dataclass(frozen=True)
class IntervalEmissions:
    canonical: np.ndarray  # quantity per bucket in the carrier's canonical unit
    tce: np.ndarray  # the point's own tce per bucket (unsigned)
    co2_t: np.ndarray  # the point's own CO2 per bucket (location-based; 0 for biomass and feedstock)
    method_version: str = METHOD_VERSION
    factor_set: str = ""


def interval_emissions(
    iv: BatchIntervals,
    points: Sequence[PointInfo],
    overrides: Mapping[str, float] | None = None,
    fuel_family: str = DEFAULT_FUEL_FAMILY,
    factor_set: FactorSet | None = None,
) -> IntervalEmissions:
    """Unit conversion, tce and CO2 of each 15-minute bucket (e.g. for a live dashboard).

    The factors follow the Beijing calendar year of each bucket, as in :func:`rollup`.
    """
    fs = factor_set or shipped()
    years = bucket_years(iv.bucket)
    uniq = np.unique(years)
    pf = point_factors(points, uniq, overrides, fuel_family, fs)
    year_index = np.searchsorted(uniq, years).astype(np.int64)
    canonical, tce, co2 = kernels.apply_factors(
        iv.point.astype(np.int64), year_index, iv.quantity, pf.to_canonical, pf.tce, pf.co2
    )
    return IntervalEmissions(canonical, tce, co2, factor_set=fs.id)
