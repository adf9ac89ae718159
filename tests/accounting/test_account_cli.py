"""``carbonwatch account`` and ``carbonwatch factors`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from carbonwatch.cli import main

CSV = """carrier,quantity,unit,province,use,green_certificate_mwh
electricity,1000,MWh,140000,,
electricity,500000,kWh,山西,,
electricity,1800,GJ,山西省,,
electricity,1000,MWh,shanxi,,200
natural_gas,1000000,m3,shanxi,,
natural_gas,50000,Nm3,,,
natural_gas,10,10^4Nm3,,,
coke,50000,kg,,,
coke,50,t,,feedstock,
heat,1000000,MJ,,,
heat,1000,GJ,,,
"""


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_account_prints_one_json_object(tmp_path, capsys):
    f = tmp_path / "activity.csv"
    f.write_text(CSV, encoding="utf-8")
    code, out, _ = run(capsys, "account", str(f), "--year", "2025")
    assert code == 0
    d = json.loads(out)
    elec_mwh = 1000 + 500 + 500 + 1000
    gas = 100 + 5 + 10
    expected_co2 = elec_mwh * 0.6634 + gas * 21.62188809 + 50 * 2.860418825 + 2000 * 0.11
    assert d["co2_t"] == pytest.approx(expected_co2)
    assert d["tce"] == pytest.approx(elec_mwh * 0.1229 + gas * 13.3 + 100 * 0.9714 + 2000 * 0.03412)
    assert d["tce_dual_control"] == pytest.approx(d["tce"] - 50 * 0.9714 - 200 * 0.1229)
    assert d["method"] == "location" and d["accounting_year"] == 2025
    elec = next(r for r in d["by_carrier"] if r["carrier"] == "electricity")
    assert elec["quantity"] == pytest.approx(elec_mwh) and elec["unit"] == "MWh"
    assert elec["factor"]["value"] == 0.6634 and elec["factor"]["data_year"] == 2023
    assert "公告2025年第47号" in elec["factor"]["source"]
    assert elec["rows"] == [f"{f}:{n}" for n in (2, 3, 4, 5)]


def test_account_market_method_and_overrides(tmp_path, capsys):
    f = tmp_path / "a.csv"
    f.write_text("carrier,quantity,unit,province,green_certificate_mwh\nelectricity,1000,MWh,qinghai,100\n")
    code, out, _ = run(capsys, "account", str(f), "--year", "2024", "--method", "market")
    d = json.loads(out)
    assert code == 0 and d["co2_t"] == pytest.approx(900 * 0.5856) and d["co2_location_t"] == pytest.approx(156.7)
    code, out, _ = run(capsys, "account", str(f), "--year", "2024", "--factor", "electricity=0.5")
    assert json.loads(out)["co2_t"] == pytest.approx(500.0)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("natual_gas,1,t,shanxi", "x.csv:3: unknown carrier 'natual_gas'; did you mean 'natural_gas'"),
        ("diesel,1,gallon,shanxi", "x.csv:3: unknown unit 'gallon'"),
        ("electricity,1,MWh,atlantis", "x.csv:3: unknown province 'atlantis'"),
        ("electricity,1,t,shanxi", "x.csv:3: unit 't' is not a quantity of electricity"),
        ("diesel,lots,t,", "x.csv:3: quantity 'lots' is not a number"),
        ("diesel,1,t", "x.csv:3: 3 fields, the header has 4"),
    ],
)
def test_account_errors_name_the_row(tmp_path, capsys, row, message):
    f = tmp_path / "x.csv"
    f.write_text(f"carrier,quantity,unit,province\ndiesel,1,t,\n{row}\n")
    code, out, err = run(capsys, "account", str(f), "--year", "2025")
    assert code == 2 and out == ""
    assert message in err


def test_account_header_errors(tmp_path, capsys):
    f = tmp_path / "h.csv"
    f.write_text("carrier,qty,unit,provnce\n")
    code, _, err = run(capsys, "account", str(f), "--year", "2025")
    assert code == 2 and "missing column(s) quantity, province" in err and "unknown column(s) 'qty', 'provnce'" in err
    code, _, err = run(capsys, "account", str(tmp_path / "absent.csv"), "--year", "2025")
    assert code == 2 and "cannot read" in err


def test_factors_list_and_show(capsys):
    code, out, _ = run(capsys, "factors", "list")
    assert code == 0 and "data years 2021, 2022, 2023" in out and "fuels B" in out and "fuels A" in out
    code, out, _ = run(capsys, "factors", "show", "electricity", "--place", "青海", "--json")
    rows = json.loads(out)["rows"]
    assert [(r["data_year"], r["value"]) for r in rows] == [(2021, 0.1326), (2022, 0.1567), (2023, 0.1796)]
    code, out, _ = run(capsys, "factors", "show", "fuels", "--family", "A")
    assert code == 0 and "43.33" in out and "natural_gas" not in out
    code, out, _ = run(capsys, "factors", "show", "levels", "--product", "calcium_carbide")
    assert code == 0 and "GB 21343" in out and "805" in out
    code, _, err = run(capsys, "factors", "show", "nonsense")
    assert code == 2 and "choose one of" in err


def test_cli_stays_lazy_and_account_does_not_need_numba(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("carrier,quantity,unit,province\ndiesel,10,t,\n")
    probe = (
        "import sys, io, contextlib\n"
        "from carbonwatch.cli import main\n"
        "assert 'numba' not in sys.modules and 'carbonwatch.accounting' not in sys.modules\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['account', {str(f)!r}, '--year', '2025']) == 0\n"
        "assert 'numba' not in sys.modules, 'account imported numba'\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=60)


def test_account_certificates_with_exports_stay_consistent(tmp_path, capsys):
    f = tmp_path / "a.csv"
    f.write_text(
        "carrier,quantity,unit,province,direction,green_certificate_mwh\n"
        "electricity,1000,MWh,370000,import,1000\n"
        "electricity,200,MWh,370000,export,\n"
    )
    code, out, _ = run(capsys, "account", str(f), "--year", "2025", "--method", "market")
    d = json.loads(out)
    assert code == 0 and d["warnings"] == []
    assert d["co2_t"] == d["co2_market_t"] == pytest.approx(0.0, abs=1e-9) and d["co2_market_t"] >= 0
    assert d["tce_dual_control"] == pytest.approx(0.0, abs=1e-9) and d["tce_dual_control"] >= 0
    assert d["co2_location_t"] == pytest.approx(800 * 0.6191) and d["tce"] == pytest.approx(800 * 0.1229)
    assert d["green_certificate_mwh_unused"] == pytest.approx(200)
    lines = d["by_carrier"]
    assert sum(r["co2_market_t"] for r in lines) == pytest.approx(d["co2_market_t"], abs=1e-9)
    assert sum(r["co2_location_t"] for r in lines) == pytest.approx(d["co2_location_t"])


def test_account_warns_on_stderr_for_a_year_far_beyond_the_factors(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("carrier,quantity,unit,province\nelectricity,1000,MWh,370000\n")
    done = subprocess.run(
        [sys.executable, "-m", "carbonwatch", "account", str(f), "--year", "2030"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    d = json.loads(done.stdout)
    assert d["co2_t"] == pytest.approx(619.1)  # computed with the latest factors, but not silently:
    assert len(d["warnings"]) == 1 and "data year 2023" in d["warnings"][0]
    assert "stale electricity factors" in done.stderr and "2030" in done.stderr
    fresh = subprocess.run(
        [sys.executable, "-m", "carbonwatch", "account", str(f), "--year", "2025"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert fresh.returncode == 0 and json.loads(fresh.stdout)["warnings"] == [] and "stale" not in fresh.stderr
