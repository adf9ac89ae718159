"""``carbonwatch probe`` against the simulators, over TCP and over RTU on a pty: the decoding the
meter's display shows must be among the labelled lines, with the orders to copy."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from carbonwatch.simulators.server import SiteSimulator

from support import BackgroundLoop

pytestmark = pytest.mark.timeout(120)


def probe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "carbonwatch", "probe", "--timeout", "0.5", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def line(out: str, dtype: str, label: str) -> str:
    found = re.search(rf"^  {dtype}\s+{label}\s+(\S+)\s+type: {dtype}, (.*)$", out, re.M)
    assert found, f"no {dtype} {label} line in:\n{out}"
    return found.group(1) + " | " + found.group(2)


def test_probe_finds_types_and_orders_over_tcp_and_rtu(make_site):
    site = make_site()
    incomer, gas = (m for m in site.gateways[0].meters if m.id in ("incomer", "gas"))
    with BackgroundLoop() as bg:
        sims = SiteSimulator(site, pty=True)
        bg.run(sims.start())
        try:
            bg.call(sims.meter("incomer").hold, "import_kwh", 1234.56)
            bg.call(sims.meter("incomer").hold, "current_l1_a", 230.5)
            bg.call(sims.meter("gas").hold, "flow_nm3h", 372.25)
            tcp = ("--host", "127.0.0.1", "--port", str(incomer.connection.port), "--unit", "1")
            out = probe(*tcp, "--address", "16", "--count", "2")
            assert out.returncode == 0, out.stdout + out.stderr
            assert line(out.stdout, "uint32", "CDAB") == "123456 | byte_order: big,    word_order: little"
            out = probe(*tcp, "--address", "6", "--count", "4")
            assert line(out.stdout, "float32", "ABCD") == "230.5 | byte_order: big,    word_order: big"
            coil = probe(*tcp, "--area", "coil", "--address", "0", "--count", "1")
            assert coil.returncode == 0 and "[0] 1" in coil.stdout
            rtu = ("--serial", gas.connection.port, "--baudrate", "9600", "--unit", "1", "--area", "input")
            out = probe(*rtu, "--address", "4", "--count", "2")
            assert out.returncode == 0, out.stdout + out.stderr
            assert line(out.stdout, "float32", "DCBA") == "372.25 | byte_order: little, word_order: little"
            assert "address 4 (address_base 0; 5 if 1-based)" in out.stdout

            bg.call(setattr, sims.meter("incomer").faults, "dead", True)
            dead = probe(*tcp, "--address", "16", "--count", "2")
            assert dead.returncode == 1 and "hints:" in dead.stdout
            bg.call(setattr, sims.meter("incomer").faults, "dead", False)
            bad = probe(*tcp, "--address", "500", "--count", "2")  # beyond the meter's map
            assert bad.returncode == 1 and "exception 2" in bad.stdout and "address minus 1" in bad.stdout
        finally:
            bg.run(sims.stop())
    assert probe("--host", "127.0.0.1", "--address", "0", "--count", "126").returncode == 2
    assert "give --host" in probe("--address", "0").stdout
