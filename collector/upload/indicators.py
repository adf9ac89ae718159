"""Indicator documents for the monitoring platforms: per enterprise and closed period (15 minutes,
Beijing day, Beijing month), energy in tce (total and counted for dual control), by carrier, and
CO2, from the 15-minute intervals and their rollups, with the accounting core's factors.

Totals follow the enterprise boundary as the accounting core does (:mod:`..accounting.pipeline`):
import points add, export points subtract, generation and sub-meters are not added. CO2 is
location-based. A point's measured fuel parameters (site file ``fuel``) take precedence over the
default fuel family, and the document lists them with the factors they gave (``measured_fuel``).
Each document carries its method version and factor set, and an idempotency key (enterprise,
period, start, method version) that the platforms deduplicate on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import psycopg

from carbonwatch.accounting import METHOD_VERSION
from carbonwatch.accounting.pipeline import PointInfo, point_factors
from carbonwatch.accounting.tables import shipped
from carbonwatch.contracts.carriers import CARRIERS

from .config import Period

BEIJING = ZoneInfo("Asia/Shanghai")
SCHEMA = "carbonwatch-upload/1"
# Where each period's quantities come from; all have (point_id, bucket, quantity, coverage),
# coverage in 15-minute units.
_SOURCE = {"15min": "intervals_15m", "day": "energy_1d", "month": "energy_1mon"}


def period_floor(t: datetime, period: Period) -> datetime:
    """Start of the Beijing-time period holding ``t``."""
    local = t.astimezone(BEIJING)
    if period == "15min":
        local = local.replace(minute=local.minute - local.minute % 15, second=0, microsecond=0)
    elif period == "day":
        local = local.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        local = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return local


def period_end(start: datetime, period: Period) -> datetime:
    if period == "15min":
        return start + timedelta(minutes=15)
    if period == "day":
        return start + timedelta(days=1)  # no daylight saving in China
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def closed_periods(period: Period, after: datetime, until: datetime) -> list[datetime]:
    """Beijing-time starts of the periods whose end lies in (after, until], in order."""
    out = []
    start = period_floor(after, period)
    while (end := period_end(start, period)) <= until:
        if end > after:
            out.append(start)
        start = end
    return out


def indicator_key(enterprise: str, period: Period, start: datetime) -> str:
    return f"{enterprise}/{period}/{start.astimezone(BEIJING).isoformat()}/{METHOD_VERSION}"


def build_indicators(conn: psycopg.Connection, enterprise: str, period: Period, starts: list[datetime]) -> list[dict]:
    """One indicator document per period start (Beijing time), in the order given."""
    if not starts:
        return []
    row = conn.execute("SELECT province FROM enterprises WHERE code = %s", (enterprise,)).fetchone()
    if row is None:
        raise ValueError(f"enterprise {enterprise} is not registered")
    (province,) = row
    points = conn.execute(
        """SELECT id, point, unit, carrier, coalesce(direction, 'import'), use, renewable, new_since_base_year,
                  fuel_ncv, fuel_carbon_content, fuel_oxidation_rate, fuel_source
           FROM points WHERE enterprise = %s AND active AND kind = 'counter' AND carrier IS NOT NULL ORDER BY id""",
        (enterprise,),
    ).fetchall()
    infos = [
        PointInfo(
            id=p[1],
            unit=p[2],
            carrier=p[3],
            direction=p[4],
            use=p[5],
            province=province,
            renewable=p[6],
            new_since_base_year=p[7],
            ncv=p[8],  # the point's measured fuel parameters take precedence over the family
            carbon_content=p[9],
            oxidation_rate=p[10],
            fuel_source=p[11],
        )
        for p in points
    ]
    index = {p[0]: i for i, p in enumerate(points)}
    starts_utc = [s.astimezone(UTC) for s in starts]
    column = {s: j for j, s in enumerate(starts_utc)}
    qty = np.zeros((len(points), len(starts)))
    cov = np.zeros((len(points), len(starts)))
    if points:
        for point_id, bucket, quantity, coverage in conn.execute(
            f"""SELECT point_id, bucket, quantity, coverage FROM {_SOURCE[period]}
                WHERE point_id = ANY(%s) AND bucket = ANY(%s)""",
            (list(index), starts_utc),
        ):
            i, j = index[point_id], column[bucket.astimezone(UTC)]
            qty[i, j], cov[i, j] = quantity, coverage
    fs = shipped()
    years = np.array([s.astimezone(BEIJING).year for s in starts])
    pf = point_factors(infos, years, factor_set=fs)
    canonical = qty * pf.to_canonical[:, None]
    tce = canonical * pf.tce * pf.sign[:, None]
    co2 = canonical * pf.co2 * pf.sign[:, None]
    measured = {infos[i].id: m for i, m in sorted(pf.measured.items())}
    slots = np.array([(period_end(s, period) - s) / timedelta(minutes=15) for s in starts])
    docs = []
    for j, start in enumerate(starts):
        local = start.astimezone(BEIJING)
        by_carrier: dict[str, dict] = {}
        for i, info in enumerate(infos):
            if pf.sign[i] == 0:
                continue
            c = by_carrier.setdefault(
                info.carrier, {"quantity": 0.0, "unit": CARRIERS[info.carrier].canonical_unit, "tce": 0.0}
            )
            c["quantity"] += float(canonical[i, j] * pf.sign[i])
            c["tce"] += float(tce[i, j])
        docs.append(
            {
                "schema": SCHEMA,
                "key": indicator_key(enterprise, period, start),
                "enterprise": enterprise,
                "period": period,
                "period_start": local.isoformat(),
                "period_end": period_end(local, period).isoformat(),
                "indicators": {
                    "energy_tce": float(tce[:, j].sum()),
                    "energy_dual_control_tce": float((tce[:, j] * pf.dual_control).sum()),
                    "co2_t": float(co2[:, j].sum()),
                    "by_carrier": by_carrier,
                },
                # share of the period's 15-minute intervals backed by readings, over its points
                "coverage": float(cov[:, j].sum() / (slots[j] * len(points))) if points else 0.0,
                "method": "location",
                "method_version": METHOD_VERSION,
                "factor_set": fs.id,
                # points accounted with their own measured fuel parameters (values, source, factors)
                "measured_fuel": measured,
            }
        )
    return docs
