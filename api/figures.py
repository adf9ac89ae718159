"""tce and CO2 of rollup rows, through the accounting core.

The database sums energy per point and period (rollups); the API sums those further in SQL
over points that share everything the factors depend on (carrier, unit, direction, use,
renewable flags, province) and hands the result here. Every figure comes from the accounting
core's factors (:func:`accounting.pipeline.point_factors` for tce and location-based CO2,
:func:`accounting.rules.record_factors` for the market-based residual factor); nothing here
knows a factor value. Group totals follow the core's boundary rules: imports add, exports
subtract, generation and sub-meters are reported but not added. A point's measured fuel
parameters (registry columns ``fuel_*``, from its site file) are among the columns the factors
depend on, and take precedence over the default fuel family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from carbonwatch.accounting import METHOD_VERSION
from carbonwatch.accounting.factors import DEFAULT_FUEL_FAMILY
from carbonwatch.accounting.pipeline import PointInfo, point_factors
from carbonwatch.accounting.rules import Activity, MeasuredFuel, record_factors
from carbonwatch.accounting.tables import shipped

BEIJING = timedelta(hours=8)
PERIODS = ("15min", "hour", "day", "month", "year")
# the rollup each period is read from (a year is summed from months)
PERIOD_TABLE = {
    "15min": "intervals_15m",
    "hour": "energy_1h",
    "day": "energy_1d",
    "month": "energy_1mon",
    "year": "energy_1mon",
}
# columns that decide a row's factors, in the order the SQL returns them after key and bucket
FACTOR_COLUMNS = (
    "carrier",
    "unit",
    "direction",
    "use",
    "renewable",
    "new_since_base_year",
    "place",
    # a point's measured fuel parameters (registry columns fuel_*; NULL: the family default)
    "fuel_ncv",
    "fuel_carbon_content",
    "fuel_oxidation_rate",
    "fuel_source",
)


class FigureError(ValueError):
    """A row the accounting core cannot account (e.g. no factor for the place): a 422 for the caller."""


def period_label(bucket: datetime, period: str) -> tuple[str, datetime, int]:
    """Label, UTC start and Beijing year of the period holding ``bucket``."""
    local = bucket.astimezone(UTC) + BEIJING
    if period == "year":
        start_local = local.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
        label = f"{local.year}"
    elif period == "month":
        start_local, label = local, local.strftime("%Y-%m")
    elif period == "day":
        start_local, label = local, local.strftime("%Y-%m-%d")
    else:
        start_local, label = local, local.strftime("%Y-%m-%dT%H:%M")
    return label, (start_local - BEIJING).replace(tzinfo=UTC), local.year


@dataclass
class Figures:
    """Totals per key and period: tce (both totals) and CO2 (both methods)."""

    period: str
    keys: list[str]
    labels: list[str]
    starts: list[datetime]
    tce: np.ndarray  # keys x periods
    tce_dual_control: np.ndarray
    co2_location_t: np.ndarray
    co2_market_t: np.ndarray
    flags: np.ndarray
    electricity_data_years: dict[int, int] = field(default_factory=dict)
    method_version: str = METHOD_VERSION
    factor_set: str = ""
    fuel_family: str = DEFAULT_FUEL_FAMILY
    by_carrier: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # carrier -> key -> tce per period
    measured_fuel: list[dict] = field(default_factory=list)  # measured fuel parameters used, with their factors

    def rows(self) -> list[dict]:
        out = []
        for k, key in enumerate(self.keys):
            for j, label in enumerate(self.labels):
                out.append(
                    {
                        "key": key,
                        "period": label,
                        "period_start": self.starts[j],
                        "tce": float(self.tce[k, j]),
                        "tce_dual_control": float(self.tce_dual_control[k, j]),
                        "co2_location_t": float(self.co2_location_t[k, j]),
                        "co2_market_t": float(self.co2_market_t[k, j]),
                        "flags": int(self.flags[k, j]),
                    }
                )
        return out

    def provenance(self) -> dict:
        return {
            "method_version": self.method_version,
            "factor_set": self.factor_set,
            "fuel_family": self.fuel_family,
            "electricity_data_years": {str(y): d for y, d in sorted(self.electricity_data_years.items())},
            "measured_fuel": list(self.measured_fuel),
        }


def account_rows(rows: Sequence[tuple], period: str, signed: bool = True, carriers: bool = False) -> Figures:
    """Rows (key, bucket, *FACTOR_COLUMNS, quantity, flags) to figures per key and period.

    Rows whose points carry measured fuel parameters are accounted with them (they take precedence
    over the family defaults, for CO2 and, through the NCV, for tce); ``Figures.measured_fuel``
    records the values, their source and the factors they gave.

    ``signed``: totals on the enterprise boundary (imports add, exports subtract, generation and
    sub-meters not added); unsigned gives each row's own figures (for single points).
    ``carriers``: also split the tce of each key by carrier (``Figures.by_carrier``).
    """
    fs = shipped()
    keys: dict[str, int] = {}
    periods: dict[str, tuple[int, datetime, int]] = {}
    combos: dict[tuple, int] = {}
    cells: list[tuple[int, int, int, float, int]] = []  # key, combo, period, quantity, flags
    labels: dict[datetime, tuple[str, datetime, int]] = {}  # many rows share a bucket
    for key, bucket, *attrs, quantity, flags in rows:
        attrs = tuple(attrs)
        if bucket not in labels:
            labels[bucket] = period_label(bucket, period)
        label, start, year = labels[bucket]
        if label not in periods:
            periods[label] = (len(periods), start, year)
        k = keys.setdefault(key, len(keys))
        c = combos.setdefault(attrs, len(combos))
        cells.append((k, c, periods[label][0], float(quantity), int(flags)))
    order = sorted(periods, key=lambda lb: periods[lb][1])
    remap = {periods[lb][0]: i for i, lb in enumerate(order)}
    years = np.array([periods[lb][2] for lb in order], dtype=np.int32)
    infos = [
        PointInfo(
            id=f"{a[0]}/{a[2]}/{a[3]}",
            unit=a[1],
            carrier=a[0],
            direction=a[2] or "import",
            use=a[3],
            province=a[6],
            renewable=a[4],
            new_since_base_year=a[5],
            ncv=a[7],
            carbon_content=a[8],
            oxidation_rate=a[9],
            fuel_source=a[10],
        )
        for a in combos
    ]
    nk, nc, nper = len(keys), len(combos), len(order)
    shape = (nk, nper)
    out = Figures(
        period,
        list(keys),
        order,
        [periods[lb][1] for lb in order],
        np.zeros(shape),
        np.zeros(shape),
        np.zeros(shape),
        np.zeros(shape),
        np.zeros(shape, dtype=np.int64),
        factor_set=fs.id,
    )
    if not cells:
        return out
    try:
        pf = point_factors(infos, years, factor_set=fs)
        market = _market_factors(infos, years, pf.co2)
    except ValueError as exc:
        raise FigureError(str(exc)) from None
    out.electricity_data_years = pf.data_years
    seen: list[dict] = []  # the same measured values may reach several combinations (directions, places)
    for m in pf.measured.values():
        if m not in seen:
            seen.append(m)
    out.measured_fuel = seen
    sign = pf.sign if signed else np.ones(nc)
    dual = pf.dual_control if signed else np.ones(nc)
    arr = np.array(cells, dtype=np.float64)
    k, c = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
    j = np.array([remap[int(x)] for x in arr[:, 2]], dtype=np.int64)
    canon = arr[:, 3] * pf.to_canonical[c]
    tce = sign[c] * canon * pf.tce[c, j]
    np.add.at(out.tce, (k, j), tce)
    np.add.at(out.tce_dual_control, (k, j), dual[c] * tce)
    np.add.at(out.co2_location_t, (k, j), sign[c] * canon * pf.co2[c, j])
    np.add.at(out.co2_market_t, (k, j), sign[c] * canon * market[c, j])
    np.bitwise_or.at(out.flags, (k, j), arr[:, 4].astype(np.int64))
    for ci, carrier in enumerate(a[0] for a in combos):
        if not carriers:
            break
        sel = c == ci
        per = out.by_carrier.setdefault(carrier, {})
        for kk in np.unique(k[sel]):
            m = sel & (k == kk)
            row = per.setdefault(out.keys[kk], np.zeros(nper))
            np.add.at(row, j[m], tce[m])
    return out


def _market_factors(infos: Sequence[PointInfo], years: np.ndarray, location: np.ndarray) -> np.ndarray:
    """Per row and period: the market-based factor (electricity: the residual factor; else the location one).

    No green-certificate volumes are metered, so all imported electricity takes the residual factor.
    """
    out = location.copy()
    fs = shipped()
    cache: dict[tuple, float] = {}
    for c, info in enumerate(infos):
        if info.carrier != "electricity" or info.direction not in ("import", "export"):
            continue
        for j, year in enumerate(years):
            key = (info.province, int(year))
            if key not in cache:
                a = Activity(carrier="electricity", quantity=1.0, unit="MWh", province=info.province, label=info.id)
                rf = record_factors(a, int(year), {}, DEFAULT_FUEL_FAMILY, fs)
                cache[key] = rf.market.value if rf.market is not None else location[c, j]
            out[c, j] = cache[key]
    return out


def factor_used(
    carrier: str,
    unit: str,
    direction: str | None,
    use: str,
    province: str,
    year: int,
    measured: MeasuredFuel | None = None,
) -> dict | None:
    """The CO2 factor the core applies to one point in ``year`` (value, unit, source, data year), or None.

    ``measured``: the point's measured fuel parameters, which take precedence over the family."""
    a = Activity(
        carrier=carrier,
        quantity=1.0,
        unit=unit,
        province=province,
        use=use,
        direction="export" if direction == "export" else "import",
        measured=measured,
    )
    try:
        rf = record_factors(a, year, {}, DEFAULT_FUEL_FAMILY, shipped())
    except ValueError:
        return None
    return rf.co2.as_dict() if rf.co2 is not None else None
