"""Deployment files: the centre's compose file validated by compose itself (``docker-compose
config``) and checked for what it mounts, its Mosquitto configuration run for real with TLS and
the ACL from ``carbonwatch db acl``, the Grafana dashboard, and the gateway install script with
its systemd unit."""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from metric_names import exported_metric_names
from paho.mqtt.enums import CallbackAPIVersion

from carbonwatch.collector.acl import gateway_username
from carbonwatch.contracts.payload import TopicKind, topic
from carbonwatch.contracts.site import Site
from carbonwatch.embedded import free_port, mosquitto_path, wait_port

from support import REPO, SITES, make_pki, site_from_file, wait_until

COMPOSE_DIR = REPO / "deploy" / "compose"
TARGETS = REPO / "deploy" / "prometheus" / "targets"
COMPOSE = COMPOSE_DIR / "compose.yaml"
# Files each operator brings (secrets, TLS files, their own upload configuration): documented, not shipped.
OPERATOR_FILES = ("./secrets/", "./upload.yaml", "./certs")


def shipped_targets(job: str) -> list[str]:
    """The targets of a shipped file_sd file (``[]`` or a list of target groups)."""
    groups = yaml.safe_load((TARGETS / f"{job}.yml").read_text("utf-8"))
    assert isinstance(groups, list), f"targets/{job}.yml must be a list (file_sd), got {groups!r}"
    return [t for group in groups for t in group["targets"]]


def test_a_default_deployment_scrapes_only_what_it_starts():
    """Every shipped target is a service that `docker compose up -d` starts: a target that only
    runs under a profile (upload) or a demo host that does not exist (edge) would fire
    CarbonwatchTargetDown for ever on a fresh deployment."""
    default = compose_services()
    jobs = {p.stem: shipped_targets(p.stem) for p in sorted(TARGETS.glob("*.yml"))}
    assert set(jobs) == {"api", "collector", "edge", "upload"}
    assert jobs["edge"] == [] and jobs["upload"] == [], jobs
    for job, targets in jobs.items():
        for target in targets:
            assert target.split(":")[0] in default, f"targets/{job}.yml: {target} is not started by default"
    assert "upload" not in default and "upload" in compose_services("upload")


def _compose_cli() -> list[str] | None:
    """A compose implementation that can validate offline, if this machine has one."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        probe = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return cmd
    return None


def compose_services(profile: str | None = None) -> dict[str, dict]:
    """The compose file's services that ``docker compose up`` starts (with ``profile`` enabled)."""
    services = yaml.safe_load(COMPOSE.read_text("utf-8"))["services"]
    return {n: s for n, s in services.items() if not s.get("profiles") or profile in s["profiles"]}


@pytest.mark.parametrize("profile", [None, "upload"])
def test_compose_file_validates_with_compose(profile):
    """``config -q`` parses the file against compose's schema, resolves the anchors and merge keys,
    and checks every reference (volumes, secrets, depends_on); no engine needed. Debian's
    docker-compose (v1, 1.29) is what .ci/run installs; a compose v2 plugin is used if present."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (Debian package docker-compose)")
    args = [*cli, "-f", str(COMPOSE), *(["--profile", profile] if profile else []), "config", "-q"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=COMPOSE_DIR)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}{done.stderr}"
    assert done.stderr.strip() == "", done.stderr  # no warnings either (an unset variable, an ignored key)


def test_compose_project_name_comes_from_env_file():
    """No top-level `name:` (compose v1 refuses it); the project is still called carbonwatch."""
    assert "name" not in yaml.safe_load(COMPOSE.read_text("utf-8"))
    env = dict(line.split("=", 1) for line in (COMPOSE_DIR / ".env").read_text().splitlines() if "=" in line)
    assert env["COMPOSE_PROJECT_NAME"] == "carbonwatch"


def test_compose_file_structure():
    compose = yaml.safe_load(COMPOSE.read_text("utf-8"))  # merge keys (<<) resolved by the YAML loader
    services = compose["services"]
    wanted = {"timescaledb", "migrate", "mosquitto", "collector-1", "collector-2", "api", "upload", "prometheus"}
    assert wanted | {"alertmanager", "grafana"} <= set(services)
    secrets_doc = (COMPOSE_DIR / "secrets" / "README.md").read_text("utf-8")
    for name, svc in services.items():
        image = svc.get("image", "")
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), f"{name}: pin the image"
        if "build" in svc:
            context = (COMPOSE_DIR / svc["build"]["context"]).resolve()
            assert (context / svc["build"]["dockerfile"]).is_file(), name
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        for s in svc.get("secrets", []):
            assert s in compose["secrets"], f"{name}: undefined secret {s}"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith("."):
                assert source in compose["volumes"], f"{name}: undefined volume {source}"
            elif source.startswith(OPERATOR_FILES):
                continue
            else:
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} does not exist"
    for s in compose["secrets"].values():
        assert Path(s["file"]).name in secrets_doc, f"secret {s['file']} is not documented in secrets/README.md"
    # Prometheus' targets are the compose services and the ports they serve metrics on; the
    # uploader's target is shipped commented out (its service needs the upload profile).
    targets = {job: shipped_targets(job) for job in ("collector", "api")}
    targets["upload"] = re.findall(r'^#\s*- targets: \["([\w.-]+:\d+)"\]', (TARGETS / "upload.yml").read_text(), re.M)
    assert len(targets["upload"]) == 1, "upload.yml: the commented target line is gone"
    for target in targets["collector"] + targets["upload"]:
        host, port = target.split(":")
        assert any(f"--metrics-port={port}" in arg for arg in services[host]["command"]), target
    [api] = targets["api"]
    assert f"--port={api.split(':')[1]}" in services["api"]["command"]
    # The image carries every package folder of the distribution.
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text("utf-8")
    for folder in ("carbonwatch", "edge", "simulators", "collector", "accounting", "api"):
        assert f"COPY {folder} ./{folder}" in dockerfile


def test_grafana_dashboard_queries_exported_metrics():
    dash = json.loads((COMPOSE_DIR / "grafana" / "dashboards" / "carbonwatch-operations.json").read_text("utf-8"))
    provider = yaml.safe_load((COMPOSE_DIR / "grafana/provisioning/dashboards/carbonwatch.yaml").read_text("utf-8"))
    datasource = yaml.safe_load((COMPOSE_DIR / "grafana/provisioning/datasources/prometheus.yaml").read_text("utf-8"))
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    uid = datasource["datasources"][0]["uid"]
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(dash["panels"]) >= 10 and all(
        t["datasource"]["uid"] == uid for p in dash["panels"] for t in p["targets"]
    )
    used = {m for e in exprs for m in re.findall(r"carbonwatch_\w+", e)}
    assert used and used <= exported_metric_names(), sorted(used - exported_metric_names())


def test_grafana_dashboard_queries_parse_with_promtool(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus): dashboard queries not parsed")
    dash = json.loads((COMPOSE_DIR / "grafana" / "dashboards" / "carbonwatch-operations.json").read_text("utf-8"))
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    # Each query parsed offline by promtool, as recording rules (a syntax error fails).
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in
                                                         enumerate(exprs)]}]}  # fmt: skip
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout


@pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed (Debian package mosquitto)")
def test_compose_mosquitto_config_runs_with_tls_and_the_generated_acl(tmp_path):
    """The compose broker configuration, with its container paths moved to this test's files."""
    for tool in ("openssl", "mosquitto_passwd"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian packages openssl, mosquitto); .ci/run installs them")
    pki = tmp_path / "certs"
    pki.mkdir()
    make_pki(pki)
    site = Site.model_validate(site_from_file("demo-shanxi-chemical.yaml"))
    code, gateway = site.enterprise.code, site.gateways[0]
    user = gateway_username(code, gateway)
    # The ACL exactly as the compose file's migrate service makes it.
    acl = subprocess.run(
        [sys.executable, "-m", "carbonwatch", "db", "acl", str(SITES / "demo-shanxi-chemical.yaml"),
         str(SITES / "demo-qinghai-pv.yaml"), "--collector-user", "collector"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    (tmp_path / "acl").write_text(acl)
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), user, "gw-secret"], check=True, timeout=30)
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "collector", "col-secret"], check=True, timeout=30)
    tls_port, plain_port = free_port(), free_port()
    conf = (COMPOSE_DIR / "mosquitto" / "mosquitto.conf").read_text("utf-8")
    for old, new in {
        "/mosquitto/config/passwd": str(passwd),
        "/mosquitto/acl/acl": str(tmp_path / "acl"),
        "/mosquitto/data/": f"{tmp_path}/data/",
        "/mosquitto/certs/": f"{pki}/",
        "listener 8883": f"listener {tls_port} 127.0.0.1",
        "listener 1883": f"listener {plain_port} 127.0.0.1",
    }.items():
        assert old in conf, f"compose mosquitto.conf no longer has {old!r}: update this test"
        conf = conf.replace(old, new)
    (tmp_path / "data").mkdir()
    (tmp_path / "mosquitto.conf").write_text(f"user {getpass.getuser()}\n" + conf)  # root would switch users
    log = (tmp_path / "mosquitto.log").open("wb")
    broker = subprocess.Popen([mosquitto_path(), "-c", str(tmp_path / "mosquitto.conf")], stdout=log, stderr=log)
    try:
        try:
            for port in (tls_port, plain_port):  # listeners open one after the other
                wait_port("127.0.0.1", port, 10, broker)
        except RuntimeError:
            print((tmp_path / "mosquitto.log").read_text())
            raise
        got: list[str] = []
        subscribed = threading.Event()
        col = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="collector-test", protocol=mqtt.MQTTv5)
        col.username_pw_set("collector", "col-secret")
        col.on_message = lambda c, u, msg: got.append(msg.topic)
        col.on_subscribe = lambda *a: subscribed.set()
        col.on_connect = lambda c, *a: c.subscribe("cw/v1/#", qos=1)
        col.connect("127.0.0.1", plain_port)
        col.loop_start()
        assert subscribed.wait(10), "collector user could not subscribe"

        gw = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gw-test", protocol=mqtt.MQTTv5)
        gw.username_pw_set(user, "gw-secret")
        gw.tls_set(ca_certs=str(pki / "ca.pem"))
        gw.connect("127.0.0.1", tls_port)
        gw.loop_start()
        own = topic(code, gateway.id, TopicKind.TELEMETRY)
        foreign = topic(code, "someone-else", TopicKind.TELEMETRY)
        gw.publish(foreign, b"{}", qos=1).wait_for_publish(10)
        gw.publish(own, b"{}", qos=1).wait_for_publish(10)
        wait_until(lambda: own in got, 10, what="the gateway's message over TLS")
        assert foreign not in got  # the ACL kept the gateway under its own topic
        for c in (gw, col):
            c.loop_stop()
            c.disconnect()
    finally:
        broker.terminate()
        broker.wait(10)
        log.close()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """install.sh run once into a temporary prefix, without root, users or systemctl."""
    tmp_path = tmp_path_factory.mktemp("install")
    for name in ("PREFIX", "CONFDIR", "STATEDIR", "UNITDIR"):
        (tmp_path / name.lower()).mkdir()
    env = dict(
        os.environ,
        PREFIX=str(tmp_path / "prefix"),
        CONFDIR=str(tmp_path / "confdir"),
        STATEDIR=str(tmp_path / "statedir"),
        UNITDIR=str(tmp_path / "unitdir"),
        SYSTEM="0",
        PACKAGE=f"{REPO}[edge]",
    )
    done = subprocess.run(
        ["sh", str(REPO / "deploy" / "edge" / "install.sh")], capture_output=True, text=True, timeout=240, env=env
    )
    offline = ("Failed to establish a new connection", "Temporary failure in name resolution", "Network is unreachable")
    if done.returncode != 0 and any(o in done.stderr for o in offline):
        pytest.skip(f"install.sh needs the package index for carbonwatch[edge]'s dependencies: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stdout + done.stderr
    return tmp_path


def test_gateway_install_into_a_temp_prefix(installed):
    """A light venv that runs the agent, and the unit file filled in for the prefix."""
    tmp_path = installed
    python = tmp_path / "prefix" / "venv" / "bin" / "python"
    version = subprocess.run([tmp_path / "prefix/venv/bin/carbonwatch", "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("carbonwatch ")
    # The gateway install is light: the agent imports, the centre's heavy dependencies are absent.
    check = (
        "import importlib.util, carbonwatch.edge.agent;"
        "print([m for m in ('numba', 'fastapi', 'psycopg', 'numpy') if importlib.util.find_spec(m)])"
    )
    out = subprocess.run([python, "-c", check], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
    unit = (tmp_path / "unitdir" / "carbonwatch-edge.service").read_text()
    assert re.search(r"@[A-Z]+@", unit) is None, "a placeholder was not filled"
    assert f"ExecStart={tmp_path}/prefix/venv/bin/carbonwatch edge --site {tmp_path}/confdir/site.yaml" in unit
    assert f"ReadWritePaths={tmp_path}/statedir" in unit and "Restart=always" in unit


def test_gateway_unit_passes_systemd_analyze_verify(installed):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd): the unit file is not verified")
    tmp_path = installed
    verify = subprocess.run([analyze, "verify", str(tmp_path / "unitdir" / "carbonwatch-edge.service")],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
