"""Deployment files: the centre's compose file and what it mounts, its Mosquitto configuration
run for real with TLS and the ACL from ``carbonwatch db acl``, the Grafana dashboard, and the
gateway install script with its systemd unit."""

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
COMPOSE = COMPOSE_DIR / "compose.yaml"
# Files each operator brings (secrets, TLS files, their own upload configuration): documented, not shipped.
OPERATOR_FILES = ("./secrets/", "./upload.yaml", "./certs")


def _compose_cli() -> list[str] | None:
    """A compose implementation that can validate offline, if this machine has one."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        probe = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return cmd
    return None


def test_compose_file_validates():
    cli = _compose_cli()
    if cli is not None:
        done = subprocess.run([*cli, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        print(f"validated with {' '.join(cli)} config -q")
    else:
        print("no docker compose plugin or docker-compose here: validated the structure and referenced files instead")
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
    # Prometheus' targets are the compose services and the ports they serve metrics on.
    targets = {
        job: [t for group in yaml.safe_load((REPO / f"deploy/prometheus/targets/{job}.yml").read_text()) for t in
              group["targets"]]
        for job in ("collector", "api", "upload")
    }  # fmt: skip
    for target in targets["collector"] + targets["upload"]:
        host, port = target.split(":")
        assert any(f"--metrics-port={port}" in arg for arg in services[host]["command"]), target
    [api] = targets["api"]
    assert f"--port={api.split(':')[1]}" in services["api"]["command"]
    # The image carries every package folder of the distribution.
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text("utf-8")
    for folder in ("carbonwatch", "edge", "simulators", "collector", "accounting", "api"):
        assert f"COPY {folder} ./{folder}" in dockerfile


def test_grafana_dashboard_queries_exported_metrics(tmp_path):
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
    promtool = shutil.which("promtool")
    if promtool is None:
        print("promtool is not installed: dashboard queries not parsed")
        return
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
            wait_port("127.0.0.1", tls_port, 10, broker)
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


def test_gateway_install_into_a_temp_prefix(tmp_path):
    """install.sh in a temporary prefix, without root, users or systemctl: a light venv that
    runs the agent, and a unit file systemd accepts."""
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
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("systemd-analyze is not installed: unit file not verified")
        return
    verify = subprocess.run([analyze, "verify", str(tmp_path / "unitdir" / "carbonwatch-edge.service")],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
