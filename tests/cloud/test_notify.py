"""On-call notifications and the job queue: a high-severity alert goes out at once on the on-call
MQTT topic and to a webhook that fails twice before it answers; huey retries it with backoff,
every attempt is recorded, and the job shows in the database."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import paho.mqtt.client as mqtt
import pytest
from factories import new_alert
from sqlalchemy import select
from waiting import until

from comms.classes import Severity
from comms.mqtt_link import MqttConfig, MqttLink
from comms.outbox import Outbox

pytestmark = pytest.mark.slow


class Hook(BaseHTTPRequestHandler):
    calls: list[tuple[int, bytes, str]] = []  # noqa: RUF012 - the test's record of requests

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = 500 if len(Hook.calls) < 2 else 200  # down twice, then up
        Hook.calls.append((status, body, self.headers.get("X-PLI-Signature", "")))
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_high_alert_reaches_the_on_call_topic_and_a_flaky_webhook(broker, tmp_path, monkeypatch):
    from cloud import jobs, notify  # noqa: F401 - registers the webhook job
    from cloud.db import session_scope, upgrade
    from cloud.ingest import IngestWorker
    from cloud.models import Job, Notification

    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    server = HTTPServer(("127.0.0.1", 0), Hook)
    Hook.calls = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("PLI_DATABASE_URL", url)
    monkeypatch.setenv("PLI_CLOUD_DIR", str(tmp_path / "cloud"))
    monkeypatch.setenv("PLI_ONCALL_WEBHOOKS", f"http://127.0.0.1:{server.server_port}/hook")
    monkeypatch.setenv("PLI_ONCALL_WEBHOOK_SECRET", "on-call secret")
    jobs.reset_queue()
    upgrade(url)
    heard: list[bytes] = []
    oncall = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="oncall-phone", protocol=mqtt.MQTTv5)
    oncall.on_connect = lambda c, u, f, rc, p: c.subscribe("pli/fleet1/oncall", qos=1)
    oncall.on_message = lambda c, u, m: heard.append(m.payload)
    oncall.connect("127.0.0.1", broker.port)
    oncall.loop_start()
    worker = jobs.Worker(workers=1).start()
    ingest = IngestWorker(MqttConfig(port=broker.port), url, name="ingest-notify").start()
    stop = threading.Event()
    t = threading.Thread(target=ingest.run, args=(stop,), daemon=True)
    t.start()
    box = Outbox(tmp_path / "o.db", "UAV-07")
    high, medium = new_alert(box), new_alert(box, Severity.MEDIUM, "bird_nest")
    box.put(high)
    box.put(medium)
    link = MqttLink(box, MqttConfig(port=broker.port))
    link.start()
    try:
        assert ingest.subscribed.wait(5)
        assert until(lambda: set(box.counts()) == {"acked"}, 10, link.pump)
        assert until(lambda: len(heard) == 1, 5)
        assert json.loads(heard[0])["alert"]["id"] == high.id  # the medium one raises no page
        assert until(lambda: len(Hook.calls) == 3, 20), Hook.calls
    finally:
        link.stop()
        stop.set()
        t.join(5)
        ingest.stop()
        worker.stop()
        oncall.loop_stop()
        server.shutdown()
        jobs.reset_queue()
    assert [c[0] for c in Hook.calls] == [500, 500, 200]
    body, signature = Hook.calls[-1][1], Hook.calls[-1][2]
    assert signature == "sha256=" + hmac.new(b"on-call secret", body, hashlib.sha256).hexdigest()
    assert json.loads(body)["alert"]["id"] == high.id
    with session_scope(url) as s:
        notes = {n.channel: n for n in s.scalars(select(Notification))}
        assert notes["mqtt"].status == "delivered" and notes["webhook"].status == "delivered"
        assert [a.ok for a in notes["webhook"].attempts] == [False, False, True]
        assert "HTTP 500" in notes["webhook"].attempts[0].detail
        (job,) = s.scalars(select(Job)).all()
        assert job.kind == "deliver_webhook" and job.status == "done" and job.result["attempts"] == 3
