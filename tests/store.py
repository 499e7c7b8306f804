"""The tests' stand-in for the cloud's alert store (the cloud service replaces it in its issue).

It keeps the one rule every receiver follows (comms.replay.verdict): an id already held with the
same content is a duplicate (acknowledged again); one held with other content, or of an epoch
below the highest it knows for the drone, is refused as superseded (answered with the highest);
anything else is stored and acknowledged.
"""

from __future__ import annotations

import threading
import uuid

from comms import alert_json
from comms.mqtt_link import MqttConfig, acks_topic, alerts_topic, connect, dump_answer, make_client
from comms.replay import NEW, SUPERSEDED, digest, verdict


class Store:
    def __init__(self, cfg: MqttConfig | int, fleet: str = "fleet1", highest_epochs: dict[str, int] | None = None):
        cfg = MqttConfig(port=cfg) if isinstance(cfg, int) else cfg
        self.fleet = fleet
        self.ids: list[str] = []  # every copy received, duplicates included
        self.messages: list[tuple[str, str]] = []  # (topic, id) of every copy
        self.stored: dict[str, dict] = {}  # id -> the JSON document first stored
        self.highest: dict[str, int] = dict(highest_epochs or {})  # drone -> highest epoch known
        self.refused: list[tuple[str, str]] = []  # (id, reason)
        self.lock = threading.Lock()
        self.client = make_client(f"store-{uuid.uuid4().hex[:8]}", cfg)  # no session carried between tests
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(alerts_topic(fleet, "+"), qos=1)
        self.client.on_message = self._on_message
        connect(self.client, cfg)

    def _on_message(self, client, userdata, message) -> None:
        import json

        doc = json.loads(message.payload)
        alert, _ = alert_json.from_json(doc)
        with self.lock:
            self.ids.append(alert.id)
            self.messages.append((message.topic, alert.id))
            top = self.highest.get(alert.drone_id)
            held = self.stored.get(alert.id)
            same = held is None or digest(alert_json.from_json(held)[0]) == digest(alert)
            v = verdict(held is not None, alert.epoch, top, same)
            if v == NEW:
                self.stored[alert.id] = doc
                self.highest[alert.drone_id] = max(alert.epoch, top or 0)
            elif v == SUPERSEDED:
                self.refused.append((alert.id, v))
                top = max(top or 0, alert.epoch)
        answer = dump_answer([], [{"id": alert.id, "reason": v, "highest_epoch": top}]) if v == SUPERSEDED \
            else dump_answer([(alert.id, digest(alert_json.from_json(self.stored[alert.id])[0]))])
        client.publish(acks_topic(self.fleet, alert.drone_id), answer, qos=1)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
