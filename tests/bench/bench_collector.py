"""Collector throughput: readings/s from publish to committed rows, end to end.

A private Mosquitto and a fresh database on the test PostgreSQL; a synthetic province slice
(gateways x points, every point read every 10 s) published with QoS 1 by a separate process as
fast as the broker takes it, while an in-process collector (its interval builder running too)
commits it. Baselines measured in the same run, on the same rows and the same table:

- raw COPY: binary COPY straight into ``readings`` in batches of the same size (an upper bound:
  no broker, no parsing, no validation, no duplicate handling);
- plain INSERT: what a naive ingester does, one INSERT per reading, one transaction per message.

Usage: ``python tests/bench/bench_collector.py [--quick]``. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collector"))

from fleet import make_site, point_names, register

from carbonwatch.collector.copy_format import COLUMNS, encode_readings
from carbonwatch.collector.db import migrate
from carbonwatch.collector.ingest import Collector, CollectorSettings
from carbonwatch.contracts.payload import encode_telemetry, topic, utc_iso
from carbonwatch.embedded import LocalMosquitto

ADMIN_URL = os.environ.get("CARBONWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
STEP = timedelta(seconds=10)


def _with_db(url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)


def build(site, steps: int, polls_per_message: int, start: datetime):
    """Encoded messages and the same readings as arrays (point name, epoch us, value)."""
    messages, names_all, ts_all, val_all = [], [], [], []
    for g, gw in enumerate(site.gateways):
        names = point_names(site, g)
        t_name = topic(site.enterprise.code, gw.id, "telemetry")
        for first in range(0, steps, polls_per_message):
            rs = []
            for k in range(first, min(steps, first + polls_per_message)):
                t = start + k * STEP
                stamp = utc_iso(t)
                us = int(t.timestamp()) * 1_000_000
                for i, n in enumerate(names):
                    v = 1000.0 + (i + 1) * k
                    rs.append({"p": n, "t": stamp, "v": v, "q": "good"})
                    names_all.append(n)
                    ts_all.append(us)
                    val_all.append(v)
            messages.append((t_name, encode_telemetry(site.enterprise.code, gw.id, first, rs, start)))
    return messages, names_all, np.array(ts_all, dtype=np.int64), np.array(val_all)


def publisher(port: int, path: str, started, done) -> None:
    """Runs in its own process: publish every message with QoS 1, up to 500 in flight."""
    import pickle

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    with open(path, "rb") as f:
        messages = pickle.load(f)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(500)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    started.value = time.time()
    infos = [client.publish(t, p, qos=1) for t, p in messages]
    for info in infos:
        info.wait_for_publish(120)
    done.value = time.time()
    client.disconnect()
    client.loop_stop()


def count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]


def run_e2e(url: str, broker: LocalMosquitto, messages, total: int, batch_rows: int, tmp: Path) -> dict:
    import pickle

    path = tmp / "messages.pickle"
    path.write_bytes(pickle.dumps(messages))
    collector = Collector(
        CollectorSettings(url, mqtt_port=broker.port, client_id="bench-collector", batch_rows=batch_rows)
    )
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    thread.start()
    if not collector.wait_connected(30):
        raise SystemExit("the collector did not connect to the broker")
    ctx = multiprocessing.get_context("spawn")
    started, done = ctx.Value("d", 0.0), ctx.Value("d", 0.0)
    proc = ctx.Process(target=publisher, args=(broker.port, str(path), started, done))
    proc.start()
    deadline = time.monotonic() + 600
    while collector.committed_rows < total and time.monotonic() < deadline:
        time.sleep(0.01)
    finished = time.time()
    proc.join(60)
    if collector.committed_rows < total:
        raise SystemExit(f"only {collector.committed_rows} of {total} readings committed in time")
    t0 = time.monotonic()
    while count(url, "SELECT count(*) FROM interval_dirty") and time.monotonic() - t0 < 300:
        time.sleep(0.1)
    intervals_lag = time.monotonic() - t0
    stop.set()
    thread.join(60)
    seconds = finished - started.value
    commits = collector.metrics.commit_seconds
    return {
        "transactions": sum(b.get() for b in commits._buckets),
        "commit_seconds_total": commits._sum.get(),
        "seconds": seconds,
        "readings_per_s": total / seconds,
        "publish_seconds": done.value - started.value,
        "intervals_caught_up_after_s": intervals_lag,
        "inserted": collector.inserted_rows,
    }


def run_raw_copy(url: str, pid: np.ndarray, ts: np.ndarray, val: np.ndarray, batch_rows: int) -> float:
    quality = np.zeros(len(pid), dtype=np.int16)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE readings")
        t = time.perf_counter()
        for i in range(0, len(pid), batch_rows):
            s = slice(i, i + batch_rows)
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(f"COPY readings ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as cp,
            ):
                cp.write(encode_readings(pid[s], ts[s], val[s], quality[s]))
        return len(pid) / (time.perf_counter() - t)


def run_plain_insert(url: str, pid: np.ndarray, ts: np.ndarray, val: np.ndarray, per_message: int, rows: int) -> float:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    data = [(int(p), epoch + timedelta(microseconds=int(t)), float(v), 0) for p, t, v in zip(pid, ts, val, strict=True)]
    data = data[:rows]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE readings")
        t = time.perf_counter()
        for i in range(0, len(data), per_message):
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO readings (point_id, ts, value, quality) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    data[i : i + per_message],
                )
        return len(data) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small run for CI (well under a minute)")
    ap.add_argument("--gateways", type=int, default=20)
    ap.add_argument("--points", type=int, default=100, help="points per gateway")
    ap.add_argument("--steps", type=int, help="polls per point (default 500, quick 40)")
    ap.add_argument("--polls-per-message", type=int, default=5)
    ap.add_argument("--batch-rows", type=int, default=20_000)
    args = ap.parse_args()
    steps = args.steps or (40 if args.quick else 500)

    site = make_site(gateways=args.gateways, points=args.points)
    # Recent readings, as in live operation (older ones take the late-data check, see writer.py).
    start = datetime.now(UTC).replace(microsecond=0) - steps * STEP - timedelta(minutes=5)
    messages, names, ts, val = build(site, steps, args.polls_per_message, start)
    total = len(names)
    name = f"cw_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(ADMIN_URL, name)
    tmp = Path(tempfile.mkdtemp(prefix="cw-bench-"))
    broker = LocalMosquitto(tmp / "broker").start()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
        register(url, site)
        with psycopg.connect(url) as conn:
            ids = dict(conn.execute("SELECT point, id FROM points").fetchall())
        pid = np.array([ids[n] for n in names], dtype=np.int32)
        print(
            f"{total:,} readings of {args.gateways * args.points:,} points in {len(messages):,} messages "
            f"({args.polls_per_message * args.points} readings each), batches of {args.batch_rows:,}"
        )
        e2e = run_e2e(url, broker, messages, total, args.batch_rows, tmp)
        assert count(url, "SELECT count(*) FROM readings") == total
        print(
            f"end to end: {e2e['readings_per_s']:,.0f} readings/s ({e2e['seconds']:.2f} s; publishing took "
            f"{e2e['publish_seconds']:.2f} s; intervals caught up {e2e['intervals_caught_up_after_s']:.2f} s later)"
        )
        print(f"  {e2e['transactions']:.0f} transactions, {e2e['commit_seconds_total']:.2f} s spent writing them")
        raw = run_raw_copy(url, pid, ts, val, args.batch_rows)
        print(f"raw COPY into readings: {raw:,.0f} rows/s")
        plain_rows = min(total, 20_000 if args.quick else 100_000)
        plain = run_plain_insert(url, pid, ts, val, args.polls_per_message * args.points, plain_rows)
        print(f"plain INSERT, one transaction per message: {plain:,.0f} rows/s ({plain_rows:,} rows)")
        ratio = e2e["readings_per_s"] / raw
        print(f"end to end / raw COPY = {ratio:.2f} (goal >= 0.5); goal 100,000 readings/s")
        print(
            json.dumps(
                {
                    "benchmark": "collector",
                    "quick": args.quick,
                    "readings": total,
                    "e2e_readings_per_s": round(e2e["readings_per_s"]),
                    "raw_copy_rows_per_s": round(raw),
                    "plain_insert_rows_per_s": round(plain),
                    "ratio_e2e_to_raw_copy": round(ratio, 3),
                    "ratio_e2e_to_plain_insert": round(e2e["readings_per_s"] / plain, 2),
                    "intervals_caught_up_after_s": round(e2e["intervals_caught_up_after_s"], 2),
                    "goal_readings_per_s": 100_000,
                    "goal_ratio_to_raw_copy": 0.5,
                }
            )
        )
    finally:
        broker.stop()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
