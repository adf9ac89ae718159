"""The accounting benchmark runs in its quick mode and its implementations agree (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_accounting.py"


def test_quick_benchmark_runs_and_agrees():
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last["results_agree"] is True
    assert last["readings"] == 2_000_000
    for kind in ("pipeline", "pandas", "numpy", "copy_floor"):
        assert last[f"{kind}_readings_per_s"] > 0
