"""The gateway agents' scrape targets generated from the registry (``carbonwatch db targets``),
against a real PostgreSQL, and loaded by a real Prometheus with the shipped configuration: every
registered gateway with an active point becomes one target labelled with its province,
enterprise and gateway, which the alert rules aggregate on and Alertmanager routes by."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys

import psycopg
import pytest
import yaml
from promserver import DEPLOY_PROM, PrometheusServer

from carbonwatch.collector.registry import register_site
from carbonwatch.contracts.site import Site

from support import site_from_file, wait_until

pytestmark = pytest.mark.timeout(180)

SHANXI, QINGHAI = "91140105MA0K7Q2B30", "91630100MA7U1F5R8L"
ADDRESS = "{gateway}.{enterprise}.plants.test:9108"


def targets_cli(db_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "carbonwatch", "db", "targets", "--database-url", db_url, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def registry(db_url) -> str:
    """Both demo enterprises, Shanxi with a second gateway that was later removed from its site
    file (its points are inactive: it is not a target any more)."""
    shanxi = site_from_file("demo-shanxi-chemical.yaml")
    extra = copy.deepcopy(shanxi["gateways"][0])
    extra["id"] = "gw-old"
    for meter in extra["meters"]:
        for point in meter["points"]:
            point["id"] = "old." + point["id"]
    with psycopg.connect(db_url) as conn:
        register_site(conn, Site.model_validate({**shanxi, "gateways": [*shanxi["gateways"], extra]}))
        register_site(conn, Site.model_validate(shanxi))  # gw-old removed from the file
        register_site(conn, Site.model_validate(site_from_file("demo-qinghai-pv.yaml")))
    return db_url


def test_targets_come_from_the_registry(registry, tmp_path):
    out = tmp_path / "edge.yml"
    done = targets_cli(registry, "--address", ADDRESS, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert f"{out}: 2 gateways" in done.stderr
    text = out.read_text("utf-8")
    assert text.startswith("# Prometheus file_sd targets") and "carbonwatch db targets" in text
    assert yaml.safe_load(text) == [
        {
            "targets": [f"gw-main.{SHANXI}.plants.test:9108"],
            "labels": {"province": "140000", "enterprise": SHANXI, "gateway": "gw-main"},
        },
        {
            "targets": [f"gw-01.{QINGHAI}.plants.test:9108"],
            "labels": {"province": "630000", "enterprise": QINGHAI, "gateway": "gw-01"},
        },
    ]
    # Printed without -o: the same file.
    printed = targets_cli(registry, "--address", ADDRESS)
    assert printed.returncode == 0 and printed.stdout == text
    # One province, or without a gateway Prometheus cannot reach; nothing left is an empty list.
    only = yaml.safe_load(targets_cli(registry, "--address", ADDRESS, "--province", "630000").stdout)
    assert [g["labels"]["gateway"] for g in only] == ["gw-01"]
    rest = yaml.safe_load(targets_cli(registry, "--exclude", f"{SHANXI}/gw-main", "--exclude", QINGHAI).stdout)
    assert rest == []
    default = yaml.safe_load(targets_cli(registry).stdout)
    assert default[0]["targets"] == [f"gw-main.{SHANXI}:9108"]
    # A template with an unknown field fails before touching anything, naming the fields.
    bad = targets_cli(registry, "--address", "{host}:9108", "-o", str(out))
    assert bad.returncode != 0 and "{province}, {enterprise} and {gateway}" in bad.stderr
    assert out.read_text("utf-8") == text


def test_prometheus_discovers_the_generated_targets_with_their_labels(registry, tmp_path):
    """The shipped deploy/prometheus directory as the compose file mounts it, with the generated
    edge.yml: Prometheus finds each gateway with its routing labels, and no uploader target
    (its service runs only under the upload profile)."""
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (Debian package prometheus); .ci/run installs it")
    etc = tmp_path / "etc"
    shutil.copytree(DEPLOY_PROM, etc)
    done = targets_cli(registry, "--address", ADDRESS, "-o", str(etc / "targets" / "edge.yml"))
    assert done.returncode == 0, done.stderr
    with PrometheusServer(etc / "prometheus.yml", tmp_path) as prom:
        try:

            def active():
                targets = prom.api("targets")["activeTargets"]
                return targets if any(t["labels"]["job"] == "edge" for t in targets) else None

            targets = wait_until(active, 30, interval=0.5, what="the edge targets discovered")
            edge = sorted(
                (t["labels"]["instance"], t["labels"]["province"], t["labels"]["enterprise"], t["labels"]["gateway"])
                for t in targets
                if t["labels"]["job"] == "edge"
            )
            assert edge == [
                (f"gw-01.{QINGHAI}.plants.test:9108", "630000", QINGHAI, "gw-01"),
                (f"gw-main.{SHANXI}.plants.test:9108", "140000", SHANXI, "gw-main"),
            ]
            jobs = sorted({t["labels"]["job"] for t in targets})
            assert jobs == ["api", "collector", "edge", "prometheus"], jobs  # no upload target by default
            sd_errors = [line for line in prom.log_tail().splitlines() if "level=error" in line and "file" in line]
            assert sd_errors == []
        except BaseException:
            print(prom.log_tail())
            raise
