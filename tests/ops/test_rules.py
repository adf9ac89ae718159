"""The Prometheus configuration, alert rules and Alertmanager routes, checked by the real tools.

promtool checks the configuration and rules and runs the rule unit tests in
deploy/prometheus/tests/; amtool checks the Alertmanager configuration and its routes, and a real
Alertmanager, given alerts as the rules make them, shows where each goes and which the shipped
inhibit rules mute. Every alert must have a unit test and a runbook section that its
runbook_url points at.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime

import httpx
import pytest
import yaml
from metric_names import exported_metric_names

from carbonwatch.embedded import free_port, wait_port

from support import REPO, wait_until

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
    files = sorted(p.name for p in (PROM / "tests").glob("*.yml"))
    assert files == ["carbonwatch.rules.test.yml"]
    out = run(promtool, "test", "rules", *files, cwd=PROM / "tests")
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
        assert a["labels"]["category"] in {"data", "fleet"}, f"{a['alert']}: category data or fleet (routing)"


def test_gateway_and_meter_alerts_keep_their_routing_labels():
    """An alert that aggregates must keep province, enterprise and gateway (and meter for a meter
    alert): without them it cannot reach the province's centre nor say which meter."""
    by_name = {a["alert"]: a for a in alerts()}
    for name in ("CarbonwatchGatewayOffline", "CarbonwatchCompletenessLow"):
        assert "by (province, enterprise, gateway)" in by_name[name]["expr"], name
    for name in ("CarbonwatchMeterStale", "CarbonwatchCounterAnomaly"):
        assert re.search(r"by \(province, enterprise, gateway, meter[,)]", by_name[name]["expr"]), name
    for a in alerts():  # no aggregation may drop them
        for grouping in re.findall(r"\b(?:by|without) \(([^)]*)\)", a["expr"]):
            if a["labels"]["category"] == "data":
                assert "province" in grouping or "without" in a["expr"], f"{a['alert']} drops province: {grouping}"


def test_rules_use_only_metrics_that_exist():
    """Every carbonwatch_* name in a rule is exported by the agent, the collector or the uploader."""
    used = set(re.findall(r"carbonwatch_\w+", RULES.read_text("utf-8")))
    assert used, "no carbonwatch metric in the rules"
    assert used <= exported_metric_names(), (
        f"rules name metrics nobody exports: {sorted(used - exported_metric_names())}"
    )


def labels_of(name: str, **labels: str) -> dict[str, str]:
    """An alert's labels as the shipped rule makes them: alertname, severity and category from
    the rule, the rest given."""
    [rule] = [a for a in alerts() if a["alert"] == name]
    return {"alertname": name, **rule["labels"], **labels}


def test_alertmanager_config_and_routes():
    """Operations gets every alert of every province (critical pages, warnings to its queue);
    a province's centre gets its province's data alerts as well."""
    amtool = tool("amtool")
    run(amtool, "check-config", str(ALERTMANAGER))
    gw = {"province": "140000", "enterprise": "E1", "gateway": "gw-a"}
    cases = {
        # fleet health warnings of a province: operations (they never reached it before)
        ("CarbonwatchMeterStale", "630000"): "centre-qinghai,operations",
        ("CarbonwatchBufferFilling", "140000"): "operations",
        ("CarbonwatchBufferAging", "140000"): "operations",
        ("CarbonwatchGatewayBrokerDisconnected", "630000"): "operations",
        ("CarbonwatchMeterNeverRead", "140000"): "centre-shanxi,operations",
        # the province's data alerts: its centre, and operations
        ("CarbonwatchCounterAnomaly", "140000"): "centre-shanxi,operations",
        ("CarbonwatchCompletenessLow", "630000"): "centre-qinghai,operations",
        ("CarbonwatchGatewayOffline", "140000"): "centre-shanxi,operations-pager",
        ("CarbonwatchBufferDropping", "630000"): "centre-qinghai,operations-pager",
        # a province without a centre of its own: operations alone
        ("CarbonwatchMeterStale", "110000"): "operations",
        ("CarbonwatchGatewayOffline", "110000"): "operations-pager",
        # fleet alerts of a gateway: not for the centre
        ("CarbonwatchTargetDown", "140000"): "operations-pager",
        # centre-side alerts without a province
        ("CarbonwatchCollectorStalled", None): "operations-pager",
        ("CarbonwatchCollectorLag", None): "operations",
        ("CarbonwatchUploadStalled", None): "operations-pager",
    }
    for (name, province), receivers in cases.items():
        labels = labels_of(name, **(dict(gw, province=province) if province else {}))
        out = subprocess.run(
            [
                amtool,
                "config",
                "routes",
                "test",
                f"--config.file={ALERTMANAGER}",
                *(f"{k}={v}" for k, v in labels.items()),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.stdout.strip() == receivers, f"{labels}: got {out.stdout.strip()!r}, expected {receivers!r}"
    # Every alert reaches operations (the pager or the queue), whatever its province.
    for a in alerts():
        labels = labels_of(a["alert"], **gw)
        out = subprocess.run(
            [
                amtool,
                "config",
                "routes",
                "test",
                f"--config.file={ALERTMANAGER}",
                *(f"{k}={v}" for k, v in labels.items()),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert {"operations", "operations-pager"} & set(out.stdout.strip().split(",")), (a["alert"], out.stdout)


def test_alertmanager_routes_and_inhibits_for_real(tmp_path):
    """The shipped configuration in a real Alertmanager: alerts posted as the rules make them show
    the receivers they route to, and the ones the inhibit rules mute (and by what)."""
    exe = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if exe is None:
        pytest.skip("alertmanager is not installed (Debian package prometheus-alertmanager); .ci/run installs it")
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("wb")
    proc = subprocess.Popen(
        [exe, f"--config.file={ALERTMANAGER}", f"--storage.path={tmp_path}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address=", "--log.level=warn"],
        stdout=log, stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api/v2"
    gw_a = {"province": "140000", "enterprise": "E1", "gateway": "gw-a"}
    gw_b = {"province": "140000", "enterprise": "E1", "gateway": "gw-b"}
    gw_c = {"province": "630000", "enterprise": "E2", "gateway": "gw-c"}
    gw_d = {"province": "630000", "enterprise": "E2", "gateway": "gw-d"}
    posted = {
        "offline-a": labels_of("CarbonwatchGatewayOffline", **gw_a),
        "stale-a": labels_of("CarbonwatchMeterStale", **gw_a, meter="m1"),
        "stale-b": labels_of("CarbonwatchMeterStale", **gw_b, meter="m1"),
        "filling-b": labels_of("CarbonwatchBufferFilling", **gw_b, instance="gw-b:9108", job="edge"),
        "down-collector": labels_of("CarbonwatchTargetDown", job="collector", instance="col-1:9109"),
        "aging-unlabelled": labels_of("CarbonwatchBufferAging", instance="gw-x:9108", job="edge"),
        "down-c": labels_of("CarbonwatchTargetDown", **gw_c, job="edge", instance="gw-c:9108"),
        "stale-c": labels_of("CarbonwatchMeterStale", **gw_c, meter="m1"),
        "broker-c": labels_of("CarbonwatchGatewayBrokerDisconnected", **gw_c, job="edge", instance="gw-c:9108"),
        "neverread-d5": labels_of("CarbonwatchMeterNeverRead", **gw_d, instance="gw-d:9108", device="m5", meter="m5"),
        "stale-d5": labels_of("CarbonwatchMeterStale", **gw_d, meter="m5"),
        "stale-d6": labels_of("CarbonwatchMeterStale", **gw_d, meter="m6"),
    }
    expected = {  # receivers, and the alert that mutes it (None: notified)
        "offline-a": ("centre-shanxi,operations-pager", None),
        "stale-a": ("centre-shanxi,operations", "offline-a"),
        "stale-b": ("centre-shanxi,operations", None),
        "filling-b": ("operations", None),
        "down-collector": ("operations-pager", None),
        "aging-unlabelled": ("operations", None),  # a collector that is down explains no gateway's buffer
        "down-c": ("operations-pager", None),
        "stale-c": ("centre-qinghai,operations", "down-c"),
        "broker-c": ("operations", "down-c"),
        "neverread-d5": ("centre-qinghai,operations", None),
        "stale-d5": ("centre-qinghai,operations", "neverread-d5"),
        "stale-d6": ("centre-qinghai,operations", None),
    }
    try:
        wait_port("127.0.0.1", port, 30, proc)
        now = datetime.now(UTC).isoformat()
        body = [{"labels": labels, "annotations": {}, "startsAt": now} for labels in posted.values()]
        httpx.post(f"{url}/alerts", json=body, timeout=10).raise_for_status()
        fingerprints = {}

        def settled():
            got = httpx.get(f"{url}/alerts", timeout=10).json()
            if len(got) != len(posted):
                return None
            by_labels = {tuple(sorted(a["labels"].items())): a for a in got}
            result = {}
            for key, labels in posted.items():
                a = by_labels[tuple(sorted(labels.items()))]
                fingerprints[a["fingerprint"]] = key
                result[key] = a
            # the inhibitor sees its sources asynchronously: wait until every expected mute shows
            if any(bool(result[k]["status"]["inhibitedBy"]) != bool(muter) for k, (_, muter) in expected.items()):
                return None
            return result

        try:
            got = wait_until(settled, 20, interval=0.3, what="alertmanager to take and inhibit the alerts")
        except AssertionError:
            seen = {tuple(sorted(a["labels"].items())): a for a in httpx.get(f"{url}/alerts", timeout=10).json()}
            state = {k: seen.get(tuple(sorted(v.items())), {}).get("status") for k, v in posted.items()}
            raise AssertionError(f"expected mutes {expected}, got {state}") from None
        for key, (receivers, muter) in expected.items():
            a = got[key]
            assert ",".join(sorted(r["name"] for r in a["receivers"])) == receivers, (key, a["receivers"])
            muters = [fingerprints[f] for f in a["status"]["inhibitedBy"]]
            assert muters == ([muter] if muter else []), (key, muters)
            assert a["status"]["state"] == ("suppressed" if muter else "active"), key
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_amtool_routes_by_label():
    """The routes by their labels alone, as the header of alertmanager.yml tells how to check them."""
    amtool = tool("amtool")
    cases = {
        ("severity=critical", "category=data", "province=140000"): "centre-shanxi,operations-pager",
        ("severity=warning", "category=data", "province=140000"): "centre-shanxi,operations",
        ("severity=warning", "category=fleet", "province=140000"): "operations",
        ("severity=warning", "category=data", "province=630000"): "centre-qinghai,operations",
        ("severity=critical",): "operations-pager",
        ("severity=warning", "category=data", "province=110000"): "operations",
        ("alertname=unlabelled",): "operations",
    }
    for labels, receivers in cases.items():
        out = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.stdout.strip() == receivers, f"{labels}: got {out.stdout.strip()!r}, expected {receivers!r}"
