"""Rollout topics on the deployment broker, run for real: each drone reads only its own group's
release announcements and writes only its own status; a group change is a re-rendered ACL and a
SIGHUP; the registry's announcement is retained for drones that connect later."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
import pytest
from waiting import until

from cloud.registry.acl import read_groups, render
from cloud.registry.rollout import announce
from comms.local_broker import LocalBroker
from comms.mqtt_link import MqttConfig, announce_topic, make_client, status_topic

PASSWORDS = {"fleet1/UAV-07": "pw-07", "fleet1/UAV-08": "pw-08", "cloud": "pw-cloud", "ground": "pw-ground"}
GROUPS = "drone,fleet,group\nUAV-07,fleet1,canary\nUAV-08,fleet1,fleet\n"


def _client(broker: LocalBroker, user: str) -> tuple[mqtt.Client, list[tuple[str, bytes]]]:
    got: list[tuple[str, bytes]] = []
    cfg = MqttConfig(port=broker.port, username=user, password=PASSWORDS[user])
    c = make_client(f"{user.replace('/', '-')}-{time.monotonic_ns()}", cfg)
    c.on_message = lambda cl, u, m: got.append((m.topic, m.payload))
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c, got


def test_drones_read_only_their_groups_announcements_and_write_only_their_status(tmp_path, monkeypatch):
    acl = tmp_path / "acl"
    acl.write_text(render(read_groups(GROUPS)))
    broker = LocalBroker.deployment(tmp_path / "broker", PASSWORDS, acl=acl).start()
    clients = []
    try:
        for k, v in {"PLI_MQTT_HOST": "127.0.0.1", "PLI_MQTT_PORT": str(broker.port), "PLI_MQTT_USER": "cloud",
                     "PLI_MQTT_PASSWORD": PASSWORDS["cloud"]}.items():
            monkeypatch.setenv(k, v)
        assert announce("canary", "2026.12.01", 3) and announce("fleet", "2026.11.22", 2)  # retained
        uav07, got07 = _client(broker, "fleet1/UAV-07")
        cloud, got_cloud = _client(broker, "cloud")
        clients += [uav07, cloud]
        uav07.subscribe([(announce_topic("fleet1", "canary"), 1), (announce_topic("fleet1", "fleet"), 1)])
        cloud.subscribe("pli/+/+/status", qos=1)
        assert until(lambda: len(got07) >= 1, 10)
        time.sleep(0.5)
        assert [t for t, _ in got07] == [announce_topic("fleet1", "canary")]  # not the fleet's
        assert b"2026.12.01" in got07[0][1]
        time.sleep(0.3)
        uav07.publish(status_topic("fleet1", "UAV-07"), b'{"model": "pli-next/2026.12.01"}', qos=1, retain=True)
        uav07.publish(status_topic("fleet1", "UAV-08"), b'{"model": "forged"}', qos=1, retain=True)
        assert until(lambda: len(got_cloud) >= 1, 10)
        time.sleep(0.5)
        assert [t for t, _ in got_cloud] == [status_topic("fleet1", "UAV-07")]  # another drone's status: dropped
        # UAV-07 moves to the fleet group: a new ACL, a SIGHUP, and its next subscription sees the fleet's
        acl.write_text(render(read_groups(GROUPS.replace("UAV-07,fleet1,canary", "UAV-07,fleet1,fleet"))))
        broker.reload()
        time.sleep(0.5)
        moved, got_moved = _client(broker, "fleet1/UAV-07")
        clients.append(moved)
        moved.subscribe([(announce_topic("fleet1", "canary"), 1), (announce_topic("fleet1", "fleet"), 1)])
        assert until(lambda: len(got_moved) >= 1, 10)
        time.sleep(0.5)
        assert [t for t, _ in got_moved] == [announce_topic("fleet1", "fleet")]
    finally:
        for c in clients:
            c.loop_stop()
            c.disconnect()
        broker.stop()


def test_a_groups_file_cannot_smuggle_acl_lines():
    with pytest.raises(ValueError, match="line 3: a row needs drone, fleet and group"):
        read_groups("drone,fleet,group\nUAV-07,fleet1,canary\ntopic readwrite #\n")
    with pytest.raises(ValueError, match="not a plain name"):
        read_groups("drone,fleet,group\nUAV-07,fleet1,\"canary\ntopic readwrite #\"\n")
