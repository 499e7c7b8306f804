"""Issue 25, finding 7: the broker drops messages past `max_queued_messages` while ingest is away,
and said so only in its own log. Now ingest follows the broker's $SYS counters, logs each rise in
dropped messages as an error, and the API's /metrics exports it; the drones' resend brings every
dropped alert in anyway. The deployment config itself, with a queue of 5, on a real Mosquitto."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from factories import new_alert
from fastapi.testclient import TestClient
from waiting import until

from cloud.api.app import create_app
from cloud.db import session_scope, upgrade
from cloud.ingest import DROPPED, IngestWorker
from cloud.models import BrokerCounter
from cloud.tokens import create_token
from comms.local_broker import LocalBroker
from comms.mqtt_link import MqttConfig, MqttLink, broker_user
from comms.outbox import Outbox

pytestmark = pytest.mark.slow
DRONE = broker_user("fleet1", "UAV-07")
PASSWORDS = {"cloud": "pw-cloud", DRONE: "pw-drone"}


def _ingest(broker: LocalBroker, url: str) -> tuple[IngestWorker, threading.Event, threading.Thread]:
    worker = IngestWorker(MqttConfig(port=broker.port, username="cloud", password=PASSWORDS["cloud"]), url,
                          name="ingest-drops", linger_s=0.01).start()
    assert worker.subscribed.wait(10)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    return worker, stop, thread


def _stop(worker: IngestWorker, stop: threading.Event, thread: threading.Thread) -> None:
    stop.set()
    thread.join(5)
    worker.stop()


def test_drops_past_the_queue_are_logged_exported_and_resent(tmp_path, caplog):
    broker = LocalBroker.deployment(tmp_path / "broker", PASSWORDS,
                                    settings={"max_queued_messages": "5", "sys_interval": "1"}).start()
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    box = Outbox(tmp_path / "o.db", "UAV-07")
    link = MqttLink(box, MqttConfig(port=broker.port, username=DRONE, password=PASSWORDS[DRONE]),
                    resend_after_s=2.0)
    worker, stop, thread = _ingest(broker, url)  # its persistent session exists from now on
    _stop(worker, stop, thread)
    caplog.set_level(logging.ERROR, logger="cloud.ingest")
    try:
        link.start()
        assert link.connected.wait(10)
        for _ in range(30):
            box.put(new_alert(box))
        assert until(lambda: box.counts().get("pending", 0) == 0, 10, link.pump)  # all published: 25 dropped
        time.sleep(0.5)
        worker, stop, thread = _ingest(broker, url)
        # the drop is heard (each sys_interval), logged and saved for /metrics
        assert until(lambda: worker.broker.get(DROPPED, 0) >= 25, 15)
        assert until(lambda: _saved(url) >= 25, 10)
        assert any("the broker dropped" in r.getMessage() for r in caplog.records), caplog.text
        # and the drone's resend brings in every alert the broker dropped
        assert until(lambda: box.counts() == {"acked": 30}, 60, link.pump), box.counts()
        _stop(worker, stop, thread)
    finally:
        link.stop()
        broker.stop()
    with session_scope(url) as s:
        operator = create_token(s, "ops", "operator")
    body = TestClient(create_app(url)).get("/metrics", headers={"Authorization": f"Bearer {operator}"}).text
    line = next(x for x in body.splitlines() if x.startswith("pli_broker_messages_dropped "))
    assert float(line.split()[1]) >= 25


def _saved(url: str) -> int:
    with session_scope(url) as s:
        row = s.get(BrokerCounter, DROPPED)
        return row.value if row is not None else 0
