"""The numba kernels equal the plain-Python reference, and the counter rules hold on known cases.

Random series include rollovers at the register width (also after long gaps, judged by the
counter's observed rate), resets (replaced meters), transient zeros, lone spikes and garbage
register reads, non-finite values, gaps, duplicate times and out-of-order readings, with and
without a plausible maximum rate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbonwatch.accounting import kernels, reference
from carbonwatch.accounting.flags import (
    FLAG_BACKWARDS,
    FLAG_PARTIAL,
    FLAG_RESET,
    FLAG_ROLLOVER,
    FLAG_SPIKE,
    RATE_WINDOW_BUCKETS,
    ROLLOVER_MAX_SHARE,
    ROLLOVER_RATE_MULTIPLE,
)
from carbonwatch.accounting.intervals import batch_intervals, counter_intervals, point_limits, sort_readings
from carbonwatch.accounting.periods import period_map

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UINT32_001 = 2**32 * 0.01  # a uint32 register at scale 0.01 kWh wraps at 42,949,672.96 kWh


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
    if draw(st.booleans()):  # consumption at a steady rate: a long gap carries a wrap far beyond the floor
        incs = list(draw(st.sampled_from([0.05, 1.0, 4.0, 30.0])) * np.diff(ts))
    true = draw(st.sampled_from([0.0, 900.0, 53_000.0, 60_000.0, 30e6])) + np.concatenate([[0.0], np.cumsum(incs)])
    rollover = draw(st.sampled_from([None, 65536.0, 1000.0, UINT32_001]))
    values = np.mod(true, rollover) if rollover else true.copy()
    for i in range(n):
        kind = draw(st.sampled_from(["ok"] * 6 + ["zero", "reset", "spike", "garbage", "nan", "dip"]))
        if kind == "zero":
            values[i] = 0.0
        elif kind == "reset":  # meter replaced or cleared: counts on from near zero
            values[i:] -= values[i] - draw(st.sampled_from([0.0, 3.0]))
        elif kind == "spike":
            values[i] += 1e6
        elif kind == "garbage":  # an all-ones uint32 register read at scale 0.01
            values[i] = UINT32_001 - 0.01
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
    st.sampled_from([None, 0.05, 10.0]),
)
def test_clean_counter_total_is_first_to_last(incs, step, rollover, max_rate):
    """Without anomalies the buckets add up to the true consumption, rollovers included, whether
    or not a (sufficient) rate limit is set."""
    true = 123.0 + np.concatenate([[0.0], np.cumsum(incs)])
    ts = 1_750_000_000 + np.arange(len(true)) * float(step)
    values = np.mod(true, rollover) if rollover else true
    iv = counter_intervals(ts, values, rollover, max_rate=max_rate)
    assert iv.quantity.sum() == pytest.approx(true[-1] - true[0], rel=1e-9, abs=1e-9)
    assert not (iv.flags & (FLAG_BACKWARDS | FLAG_RESET | FLAG_SPIKE)).any()


@SETTINGS
@given(
    st.lists(st.sampled_from([0.0, 0.25, 3.0, 20.0]), min_size=3, max_size=60),
    st.sampled_from([60, 300, 900, 1800]),
    st.data(),
    st.sampled_from([None, 0.05, 10.0]),
)
def test_lone_outliers_are_skipped_with_or_without_a_rate(incs, step, data, max_rate):
    """Single garbage reads (each between good readings) never count: the total stays the true one."""
    true = 5_000.0 + np.concatenate([[0.0], np.cumsum(incs)])
    n = len(true)
    ts = 1_750_000_000 + np.arange(n) * float(step)
    picks = data.draw(st.sets(st.integers(1, n - 2), max_size=max(1, n // 3)))
    lone = sorted(i for i in picks if i - 1 not in picks)  # no two garbage reads in a row
    values = true.copy()
    for i in lone:
        values[i] = data.draw(st.sampled_from([true[i] + 100.0, true[i] + 53_000.0, UINT32_001 - 0.01, 1e12]))
    iv = counter_intervals(ts, values, max_rate=max_rate)
    want = reference.counter_buckets(list(zip(ts, values, strict=True)), None, max_rate)
    assert_equal_buckets(as_dict(iv), {b: tuple(v) for b, v in want.items()})
    assert iv.quantity.sum() == pytest.approx(true[-1] - true[0], rel=1e-9, abs=1e-9)
    assert bool((iv.flags & FLAG_SPIKE).any()) == bool(lone)
    assert not (iv.flags & (FLAG_RESET | FLAG_ROLLOVER)).any()


@SETTINGS
@given(
    st.floats(0.2, 0.9),
    st.sampled_from([0.0, 1.0, 3.0]),
    st.sampled_from([65536.0, UINT32_001]),
    st.sampled_from([None, 0.05]),
)
def test_a_replaced_meter_is_never_counted_as_a_wrap_worth_part_of_the_register(level, restart, rollover, max_rate):
    """A counter at any level below the top sixteenth of its register, replaced by one counting from
    near zero: the step across is a reset (flagged, not counted), never a rollover."""
    old = level * rollover
    values = np.array([old, old + 10.0, old + 20.0, restart, restart + 5.0, restart + 10.0])
    ts = T0 + np.arange(len(values)) * 300.0
    iv = counter_intervals(ts, values, rollover, max_rate=max_rate)
    want = reference.counter_buckets(list(zip(ts, values, strict=True)), rollover, max_rate)
    assert_equal_buckets(as_dict(iv), {b: tuple(v) for b, v in want.items()})
    assert iv.quantity.sum() == pytest.approx(30.0)
    flags = int(np.bitwise_or.reduce(iv.flags))
    assert flags & FLAG_RESET and not flags & FLAG_ROLLOVER


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


# --- review findings: garbage reads and replaced meters, with no rate configured -----------------


def test_one_garbage_register_read_is_not_42_gwh():
    """[100, 101, 42949672.95, 102, 103]: an all-ones uint32 read at scale 0.01 used to count
    42,949,574 kWh (flagged, but counted). It is a lone jump the next reading takes back: skipped."""
    ts = T0 + np.arange(5) * 300.0
    values = np.array([100.0, 101.0, UINT32_001 - 0.01, 102.0, 103.0])
    for rollover in (None, UINT32_001):
        for rate in (None, 1.0):
            iv = counter_intervals(ts, values, rollover, max_rate=rate)
            want = reference.counter_buckets(list(zip(ts, values, strict=True)), rollover, rate)
            assert_equal_buckets(as_dict(iv), {b: tuple(v) for b, v in want.items()})
            assert iv.quantity.sum() == pytest.approx(3.0), (rollover, rate)
            assert iv.flags[0] & FLAG_SPIKE
            assert not iv.flags[0] & (FLAG_ROLLOVER | FLAG_RESET)


def test_replaced_uint32_meter_reading_zero_is_a_reset_not_a_12_9_gwh_rollover():
    """A uint32 register at scale 0.01 sitting at 30e6 kWh, replaced, then reading 0, 5, 10: the wrap
    it would imply (12.9 GWh, 30% of the register) is implausible, so it is a reset: flagged, and
    the interval spanning it contributes nothing (no rebased guess)."""
    ts = T0 + np.arange(6) * 300.0  # two buckets of three readings
    values = np.array([30e6 - 20, 30e6 - 10, 30e6, 0.0, 5.0, 10.0])
    for rate in (None, 1.0):
        iv = counter_intervals(ts, values, UINT32_001, max_rate=rate)
        want = reference.counter_buckets(list(zip(ts, values, strict=True)), UINT32_001, rate)
        assert_equal_buckets(as_dict(iv), {b: tuple(v) for b, v in want.items()})
        assert list(iv.quantity) == pytest.approx([20.0, 10.0])
        assert iv.flags[1] & FLAG_RESET and not (iv.flags & FLAG_ROLLOVER).any()
        assert list(iv.coverage) == pytest.approx([2 / 3, 2 / 3])  # 600 -> 900 s is not counted


def test_a_wrap_near_the_top_of_the_register_is_still_a_rollover():
    values = np.array([UINT32_001 - 30.0, UINT32_001 - 10.0, 5.0, 25.0])
    iv = counter_intervals(T0 + np.arange(4) * 300.0, values, UINT32_001)
    assert iv.quantity.sum() == pytest.approx(55.0)
    assert iv.flags[0] & FLAG_ROLLOVER and not iv.flags[0] & (FLAG_RESET | FLAG_SPIKE)


def test_the_configured_rate_decides_a_large_wrap():
    # uint16 register: 62,000 -> 2,000 implies 5,536 (8% of the register) in 5 minutes
    values = np.array([60_000.0, 62_000.0, 2_000.0, 2_100.0])
    ts = T0 + np.arange(4) * 300.0
    without = counter_intervals(ts, values, 65_536.0)
    assert without.quantity.sum() == pytest.approx(2_000.0 + 100.0) and without.flags[0] & FLAG_RESET
    rated = counter_intervals(ts, values, 65_536.0, max_rate=10.0)  # 10 kWh/s: 9,000 per bucket is plausible
    assert rated.quantity.sum() == pytest.approx(2_000.0 + 5_536.0 + 100.0) and rated.flags[0] & FLAG_ROLLOVER
    slow = counter_intervals(ts, values, 65_536.0, max_rate=3.0)  # 2,700 per bucket: the wrap is not plausible
    assert slow.flags[0] & FLAG_RESET and slow.quantity.sum() == pytest.approx(2_100.0)


def test_a_small_dip_after_a_real_step_does_not_make_the_step_a_spike():
    # 110 is followed by 109.99: nearer 110 than the baseline 101, so 110 counts and 109.99 is the glitch
    iv = counter_intervals(T0 + np.arange(5) * 120.0, np.array([100.0, 101.0, 110.0, 109.99, 111.0]))
    assert iv.quantity.sum() == pytest.approx(11.0)
    assert iv.flags[0] & FLAG_BACKWARDS and not iv.flags[0] & FLAG_SPIKE


def test_a_rise_that_persists_is_counted_without_a_rate():
    """Without a rate a persistent rise cannot be told from real use: counted, not second-guessed."""
    iv = counter_intervals(T0 + np.arange(4) * 300.0, np.array([100.0, 101.0, 200.0, 201.0]))
    assert iv.quantity.sum() == pytest.approx(101.0) and not (iv.flags & FLAG_SPIKE).any()


# --- review findings: wraps after long gaps, with no rate configured -----------------------------

UINT16 = 65_536.0  # a uint16 register at scale 1 kWh


def long_gap_wrap(history_minutes: int, poll: float = 300.0, per_poll: float = 1_300.0):
    """A uint16 kWh counter on a 15.6 MW load (1,300 kWh per 5 minutes) read every ``poll``
    seconds for ``history_minutes``, then again 75 minutes later across a wrap (19,500 kWh), then
    twice more: (ts, values, true consumption)."""
    k = int(history_minutes * 60 // poll)
    rate = per_poll / poll
    t_before = T0 + np.arange(k + 1) * poll
    t_after = t_before[-1] + 4_500.0 + np.arange(3) * poll
    ts = np.r_[t_before, t_after]
    true = 62_000.0 - k * per_poll + (ts - T0) * rate  # 62,000 kWh when the gap starts
    return ts, np.mod(true, UINT16), true[-1] - true[0]


def test_a_wrap_after_a_75_minute_gap_is_counted_in_full():
    """Review example: a uint16 counter at scale 1 read again 75 minutes later across a wrap (real
    19,500 kWh, 30% of the register) was a reset (19,500 lost, flags 16|4) unless max_rate was set.
    Its own history (complete 15-minute buckets at 1,300 kWh per 5 minutes) makes the wrap plausible."""
    ts, values, total = long_gap_wrap(history_minutes=60)
    for rate in (None, 50_000.0 / 3600):  # none, or the site file's max_rate of 50 MWh/h
        iv = counter_intervals(ts, values, UINT16, max_rate=rate)
        want = reference.counter_buckets(list(zip(ts, values, strict=True)), UINT16, rate)
        assert_equal_buckets(as_dict(iv), {b: tuple(v) for b, v in want.items()})
        assert iv.quantity.sum() == pytest.approx(total), rate
        assert (iv.flags & FLAG_ROLLOVER).any() and not (iv.flags & FLAG_RESET).any()


def test_a_long_gap_wrap_with_no_history_needs_the_window_history_or_a_rate():
    """Without any complete bucket before the gap there is no observed rate: only the floor (1/16 of
    the register) is believed, and the 19,500 kWh wrap is a reset, as before. Given the history as
    ``prior`` (a window of a longer series, as the collector computes it), it is counted in full."""
    ts, values, _ = long_gap_wrap(history_minutes=60)
    window = slice(len(ts) - 4, None)  # the last reading before the gap and those after it
    alone = counter_intervals(ts[window], values[window], UINT16)
    assert alone.flags[0] & FLAG_RESET and not (alone.flags & FLAG_ROLLOVER).any()
    assert alone.quantity.sum() == pytest.approx(2 * 1_300.0)
    whole = counter_intervals(ts, values, UINT16)
    prior = window_prior(whole, ts[window][0])
    got = counter_intervals(ts[window], values[window], UINT16, prior=prior)
    assert got.quantity.sum() == pytest.approx(19_500.0 + 2 * 1_300.0)
    assert (got.flags & FLAG_ROLLOVER).any() and not (got.flags & FLAG_RESET).any()
    with_rate = counter_intervals(ts[window], values[window], UINT16, max_rate=50_000.0 / 3600)
    assert with_rate.quantity.sum() == pytest.approx(19_500.0 + 2 * 1_300.0)


def test_a_uint32_wh_register_wraps_after_a_30_hour_gap_on_a_10_mw_load():
    """A uint32 Wh register wraps at 4,294,967,296 Wh; its floor (1/16) is 268 MWh, 27 hours of a
    10 MW load. Hourly readings for a day, then 30 hours without: 300 MWh across the wrap, counted."""
    r = 2.0**32
    per_hour = 10e6  # Wh
    ts = np.r_[T0 + np.arange(25) * 3600.0, T0 + (24 + 30 + np.arange(3)) * 3600.0]
    true = (r - 25 * per_hour) + (ts - T0) / 3600.0 * per_hour
    values = np.mod(true, r)
    iv = counter_intervals(ts, values, r)
    want = reference.counter_buckets(list(zip(ts, values, strict=True)), r, None)
    assert_equal_buckets(as_dict(iv), {b: tuple(v) for b, v in want.items()})
    assert iv.quantity.sum() == pytest.approx(true[-1] - true[0], rel=1e-12)
    assert (iv.flags & FLAG_ROLLOVER).any() and not (iv.flags & FLAG_RESET).any()


def test_a_replaced_meter_with_a_long_history_is_still_a_reset():
    """The rule the floor exists for stays: a uint32 x 0.01 register at 30e6 kWh on a real load (here
    2 MW, a day of 5-minute readings), replaced over a day and reading 0, 5, 10, would be a 12.9 GWh
    wrap. Four times its highest 15-minute rate over a day is 192 MWh: a reset, nothing counted across."""
    ts_before = T0 + np.arange(289) * 300.0
    before = 30e6 - 288 * 2_000.0 / 12 + np.arange(289) * 2_000.0 / 12
    ts = np.r_[ts_before, ts_before[-1] + 86_400.0 + np.arange(3) * 300.0]
    values = np.r_[before, [0.0, 5.0, 10.0]]
    iv = counter_intervals(ts, values, UINT32_001)
    want = reference.counter_buckets(list(zip(ts, values, strict=True)), UINT32_001, None)
    assert_equal_buckets(as_dict(iv), {b: tuple(v) for b, v in want.items()})
    assert iv.quantity.sum() == pytest.approx(before[-1] - before[0] + 10.0)
    assert (iv.flags & FLAG_RESET).any() and not (iv.flags & FLAG_ROLLOVER).any()
    across = (iv.bucket >= ts_before[-1] - ts_before[-1] % 900) & (iv.bucket < ts[-3])
    assert (iv.flags[across] & FLAG_RESET).all(), "every bucket of the step across the reset is flagged"
    assert iv.quantity[across][1:].sum() == 0.0


@st.composite
def long_gap_series(draw, max_segments: int = 6) -> dict:
    """A counter on a steady load read in runs of polls separated by gaps of up to 30 hours, on a
    register a long gap can wrap by more than the floor; the load across a gap is 0 to 8 times the
    load before it; now and then a transient zero, a garbage read or a replaced meter; sometimes a
    rate limit; readings in any order."""
    r = draw(st.sampled_from([UINT16, 1e6, UINT32_001, 2.0**32]))
    rate = r * draw(st.floats(0.0005, 0.01)) / 900.0  # 0.05% to 1% of the register per bucket
    t = float(draw(st.integers(1_700_000_000, 1_800_000_000)))
    level = draw(st.floats(0.0, 0.99)) * r
    ts, true = [], []
    for _ in range(draw(st.integers(1, max_segments))):
        poll = draw(st.sampled_from([60.0, 300.0, 900.0, 1234.5]))
        for _ in range(draw(st.integers(1, 30))):
            ts.append(t)
            true.append(level)
            t += poll
            level += rate * poll
        gap = draw(st.floats(900.0, 30 * 3600.0))
        t += gap - poll
        level += rate * draw(st.sampled_from([0.0, 0.5, 1.0, 3.0, 8.0])) * (gap - poll)
    ts, values = np.array(ts), np.mod(np.array(true), r)
    for i in range(len(values)):
        kind = draw(st.sampled_from(["ok"] * 20 + ["zero", "garbage", "reset"]))
        if kind == "zero":
            values[i] = 0.0
        elif kind == "garbage":
            values[i] = r - 1.0
        elif kind == "reset":
            values[i:] = np.mod(values[i:] - values[i] + draw(st.sampled_from([0.0, 3.0])), r)
    max_rate = draw(st.sampled_from([None, None, None, rate * 1.5]))
    order = draw(st.permutations(range(len(ts)))) if draw(st.booleans()) else list(range(len(ts)))
    return {"ts": ts[order], "values": values[order], "rollover": r, "max_rate": max_rate}


@SETTINGS
@given(long_gap_series())
def test_long_gap_wraps_kernel_equals_reference(s):
    iv = counter_intervals(s["ts"], s["values"], s["rollover"], max_rate=s["max_rate"])
    want = reference.counter_buckets(list(zip(s["ts"], s["values"], strict=True)), s["rollover"], s["max_rate"])
    if len(s["ts"]) < 2:
        assert len(iv.bucket) == 0
        return
    assert_equal_buckets(as_dict(iv), {b: tuple(v) for b, v in want.items()})
    assert (iv.quantity >= 0).all()
    many = [s, {**s, "max_rate": None}]
    point = np.concatenate([np.full(len(x["ts"]), p) for p, x in enumerate(many)])
    got = batch_intervals(
        point,
        np.concatenate([x["ts"] for x in many]),
        np.concatenate([x["values"] for x in many]),
        np.array([x["rollover"] for x in many]),
        np.array([math.inf if x["max_rate"] is None else x["max_rate"] for x in many]),
    )
    for p, x in enumerate(many):
        want = reference.counter_buckets(list(zip(x["ts"], x["values"], strict=True)), x["rollover"], x["max_rate"])
        mine = got.point == p
        cols = (got.bucket[mine], got.quantity[mine], got.flags[mine], got.coverage[mine], got.readings[mine])
        rows = {int(b): (float(q), int(f), float(c), int(r)) for b, q, f, c, r in zip(*cols, strict=True)}
        assert_equal_buckets(rows, {b: tuple(v) for b, v in want.items()})


@SETTINGS
@given(
    st.sampled_from([UINT16, 1e6, UINT32_001]),
    st.floats(0.0005, 0.002),  # the load as a share of the register per hour
    st.sampled_from([60.0, 300.0, 900.0]),
    st.floats(0.02, 0.95),  # the advance across the gap as a share of the register
    st.floats(0.01, 0.99),  # where the counter is when the gap starts: this share of the advance below the top
    st.sampled_from([0.5, 1.0, 3.0, 6.0]),  # the gap's load relative to the history's
)
def test_a_wrap_across_a_gap_is_counted_when_the_observed_rate_reaches_it(r, load, poll, share, where, gap_load):
    """A day of steady readings, a gap across the wrap: counted in full when the wrap is within the
    floor, or at most half the register and within 4x the observed rate over the gap; else a reset
    that counts nothing across."""
    rate = load * r / 3600.0
    advance = share * r
    hours = advance / (rate * gap_load) / 3600.0
    ts_before = T0 + np.arange(int(86_400 / poll) + 1) * poll
    before = r - where * advance - rate * (ts_before[-1] - ts_before)
    ts_after = ts_before[-1] + hours * 3600.0 + np.arange(3) * poll
    after = before[-1] + advance + np.arange(3) * poll * rate
    ts, true = np.r_[ts_before, ts_after], np.r_[before, after]
    values = np.mod(true, r)
    iv = counter_intervals(ts, values, r)
    want = reference.counter_buckets(list(zip(ts, values, strict=True)), r, None)
    assert_equal_buckets(as_dict(iv), {b: tuple(v) for b, v in want.items()})
    n = len(ts_before)
    wrapped = values[n] + r - values[n - 1]
    clean = (iv.flags == 0) & (iv.bucket < ts_before[-1])
    observed = iv.quantity[clean].max() / 900.0
    span = max(ts[n] - ts[n - 1], 900.0)
    plausible = wrapped <= max(ROLLOVER_MAX_SHARE * r, min(0.5 * r, ROLLOVER_RATE_MULTIPLE * observed * span))
    counted = true[-1] - true[0] if plausible else (before[-1] - before[0]) + (after[-1] - after[0])
    assert iv.quantity.sum() == pytest.approx(counted, rel=1e-9)
    assert bool((iv.flags & FLAG_ROLLOVER).any()) == plausible
    if wrapped <= ROLLOVER_MAX_SHARE * r or (wrapped <= 0.5 * r and gap_load <= ROLLOVER_RATE_MULTIPLE):
        assert plausible, "within the floor, or within half the register and the counter's own rate"
    if wrapped > 0.5 * r * (1 + 1e-9) or (wrapped > ROLLOVER_MAX_SHARE * r * (1 + 1e-9) and gap_load > 4.001):
        assert not plausible, "beyond half the register, or beyond 4x the counter's own rate"


def window_prior(whole, first_t: float) -> np.ndarray:
    """The ``prior`` of a window whose first reading is at ``first_t``, from a whole-history result:
    clean-bucket quantities of the RATE_WINDOW_BUCKETS buckets before its bucket and that bucket."""
    first = int(first_t // 900) * 900
    prior = np.zeros(RATE_WINDOW_BUCKETS + 1)
    for b, q, f in zip(whole.bucket, whole.quantity, whole.flags, strict=True):
        k = (int(b) - first) // 900 + RATE_WINDOW_BUCKETS
        if 0 <= k <= RATE_WINDOW_BUCKETS and not f & (FLAG_PARTIAL | FLAG_ROLLOVER | FLAG_RESET):
            prior[k] = q
    return prior


@SETTINGS
@given(
    st.one_of(series(max_n=30), long_gap_series(max_segments=3)),
    st.integers(4, 200),
    st.sampled_from([60.0, 300.0, 900.0, 1800.0]),
    st.data(),
)
def test_a_window_with_its_prior_equals_the_whole_history(tail, n_head, poll, data):
    """The collector's premise: a computation from an accepted reading (here one inside a steady,
    clean stretch) over the rest of the series, given ``prior`` from the whole history, gives the
    whole history's buckets after the window's first bucket, wraps after long gaps included."""
    rollover = tail["rollover"]
    max_rate = tail["max_rate"]
    rate = data.draw(st.sampled_from([0.05, 1.0, 4.0]))
    ts_head = T0 - 10 * 86_400 + np.arange(n_head) * poll
    head = 100.0 + (ts_head - ts_head[0]) * rate
    shift = ts_head[-1] + poll - np.nanmin(tail["ts"])
    ts = np.r_[ts_head, tail["ts"] + shift]
    true_head = head if not rollover else np.mod(head, rollover)
    values = np.r_[true_head, tail["values"]]
    split = data.draw(st.integers(0, n_head - 2))  # a reading of the steady stretch, confirmed by the next
    if rollover and head[split + 1] >= rollover:
        return  # the head wrapped before it or right after it: not a reading a window starts on
    whole = counter_intervals(ts, values, rollover, max_rate=max_rate)
    prior = window_prior(whole, ts[split])
    part = counter_intervals(ts[split:], values[split:], rollover, max_rate=max_rate, prior=prior)
    want = reference.counter_buckets(
        list(zip(ts[split:], values[split:], strict=True)), rollover, max_rate, prior=list(prior)
    )
    assert_equal_buckets(as_dict(part), {b: tuple(v) for b, v in want.items()})
    after = int(ts[split] // 900) * 900 + 900
    got = {b: v for b, v in as_dict(part).items() if b >= after}
    assert_equal_buckets(got, {b: v for b, v in as_dict(whole).items() if b >= after})
