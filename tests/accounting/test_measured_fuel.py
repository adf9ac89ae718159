"""A point's measured fuel parameters (site file ``fuel``) in the accounting core: they take
precedence over the family and over carrier-wide overrides, for CO2 and (NCV) for tce, point by
point; the batch path equals the reference path (plain-Python buckets, then ``rules.account`` with
the same values given as ``--factor`` overrides) and the formula written out here."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from carbonwatch.accounting import reference
from carbonwatch.accounting.intervals import batch_intervals
from carbonwatch.accounting.pipeline import PointInfo, interval_emissions, rollup
from carbonwatch.accounting.rules import AccountingError, Activity, MeasuredFuel, account

NEW_YEAR_2025 = int(datetime(2024, 12, 31, 16, tzinfo=UTC).timestamp())  # 2025-01-01 00:00 Beijing
GJ_PER_TCE = 29.3076
C_TO_CO2 = 44 / 12
ENT = {"enterprise": "91140105MA0K7Q2B30", "province": "140000"}

# two raw-coal belts measured differently, a coke point measured in part, a coal point on defaults
BELT_A = PointInfo(
    "belt_a.total_t", "t", "raw_coal", ncv=20.9, carbon_content=0.0263, oxidation_rate=0.94,
    fuel_source="lab report 2026-03", keys={**ENT, "meter": "belt_a"},
)  # fmt: skip
BELT_B = PointInfo(
    "belt_b.total_kg", "kg", "raw_coal", ncv=17.2, carbon_content=0.0271, fuel_source="lab report 2026-02",
    keys={**ENT, "meter": "belt_b"},
)  # fmt: skip
COKE = PointInfo(
    "coke.total_t", "t", "coke", oxidation_rate=0.97, fuel_source="boiler test", keys={**ENT, "meter": "c"}
)
COAL = PointInfo("coal.total_t", "t", "bituminous_coal", keys={**ENT, "meter": "coal"})
POINTS = [BELT_A, BELT_B, COKE, COAL]
RATES = [3.0, 1500.0, 0.4, 2.0]  # units per 5-minute step


def readings(start: int, steps: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    point, ts, value = [], [], []
    for p, rate in enumerate(RATES):
        point.append(np.full(steps, p))
        ts.append((start + np.arange(steps) * 300.0 + rng.integers(0, 30, steps)).astype(float))
        value.append(np.cumsum(rng.uniform(0, 2 * rate, steps)))
    point, ts, value = map(np.concatenate, (point, ts, value))
    order = rng.permutation(len(point))
    return point[order], ts[order], value[order]


def by_hand(info: PointInfo, quantity_t: float) -> tuple[float, float]:
    """(tCO2, tce) of a raw-coal point from its measured values, written out: q x NCV x CC x OF x 44/12
    (OF 1 when not measured), q x NCV / 29.3076."""
    of = info.oxidation_rate if info.oxidation_rate is not None else 1.0
    return quantity_t * info.ncv * info.carbon_content * of * C_TO_CO2, quantity_t * info.ncv / GJ_PER_TCE


def test_rollup_with_measured_points_equals_the_reference_path_and_the_formula():
    point, ts, value = readings(NEW_YEAR_2025, 288 + 20)
    r = rollup(point, ts, value, POINTS, period="day")
    want = reference.rollup(list(point), list(ts), list(value), {}, {}, "day")
    qty = np.zeros((len(POINTS), len(r.labels)))
    for (p, label), (q, _, _, _) in want.items():
        qty[p, r.labels.index(label)] = q
    np.testing.assert_allclose(r.quantity, qty, rtol=1e-9, atol=1e-9)

    for j in range(len(r.labels)):
        # each point alone through rules.account with its values given as --factor overrides
        for p, info in enumerate(POINTS):
            overrides = {}
            m = info.measured
            if m is not None:
                overrides = {f"{info.carrier}.{k}": v for k, v in m.params().items()}
            ref = account([Activity(info.carrier, float(qty[p, j]), info.unit)], 2025, overrides=overrides)
            assert r.co2_t[p, j] == pytest.approx(ref.co2_location_t, rel=1e-12, abs=1e-12)
            assert r.tce[p, j] == pytest.approx(ref.tce, rel=1e-12, abs=1e-12)
        # the raw-coal belts by the formula; belt B meters kg
        for p, info, to_t in ((0, BELT_A, 1.0), (1, BELT_B, 0.001)):
            co2, tce = by_hand(info, qty[p, j] * to_t)
            assert r.co2_t[p, j] == pytest.approx(co2, rel=1e-12)
            assert r.tce[p, j] == pytest.approx(tce, rel=1e-12)
        # coke: measured oxidation rate, family NCV and carbon content, GB/T 2589 coefficient for tce
        assert r.co2_t[2, j] == pytest.approx(qty[2, j] * 28.435 * 0.0295 * 0.97 * C_TO_CO2, rel=1e-12)
        assert r.tce[2, j] == pytest.approx(qty[2, j] * 0.9714, rel=1e-12)
        # the enterprise total is the sum of every point's own figures (all imports)
        g = r.groups["enterprise"]
        assert g.co2_t[0, j] == pytest.approx(r.co2_t[:, j].sum(), rel=1e-12)
        assert g.tce[0, j] == pytest.approx(r.tce[:, j].sum(), rel=1e-12)

    # the two belts are accounted apart: same carrier, different values, different factors per tonne
    a = r.co2_t[0].sum() / r.canonical[0].sum()
    b = r.co2_t[1].sum() / r.canonical[1].sum()
    assert a == pytest.approx(20.9 * 0.0263 * 0.94 * C_TO_CO2) and b == pytest.approx(17.2 * 0.0271 * C_TO_CO2)

    # the roll-up records what was measured and the factors it gave
    assert set(r.measured) == {"belt_a.total_t", "belt_b.total_kg", "coke.total_t"}
    belt = r.measured["belt_a.total_t"]
    assert belt["source"] == "lab report 2026-03" and belt["ncv"] == 20.9
    assert belt["co2_factor"]["trust"] == "measured" and "lab report 2026-03" in belt["co2_factor"]["source"]
    assert belt["tce_factor"]["value"] == pytest.approx(20.9 / GJ_PER_TCE)
    assert "oxidation rate 1 assumed" in r.measured["belt_b.total_kg"]["co2_factor"]["source"]


def test_per_interval_emissions_use_each_points_values():
    point, ts, value = readings(NEW_YEAR_2025, 100, seed=9)
    iv = batch_intervals(point, ts, value, np.zeros(len(POINTS)))
    em = interval_emissions(iv, POINTS)
    r = rollup(point, ts, value, POINTS, period="year")
    for p in range(len(POINTS)):
        mine = iv.point == p
        assert em.co2_t[mine].sum() == pytest.approx(r.co2_t[p].sum(), rel=1e-9)
        assert em.tce[mine].sum() == pytest.approx(r.tce[p].sum(), rel=1e-9)


def test_a_points_values_beat_carrier_wide_overrides_parameter_by_parameter():
    measured = MeasuredFuel(ncv=29.5, source="lab")
    overrides = {"coke": 2.5, "coke.cc": 0.031, "coke.tce": 1.0}
    r = account([Activity("coke", 10, "t", measured=measured), Activity("coke", 10, "t")], 2025, overrides=overrides)
    own, other = r.by_carrier
    # own NCV, the carrier-wide carbon content, the family oxidation rate; the whole factor is not used
    assert own.factor.value == pytest.approx(29.5 * 0.031 * 0.93 * C_TO_CO2)
    assert "measured cc, ncv" in own.factor.source and "lab" in own.factor.source
    assert own.tce == pytest.approx(10 * 29.5 / GJ_PER_TCE)  # a measured NCV sets the tce, over .tce=
    assert other.factor.value == 2.5 and other.tce == pytest.approx(10.0)  # the other record keeps --factor


def test_raw_coal_needs_measured_ncv_and_carbon_content():
    with pytest.raises(AccountingError, match=r"point belt.t: .*no default parameters for 'raw_coal'"):
        rollup(
            np.zeros(2, int),
            np.array([NEW_YEAR_2025, NEW_YEAR_2025 + 900.0]),
            np.array([0.0, 1.0]),
            [PointInfo("belt.t", "t", "raw_coal", ncv=20.9)],
        )
    # feedstock raw coal has no combustion CO2: GB/T 2589 0.7143, or its measured NCV / 29.3076
    plain = account([Activity("raw_coal", 100, "t", use="feedstock")], 2025)
    measured = account([Activity("raw_coal", 100, "t", use="feedstock", measured=MeasuredFuel(ncv=19.0))], 2025)
    assert plain.co2_t == measured.co2_t == 0.0
    assert plain.tce == pytest.approx(71.43) and measured.tce == pytest.approx(100 * 19.0 / GJ_PER_TCE)


@pytest.mark.parametrize(
    ("activity", "message"),
    [
        (Activity("electricity", 1, "MWh", "shanxi", measured=MeasuredFuel(ncv=20.0)), "apply to fuels"),
        (Activity("coke", 1, "t", measured=MeasuredFuel(oxidation_rate=1.5)), "measured of 1.5 is out of range"),
        (Activity("coke", 1, "t", measured=MeasuredFuel(ncv=float("nan"))), "measured ncv nan is out of range"),
    ],
)
def test_bad_measured_values_are_named(activity, message):
    with pytest.raises(AccountingError, match=message):
        account([activity], 2025)
