"""The Prometheus configuration, alert rules and Alertmanager routes, checked by the real tools.

promtool checks the configuration and rules and runs the rule unit tests in
deploy/prometheus/tests/; amtool checks the Alertmanager configuration and its routes. Every
alert must have a unit test and a runbook section that its runbook_url points at.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml
from metric_names import exported_metric_names

from support import REPO

DEPLOY = REPO / "deploy"
PROM = DEPLOY / "prometheus"
RULES = PROM / "rules" / "carbonwatch.rules.yml"
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
RUNBOOKS = REPO / "docs" / "operations.md"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"{name} is not installed (Debian package prometheus / prometheus-alertmanager); .ci/run installs it"
        )
    return path


def run(*args: str, cwd=None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=cwd)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def alerts() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text("utf-8"))["groups"] for r in g["rules"] if "alert" in r]


def test_prometheus_config_and_rules_are_valid():
    promtool = tool("promtool")
    out = run(promtool, "check", "config", str(PROM / "prometheus.yml"))
    assert f"SUCCESS: {len(alerts())} rules found" in out


def test_rule_unit_tests_pass():
    promtool = tool("promtool")
    out = run(promtool, "test", "rules", "carbonwatch.rules.test.yml", cwd=PROM / "tests")
    assert "SUCCESS" in out


def test_every_alert_has_a_unit_test_a_runbook_and_a_severity():
    tested = set(re.findall(r"alertname: (\w+)", (PROM / "tests" / "carbonwatch.rules.test.yml").read_text("utf-8")))
    anchors = {
        "docs/operations.md#" + h.strip().lower() for h in re.findall(r"^#+ (.+)$", RUNBOOKS.read_text("utf-8"), re.M)
    }
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names)) >= 15
    for a in alerts():
        assert a["alert"] in tested, f"{a['alert']} has no promtool unit test"
        assert a["annotations"]["runbook_url"] in anchors, f"{a['alert']}: runbook anchor missing in docs/operations.md"
        assert a["labels"]["severity"] in {"critical", "warning"}


def test_rules_use_only_metrics_that_exist():
    """Every carbonwatch_* name in a rule is exported by the agent, the collector or the uploader."""
    used = set(re.findall(r"carbonwatch_\w+", RULES.read_text("utf-8")))
    assert used, "no carbonwatch metric in the rules"
    assert used <= exported_metric_names(), (
        f"rules name metrics nobody exports: {sorted(used - exported_metric_names())}"
    )


def test_alertmanager_config_and_routes():
    amtool = tool("amtool")
    run(amtool, "check-config", str(ALERTMANAGER))
    cases = {
        ("severity=critical", "province=140000"): "operations-pager,centre-shanxi",
        ("severity=warning", "province=140000"): "centre-shanxi",
        ("severity=warning", "province=630000"): "centre-qinghai",
        ("severity=critical",): "operations-pager",
        ("severity=warning", "province=110000"): "operations",
    }
    for labels, receivers in cases.items():
        out = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.stdout.strip() == receivers, f"{labels}: got {out.stdout.strip()!r}, expected {receivers!r}"
