"""`carbonwatch demo` as the README runs it: embedded database and broker, live numbers, clean Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from carbonwatch.embedded import free_port

from support import wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("broker", ["mosquitto", "amqtt"])
def test_demo_runs_and_stops_cleanly_on_ctrl_c(tmp_path, broker):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "CARBONWATCH_DATABASE_URL"}  # force the embedded database
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "carbonwatch",
            "demo",
            "--port",
            str(port),
            "--poll-interval",
            "1",
            "--broker",
            broker,
            "--data-dir",
            str(tmp_path / "demo"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "dashboard:" in line:
                break
        assert any(f"http://127.0.0.1:{port}/" in line for line in lines), "".join(lines[-30:])
        base = f"http://127.0.0.1:{port}"
        # the printed link logs in: its fragment carries a token
        token = re.search(r"#token=(\S+)", "".join(lines)).group(1)
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{base}/api/v1/enterprises", timeout=10).status_code == 401
        enterprises = httpx.get(f"{base}/api/v1/enterprises", headers=auth, timeout=10).json()
        assert {e["province"] for e in enterprises} == {"140000", "630000"}

        def co2_flowing():
            body = httpx.get(
                f"{base}/api/v1/enterprises/{enterprises[0]['code']}/emissions", headers=auth, timeout=10
            ).json()
            return body["co2_t"] > 0

        wait_until(co2_flowing, 60, interval=1, what="live CO2 from the simulated plant")
        page = httpx.get(base + "/", timeout=10)
        assert page.status_code == 200 and "carbonwatch" in page.text
        # the seeded history gives the charts days to show
        # (an explicit window: the default, this month, holds one day on the 1st)
        week_ago = (datetime.now(UTC) - timedelta(days=7)).isoformat()
        days = httpx.get(
            f"{base}/api/v1/energy", params={"period": "day", "start": week_ago}, headers=auth, timeout=10
        ).json()["rows"]
        assert len({r["period"] for r in days}) >= 3
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            pytest.fail("demo did not stop within 60 s of Ctrl-C:\n" + out[-3000:])
    assert proc.returncode == 0, out[-3000:]
    assert "stopping" in out
    # nothing of the demo is left running: no postgres or mosquitto on its data folder
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True).stdout.strip()
    assert leftovers == "", leftovers
