"""The cloud for the links tests: the real ingest worker (`cloud/ingest.py`) on a SQLite database
of its own, and a plain subscriber that counts every copy on the wire.

`stored` is what the database holds (id -> the API's JSON form), so a test of the drone's links
checks what truly landed: one row per alert, merged copies, refusals of superseded epochs.
"""

from __future__ import annotations

import tempfile
import threading
import uuid

from sqlalchemy import select

from cloud.alert_doc import alert_json_of
from cloud.db import session_scope, upgrade
from cloud.ingest import IngestWorker
from cloud.models import Alert
from comms import alert_json
from comms.mqtt_link import MqttConfig, alerts_topic, connect, make_client


class Store:
    def __init__(self, cfg: MqttConfig | int, fleet: str = "fleet1"):
        cfg = MqttConfig(port=cfg) if isinstance(cfg, int) else cfg
        self.url = f"sqlite:///{tempfile.mkdtemp(prefix='pli-store-')}/cloud.db"
        upgrade(self.url)
        self.ids: list[str] = []  # every copy on the wire, duplicates included
        self.messages: list[tuple[str, str]] = []  # (topic, id) of every copy
        self.lock = threading.Lock()
        self.worker = IngestWorker(cfg, self.url, group=f"store-{uuid.uuid4().hex[:6]}", fleet=fleet,
                                   name=f"store-{uuid.uuid4().hex[:8]}", linger_s=0.01).start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.worker.run, args=(self._stop,), daemon=True)
        self._thread.start()
        self.tap = make_client(f"tap-{uuid.uuid4().hex[:8]}", cfg)
        tapped = threading.Event()
        self.tap.on_connect = lambda c, u, f, rc, p: c.subscribe(alerts_topic(fleet, "+"), qos=1)
        self.tap.on_subscribe = lambda c, u, mid, rcs, p: tapped.set()
        self.tap.on_message = self._on_message
        connect(self.tap, cfg)
        # both subscriptions granted before anyone publishes: a loaded machine connects slowly
        if not (self.worker.subscribed.wait(30) and tapped.wait(30)):
            raise RuntimeError("the store's ingest or tap did not subscribe within 30 s")

    def _on_message(self, client, userdata, message) -> None:
        alert, _ = alert_json.loads(message.payload)
        with self.lock:
            self.ids.append(alert.id)
            self.messages.append((message.topic, alert.id))

    @property
    def stored(self) -> dict[str, dict]:
        with session_scope(self.url) as s:
            return {r.id: alert_json_of(r) for r in s.scalars(select(Alert))}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.worker.stop()
        self.tap.loop_stop()
        self.tap.disconnect()
