"""`pli cloud ingest` against a real Mosquitto and a real database: drones' alerts stored once and
acknowledged after the commit, BeiDou and MQTT copies merged, a database outage acknowledged
nothing, workers sharing a subscription and killed mid-drain losing nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from factories import fill, new_alert
from sqlalchemy import func, select
from waiting import until

from cloud.db import session_scope, sessions
from cloud.ingest import IngestWorker
from cloud.models import Alert, Notification
from comms import alert_json
from comms.alert_pack import pack
from comms.mqtt_link import MqttConfig, MqttLink, alerts_topic, connect, make_client
from comms.outbox import ACKED, Outbox

pytestmark = pytest.mark.slow
KEY = bytes(range(32))


def _count(url) -> int:
    with session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(Alert))


def test_drones_alerts_are_stored_once_and_acknowledged_after_the_commit(broker, ingest, tmp_path):
    worker, url = ingest
    box = Outbox(tmp_path / "o.db", "UAV-07")
    ids = fill(box, 30)
    link = MqttLink(box, MqttConfig(port=broker.port), resend_after_s=1)
    link.start()
    try:
        assert until(lambda: box.counts() == {ACKED: 30}, 20, link.pump), box.counts()
    finally:
        link.stop()
    with session_scope(url) as s:
        assert set(s.scalars(select(Alert.id))) == set(ids)
        assert s.scalar(select(func.count()).select_from(Notification)) == 20  # 20 high ones on the on-call topic
    assert worker.stats.rejected == 0 and worker.stats.stored == 30


def test_the_ground_stations_beidou_copy_then_the_drones_4g_copy_is_one_row(broker, ingest, tmp_path):
    from comms.ground import GroundStation
    from comms.replay import ReplayGuard

    _, url = ingest
    box = Outbox(tmp_path / "o.db", "UAV-07")
    a = new_alert(box, flight_id="F7", source_frame="DJI_0007.JPG", box=(10.0, 20.0, 30.0, 40.0))
    box.put(a, thumb=b"\xff\xd8\xff small jpeg")
    client = make_client("ground-ingest-test", MqttConfig(port=broker.port))
    connect(client, MqttConfig(port=broker.port))
    station = GroundStation({7: ("UAV-07", KEY)}, ReplayGuard(tmp_path / "r.db"), client)
    try:
        assert until(client.is_connected, 5)
        assert station.handle("0247718", pack([a], 7, KEY, 77).payload) == [a.id]  # by BeiDou first
        assert until(lambda: _count(url) == 1, 10)
        with session_scope(url) as s:
            row = s.get(Alert, a.id)
            assert row.via == "beidou" and row.thumbnail is None and row.flight_id is None and not row.precise
        link = MqttLink(box, MqttConfig(port=broker.port))
        link.start()
        try:
            assert until(lambda: box.state(a.id) == ACKED, 10, link.pump)
        finally:
            link.stop()
    finally:
        client.loop_stop()
    with session_scope(url) as s:
        row = s.get(Alert, a.id)
        assert (row.via, row.flight_id, row.source_frame, row.thumbnail) == ("both", "F7", "DJI_0007.JPG",
                                                                               b"\xff\xd8\xff small jpeg")
        assert row.precise and row.lat == a.lat and _count(url) == 1


def test_a_payload_for_another_drone_than_the_topic_is_refused_and_dropped(broker, ingest):
    worker, url = ingest
    forged = new_alert(Outbox(":memory:", "UAV-08"))
    c = make_client("uav07-forger", MqttConfig(port=broker.port))
    connect(c, MqttConfig(port=broker.port))
    try:
        assert until(c.is_connected, 5)
        c.publish(alerts_topic("fleet1", "UAV-07"), alert_json.dumps(forged), qos=1).wait_for_publish(5)
        assert until(lambda: worker.stats.rejected == 1, 10)
    finally:
        c.loop_stop()
    assert "is not the topic's UAV-07" in worker.stats.reasons[0] and _count(url) == 0


def test_nothing_is_acknowledged_while_the_database_is_down(broker, tmp_path):
    """PostgreSQL stopped under a running ingest: the drone's alerts stay unacknowledged (the
    outbox keeps them due) until the server is back; then every one is stored once."""
    from cloud.db import upgrade
    from cloud.local_postgres import LocalPostgres

    pg = LocalPostgres().start()
    try:
        upgrade(pg.url)
        worker = IngestWorker(MqttConfig(port=broker.port), pg.url, name="ingest-outage", linger_s=0.02).start()
        assert worker.subscribed.wait(5)
        stop = threading.Event()
        t = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        t.start()
        box = Outbox(tmp_path / "o.db", "UAV-07")
        link = MqttLink(box, MqttConfig(port=broker.port), resend_after_s=60)
        link.start()
        assert link.connected.wait(5)
        pg.stop()
        ids = fill(box, 10)
        link.pump()
        assert until(lambda: worker.stats.db_retries >= 2, 15)
        for _ in range(10):
            link.pump()
            time.sleep(0.1)
        assert box.counts() == {"sent_mqtt": 10}  # published, never acknowledged
        pg.start()
        assert until(lambda: box.counts() == {ACKED: 10}, 30, link.pump), box.counts()
        with session_scope(pg.url) as s:
            assert sorted(s.scalars(select(Alert.id))) == sorted(ids)
        link.stop()
        stop.set()
        t.join(15)
        worker.stop()
    finally:
        pg.remove()


def _publish_queue(port: int, n: int, drone: str = "UAV-07") -> list[str]:
    """`n` alerts published QoS 1 to the broker, as drones would, before any worker runs."""
    box = Outbox(f"/tmp/pli-ingest-queue-{os.getpid()}-{time.monotonic_ns()}.db", drone)
    alerts = [new_alert(box) for _ in range(n)]
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{drone}", protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = [c.publish(alerts_topic("fleet1", drone), alert_json.dumps(a), qos=1) for a in alerts]
    for i in infos:
        i.wait_for_publish(10)
    c.loop_stop()
    c.disconnect()
    return [a.id for a in alerts]


def test_workers_sharing_the_subscription_and_killed_mid_drain_lose_nothing(broker, db_url, tmp_path):
    """Two `pli cloud ingest` processes in one group (stable names: their sessions outlive them)
    drain a queue while one of them is SIGKILLed five times: every alert stored, once. On
    PostgreSQL the two really write at once (and race to create the same drone and flight rows)."""
    url = db_url
    env = {**os.environ, "PLI_DATABASE_URL": url, "PLI_CLOUD_DIR": str(tmp_path / "cloud")}
    cmd = [sys.executable, "-m", "pli", "cloud", "ingest", "--mqtt-port", str(broker.port), "--batch", "20"]
    logs = {name: tmp_path / f"{name}.log" for name in ("ingest-a", "ingest-b")}
    workers = {name: subprocess.Popen([*cmd, "--name", name], env=env, stderr=log.open("w"))
               for name, log in logs.items()}
    try:
        # both subscribed (each says so): their sessions now hold the group's share, so nothing
        # published from here on is dropped for want of a subscriber, however slow the start
        assert until(lambda: all("ingest subscribed" in log.read_text() for log in logs.values()), 120), \
            [log.read_text()[-500:] for log in logs.values()]
        ids = _publish_queue(broker.port, 400)
        for _ in range(5):
            time.sleep(0.6)
            workers["ingest-a"].send_signal(signal.SIGKILL)
            workers["ingest-a"].wait()
            workers["ingest-a"] = subprocess.Popen([*cmd, "--name", "ingest-a"], env=env, stderr=subprocess.DEVNULL)
        assert until(lambda: _count(url) == 400, 180), _count(url)  # (a loaded machine drains slowly)
    finally:
        for p in workers.values():
            p.send_signal(signal.SIGTERM)
        for p in workers.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    with session_scope(url) as s:
        assert sorted(s.scalars(select(Alert.id))) == sorted(ids)  # all, and the primary key allows no twin


def test_the_demos_alerts_land_in_the_database_by_4g_and_by_beidou(tmp_path):
    """scripts/demo_links.py (the demo's second half) on an outbox of 6 alerts: the cloud is the
    real ingest; what went by BeiDou first ends as one row with its flight and thumbnail."""
    from comms.device import DeviceConfig

    key = tmp_path / "device.key"
    key.write_text(os.urandom(32).hex())
    DeviceConfig("UAV-01", "fleet1", 1, "0179773", key_file=str(key)).save(tmp_path / "device.json")
    import cv2
    import numpy as np

    crop = tmp_path / "crop.jpg"  # the demo makes the 4G thumbnail from the crop on the drone
    cv2.imwrite(str(crop), np.full((60, 80, 3), 128, np.uint8))
    box = Outbox(tmp_path / "outbox.db", "UAV-01", "fleet1")
    for _ in range(6):
        box.put(new_alert(box, flight_id="F-demo", crop_path=str(crop)))
    box.close()
    out = subprocess.run([sys.executable, "scripts/demo_links.py", str(tmp_path / "outbox.db"),
                          str(tmp_path / "device.json")], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PLI_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "by 4G" in out.stdout and "by BeiDou via ground station" in out.stdout
    with session_scope(f"sqlite:///{tmp_path / 'demo.db'}") as s:
        rows = list(s.scalars(select(Alert)))
        assert len(rows) == 6 and {r.via for r in rows} == {"mqtt", "both"}
        assert all(r.flight_id == "F-demo" and r.thumbnail for r in rows)
    # The crew's printable report of the demo flight (what `pli cloud report` writes).
    out = subprocess.run([sys.executable, "-m", "pli", "cloud", "report", "F-demo", "--out", str(tmp_path / "r.pdf")],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PLI_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"})
    assert out.returncode == 0, out.stderr[-2000:]
    from pypdf import PdfReader

    pdf = PdfReader(tmp_path / "r.pdf")
    text = "\n".join(p.extract_text() for p in pdf.pages)
    assert 1 <= len(pdf.pages) <= 2 and "Inspection flight F-demo" in text and "Drone UAV-01" in text
    assert all(r.id in text and f"{r.lat:.6f}, {r.lon:.6f}" in text for r in rows)


def test_ingest_started_in_another_folder_refuses_to_make_a_database_of_its_own(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PLI_DATABASE_URL", "PLI_CLOUD_DIR")}
    r = subprocess.run([sys.executable, "-m", "pli", "cloud", "ingest", "--mqtt-port", "1"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and not (tmp_path / "pli-cloud").exists()
    assert r.stderr.strip().splitlines()[-1].startswith("pli: error: no database named and none at ")


def test_ingest_dying_of_sigbus_says_why_in_one_line_and_loses_nothing(broker, tmp_path):
    """SQLite maps its WAL index (-shm) into memory: truncate it under a running ingest and the
    next access is a SIGBUS, which used to end `pli cloud ingest` with rc 135 and not a word. Now
    the supervising process says it in one line and exits 1; a restart stores what was not
    acknowledged."""
    db = tmp_path / "cloud.db"
    url = f"sqlite:///{db}"
    env = {**os.environ, "PLI_DATABASE_URL": url, "PLI_CLOUD_DIR": str(tmp_path / "cloud")}
    cmd = [sys.executable, "-m", "pli", "cloud", "ingest", "--mqtt-port", str(broker.port), "--name", "ingest-bus"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)
        first = _publish_queue(broker.port, 20)
        assert until(lambda: _count(url) == 20, 60)
        sessions(url).kw["bind"].dispose()  # this process's own mapping of -shm goes first
        os.truncate(f"{db}-shm", 0)
        later = _publish_queue(broker.port, 5, drone="UAV-08")
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-2000:]
    lines = [x for x in err.splitlines() if x.startswith("pli: error:")]
    assert len(lines) == 1 and "died of SIGBUS" in lines[0] and "-shm" in lines[0], err[-2000:]
    again = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert until(lambda: _count(url) == 25, 60), _count(url)
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(20)
    with session_scope(url) as s:
        assert sorted(s.scalars(select(Alert.id))) == sorted(first + later)
