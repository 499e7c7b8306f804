"""The ground station: BeiDou short messages in, verified alerts out to MQTT.

`pli ground run` reads the receiving terminal (driver.py), checks each message's tag with the
sending drone's key (alert_pack.py), refuses replays (replay.py), and republishes every new
alert in its JSON form on the same topic the drone uses over 4G, so the cloud sees one stream
with one id per alert whichever way it came. It publishes a receipt per message too
(`pli/<fleet>/<drone>/beidou_receipts`: the ids it passed on). The cloud's acknowledgement is
what settles an alert in the drone's outbox. With `beidou_acks`, the station also answers over
BeiDou, when its terminal's service interval allows: a signed acknowledgement of every alert it
received from that drone (replays included: the drone evidently missed the first answer), so a
drone out of 4G re-sends what a lost message carried instead of waiting to land.

Keys come from a key file named by the environment (PLI_KEYS_FILE), never from the repository:
JSON `{"<key id>": {"drone_id": "UAV-07", "key_hex": "..."}}`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

from comms import alert_json
from comms.alert_pack import PackError, pack_ack, peek_key_id, unpack
from comms.mqtt_link import alerts_topic
from comms.replay import WINDOW, ReplayGuard

log = logging.getLogger(__name__)


def load_keys(path: str | Path | None = None) -> dict[int, tuple[str, bytes]]:
    path = path or os.environ.get("PLI_KEYS_FILE")
    if not path:
        raise ValueError("no drone keys: set PLI_KEYS_FILE or pass --keys")
    try:
        doc = json.loads(Path(path).read_text())
        return {int(k): (str(v["drone_id"]), bytes.fromhex(v["key_hex"])) for k, v in doc.items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a key file ({type(exc).__name__}: {exc})") from None


@dataclass
class GroundStats:
    messages: int = 0
    alerts: int = 0
    rejected: int = 0
    replays: int = 0
    ack_messages: int = 0
    unconfirmed: int = 0  # messages whose alerts the broker did not take in time (left for a re-send)
    reasons: list[str] = field(default_factory=list)


class GroundStation:
    def __init__(self, keys: dict[int, tuple[str, bytes]], guard: ReplayGuard, client: mqtt.Client,
                 fleet: str = "fleet1", beidou_acks: bool = False, publish_timeout_s: float = 5.0):
        self.keys, self.guard, self.client, self.fleet = keys, guard, client, fleet
        self.publish_timeout_s = publish_timeout_s
        self.beidou_acks = beidou_acks
        self.to_ack: dict[tuple[str, int], set[int]] = {}  # (BeiDou address, key id) -> seqs
        self.stats = GroundStats()

    def handle(self, sender: str, payload: bytes) -> list[str]:
        """One received message; returns the ids passed on (empty for a rejected or replayed one)."""
        self.stats.messages += 1
        try:
            alerts = unpack(payload, self.keys.get)
        except PackError as exc:
            self.stats.rejected += 1
            self.stats.reasons.append(str(exc))
            log.warning("message from BeiDou address %s rejected: %s", sender, exc)
            return []
        if not alerts:
            return []
        drone, seqs = alerts[0].drone_id, [a.seq for a in alerts]
        # Record the alerts as seen, and acknowledge them, only once the broker has them: a
        # power cut between the two then costs a duplicate publish (the cloud drops it by id),
        # never an alert that the window refuses and the drone believes delivered.
        fresh = self.guard.check(drone, seqs)
        passed, sent = [], []
        for alert, new in zip(alerts, fresh, strict=True):
            if new:
                sent.append(self.client.publish(alerts_topic(self.fleet, alert.drone_id), alert_json.dumps(alert),
                                                qos=1))
                passed.append(alert.id)
        if not all(self._confirmed(info) for info in sent):
            self.stats.unconfirmed += 1
            log.warning("broker did not confirm %d alerts from %s within %g s: not recorded, not acknowledged "
                        "(the drone sends them again)", len(sent), drone, self.publish_timeout_s)
            return []
        highest = self.guard.highest(drone)
        self.guard.accept(drone, seqs)
        if self.beidou_acks:
            # Acknowledge what was passed on now or before; not numbers too old for the window to
            # tell (refused unseen: those must stay due for MQTT on the drone).
            known = [s for s, new in zip(seqs, fresh, strict=True)
                     if new or highest is None or highest - s < WINDOW]
            if known:
                self.to_ack.setdefault((sender, peek_key_id(payload)), set()).update(known)
        if not passed:
            self.stats.replays += 1
            log.warning("message from %s (%s) replays alerts already passed on: dropped", sender, drone)
        if passed:
            self.stats.alerts += len(passed)
            self.client.publish(f"pli/{self.fleet}/{drone}/beidou_receipts", json.dumps(passed), qos=1)
            log.info("passed on %d alerts from %s over BeiDou", len(passed), drone)
        return passed

    def _confirmed(self, info: mqtt.MQTTMessageInfo) -> bool:
        try:
            info.wait_for_publish(self.publish_timeout_s)
        except (RuntimeError, ValueError):  # not queued: disconnected, or the queue is full
            return False
        return info.is_published()

    def run(self, driver, stop: threading.Event) -> None:
        while not stop.is_set():
            got = driver.receive(timeout=0.2)
            if got is not None:
                self.handle(*got)
            if self.to_ack and driver.next_send_in() == 0:
                self._send_ack(driver)

    def _send_ack(self, driver) -> None:
        (address, key_id), seqs = next(iter(self.to_ack.items()))
        payload, done = pack_ack(sorted(seqs), key_id, self.keys[key_id][1], driver.card.payload_bytes)
        result = driver.send(address, payload, retries=0)
        if not result.ok:
            log.warning("BeiDou acknowledgement to %s not sent: %s", address, result.reason)
            return
        seqs.difference_update(done)
        if not seqs:
            del self.to_ack[(address, key_id)]
        self.stats.ack_messages += 1
        log.info("acknowledged %d alerts to %s over BeiDou", len(done), address)
