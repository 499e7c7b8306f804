"""The ground station: BeiDou short messages in, verified alerts out to MQTT.

`pli ground run` reads the receiving terminal (driver.py), checks each message's tag with the
sending drone's key (alert_pack.py), refuses replays (replay.py), and republishes every new
alert in its JSON form on the same topic the drone uses over 4G, so the cloud sees one stream
with one id per alert whichever way it came. It publishes a receipt per message too
(`pli/<fleet>/<drone>/beidou_receipts`: the ids it passed on). The cloud's acknowledgement is
what settles an alert in the drone's outbox. With `beidou_acks`, the station also answers over
BeiDou, when its terminal's service interval allows: a signed acknowledgement of every alert it
received from that drone (replays included: the drone evidently missed the first answer), so a
drone out of 4G re-sends what a lost message carried instead of waiting to land; and signed
refusals of what can never pass here (a sequence number too old for the replay window, a
class-list version this station does not know, an epoch below the highest it knows for the
drone: "superseded epoch, highest is E"), so the drone stops sending those by BeiDou. Alerts
are decoded with the class list of the version their message names (comms/class_lists/).

Keys come from a key file named by the environment (PLI_KEYS_FILE), never from the repository:
JSON `{"<key id>": {"drone_id": "UAV-07", "key_hex": "..."}}`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

from comms import alert_json
from comms.alert_pack import UNKNOWN_CLASS_LIST, PackError, Refusal, UnknownClassList, pack_ack, pack_refusal, unpack
from comms.classes import ClassList, known_class_lists
from comms.mqtt_link import alerts_topic
from comms.replay import NEW, REPLAY, SUPERSEDED, TOO_OLD, ReplayGuard, digest
from comms.settings import drone_settings

log = logging.getLogger(__name__)


def load_keys(path: str | Path | None = None) -> dict[int, tuple[str, bytes]]:
    path = path or drone_settings().keys_file
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
    refused: int = 0  # alerts refused with a signed answer (too old, unknown class list, superseded epoch)
    ack_messages: int = 0
    refusal_messages: int = 0
    unconfirmed: int = 0  # messages whose alerts the broker did not take in time (left for a re-send)
    reasons: list[str] = field(default_factory=list)


_ACK = "ack"


class GroundStation:
    def __init__(self, keys: dict[int, tuple[str, bytes]], guard: ReplayGuard, client: mqtt.Client,
                 fleet: str = "fleet1", beidou_acks: bool = False, publish_timeout_s: float = 5.0,
                 class_lists: Mapping[int, ClassList] | None = None):
        """`beidou_acks`: answer drones by BeiDou (acknowledgements and signed refusals);
        `class_lists`: the class-list versions this station decodes (default: the packaged ones)."""
        self.keys, self.guard, self.client, self.fleet = keys, guard, client, fleet
        self.publish_timeout_s = publish_timeout_s
        self.beidou_acks = beidou_acks
        self.class_lists = known_class_lists() if class_lists is None else class_lists
        # (BeiDou address, key id) -> {(kind, epoch, detail): {seq: content digest}}; kind "ack" or a
        # refusal reason (refusals carry no digest)
        self.to_answer: dict[tuple[str, int], dict[tuple[str, int, int], dict[int, bytes]]] = {}
        self.stats = GroundStats()

    def _answer(self, sender: str, key_id: int, kind: str, epoch: int, seqs: dict[int, bytes], detail: int = 0) -> None:
        if self.beidou_acks and seqs:
            self.to_answer.setdefault((sender, key_id), {}).setdefault((kind, epoch, detail), {}).update(seqs)

    def handle(self, sender: str, payload: bytes) -> list[str]:
        """One received message; returns the ids passed on (empty for a rejected or replayed one)."""
        self.stats.messages += 1
        try:
            batch = unpack(payload, self.keys.get, self.class_lists)
        except UnknownClassList as exc:
            self.stats.rejected += 1
            self.stats.refused += len(exc.seqs)
            self.stats.reasons.append(str(exc))
            log.warning("message from BeiDou address %s refused: %s; the alerts wait for MQTT", sender, exc)
            self._answer(sender, exc.key_id, UNKNOWN_CLASS_LIST, exc.epoch, dict.fromkeys(exc.seqs, b""), exc.version)
            return []
        except PackError as exc:
            self.stats.rejected += 1
            self.stats.reasons.append(str(exc))
            log.warning("message from BeiDou address %s rejected: %s", sender, exc)
            return []
        if not batch.alerts:
            return []
        drone, epoch, seqs = batch.drone_id, batch.epoch, batch.seqs
        # Record the alerts as seen, and acknowledge them, only once the broker has them: a
        # power cut between the two then costs a duplicate publish (the cloud drops it by id),
        # never an alert that the window refuses and the drone believes delivered.
        digests = [digest(a) for a in batch.alerts]  # a reused number with other content is no replay
        verdicts = self.guard.check(drone, epoch, seqs, digests)
        passed, sent = [], []
        for alert, v in zip(batch.alerts, verdicts, strict=True):
            if v == NEW:
                doc = alert_json.to_json(alert) | {"via": "beidou"}  # the cloud merges it with the 4G copy
                sent.append(self.client.publish(alerts_topic(self.fleet, alert.drone_id),
                                                json.dumps(doc, separators=(",", ":")).encode(), qos=1))
                passed.append(alert.id)
        if not all(self._confirmed(info) for info in sent):
            self.stats.unconfirmed += 1
            log.warning("broker did not confirm %d alerts from %s within %g s: not recorded, not acknowledged "
                        "(the drone sends them again)", len(sent), drone, self.publish_timeout_s)
            return []
        news = [(s, d) for s, d, v in zip(seqs, digests, verdicts, strict=True) if v == NEW]
        self.guard.accept(drone, epoch, [s for s, _ in news], [d for _, d in news])
        # Acknowledge what was passed on now or before (a replay: the drone missed the answer);
        # refuse, signed, what can never pass here, so the drone stops sending it by BeiDou.
        # The acknowledgement carries each alert's content check: it settles that alert, not another
        # that a wiped or restored outbox numbered the same.
        self._answer(sender, batch.key_id, _ACK, epoch, {s: d for s, d, v in zip(seqs, digests, verdicts, strict=True)
                                                         if v in (NEW, REPLAY)})
        for reason in (TOO_OLD, SUPERSEDED):
            refused = {s: b"" for s, v in zip(seqs, verdicts, strict=True) if v == reason}
            if refused:
                detail = (self.guard.highest_epoch(drone) or 0) if reason == SUPERSEDED else 0
                self.stats.refused += len(refused)
                log.warning("alerts %s of %s (epoch %d) refused: %s%s", sorted(refused), drone, epoch, reason,
                            f", highest epoch is {detail}" if detail else "")
                self._answer(sender, batch.key_id, reason, epoch, refused, detail)
        if not passed and REPLAY in verdicts:
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
            if self.to_answer and driver.next_send_in() == 0:
                self._send_answer(driver)

    def _send_answer(self, driver) -> None:
        """One short message: refusals before acknowledgements (they stop wasted sends)."""
        (address, key_id), pending = next(iter(self.to_answer.items()))
        kind, epoch, detail = min(pending, key=lambda k: (k[0] == _ACK, k[1]))
        seqs = pending[(kind, epoch, detail)]
        key = self.keys[key_id][1]
        if kind == _ACK:
            payload, done = pack_ack(sorted(seqs), key_id, key, epoch, driver.card.payload_bytes, checks=seqs)
        else:
            payload, done = pack_refusal(Refusal(kind, epoch, sorted(seqs), detail), key_id, key,
                                         driver.card.payload_bytes)
        result = driver.send(address, payload, retries=0)
        if not result.ok:
            log.warning("BeiDou answer to %s not sent: %s", address, result.reason)
            return
        for s in done:
            del seqs[s]
        if not seqs:
            del pending[(kind, epoch, detail)]
        if not pending:
            del self.to_answer[(address, key_id)]
        if kind == _ACK:
            self.stats.ack_messages += 1
        else:
            self.stats.refusal_messages += 1
        log.info("%s of %d alerts (epoch %d) sent to %s over BeiDou", "acknowledgement" if kind == _ACK else kind,
                 len(done), epoch, address)
