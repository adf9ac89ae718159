"""Numba kernels: counter readings to consumption per 15-minute bucket, factors, roll-ups.

Readings arrive as three parallel arrays (point index, time in epoch seconds, value), sorted by
point, then time, then value (so two readings at the same time have one order whatever order they
came in); ``offsets[p]:offsets[p+1]`` are the readings of point ``p``. Each point
is independent, so the kernels run ``prange`` over points (two cores here, more in a centre).

The rules for one point's series (the plain-Python twin in :mod:`.reference` must agree):

- Non-finite values are ignored. The first finite reading is the baseline.
- A step up ``d >= 0`` is counted and spread over the buckets between the two readings in
  proportion to time (a zero-length step lands in the bucket of its time), unless:
  - the point has a plausible maximum rate and ``d > max_rate * max(dt, bucket)``: a spike. When
    the next reading falls back between the baseline and this one, the reading is skipped;
    otherwise the step is not counted and the baseline moves (FLAG_SPIKE either way);
  - whatever the rate, the next reading falls back between the baseline and this one, nearer the
    baseline than this reading (``base <= next < v`` and ``next - base < v - next``): this reading
    is an outlier (one garbage register read), skipped, baseline kept (FLAG_SPIKE). A rise that
    persists is never second-guessed without a rate limit.
- A step down looks one reading ahead. If the next reading is back at or above the baseline, or
  falls further, or there is none yet, this reading is a glitch: skipped, baseline kept
  (FLAG_BACKWARDS). If the drop persists (the next reading is between this one and the
  baseline): a rollover when the register wraps (``rollover`` > 0) and the wrapped difference is
  plausible (counted, FLAG_ROLLOVER); otherwise a reset (meter replaced or cleared): not counted,
  the interval across it contributes nothing, the baseline moves to the new value (FLAG_RESET).
  Either flag goes on every bucket from the one of the baseline to the one of this reading.
  Plausible means, with ``span = max(dt, bucket)``:
  - when the point has a rate: at most ``max_rate * span`` and at most half the register;
  - when it has none: at most ``ROLLOVER_MAX_SHARE`` of the register (the floor: a counter with
    no history still wraps near the top), or else at most half the register and at most
    ``ROLLOVER_RATE_MULTIPLE * observed * span``. ``observed`` is the counter's own rate: the
    largest quantity of a clean bucket (complete, flagged neither ROLLOVER nor RESET) among the
    ``RATE_WINDOW_BUCKETS`` buckets before the baseline's bucket, per second (0 without one).
    Those buckets are final when the drop is judged, and a verdict changes no bucket's
    cleanness (both flags cover the same buckets), so one verdict never changes another.
  Never a negative quantity, never a register-sized spike from a transient zero or from a
  replaced meter read as a wrap: a wrap is only believed up to what the counter can advance.
- ``prior`` (for a computation over a window of a longer history, e.g. the collector's): the
  clean-bucket quantities (0 for any other bucket) of the buckets up to and including the first
  reading's bucket, last element that bucket, as the whole history has them. They stand in for
  those buckets when the observed rate is taken (the window's own first bucket lacks the readings
  before the window). Empty: the readings are the whole history.
- Coverage is the share of the bucket spanned by counted steps; below FULL_COVERAGE the bucket is
  FLAG_PARTIAL.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .flags import (
    FLAG_BACKWARDS,
    FLAG_PARTIAL,
    FLAG_RESET,
    FLAG_ROLLOVER,
    FLAG_SPIKE,
    FULL_COVERAGE,
    RATE_WINDOW_BUCKETS,
    ROLLOVER_MAX_SHARE,
    ROLLOVER_RATE_MULTIPLE,
)


@njit(cache=True, inline="always")
def _next_finite(vals, i, hi):
    while i < hi and not np.isfinite(vals[i]):
        i += 1
    return i


@njit(cache=True, inline="always")
def _bucket_of(t, bsec):
    return np.int64(np.floor(t / bsec))


@njit(cache=True)
def point_span(ts, vals, lo, hi, bsec):
    """(first bucket, number of buckets) of the finite readings in [lo, hi); (0, 0) if none."""
    i = _next_finite(vals, lo, hi)
    if i >= hi:
        return np.int64(0), np.int64(0)
    j = hi - 1
    while not np.isfinite(vals[j]):
        j -= 1
    first = _bucket_of(np.float64(ts[i]), bsec)
    last = _bucket_of(np.float64(ts[j]), bsec)
    return first, last - first + 1


@njit(cache=True, parallel=True)
def bucket_range(ts, vals, offsets, bsec):
    """(first, last) bucket over all points' finite readings; (0, -1) when there are none."""
    npts = offsets.shape[0] - 1
    firsts = np.full(npts, np.iinfo(np.int64).max)
    lasts = np.full(npts, np.iinfo(np.int64).min)
    for p in prange(npts):
        first, nb = point_span(ts, vals, offsets[p], offsets[p + 1], bsec)
        if nb > 0:
            firsts[p] = first
            lasts[p] = first + nb - 1
    if npts == 0 or firsts.min() > lasts.max():
        return np.int64(0), np.int64(-1)
    return firsts.min(), lasts.max()


@njit(cache=True, inline="always")
def _falls_back(base_v, v, nxt):
    """True when ``nxt`` (the reading after ``v``) falls back between the baseline and ``v``."""
    return base_v <= nxt and nxt < v


@njit(cache=True, inline="always")
def _outlier(base_v, v, nxt):
    """True when ``v`` is a lone jump: the next reading falls back nearer the baseline than ``v``."""
    return base_v <= nxt and nxt < v and nxt - base_v < v - nxt


@njit(cache=True)
def observed_rate(base_b, first, qty, cov, flg, prior, bsec):
    """The counter's own rate when a drop whose step starts in bucket ``base_b`` is judged: the
    largest quantity of a clean bucket (complete, neither ROLLOVER nor RESET) among the
    ``RATE_WINDOW_BUCKETS`` buckets before ``base_b``, per second; 0 when there is none.
    ``prior[-1]`` stands for bucket ``first`` and the elements before it for the buckets before
    (see the module rules); ``cov`` is in seconds (the bucket arrays while they are filled)."""
    best = 0.0
    lo = base_b - RATE_WINDOW_BUCKETS
    own = first
    npr = prior.shape[0]
    if npr > 0:
        p0 = first - npr + 1
        for k in range(max(lo, p0), min(base_b, first + 1)):
            best = max(best, prior[k - p0])
        own = first + 1
    for k in range(max(lo, own), base_b):
        i = k - first
        if flg[i] & (FLAG_ROLLOVER | FLAG_RESET) == 0 and cov[i] / bsec >= FULL_COVERAGE:
            best = max(best, qty[i])
    return best / bsec


@njit(cache=True, inline="always")
def _wrap_limit(rollover, max_rate, dt, bsec, observed):
    """The largest wrapped difference accepted as a rollover (see the module rules)."""
    span = max(dt, bsec)
    if max_rate < np.inf:
        return min(0.5 * rollover, max_rate * span)
    return max(ROLLOVER_MAX_SHARE * rollover, min(0.5 * rollover, ROLLOVER_RATE_MULTIPLE * observed * span))


@njit(cache=True, inline="always")
def _spread(t0, b0, t1, d, flag, bsec, first, qty, cov, flg):
    """Add ``d`` over [t0, t1] in proportion to time (``cov`` in seconds); b0 is the bucket of t0."""
    if t1 <= t0:
        k = b0 - first
        qty[k] += d
        flg[k] |= flag
        return
    span = t1 - t0
    b = b0
    while b * bsec < t1:
        lo = max(t0, b * bsec)
        hi = min(t1, (b + 1) * bsec)
        k = b - first
        qty[k] += d * ((hi - lo) / span)
        cov[k] += hi - lo
        flg[k] |= flag
        b += 1


@njit(cache=True)
def point_buckets(ts, vals, lo, hi, rollover, max_rate, bsec, first, qty, cov, flg, cnt, prior):
    """Apply the counter rules to readings [lo, hi) of one point, adding into bucket arrays.

    ``qty``, ``cov``, ``flg`` and ``cnt`` (finite readings per bucket) are indexed by bucket -
    ``first``, start at zero and must cover the span of the finite readings (see
    :func:`point_span`). On return ``cov`` is the share of each bucket and PARTIAL is set.
    ``prior``: clean-bucket quantities up to bucket ``first`` (see the module rules), or empty.

    Most counted steps stay inside one bucket; their sums are kept in registers (``acc_*``) and
    stored when the bucket changes or another write needs the arrays. The additions happen in the
    same order as in the reference, so the results are bitwise the same.
    """
    acc_k = -1  # bucket index held in registers, -1 when none
    acc_q = acc_c = 0.0
    i = _next_finite(vals, lo, hi)
    if i < hi:
        base_t = np.float64(ts[i])
        base_b = _bucket_of(base_t, bsec)
        base_v = vals[i]
        cnt[base_b - first] += 1
        i = _next_finite(vals, i + 1, hi)
    while i < hi:
        t = np.float64(ts[i])
        b = _bucket_of(t, bsec)
        v = vals[i]
        cnt[b - first] += 1
        d = v - base_v
        dt = t - base_t
        j = _next_finite(vals, i + 1, hi)
        lone = j < hi and _outlier(base_v, v, vals[j])
        if d >= 0.0 and b == base_b and dt > 0.0 and not d > max_rate * bsec and not lone:
            # common case: a plausible step inside one bucket; d * ((t - base_t) / dt) is exactly d
            k = b - first
            if k != acc_k:
                if acc_k >= 0:
                    qty[acc_k] = acc_q
                    cov[acc_k] = acc_c
                acc_k, acc_q, acc_c = k, qty[k], cov[k]
            acc_q += d
            acc_c += dt
            base_t, base_v = t, v
            i = j
            continue
        if acc_k >= 0:  # store before the arrays are written another way
            qty[acc_k] = acc_q
            cov[acc_k] = acc_c
            acc_k = -1
        if d >= 0.0:
            if d > max_rate * max(dt, bsec):
                flg[b - first] |= FLAG_SPIKE
                if not (j < hi and _falls_back(base_v, v, vals[j])):
                    base_t, base_b, base_v = t, b, v  # the level persists: not counted, baseline moves
            elif lone:
                flg[b - first] |= FLAG_SPIKE  # a lone jump the next reading takes back: skipped
            else:
                _spread(base_t, base_b, t, d, 0, bsec, first, qty, cov, flg)
                base_t, base_b, base_v = t, b, v
        elif j >= hi or vals[j] >= base_v or vals[j] < v:
            flg[b - first] |= FLAG_BACKWARDS
        else:
            wrapped = v + rollover - base_v
            ok = rollover > 0.0 and wrapped >= 0.0
            if ok and max_rate < np.inf:
                ok = wrapped <= _wrap_limit(rollover, max_rate, dt, bsec, 0.0)
            elif ok and wrapped > ROLLOVER_MAX_SHARE * rollover:  # beyond the floor: the observed rate decides
                observed = observed_rate(base_b, first, qty, cov, flg, prior, bsec)
                ok = wrapped <= _wrap_limit(rollover, max_rate, dt, bsec, observed)
            if ok:
                _spread(base_t, base_b, t, wrapped, FLAG_ROLLOVER, bsec, first, qty, cov, flg)
            for k in range(base_b - first, b - first + 1):  # the buckets of the step, either way
                flg[k] |= FLAG_ROLLOVER if ok else FLAG_RESET
            base_t, base_b, base_v = t, b, v
        i = j
    if acc_k >= 0:
        qty[acc_k] = acc_q
        cov[acc_k] = acc_c
    for k in range(cov.shape[0]):
        cov[k] /= bsec
        if cov[k] < FULL_COVERAGE:
            flg[k] |= FLAG_PARTIAL


@njit(cache=True)
def series_intervals(ts, vals, rollover, max_rate, bsec, prior):
    """One point's readings (sorted by time) -> (bucket start, quantity, flags, coverage, readings).

    ``prior``: clean-bucket quantities up to the first reading's bucket (see the module rules), or empty."""
    n = ts.shape[0]
    first, nb = point_span(ts, vals, 0, n, bsec)
    qty = np.zeros(nb)
    cov = np.zeros(nb)
    flg = np.zeros(nb, dtype=np.int32)
    cnt = np.zeros(nb, dtype=np.int32)
    point_buckets(ts, vals, 0, n, rollover, max_rate, bsec, first, qty, cov, flg, cnt, prior)
    bucket = (first + np.arange(nb)) * np.int64(bsec)
    return bucket, qty, flg, cov, cnt


@njit(cache=True, parallel=True)
def batch_intervals(ts, vals, offsets, rollover, max_rate, bsec):
    """Many points -> (point index, bucket start, quantity, flags, coverage, readings), by point then bucket."""
    npts = offsets.shape[0] - 1
    firsts = np.zeros(npts, dtype=np.int64)
    counts = np.zeros(npts + 1, dtype=np.int64)
    for p in prange(npts):
        firsts[p], counts[p + 1] = point_span(ts, vals, offsets[p], offsets[p + 1], bsec)
    starts = np.cumsum(counts)
    total = starts[npts]
    point = np.empty(total, dtype=np.int32)
    bucket = np.empty(total, dtype=np.int64)
    qty = np.zeros(total)
    cov = np.zeros(total)
    flg = np.zeros(total, dtype=np.int32)
    cnt = np.zeros(total, dtype=np.int32)
    no_prior = np.empty(0)
    for p in prange(npts):
        a, b = starts[p], starts[p + 1]
        if a == b:
            continue
        lo, hi = offsets[p], offsets[p + 1]
        wrap, rate, first = rollover[p], max_rate[p], firsts[p]
        point_buckets(ts, vals, lo, hi, wrap, rate, bsec, first, qty[a:b], cov[a:b], flg[a:b], cnt[a:b], no_prior)
        for k in range(b - a):
            point[a + k] = p
            bucket[a + k] = (firsts[p] + k) * np.int64(bsec)
    return point, bucket, qty, flg, cov, cnt


@njit(cache=True, parallel=True)
def rollup_points(ts, vals, offsets, rollover, max_rate, bsec, origin, bucket_period, nper):
    """Readings -> (quantity, coverage, flags, buckets with a reading) per point and period.

    Buckets are not materialised beyond one point's span at a time. ``bucket_period[b - origin]``
    is the period index of bucket ``b`` (-1 outside the window). Coverage is summed in bucket
    units; divided by the buckets in the period it is the share backed by counted steps, and the
    buckets-with-a-reading count gives the upload completeness of the national rule.
    """
    npts = offsets.shape[0] - 1
    q = np.zeros((npts, nper))
    c = np.zeros((npts, nper))
    f = np.zeros((npts, nper), dtype=np.int32)
    r = np.zeros((npts, nper), dtype=np.int32)
    nmap = bucket_period.shape[0]
    no_prior = np.empty(0)
    for p in prange(npts):
        lo, hi = offsets[p], offsets[p + 1]
        first, nb = point_span(ts, vals, lo, hi, bsec)
        if nb == 0:
            continue
        qty = np.zeros(nb)
        cov = np.zeros(nb)
        flg = np.zeros(nb, dtype=np.int32)
        cnt = np.zeros(nb, dtype=np.int32)
        point_buckets(ts, vals, lo, hi, rollover[p], max_rate[p], bsec, first, qty, cov, flg, cnt, no_prior)
        for k in range(nb):
            idx = first + k - origin
            if idx < 0 or idx >= nmap:
                continue
            per = bucket_period[idx]
            if per < 0:
                continue
            q[p, per] += qty[k]
            c[p, per] += cov[k]
            f[p, per] |= flg[k]
            if cnt[k] > 0:
                r[p, per] += 1
    return q, c, f, r


@njit(cache=True, inline="always")
def _in_order(point, ts, vals, i):
    if point[i] != point[i - 1]:
        return point[i] > point[i - 1]
    if ts[i] != ts[i - 1]:
        return ts[i] > ts[i - 1]
    # at equal times by value with NaN last, as np.lexsort sorts: a NaN cannot hide two values out of order
    return np.isnan(vals[i]) or vals[i] >= vals[i - 1]


@njit(cache=True, parallel=True)
def is_sorted(point, ts, vals):
    """True when readings are ordered by point, time and (at equal times) value."""
    n = point.shape[0]
    chunks = 64
    ok = np.ones(chunks, dtype=np.bool_)
    for c in prange(chunks):
        for i in range(max(1, c * n // chunks), (c + 1) * n // chunks):
            if not _in_order(point, ts, vals, i):
                ok[c] = False
                break
    return ok.all()


@njit(cache=True, parallel=True)
def apply_factors(point, period, qty, to_canonical, tce_per_unit, co2_per_unit):
    """Per interval: quantity in the point's unit -> (canonical quantity, tce, CO2).

    ``tce_per_unit`` and ``co2_per_unit`` are (points x periods): factors change with the
    accounting year of the period (electricity data year Y-2).
    """
    n = qty.shape[0]
    canon = np.empty(n)
    tce = np.empty(n)
    co2 = np.empty(n)
    for i in prange(n):
        p = point[i]
        x = qty[i] * to_canonical[p]
        canon[i] = x
        tce[i] = x * tce_per_unit[p, period[i]]
        co2[i] = x * co2_per_unit[p, period[i]]
    return canon, tce, co2


@njit(cache=True, parallel=True)
def group_rows(values, group, ngroups, weight):
    """Sum rows of a (points x periods) matrix into (groups x periods), each row times weight[p].

    Parallel over periods so no two threads add into the same cell.
    """
    nper = values.shape[1]
    out = np.zeros((ngroups, nper))
    for j in prange(nper):
        for p in range(values.shape[0]):
            g = group[p]
            if g >= 0:
                out[g, j] += values[p, j] * weight[p]
    return out
