"""The deployment broker config (deploy/mosquitto) run for real: passwords, per-drone ACLs, TLS."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from factories import new_alert
from store import Store
from waiting import until

from comms import alert_json
from comms.alert import Alert
from comms.classes import Severity
from comms.local_broker import LocalBroker
from comms.mqtt_link import MqttConfig, MqttLink, acks_topic, alerts_topic, broker_user, connect, make_client
from comms.outbox import Outbox

pytestmark = pytest.mark.slow

U07, U08 = broker_user("fleet1", "UAV-07"), broker_user("fleet1", "UAV-08")
PASSWORDS = {U07: "pw-uav07-from-env", U08: "pw-uav08-from-env", "cloud": "pw-cloud", "ground": "pw-ground"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = LocalBroker.deployment(tmp_path_factory.mktemp("secure-broker"), PASSWORDS).start()
    yield b
    b.stop()


def _tls(broker, user: str | None, password: str | None = None, ca: str | None = None) -> MqttConfig:
    return MqttConfig(port=broker.tls_port, username=user, password=password,
                      tls_ca=ca or str(broker.folder / "certs" / "ca.crt"))


def Cloud(cfg: MqttConfig) -> Store:
    return Store(cfg)


def _alert(box: Outbox) -> Alert:
    a = new_alert(box)
    box.put(a)
    return a


def test_a_drone_with_its_password_over_tls_delivers_and_gets_acknowledgements(broker, tmp_path):
    cloud = Cloud(_tls(broker, "cloud", PASSWORDS["cloud"]))
    box = Outbox(tmp_path / "o.db", "UAV-07")
    link = MqttLink(box, _tls(broker, U07, PASSWORDS[U07]))
    link.start()
    try:
        assert link.connected.wait(10), link.refused
        ids = [_alert(box).id for _ in range(3)]
        assert until(lambda: box.counts() == {"acked": 3}, 10, link.pump), box.counts()
    finally:
        link.stop()
        cloud.stop()
    assert sorted(i for _, i in cloud.messages) == sorted(ids)


@pytest.mark.parametrize("user,password", [(U07, "wrong"), ("UAV-07", "pw-uav07-from-env"), (None, None)])
def test_bad_credentials_are_refused_with_the_brokers_reason(broker, tmp_path, user, password):
    box = Outbox(tmp_path / "o.db", "UAV-07")
    link = MqttLink(box, _tls(broker, user, password))
    link.start()
    try:
        assert until(lambda: link.refused is not None, 10)
        assert not link.connected.is_set()
        assert link.refused in ("Not authorized", "Bad user name or password")
    finally:
        link.stop()


def test_a_certificate_from_another_ca_is_not_trusted(broker, tmp_path):
    import subprocess

    from comms.local_broker import DEPLOY

    subprocess.run(["bash", str(DEPLOY / "make-certs.sh"), str(tmp_path / "other")], check=True, capture_output=True)
    box = Outbox(tmp_path / "o.db", "UAV-07")
    link = MqttLink(box, _tls(broker, U07, PASSWORDS[U07], ca=str(tmp_path / "other" / "ca.crt")))
    link.start()
    try:
        assert until(lambda: link.connect_failures >= 1, 10)
        assert not link.connected.is_set()
    finally:
        link.stop()


def test_a_drone_may_only_publish_and_read_under_its_own_id(broker):
    cloud = Cloud(_tls(broker, "cloud", PASSWORDS["cloud"]))
    intruder = make_client("uav07-intruder", _tls(broker, U07, PASSWORDS[U07]))
    heard: list[str] = []
    subscribed = threading.Event()
    intruder.on_connect = lambda c, u, f, rc, p: c.subscribe([(acks_topic("fleet1", "UAV-07"), 1),
                                                              (acks_topic("fleet1", "UAV-08"), 1)])
    intruder.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    intruder.on_message = lambda c, u, m: heard.append(m.topic)
    connect(intruder, _tls(broker, U07, PASSWORDS[U07]))
    t = datetime(2026, 11, 22, 9, tzinfo=UTC)
    other = Alert("UAV-08", 1, "F1", t, 25.0, 102.0, 1600.0, "defect", 0.9, Severity.HIGH, epoch=1)
    own = Alert("UAV-07", 1, "F1", t, 25.0, 102.0, 1600.0, "defect", 0.9, Severity.HIGH, epoch=1)
    try:
        assert subscribed.wait(10)
        time.sleep(0.5)  # the cloud's subscription is in place
        # UAV-07 forges an alert as UAV-08, then sends its own; the cloud acknowledges what it gets
        intruder.publish(alerts_topic("fleet1", "UAV-08"), alert_json.dumps(other), qos=1).wait_for_publish(5)
        intruder.publish(alerts_topic("fleet1", "UAV-07"), alert_json.dumps(own), qos=1).wait_for_publish(5)
        assert until(lambda: bool(heard), 10)
        # and UAV-08's acknowledgements stay unreadable to UAV-07
        cloud.worker.client.publish(acks_topic("fleet1", "UAV-08"), json.dumps(["UAV-08:2"]), qos=1).wait_for_publish(5)
        cloud.worker.client.publish(acks_topic("fleet1", "UAV-07"), json.dumps(["UAV-07:2"]), qos=1).wait_for_publish(5)
        assert until(lambda: len(heard) >= 2, 10)
        time.sleep(0.5)
    finally:
        intruder.loop_stop()
        intruder.disconnect()
        cloud.stop()
    assert [i for _, i in cloud.messages] == [own.id]  # the forged alert never reached the cloud
    assert heard == [acks_topic("fleet1", "UAV-07")] * 2


def test_a_drone_cannot_publish_under_another_fleet(broker):
    """The ACL names the fleet: UAV-07 of fleet1 paging fleet3's on-call under pli/fleet3/UAV-07."""
    heard: list[str] = []
    subscribed = threading.Event()
    cloud = make_client("cloud-every-fleet", _tls(broker, "cloud", PASSWORDS["cloud"]))
    cloud.on_connect = lambda c, u, f, rc, p: c.subscribe(alerts_topic("+", "+"), qos=1)
    cloud.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    cloud.on_message = lambda c, u, m: heard.append(m.topic)
    connect(cloud, _tls(broker, "cloud", PASSWORDS["cloud"]))
    drone = make_client("uav07-other-fleet", _tls(broker, U07, PASSWORDS[U07]))
    connect(drone, _tls(broker, U07, PASSWORDS[U07]))
    t = datetime(2026, 11, 22, 9, tzinfo=UTC)
    forged = Alert("UAV-07", 5, "F1", t, 25.0, 102.0, 1600.0, "defect", 0.9, Severity.HIGH, epoch=1)
    own = Alert("UAV-07", 6, "F1", t, 25.0, 102.0, 1600.0, "defect", 0.9, Severity.HIGH, epoch=1)
    try:
        assert subscribed.wait(10)
        drone.publish(alerts_topic("fleet3", "UAV-07"), alert_json.dumps(forged), qos=1).wait_for_publish(5)
        drone.publish(alerts_topic("fleet1", "UAV-07"), alert_json.dumps(own), qos=1).wait_for_publish(5)
        assert until(lambda: bool(heard), 10)
        time.sleep(0.5)
    finally:
        for c in (drone, cloud):
            c.loop_stop()
            c.disconnect()
    assert heard == [alerts_topic("fleet1", "UAV-07")]


def test_the_plain_listener_also_requires_a_password(broker):
    refused: list = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anon", protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, u, f, rc, p: refused.append(rc)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert until(lambda: bool(refused), 10)
    finally:
        client.loop_stop()
    assert refused[0].is_failure


def test_pli_link_run_over_tls_with_the_device_config_and_its_password_from_the_environment(broker, tmp_path):
    import os
    import subprocess
    import sys

    ca = broker.folder / "certs" / "ca.crt"
    init = subprocess.run([sys.executable, "-m", "pli", "device", "init", "--drone-id", "UAV-08", "--key-id", "8",
                           "--ground-address", "0179773", "--mqtt-port", str(broker.tls_port), "--mqtt-tls-ca",
                           str(ca), "--out", str(tmp_path / "device.json")],
                          capture_output=True, text=True, env={**os.environ, "PLI_DEVICE_KEY": "ab" * 32})
    assert init.returncode == 0, init.stderr
    assert PASSWORDS[U08] not in (tmp_path / "device.json").read_text()
    box = Outbox(tmp_path / "o.db", "UAV-08")
    ids = []
    for _ in range(4):
        box.put(a := new_alert(box))
        ids.append(a.id)
    box.close()
    cloud = Cloud(_tls(broker, "cloud", PASSWORDS["cloud"]))
    try:
        run = subprocess.run([sys.executable, "-m", "pli", "link", "run", "--config", str(tmp_path / "device.json"),
                              "--outbox", str(tmp_path / "o.db"), "--assume-csq", "25", "--interval", "0.1",
                              "--until-empty"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PLI_DEVICE_KEY": "ab" * 32, "PLI_MQTT_PASSWORD": PASSWORDS[U08]})
    finally:
        cloud.stop()
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout.splitlines()[-1])
    assert summary["outbox"] == {"acked": 4} and summary["mqtt_pubacks"] >= 4
    assert sorted(i for _, i in cloud.messages) == sorted(ids)
