"""The README's commands and the CLI stay true."""

from __future__ import annotations

import re
import subprocess
import sys

from carbonwatch.contracts import site as S

from support import REPO

SUBCOMMANDS = ["demo", "simulate", "edge", "probe", "collector", "api", "db", "account", "factors", "upload"]


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text("utf-8")
    ci = (REPO / ".ci" / "run").read_text("utf-8")
    command = re.search(r"^TEST_COMMAND=\((.*)\)$", ci, re.M).group(1)
    assert f"```bash\n{command}\n```" in readme
    assert "```bash\nbash .ci/run\n```" in readme


def test_readme_demo_command_names_the_demo():
    readme = (REPO / "README.md").read_text("utf-8")
    assert "pip install -e '.[centre]' && .venv/bin/carbonwatch demo" in readme


def test_help_lists_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "carbonwatch", "--help"], capture_output=True, text=True, check=True)
    for name in SUBCOMMANDS:
        assert re.search(rf"^\s+{name}\s", out.stdout, re.M), f"{name} missing from --help"


def test_site_reference_documents_every_field():
    doc = (REPO / "docs" / "site-config.md").read_text("utf-8")
    models = [
        S.Enterprise,
        S.Gateway,
        S.MqttSettings,
        S.TlsSettings,
        S.BufferSettings,
        S.PublishSettings,
        S.Meter,
        S.TcpConnection,
        S.SerialConnection,
        S.Point,
        S.FuelParameters,
        S.SimulationSpec,
    ]
    missing = [f"{m.__name__}.{f}" for m in models for f in m.model_fields if f not in doc]
    assert not missing, f"fields missing from docs/site-config.md: {missing}"


def test_bad_site_file_fails_with_the_field_named(tmp_path):
    bad = tmp_path / "site.yaml"
    bad.write_text(
        (REPO / "simulators/sites/demo-shanxi-chemical.yaml").read_text("utf-8").replace("unit_id: 2", "unit_id: 999")
    )
    out = subprocess.run(
        [sys.executable, "-m", "carbonwatch", "edge", "--site", str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "meters[1].unit_id" in out.stderr and "247" in out.stderr
