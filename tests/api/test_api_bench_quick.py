"""The API benchmark in quick mode, so it cannot rot: it runs, its baseline agrees with the API, and
its last line is the JSON summary (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support import REPO

pytestmark = pytest.mark.timeout(240)


def test_api_benchmark_quick(pg_admin_url):
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "bench" / "bench_api.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=200,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["benchmark"] == "api" and summary["quick"] is True
    for question in ("province_overview", "enterprise_drilldown"):
        r = summary["results"][question]
        assert r["p50_ms"] > 0 and r["p95_ms"] >= r["p50_ms"] and r["raw_median_ms"] > 0
