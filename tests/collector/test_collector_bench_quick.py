"""The collector benchmarks run in their quick modes and end with their JSON line (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"

pytestmark = pytest.mark.timeout(300)


def run(script: str, pg_admin_url: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "CARBONWATCH_TEST_PG": pg_admin_url},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ingest_benchmark_runs(pg_admin_url):
    last = run("bench_collector.py", pg_admin_url)
    assert last["readings"] == 80_000
    for key in ("e2e_readings_per_s", "raw_copy_rows_per_s", "plain_insert_rows_per_s", "ratio_e2e_to_raw_copy"):
        assert last[key] > 0, key


def test_query_benchmark_runs(pg_admin_url):
    last = run("bench_collector_queries.py", pg_admin_url)
    assert last["intervals"] == 200 * 60 * 96
    assert set(last["median_ms"]) >= {"province_year_by_enterprise", "enterprise_year_by_point_and_day"}
