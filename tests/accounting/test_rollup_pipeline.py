"""The batch pipeline: roll-ups equal the reference and agree with the activity-data rules."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonwatch.accounting import reference
from carbonwatch.accounting.intervals import batch_intervals
from carbonwatch.accounting.periods import bucket_years, period_map
from carbonwatch.accounting.pipeline import PointInfo, interval_emissions, rollup
from carbonwatch.accounting.rules import AccountingError, Activity, account

# 2025-01-01 00:00 in Beijing is 2024-12-31 16:00 UTC
NEW_YEAR_2025 = int(datetime(2024, 12, 31, 16, tzinfo=UTC).timestamp())

ENT = {"meter": "m-incomer", "enterprise": "91140105MA0K7Q2B30", "industry": "2614", "city": "140100"}
SX = {**ENT, "province": "140000"}
QH = {"meter": "m-qh", "enterprise": "91630000MA0000000X", "industry": "3216", "city": "630100", "province": "630000"}
POINTS = [
    PointInfo("incomer.import_kwh", "kWh", "electricity", province="140000", keys=SX),
    PointInfo("incomer.export_kwh", "kWh", "electricity", "export", province="140000", keys=SX),
    PointInfo("boiler.gas_nm3", "Nm3", "natural_gas", keys={**SX, "meter": "m-gas"}),
    PointInfo("steam.in_t", "t", "steam", enthalpy_kj_per_kg=2777, keys={**SX, "meter": "m-steam"}),
    PointInfo("gasifier.coal_t", "t", "bituminous_coal", use="feedstock", keys={**SX, "meter": "m-coal"}),
    PointInfo(
        "line2.sub_kwh", "kWh", "electricity", "consumption", province="140000", keys={**ENT, "meter": "m-line2"}
    ),
    PointInfo("methanol.output_t", "t", None, keys={**ENT, "meter": "m-output"}),
    PointInfo("qh.import_kwh", "MWh", "electricity", province="qinghai", rollover=1000.0, keys=QH),
]
RATES = [120.0, 10.0, 30.0, 0.5, 0.2, 40.0, 0.3, 0.4]  # units per reading step


def readings(start: int, steps: int, step: float = 300.0, seed: int = 1):
    rng = np.random.default_rng(seed)
    point, ts, value = [], [], []
    for p, (info, rate) in enumerate(zip(POINTS, RATES, strict=True)):
        t = start + np.arange(steps) * step + rng.integers(0, 30, steps)
        v = np.cumsum(rng.uniform(0, 2 * rate, steps))
        if info.rollover:
            v = np.mod(v, info.rollover)
        point.append(np.full(steps, p))
        ts.append(t.astype(float))
        value.append(v)
    point, ts, value = map(np.concatenate, (point, ts, value))
    order = rng.permutation(len(point))
    return point[order], ts[order], value[order]


def test_rollup_matches_reference_and_rules_across_a_year_boundary():
    point, ts, value = readings(NEW_YEAR_2025 - 86400, 2 * 288 + 30)
    r = rollup(point, ts, value, POINTS, period="day")
    assert r.labels == ["2024-12-31", "2025-01-01", "2025-01-02"]
    assert list(r.years) == [2024, 2025, 2025]
    assert r.electricity_data_years == {2024: 2022, 2025: 2023}
    assert r.method_version.startswith("cw-") and r.factor_set.startswith("cw-factors-")

    want = reference.rollup(
        list(point),
        list(ts),
        list(value),
        {p: i.rollover for p, i in enumerate(POINTS)},
        {p: i.max_rate for p, i in enumerate(POINTS)},
        "day",
    )
    for (p, label), (qty, _, flags, _) in want.items():
        j = r.labels.index(label)
        assert r.quantity[p, j] == pytest.approx(qty, rel=1e-9, abs=1e-9)
        assert r.flags[p, j] == flags

    # each (enterprise, year) equals the activity-data rules on the same quantities
    for year, cols in ((2024, [0]), (2025, [1, 2])):
        for ent in r.groups["enterprise"].keys:
            acts = []
            for p, info in enumerate(POINTS):
                if info.keys.get("enterprise") != ent or info.carrier is None or info.direction == "consumption":
                    continue
                acts.append(
                    Activity(
                        info.carrier,
                        float(r.quantity[p, cols].sum()),
                        info.unit,
                        info.province,
                        use=info.use,
                        direction=info.direction,
                        enthalpy_kj_per_kg=info.enthalpy_kj_per_kg,
                    )
                )
            ref = account(acts, year)
            g = r.groups["enterprise"]
            k = g.keys.index(ent)
            assert g.co2_t[k, cols].sum() == pytest.approx(ref.co2_location_t, rel=1e-9)
            assert g.tce[k, cols].sum() == pytest.approx(ref.tce, rel=1e-9)
            assert g.tce_dual_control[k, cols].sum() == pytest.approx(ref.tce_dual_control, rel=1e-9)


def test_per_interval_emissions_add_up_to_the_rollup():
    point, ts, value = readings(NEW_YEAR_2025 - 86400, 2 * 288 + 30, seed=5)
    iv = batch_intervals(point, ts, value, np.array([p.rollover or 0.0 for p in POINTS]))
    em = interval_emissions(iv, POINTS)
    r = rollup(point, ts, value, POINTS, period="year")
    assert r.labels == ["2024", "2025"]
    for p in range(len(POINTS)):
        for j, year in enumerate((2024, 2025)):
            mine = (iv.point == p) & (bucket_years(iv.bucket) == year)
            assert em.co2_t[mine].sum() == pytest.approx(r.co2_t[p, j], rel=1e-9, abs=1e-12)
            assert em.tce[mine].sum() == pytest.approx(r.tce[p, j], rel=1e-9, abs=1e-12)
    assert em.factor_set == r.factor_set


def test_levels_sum_consistently():
    point, ts, value = readings(NEW_YEAR_2025, 400, seed=7)
    r = rollup(point, ts, value, POINTS, period="month")
    total = r.groups["enterprise"].co2_t.sum()
    for level in ("industry", "city"):
        assert r.groups[level].co2_t.sum() == pytest.approx(total)
    # the province level only counts points that carry a province key (the sub-meter does not)
    assert r.groups["province"].co2_t.sum() == pytest.approx(total)
    # sub-meters and product output are reported per point but never added to the boundary
    sub = POINTS.index(next(p for p in POINTS if p.direction == "consumption"))
    assert r.co2_t[sub].sum() > 0
    meters = r.groups["meter"]
    assert meters.co2_t[meters.keys.index("m-line2")].sum() == 0


def test_completeness_counts_buckets_with_a_reading():
    # one point read every 30 minutes for a day: half the 96 buckets have a reading
    ts = NEW_YEAR_2025 + np.arange(0, 86400 + 1, 1800.0)
    r = rollup(np.zeros(len(ts), int), ts, np.arange(len(ts), dtype=float), POINTS[:1], period="day")
    assert r.completeness[0, 0] == pytest.approx(0.5)
    assert r.coverage[0, 0] == pytest.approx(1.0)  # but the consumption is fully backed by counter steps


def test_window_limits_the_buckets_counted():
    point, ts, value = readings(NEW_YEAR_2025 - 86400, 3 * 288, seed=3)
    r = rollup(point, ts, value, POINTS, period="day", start=NEW_YEAR_2025, end=NEW_YEAR_2025 + 86400)
    assert r.labels == ["2025-01-01"]


def test_bad_point_metadata_is_named():
    bad = [PointInfo("x.kwh", "kWh", "electricity", province="xizang", keys={"enterprise": "E"})]
    with pytest.raises(AccountingError, match=r"point x.kwh: no electricity factor .*西藏"):
        rollup(np.zeros(2, int), np.array([NEW_YEAR_2025, NEW_YEAR_2025 + 900.0]), np.array([0.0, 1.0]), bad)
    with pytest.raises(ValueError, match="point indices"):
        rollup(np.array([0, 5]), np.array([0.0, 900.0]), np.array([0.0, 1.0]), bad)


@settings(max_examples=200, deadline=None)
@given(st.integers(788_918_400, 2_208_988_800), st.sampled_from(["15min", "hour", "day", "month", "year"]))
def test_beijing_periods_match_the_tz_database(epoch, period):
    """The fixed +8 offset equals Asia/Shanghai from 1995 to 2040."""
    b = epoch // 900
    pm = period_map(b, b, period)
    assert pm.labels[pm.index[0]] == reference.period_label(b * 900, period)
    assert int(bucket_years(np.array([b * 900]))[0]) == int(reference.period_label(b * 900, "year"))


def test_rollup_says_when_a_year_uses_stale_electricity_factors():
    fresh = rollup(*readings(NEW_YEAR_2025 - 86400, 2 * 288), POINTS, period="day")
    assert fresh.warnings == ()
    new_year_2030 = int(datetime(2029, 12, 31, 16, tzinfo=UTC).timestamp())
    stale = rollup(*readings(new_year_2030 - 86400, 2 * 288), POINTS, period="day")
    assert stale.electricity_data_years == {2029: 2023, 2030: 2023}
    assert len(stale.warnings) == 2 and all("stale electricity factors" in w for w in stale.warnings)
    assert "accounting year 2030 uses data year 2023" in stale.warnings[1]


def test_a_points_rate_limit_keeps_a_garbage_read_out_of_the_rollup():
    """A lone garbage read is skipped with or without max_rate; a persistent jump only with one."""
    ts = NEW_YEAR_2025 + np.arange(8) * 300.0
    lone = np.array([100.0, 101.0, 102.0, 42_949_672.95, 103.0, 104.0, 105.0, 106.0])
    level = np.array([100.0, 101.0, 102.0, 9e6, 9e6 + 1, 9e6 + 2, 9e6 + 3, 9e6 + 4])
    for values, rate, want in ((lone, None, 6.0), (lone, 0.5, 6.0), (level, 0.5, 6.0), (level, None, 9e6 + 4 - 100)):
        pts = [PointInfo("incomer.import_kwh", "kWh", "electricity", province="140000", max_rate=rate, keys=SX)]
        r = rollup(np.zeros(len(ts), dtype=np.int64), ts, values, pts, period="day")
        assert r.quantity.sum() == pytest.approx(want), (rate, values[3])
