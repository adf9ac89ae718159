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


def test_probe_shows_status_bits_bytes_48_bit_values_and_text(make_site):
    site = make_site()
    incomer, belt = (m for m in site.gateways[0].meters if m.id in ("incomer", "belt"))
    with BackgroundLoop() as bg:
        sims = SiteSimulator(site, pty=True)
        bg.run(sims.start())
        try:
            meter = sims.meter("incomer")
            for name, value in (
                ("alarm_voltage_loss", 1),
                ("alarm_reverse_power", 1),
                ("alarm_clock_battery", 1),
                ("tariff", 3),
                ("internal_temperature_c", -12),
                ("reactive_import_kvarh", 123456789012.345),
            ):
                bg.call(meter.hold, name, value)
            tcp = ("--host", "127.0.0.1", "--port", str(incomer.connection.port), "--unit", "1")
            out = probe(*tcp, "--address", "20", "--count", "5")
            assert out.returncode == 0, out.stdout + out.stderr
            # the status word's row: hex, uint16, int16, its bytes, text, and the bits set
            assert re.search(r"^  \[20\]\s+0x8009\s+32777\s+-32759\s+128\s+9\s+\.\.\s+0,3,15$", out.stdout, re.M)
            assert re.search(r"^  \[21\]\s+0x03F4\s+1012\s+1012\s+3\s+244\s", out.stdout, re.M)
            block = out.stdout.split("value starting at address 20 ")[1].split("value starting")[0]
            assert line(block, "bool", "bits").startswith("0,3,15 | bit: N ")
            block = out.stdout.split("value starting at address 21 ")[1].split("value starting")[0]
            assert line(block, "uint8", "high") == "3 | byte: high"
            assert line(block, "int8", "low") == "-12 | byte: low"
            block = out.stdout.split("value starting at address 22 ")[1].split("value starting")[0]
            assert line(block, "uint48", "EFCDAB") == "123456789012345 | byte_order: big,    word_order: little"

            text = probe(*tcp, "--address", "40", "--count", "16")
            assert text.returncode == 0, text.stdout + text.stderr
            assert '(byte_order: big):    "CW-3P4W-100.....SN2026-000042..."' in text.stdout
            assert '(byte_order: little): "WC3-4P-W01.0....NS02620-0040.2.."' in text.stdout

            bg.call(sims.meter("belt").hold, "net_total_t", -1234.567)
            rtu = ("--serial", belt.connection.port, "--baudrate", "9600", "--unit", "3")
            out = probe(*rtu, "--address", "10", "--count", "3")
            assert out.returncode == 0, out.stdout + out.stderr
            assert line(out.stdout, "int48", "BADCFE") == "-1234567 | byte_order: little, word_order: big"
        finally:
            bg.run(sims.stop())
