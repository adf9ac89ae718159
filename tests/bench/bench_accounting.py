"""Benchmark: the accounting pipeline on counter readings, against pandas and plain NumPy.

Full pipeline = counter differences (rollover, glitches, lone spikes, resets), apportioning to 15-minute
buckets, unit conversion and factors, roll-up by point, enterprise and province per Beijing day.
Measured in readings per second, in one run, against:

- pandas groupby doing the same work (the usual way to write it),
- plain NumPy doing the same work (vectorised, no numba),
- a NumPy copy of the input arrays into arrays allocated beforehand (the memory-bandwidth floor:
  reading the input once and writing it once, with no page faults of fresh memory).

Goal: >= 20x pandas, and within 4x of the copy floor. The baselines run on the first
``--baseline-readings`` readings (whole points) of the same data, to bound their memory; every
implementation's result is checked against the pipeline's on that subset, so they did the same
work. Prints human-readable lines, then one JSON object as the last line.

    .venv/bin/python tests/bench/bench_accounting.py            # 100 million readings
    .venv/bin/python tests/bench/bench_accounting.py --quick    # 2 million, for CI
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import time

import numpy as np

from carbonwatch.accounting.flags import (
    FULL_COVERAGE,
    RATE_WINDOW_BUCKETS,
    ROLLOVER_MAX_SHARE,
    ROLLOVER_RATE_MULTIPLE,
)
from carbonwatch.accounting.pipeline import PointInfo, point_factors, rollup

BUCKET = 900.0
DAY0 = 1_748_736_000  # 2025-06-01 00:00 Beijing time (UTC epoch seconds)
ROLLOVER = 10_000.0  # register width of the wrapping points (about two wraps per point)


def make_readings(n: int, npts: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[PointInfo]]:
    """Readings sorted by point and time (as a database returns them) with rollovers (some after a long
    gap), zeros, spikes, resets."""
    rng = np.random.default_rng(seed)
    per = n // npts
    n = per * npts
    point = np.repeat(np.arange(npts, dtype=np.int32), per)
    step = np.full(n, 60.0)
    step += rng.integers(-2, 3, n)  # poll jitter
    starts = np.arange(0, n, per)
    step[starts] = rng.integers(0, 900, npts)  # each point starts somewhere in the first bucket
    ts = np.cumsum(step)
    ts -= np.repeat(ts[starts] - step[starts], per)
    ts += DAY0
    del step
    value = rng.uniform(0.0, 10.0, n)
    value = np.cumsum(value, out=value)
    value -= np.repeat(value[starts] - rng.uniform(0, 5000, npts), per)
    wraps = np.arange(npts) % 2 == 0  # half the points wrap at ROLLOVER
    # Every other wrapping point loses 3 hours of readings just before its first wrap: the step
    # across the gap wraps by about 900 (9% of the register, beyond the 1/16 floor), which the
    # point's observed rate (about 75 per complete bucket) makes plausible: counted as a rollover.
    gap = 3 * 3600.0
    for p in np.flatnonzero(np.arange(npts) % 4 == 0):
        seg = value[starts[p] : starts[p] + per]
        j = int(np.argmax(seg // ROLLOVER > seg[0] // ROLLOVER))
        if 40 <= j <= per - 5:
            k = starts[p] + j - 3
            ts[k : starts[p] + per] += gap
            value[k : starts[p] + per] += 5.0 / 60.0 * gap  # the load (about 5 per minute) goes on in the gap
    mask = np.repeat(wraps, per)
    np.mod(value, ROLLOVER, out=value, where=mask)
    del mask
    # Anomalies on the non-wrapping points, each with good readings either side (the vectorised
    # baselines only see immediate neighbours): transient zeros at offsets 2 mod 4, lone garbage
    # reads (an all-ones uint32 register at scale 0.01) at 0 mod 4, resets at 0 mod 4.
    plain = np.arange(1, npts, 2)
    idx = rng.choice(np.arange(2, per - 2, 4), size=max(1, per // 1000), replace=False)
    zeros = (starts[plain][:, None] + idx[None, :]).ravel()
    value[zeros] = 0.0
    reset_at = 4 * (per // 8)
    spots = np.setdiff1d(np.arange(4, per - 4, 4), [reset_at])
    idx = rng.choice(spots, size=max(1, per // 2000), replace=False)
    value[(starts[plain][:, None] + idx[None, :]).ravel()] = 2**32 * 0.01 - 0.01
    for p in rng.choice(plain, size=max(1, npts // 50), replace=False):
        k = starts[p] + reset_at
        value[k : starts[p] + per] -= value[k] - 3.0
    provinces = ["140000", "370000", "630000", "640000", "320000", "440000"]
    points = []
    kinds = {0: ("natural_gas", "Nm3", "import"), 1: ("heat", "GJ", "import"), 2: ("electricity", "kWh", "export")}
    for p in range(npts):
        ent = p // 20
        prov = provinces[ent % len(provinces)]
        carrier, unit, direction = kinds.get(p % 10, ("electricity", "kWh", "import"))
        points.append(
            PointInfo(
                f"p{p}",
                unit,
                carrier,
                direction,
                province=prov,
                rollover=ROLLOVER if wraps[p] else None,
                keys={"enterprise": f"e{ent}", "province": prov},
            )
        )
    return point, ts, value, points


# --- the same work without numba -------------------------------------------------------------------


def wrapped_or_nothing(p, t0, t1, d, b0, one, rep, b, lo, hi, rollover):
    """Per step (the drops matter): the wrapped difference where the wrap is plausible, else 0 (a
    reset). Plausible: within 1/16 of the register, or within half of it and 4x the point's
    observed rate (its largest clean bucket, complete and crossed by no drop, in the day before)."""
    npts = len(rollover)
    b1 = np.floor(t1 / BUCKET)
    bmin = int(b0.min()) - RATE_WINDOW_BUCKETS
    nbk = int(b1.max()) - bmin + 1
    plain = d >= 0
    cell = p[one] * nbk + (b0[one] - bmin).astype(np.int64)
    q = np.bincount(cell, weights=np.where(plain[one], d[one], 0.0), minlength=npts * nbk)
    cov = np.bincount(cell, weights=np.where(plain[one], (t1 - t0)[one], 0.0), minlength=npts * nbk)
    cell = p[rep] * nbk + (b - bmin).astype(np.int64)
    spread = d[rep] * ((hi - lo) / (t1[rep] - t0[rep]))
    q += np.bincount(cell, weights=np.where(plain[rep], spread, 0.0), minlength=npts * nbk)
    cov += np.bincount(cell, weights=np.where(plain[rep], hi - lo, 0.0), minlength=npts * nbk)
    drops = np.flatnonzero(~plain)
    nf = (b1[drops] - b0[drops] + 1).astype(np.int64)  # a drop's step flags every bucket it touches
    first = np.repeat(b0[drops] - bmin, nf).astype(np.int64)
    k = np.arange(nf.sum()) - np.repeat(np.cumsum(nf) - nf, nf)
    crossed = np.zeros(npts * nbk, dtype=bool)
    crossed[np.repeat(p[drops], nf) * nbk + first + k] = True
    clean = np.where((cov / BUCKET >= FULL_COVERAGE) & ~crossed, q, 0.0).reshape(npts, nbk)
    window = (b0[drops] - bmin).astype(np.int64)[:, None] - RATE_WINDOW_BUCKETS + np.arange(RATE_WINDOW_BUCKETS)
    observed = clean[p[drops][:, None], window].max(axis=1, initial=0.0) / BUCKET
    wrap = rollover[p[drops]]
    wrapped = d[drops] + wrap
    span = np.maximum(t1[drops] - t0[drops], BUCKET)
    plausible = (wrapped <= ROLLOVER_MAX_SHARE * wrap) | (
        (wrapped <= 0.5 * wrap) & (wrapped <= ROLLOVER_RATE_MULTIPLE * observed * span)
    )
    out = np.zeros(len(d))
    out[drops] = np.where((wrap > 0) & (wrapped >= 0) & plausible, wrapped, 0.0)
    return out


def numpy_pipeline(point, ts, value, rollover, factor, ent_of, prov_of, nent, nprov, day0, ndays):
    """Vectorised NumPy: the kernel rules for isolated anomalies, then bincount roll-ups."""
    first = np.r_[True, point[1:] != point[:-1]]
    last = np.r_[point[1:] != point[:-1], True]
    prev = np.r_[np.nan, value[:-1]]
    nxt = np.r_[value[1:], np.nan]
    prev[first] = np.nan
    nxt[last] = np.nan
    drop = value < prev
    persists = (nxt >= value) & (nxt < prev)
    lone = (value > prev) & (nxt >= prev) & (nxt < value) & (nxt - prev < value - nxt)  # taken back
    keep = ~(drop & ~persists) & ~lone  # a drop that does not persist is a glitch, a lone jump a spike
    point, ts, value = point[keep], ts[keep], value[keep]
    same = point[1:] == point[:-1]
    t0, t1 = ts[:-1][same], ts[1:][same]
    d = (value[1:] - value[:-1])[same]
    p = point[1:][same]
    b0 = np.floor(t0 / BUCKET)
    nb = np.maximum(np.ceil(t1 / BUCKET) - b0, 1).astype(np.int64)
    one = nb == 1
    multi = np.flatnonzero(~one)
    rep = np.repeat(multi, nb[multi])
    k = np.arange(len(rep)) - np.repeat(np.cumsum(nb[multi]) - nb[multi], nb[multi])
    b = b0[rep] + k
    lo = np.maximum(t0[rep], b * BUCKET)
    hi = np.minimum(t1[rep], (b + 1) * BUCKET)
    d = np.where(d >= 0, d, wrapped_or_nothing(p, t0, t1, d, b0, one, rep, b, lo, hi, rollover))  # resets: 0
    qty = np.bincount(
        p[one] * ndays + ((b0[one] * BUCKET + 28800) // 86400 - day0).astype(np.int64),
        weights=d[one],
        minlength=len(rollover) * ndays,
    )
    share = d[rep] * (hi - lo) / (t1[rep] - t0[rep])
    day = ((b * BUCKET + 28800) // 86400 - day0).astype(np.int64)
    qty += np.bincount(p[rep] * ndays + day, weights=share, minlength=len(rollover) * ndays)
    by_point = qty.reshape(len(rollover), ndays)
    co2 = by_point * factor[:, None]
    ent = np.zeros((nent, ndays))
    prov = np.zeros((nprov, ndays))
    np.add.at(ent, ent_of, co2)
    np.add.at(prov, prov_of, co2)
    return by_point, ent, prov


def pandas_pipeline(point, ts, value, rollover, factor, ent_of, prov_of, day0, ndays):
    """pandas groupby: the same rules written the way an analyst would."""
    import pandas as pd

    df = pd.DataFrame({"point": point, "ts": ts, "value": value})
    g = df.groupby("point", sort=False)["value"]
    prev, nxt = g.shift(1), g.shift(-1)
    v = df["value"]
    drop = v < prev
    persists = (nxt >= v) & (nxt < prev)
    lone = (v > prev) & (nxt >= prev) & (nxt < v) & (nxt - prev < v - nxt)
    df = df[~(drop & ~persists) & ~lone]
    g = df.groupby("point", sort=False)
    df = df.assign(t0=g["ts"].shift(1), d=g["value"].diff()).dropna(subset=["t0"])
    b0 = np.floor(df["t0"] / BUCKET)
    df["nb"] = np.maximum(np.ceil(df["ts"] / BUCKET) - b0, 1).astype("int64")
    df["b0"] = b0
    parts = df.loc[df.index.repeat(df["nb"])].copy()
    parts["k"] = parts.groupby(level=0).cumcount()
    parts["b"] = parts["b0"] + parts["k"]
    lo = np.maximum(parts["t0"], parts["b"] * BUCKET)
    hi = np.minimum(parts["ts"], (parts["b"] + 1) * BUCKET)
    parts["cov"] = np.where(parts["nb"] == 1, parts["ts"] - parts["t0"], hi - lo)
    with np.errstate(invalid="ignore", divide="ignore"):  # zero-length steps: the whole delta, below
        frac = (hi - lo) / (parts["ts"] - parts["t0"])
    # The observed rate: buckets complete with counted steps up and crossed by no drop (whatever its
    # verdict, a drop flags every bucket its step touches); per drop, the largest in the day before.
    upward = (parts["d"] >= 0).to_numpy()
    up = parts[upward]
    grid = up.assign(q=np.where(up["nb"] == 1, up["d"], up["d"].to_numpy() * frac.to_numpy()[upward]))
    grid = grid.groupby(["point", "b"])[["q", "cov"]].sum()
    drops = df[df["d"] < 0]
    touched = drops.loc[drops.index.repeat((np.floor(drops["ts"] / BUCKET) - drops["b0"] + 1).astype("int64"))]
    touched = pd.MultiIndex.from_arrays([touched["point"], touched["b0"] + touched.groupby(level=0).cumcount()])
    clean = grid.loc[(grid["cov"] / BUCKET >= FULL_COVERAGE) & ~grid.index.isin(touched), "q"]
    before = drops.loc[drops.index.repeat(RATE_WINDOW_BUCKETS)]
    before = before.assign(b=before["b0"] - 1 - before.groupby(level=0).cumcount())
    found = clean.reindex(pd.MultiIndex.from_arrays([before["point"], before["b"]])).to_numpy()
    observed = pd.Series(found, index=before.index).groupby(level=0).max().fillna(0.0) / BUCKET
    observed = observed.reindex(df.index, fill_value=0.0)
    wrap = df["point"].map(pd.Series(rollover))
    wrapped = df["d"] + wrap
    span = np.maximum(df["ts"] - df["t0"], BUCKET)
    plausible = (wrapped <= ROLLOVER_MAX_SHARE * wrap) | (
        (wrapped <= 0.5 * wrap) & (wrapped <= ROLLOVER_RATE_MULTIPLE * observed * span)
    )
    is_wrap = (df["d"] < 0) & (wrap > 0) & (wrapped >= 0) & plausible
    parts["d"] = df["d"].where(df["d"] >= 0, wrapped.where(is_wrap, 0.0)).reindex(parts.index)  # resets: 0
    with np.errstate(invalid="ignore", divide="ignore"):
        share = parts["d"] * (hi - lo) / (parts["ts"] - parts["t0"])
    parts["q"] = np.where(parts["nb"] == 1, parts["d"], share)
    parts["day"] = ((parts["b"] * BUCKET + 28800) // 86400 - day0).astype("int64")
    by_point = parts.groupby(["point", "day"])["q"].sum()
    co2 = by_point * by_point.index.get_level_values("point").map(pd.Series(factor)).to_numpy()
    frame = co2.rename("co2").reset_index()
    frame["ent"] = frame["point"].map(pd.Series(ent_of))
    frame["prov"] = frame["point"].map(pd.Series(prov_of))
    ent = frame.groupby(["ent", "day"])["co2"].sum()
    prov = frame.groupby(["prov", "day"])["co2"].sum()
    out = np.zeros((len(rollover), ndays))
    out[by_point.index.get_level_values(0), by_point.index.get_level_values(1)] = by_point.to_numpy()
    return out, ent, prov


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 million readings (CI)")
    ap.add_argument("--readings", type=int, default=100_000_000)
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument("--baseline-readings", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.quick:
        args.readings, args.points, args.baseline_readings, args.repeat = 2_000_000, 1_000, 1_000_000, 2

    t = time.perf_counter()
    point, ts, value, points = make_readings(args.readings, args.points)
    n = len(point)
    print(
        f"data: {n:,} readings of {len(points):,} points ({n // len(points):,} each, 60 s polls) "
        f"in {time.perf_counter() - t:.1f} s; input {(point.nbytes + ts.nbytes + value.nbytes) / 2**30:.2f} GiB"
    )

    # warm-up: compile or load the cached kernels outside the timing
    rollup(
        point[: 2 * (n // len(points))],
        ts[: 2 * (n // len(points))],
        value[: 2 * (n // len(points))],
        points[:2],
        period="day",
        levels=("enterprise", "province"),
    )

    def pipeline(p=point, t_=ts, v=value, pts=points):
        return rollup(p, t_, v, pts, period="day", levels=("enterprise", "province"))

    t_pipe, r = best_of(pipeline, args.repeat)

    # Copy into arrays allocated beforehand: pure memory traffic, no page faults of fresh memory.
    dst = (np.empty_like(point), np.empty_like(ts), np.empty_like(value))
    dst[0][:], dst[1][:], dst[2][:] = 0, 0, 0

    def copy_floor():
        np.copyto(dst[0], point)
        np.copyto(dst[1], ts)
        np.copyto(dst[2], value)

    t_copy, _ = best_of(copy_floor, args.repeat)
    dst = None
    gc.collect()

    # baselines on whole points of the same data
    m_pts = max(1, min(len(points), args.baseline_readings // (n // len(points))))
    m = m_pts * (n // len(points))
    sub = (point[:m], ts[:m], value[:m])
    ref = rollup(*sub, points[:m_pts], period="day", levels=("enterprise", "province"))
    ndays = len(r.labels)
    day0 = (DAY0 + 28800) // 86400
    rollover = np.array([p.rollover or 0.0 for p in points[:m_pts]])
    # The baselines get the same per-point factors (tCO2 per point unit, signed at the boundary).
    pf = point_factors(points[:m_pts], r.years[:1])
    factor = pf.to_canonical * pf.co2[:, 0] * pf.sign
    ent_keys = sorted({p.keys["enterprise"] for p in points[:m_pts]})
    prov_keys = sorted({p.keys["province"] for p in points[:m_pts]})
    ent_of = np.array([ent_keys.index(p.keys["enterprise"]) for p in points[:m_pts]])
    prov_of = np.array([prov_keys.index(p.keys["province"]) for p in points[:m_pts]])

    t_np, (np_q, np_ent, _) = best_of(
        lambda: numpy_pipeline(*sub, rollover, factor, ent_of, prov_of, len(ent_keys), len(prov_keys), day0, ndays),
        args.repeat,
    )
    t_pd, (pd_q, pd_ent, _) = best_of(lambda: pandas_pipeline(*sub, rollover, factor, ent_of, prov_of, day0, ndays), 1)
    first_day = int((ref.starts[0] + 28800) // 86400 - day0)
    ref_q = np.zeros((m_pts, ndays))
    ref_q[:, first_day : first_day + ref.quantity.shape[1]] = ref.quantity
    same_np = np.allclose(np_q, ref_q, rtol=1e-9, atol=1e-6)
    same_pd = np.allclose(pd_q, ref_q, rtol=1e-9, atol=1e-6)
    ent_total = ref.groups["enterprise"].co2_t.sum()
    same_totals = bool(
        np.isclose(np_ent.sum(), ent_total, rtol=1e-9) and np.isclose(pd_ent.sum(), ent_total, rtol=1e-9)
    )
    if not (same_np and same_pd and same_totals):
        raise SystemExit("baselines disagree with the pipeline: the comparison would be meaningless")

    rate = n / t_pipe
    rate_copy = n / t_copy
    rate_np = m / t_np
    rate_pd = m / t_pd
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"pipeline (numba):  {t_pipe:7.3f} s  {rate / 1e6:8.1f} M readings/s   "
        f"({len(r.labels)} days, {len(r.groups['enterprise'].keys)} enterprises, "
        f"{len(r.groups['province'].keys)} provinces, CO2 {r.groups['enterprise'].co2_t.sum():,.0f} t)"
    )
    print(f"copy floor:        {t_copy:7.3f} s  {rate_copy / 1e6:8.1f} M readings/s")
    print(f"plain NumPy:       {t_np:7.3f} s  {rate_np / 1e6:8.1f} M readings/s   (on {m:,} readings)")
    print(f"pandas groupby:    {t_pd:7.3f} s  {rate_pd / 1e6:8.1f} M readings/s   (on {m:,} readings)")
    print(
        f"vs pandas {rate / rate_pd:.1f}x (goal >= 20x); vs NumPy {rate / rate_np:.1f}x; "
        f"copy floor / pipeline {rate_copy / rate:.2f}x (goal <= 4x); peak RSS {peak_gib:.1f} GiB"
    )
    print(
        json.dumps(
            {
                "benchmark": "accounting_pipeline",
                "readings": n,
                "points": len(points),
                "baseline_readings": m,
                "pipeline_s": round(t_pipe, 4),
                "pipeline_readings_per_s": round(rate),
                "copy_floor_readings_per_s": round(rate_copy),
                "numpy_readings_per_s": round(rate_np),
                "pandas_readings_per_s": round(rate_pd),
                "ratio_vs_pandas": round(rate / rate_pd, 2),
                "ratio_vs_numpy": round(rate / rate_np, 2),
                "copy_floor_over_pipeline": round(rate_copy / rate, 3),
                "goal_vs_pandas_met": rate / rate_pd >= 20,
                "goal_within_4x_of_copy_met": rate_copy / rate <= 4,
                "peak_rss_gib": round(peak_gib, 2),
                "results_agree": True,
            }
        )
    )


if __name__ == "__main__":
    main()
