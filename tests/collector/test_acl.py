"""The broker ACL generated from site files lets a gateway publish only under its own topic."""

from __future__ import annotations

import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from carbonwatch.collector.acl import gateway_username, mosquitto_acl
from carbonwatch.contracts.payload import TopicKind, telemetry_filter, topic
from carbonwatch.embedded import LocalMosquitto, mosquitto_path

from support import localise, site_from_file, wait_until

pytestmark = pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")


def _client(port: int, user: str, password: str) -> tuple[mqtt.Client, list]:
    got: list = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"acl-{user}", protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    c.on_message = lambda client, userdata, msg: got.append((msg.topic, bytes(msg.payload)))
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c, got


def test_gateway_publishes_only_under_its_own_topic(tmp_path):
    sites = [
        localise(site_from_file(name), tmp_path, 1883, {})
        for name in ("demo-shanxi-chemical.yaml", "demo-qinghai-pv.yaml")
    ]
    acl = tmp_path / "acl"
    acl.write_text(mosquitto_acl(sites))
    users = {gateway_username(s.enterprise.code, s.gateways[0]): "pw-" + s.gateways[0].id for s in sites}
    users["collector"] = "pw-collector"
    passwd = tmp_path / "passwd"
    passwd.touch()
    for user, password in users.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
    passwd.chmod(0o644)
    acl.chmod(0o644)
    config = f"password_file {passwd}\nacl_file {acl}\n"
    with LocalMosquitto(tmp_path / "broker", extra_config=config, allow_anonymous=False) as broker:
        shanxi, qinghai = sites
        own = topic(shanxi.enterprise.code, shanxi.gateways[0].id, TopicKind.TELEMETRY)
        foreign = topic(qinghai.enterprise.code, qinghai.gateways[0].id, TopicKind.TELEMETRY)

        collector, received = _client(broker.port, "collector", "pw-collector")
        subscribed = threading.Event()
        collector.on_subscribe = lambda *a: subscribed.set()
        collector.subscribe(telemetry_filter("collectors"), qos=1)
        assert subscribed.wait(5)

        gw_user = gateway_username(shanxi.enterprise.code, shanxi.gateways[0])
        gateway, _ = _client(broker.port, gw_user, users[gw_user])
        wait_until(gateway.is_connected, 5, what="gateway to connect")
        gateway.publish(foreign, b"forged by gateway", qos=1).wait_for_publish(5)
        gateway.publish(own, b"first", qos=1).wait_for_publish(5)
        wait_until(lambda: (own, b"first") in received, 5, what="own telemetry at the collector")

        # The collector may not publish: its message is dropped, the gateway's next one arrives.
        collector.publish(own, b"forged by collector", qos=1).wait_for_publish(5)
        gateway.publish(own, b"second", qos=1).wait_for_publish(5)
        wait_until(lambda: (own, b"second") in received, 5, what="the gateway's second message")
        # Anonymous clients may not connect at all.
        anonymous = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="anon", protocol=mqtt.MQTTv5)
        refused = threading.Event()
        anonymous.on_connect = lambda c, u, f, reason, p: reason.is_failure and refused.set()
        anonymous.connect("127.0.0.1", broker.port)
        anonymous.loop_start()
        assert refused.wait(5)
        anonymous.loop_stop()
        gateway.loop_stop()
        collector.loop_stop()
        assert received == [(own, b"first"), (own, b"second")]  # both forgeries were dropped by the broker


def test_duplicate_usernames_are_refused(tmp_path):
    site = localise(site_from_file("demo-shanxi-chemical.yaml"), tmp_path, 1883, {})
    g = site.gateways[0]
    twin = g.model_copy(
        update={
            "id": "gw-twin",
            "mqtt": g.mqtt.model_copy(update={"username": gateway_username(site.enterprise.code, g)}),
        }
    )
    with pytest.raises(ValueError, match="used by two gateways"):
        mosquitto_acl([site, site.model_copy(update={"gateways": [twin]})])


def test_cli_prints_the_acl(capsys):
    from carbonwatch.cli import main

    from support import SITES

    assert main(["db", "acl", str(SITES / "demo-shanxi-chemical.yaml")]) == 0
    out = capsys.readouterr().out
    assert "user 91140105MA0K7Q2B30.gw-main" in out
    assert "topic write cw/v1/91140105MA0K7Q2B30/gw-main/telemetry" in out
    assert "topic read cw/v1/+/+/telemetry" in out
