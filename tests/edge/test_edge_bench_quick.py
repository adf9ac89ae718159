"""The edge benchmark in its quick mode, so it cannot rot: it runs end to end (simulators, the
real agent, a private Mosquitto with a subscriber) and its summary holds the structural facts.
Nothing here asserts a speed: the benchmark prints ratios for people to read."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_edge.py"


def test_bench_edge_quick_runs_and_its_summary_is_consistent(tmp_path):
    out = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=BENCH.parents[2],
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["benchmark"] == "edge" and summary["quick"] is True
    points, registers = summary["points_per_meter"], summary["registers_per_meter"]
    assert (points, registers) == (100, 160)

    # The read plan asks for the minimum the 125-register limit allows, and the agent made it so.
    minimum = math.ceil(registers / 125)
    assert summary["minimum_requests_per_poll"] == minimum == 2
    assert summary["planned_requests_per_poll"] == [minimum]
    plan, base = summary["read_plan"], summary["one_request_per_point"]
    # (counters are sampled while polls run: a poll's requests and its readings can straddle a sample)
    assert plan["requests_per_poll"] == pytest.approx(minimum, abs=0.25)
    assert base["requests_per_poll"] == pytest.approx(points, rel=0.25)

    # Point reads were counted, decoded good, and went through the outbox to a subscriber.
    for run in (plan, base):
        assert run["point_reads_per_s"] > 0 and run["requests_per_s"] > 0
        assert run["good_fraction"] >= 0.99
        assert run["no_subscriber_answers"] == 0
    assert summary["delivered_messages"] > 0
    assert plan["published_messages_per_s"] > 0
