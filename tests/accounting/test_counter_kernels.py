"""The numba kernels equal the plain-Python reference, and the counter rules hold on known cases.

Random series include rollovers at the register width, resets, transient zeros and spikes,
non-finite values, gaps, duplicate times and out-of-order readings.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbonwatch.accounting import kernels, reference
from carbonwatch.accounting.flags import FLAG_BACKWARDS, FLAG_PARTIAL, FLAG_RESET, FLAG_ROLLOVER, FLAG_SPIKE
from carbonwatch.accounting.intervals import batch_intervals, counter_intervals, point_limits, sort_readings
from carbonwatch.accounting.periods import period_map

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def series(draw, max_n: int = 40) -> dict:
    """One counter's readings with anomalies, as a meter and a gateway produce them."""
    n = draw(st.integers(1, max_n))
    t0 = draw(st.integers(1_700_000_000, 1_800_000_000))
    if draw(st.booleans()):
        t0 -= t0 % 900  # readings on bucket boundaries
    gap = st.one_of(st.just(0), st.integers(1, 120), st.sampled_from([60, 300, 450, 900]), st.integers(900, 6 * 3600))
    steps = draw(st.lists(gap, min_size=n - 1, max_size=n - 1))
    ts = t0 + np.concatenate([[0], np.cumsum(steps, dtype=np.int64)]).astype(np.float64)
    if draw(st.booleans()):
        ts = ts + np.array(draw(st.lists(st.integers(0, 999), min_size=n, max_size=n))) / 1000.0
        ts.sort()
    incs = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 7.25, 40.0, 300.0]), min_size=n - 1, max_size=n - 1))
    true = draw(st.sampled_from([0.0, 900.0, 53_000.0, 60_000.0])) + np.concatenate([[0.0], np.cumsum(incs)])
    rollover = draw(st.sampled_from([None, 65536.0, 1000.0]))
    values = np.mod(true, rollover) if rollover else true.copy()
    for i in range(n):
        kind = draw(st.sampled_from(["ok"] * 6 + ["zero", "reset", "spike", "nan", "dip"]))
        if kind == "zero":
            values[i] = 0.0
        elif kind == "reset":
            values[i:] -= values[i] - draw(st.sampled_from([0.0, 3.0]))
        elif kind == "spike":
            values[i] += 1e6
        elif kind == "nan":
            values[i] = draw(st.sampled_from([math.nan, math.inf]))
        elif kind == "dip":
            values[i] -= 5.0
    max_rate = draw(st.sampled_from([None, 0.01, 1.0, 100.0]))
    order = draw(st.permutations(range(n))) if draw(st.booleans()) else list(range(n))
    return {"ts": ts[order], "values": values[order], "rollover": rollover, "max_rate": max_rate}


def as_dict(iv) -> dict[int, tuple]:
    return {
        int(b): (float(q), int(f), float(c), int(r))
        for b, q, f, c, r in zip(iv.bucket, iv.quantity, iv.flags, iv.coverage, iv.readings, strict=True)
    }


def assert_equal_buckets(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for b in want:
        gq, gf, gc, gr = got[b]
        wq, wf, wc, wr = want[b]
        assert gf == wf, f"flags of bucket {b}: {gf} != {wf}"
        assert gr == wr
        assert gq == pytest.approx(wq, rel=1e-12, abs=1e-9), f"quantity of bucket {b}"
        assert gc == pytest.approx(wc, rel=1e-12, abs=1e-12)


@SETTINGS
@given(series())
def test_series_kernel_equals_reference(s):
    iv = counter_intervals(s["ts"], s["values"], s["rollover"], max_rate=s["max_rate"])
    want = reference.counter_buckets(list(zip(s["ts"], s["values"], strict=True)), s["rollover"], s["max_rate"])
    if np.isfinite(s["values"]).sum() < 2:
        assert len(iv.bucket) == 0
        return
    assert_equal_buckets(as_dict(iv), {b: tuple(v) for b, v in want.items()})
    assert (iv.quantity >= 0).all(), "a counter never yields a negative quantity"


@SETTINGS
@given(st.lists(series(max_n=25), min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_batch_kernel_equals_reference_per_point(many, rnd):
    point = np.concatenate([np.full(len(s["ts"]), p) for p, s in enumerate(many)])
    ts = np.concatenate([s["ts"] for s in many])
    values = np.concatenate([s["values"] for s in many])
    order = list(range(len(point)))
    rnd.shuffle(order)  # readings of all points interleaved and out of order
    rollover = np.array([s["rollover"] or 0.0 for s in many])
    rate = np.array([math.inf if s["max_rate"] is None else s["max_rate"] for s in many])
    got = batch_intervals(point[order], ts[order], values[order], rollover, rate)
    for p, s in enumerate(many):
        mine = got.point == p
        want = reference.counter_buckets(list(zip(s["ts"], s["values"], strict=True)), s["rollover"], s["max_rate"])
        cols = (got.bucket[mine], got.quantity[mine], got.flags[mine], got.coverage[mine], got.readings[mine])
        rows = {int(b): (float(q), int(f), float(c), int(r)) for b, q, f, c, r in zip(*cols, strict=True)}
        if np.isfinite(s["values"]).sum() == 0:
            assert not rows
            continue
        assert_equal_buckets(rows, {b: tuple(v) for b, v in want.items()})


@SETTINGS
@given(st.lists(series(max_n=25), min_size=1, max_size=5), st.sampled_from(["15min", "hour", "day", "month", "year"]))
def test_rollup_kernel_equals_reference(many, period):
    many = [s for s in many if np.isfinite(s["values"]).any()]
    if not many:
        return
    point = np.concatenate([np.full(len(s["ts"]), p) for p, s in enumerate(many)])
    ts = np.concatenate([s["ts"] for s in many])
    values = np.concatenate([s["values"] for s in many])
    rollover = np.array([s["rollover"] or 0.0 for s in many])
    rate = np.array([math.inf if s["max_rate"] is None else s["max_rate"] for s in many])
    finite = np.isfinite(values)
    pm = period_map(int(ts[finite].min() // 900), int(ts[finite].max() // 900), period)
    sts, svals, _, offsets = sort_readings(point, ts, values, len(many))
    wrap, lim = point_limits(len(many), rollover, rate)
    q, c, f, r = kernels.rollup_points(sts, svals, offsets, wrap, lim, 900.0, pm.origin, pm.index, len(pm.labels))
    want = reference.rollup(
        list(point),
        list(ts),
        list(values),
        {p: s["rollover"] for p, s in enumerate(many)},
        {p: s["max_rate"] for p, s in enumerate(many)},
        period,
    )
    got = {}
    for p in range(len(many)):
        for j, label in enumerate(pm.labels):
            if r[p, j] or c[p, j] or q[p, j] or f[p, j]:
                got[(p, label)] = (q[p, j], c[p, j], int(f[p, j]), int(r[p, j]))
    assert got.keys() <= want.keys()
    for key, (wq, wc, wf, wr) in want.items():
        gq, gc, gf, gr = got.get(key, (0.0, 0.0, 0, 0))
        assert (gf, gr) == (wf, wr), key
        assert gq == pytest.approx(wq, rel=1e-9, abs=1e-9) and gc == pytest.approx(wc, rel=1e-9, abs=1e-12)


@SETTINGS
@given(
    st.lists(st.sampled_from([0.0, 0.25, 3.0, 20.0]), min_size=2, max_size=60),
    st.sampled_from([60, 300, 900, 1800]),
    st.sampled_from([None, 1000.0, 65536.0]),
)
def test_clean_counter_total_is_first_to_last(incs, step, rollover):
    """Without anomalies the buckets add up to the true consumption, rollovers included."""
    true = 123.0 + np.concatenate([[0.0], np.cumsum(incs)])
    ts = 1_750_000_000 + np.arange(len(true)) * float(step)
    values = np.mod(true, rollover) if rollover else true
    iv = counter_intervals(ts, values, rollover)
    assert iv.quantity.sum() == pytest.approx(true[-1] - true[0], rel=1e-9, abs=1e-9)
    assert not (iv.flags & (FLAG_BACKWARDS | FLAG_RESET | FLAG_SPIKE)).any()


# --- the rules on known cases ------------------------------------------------------------------

T0 = 1_750_032_000.0  # a bucket boundary


def test_transient_zero_is_neither_negative_nor_a_53_mwh_spike():
    ts = T0 + np.arange(6) * 300.0
    values = np.array([53_000.0, 53_010.0, 0.0, 53_020.0, 53_030.0, 53_040.0])  # kWh
    iv = counter_intervals(ts, values)
    assert iv.quantity.sum() == pytest.approx(40.0)
    assert iv.quantity.min() >= 0 and iv.quantity.max() < 100
    assert iv.flags[0] & FLAG_BACKWARDS  # the zero is flagged where it happened


def test_transient_zero_on_a_wrapping_register_is_not_a_rollover():
    # uint32 register scaled 0.01 kWh: rollover at 42,949,672.96 kWh; the counter is past half of it
    r = 2**32 * 0.01
    values = np.array([30e6, 30e6 + 10, 0.0, 30e6 + 20, 30e6 + 30])
    iv = counter_intervals(T0 + np.arange(5) * 300.0, values, r)
    assert iv.quantity.sum() == pytest.approx(30.0)
    assert not (iv.flags & FLAG_ROLLOVER).any()


def test_rollover_at_register_width_is_counted():
    values = np.array([65_530.0, 65_534.0, 2.0, 6.0])  # uint16 register wraps at 65,536
    iv = counter_intervals(T0 + np.arange(4) * 300.0, values, 65_536.0)
    assert iv.quantity.sum() == pytest.approx(12.0)
    assert iv.flags[0] & FLAG_ROLLOVER


def test_reset_is_flagged_not_counted_and_not_silently_rebased():
    values = np.array([5_000.0, 5_010.0, 4.0, 9.0, 15.0])  # meter replaced between readings 2 and 3
    iv = counter_intervals(T0 + np.arange(5) * 300.0, values)
    assert iv.quantity.sum() == pytest.approx(10.0 + 11.0)  # the step across the reset is unknown
    assert iv.flags[0] & FLAG_RESET and iv.flags[0] & FLAG_PARTIAL
    assert iv.coverage[0] == pytest.approx(2 / 3)


def test_last_reading_below_is_pending_not_a_reset():
    iv = counter_intervals(T0 + np.arange(3) * 300.0, np.array([100.0, 110.0, 0.0]))
    assert iv.quantity.sum() == pytest.approx(10.0) and iv.flags[0] & FLAG_BACKWARDS


def test_spike_above_the_plausible_rate():
    ts = T0 + np.arange(5) * 300.0
    transient = counter_intervals(ts, np.array([100.0, 101.0, 9e6, 102.0, 103.0]), max_rate=0.01)
    assert transient.quantity.sum() == pytest.approx(3.0) and transient.flags[0] & FLAG_SPIKE
    persistent = counter_intervals(ts, np.array([100.0, 101.0, 9e6, 9e6 + 1, 9e6 + 2]), max_rate=0.01)
    assert persistent.quantity.sum() == pytest.approx(3.0) and persistent.flags[0] & FLAG_SPIKE
    without_limit = counter_intervals(ts, np.array([100.0, 101.0, 9e6, 9e6 + 1, 9e6 + 2]))
    assert without_limit.quantity.sum() == pytest.approx(9e6 + 2 - 100)


def test_gap_is_spread_by_time_and_reported_as_completeness():
    ts = np.array([T0, T0 + 3 * 900.0])
    iv = counter_intervals(ts, np.array([0.0, 30.0]))
    assert list(iv.quantity) == pytest.approx([10.0, 10.0, 10.0, 0.0])
    assert list(iv.readings) == [1, 0, 0, 1]  # two of four buckets have an uploaded value


def test_out_of_order_and_duplicate_times():
    ts = np.array([T0 + 600, T0, T0 + 300, T0 + 300])
    values = np.array([30.0, 10.0, 20.0, 20.0])
    iv = counter_intervals(ts, values)
    assert iv.quantity.sum() == pytest.approx(20.0) and iv.flags[0] == FLAG_PARTIAL  # spans 600 of 900 s


def test_existing_interface_still_works_positionally():
    iv = counter_intervals(T0 + np.arange(3) * 300.0, np.array([1.0, 2.0, 3.0]), None, 900)
    assert iv.bucket.dtype == np.int64 and iv.flags.dtype == np.int32 and iv.quantity.sum() == 2.0
