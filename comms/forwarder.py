"""The drone's sending loop: outbox -> the link the selector picks -> home.

Each `tick` reads the cellular signal, asks the selector for a link, and sends: over MQTT
everything due (the link pumps PUBACKs and the cloud's acknowledgements back into the outbox);
over BeiDou one signed batch, as many alerts as the card's message holds, most severe first,
when the service interval allows. Alerts sent by BeiDou stay unconfirmed until the cloud's
acknowledgement arrives over MQTT (after the ground station republished them), and are sent
again over MQTT when 4G returns: the cloud drops the duplicate by id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from comms.alert_pack import pack
from comms.beidou.driver import Driver
from comms.mqtt_link import MqttLink
from comms.outbox import Outbox
from comms.selector import BEIDOU, MQTT, LinkSelector

log = logging.getLogger(__name__)


@dataclass
class ForwarderStats:
    beidou_messages: int = 0
    beidou_alerts: int = 0
    beidou_failures: int = 0
    by_link: dict[str, int] = field(default_factory=dict)


class Forwarder:
    def __init__(self, outbox: Outbox, mqtt: MqttLink, beidou: Driver | None, selector: LinkSelector,
                 signal: Callable[[], int | None], key_id: int, key: bytes, ground_address: str):
        self.outbox, self.mqtt, self.beidou, self.selector = outbox, mqtt, beidou, selector
        self.signal, self.key_id, self.key, self.ground = signal, key_id, key, ground_address
        self.stats = ForwarderStats()

    def tick(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        # The selector sees whether BeiDou can carry alerts at all (beams with power); the service
        # interval only decides when the next message goes, so the link does not flap with it.
        beidou_up = self.beidou is not None and self.beidou.beam_ok()
        link = self.selector.update(now, self.signal(), self.mqtt.connected.is_set(), beidou_up)
        self.mqtt.pump(limit=0 if link != MQTT else 50)  # acknowledgements are applied on every link
        if link == BEIDOU and self.beidou is not None and self.beidou.next_send_in() == 0:
            self._send_beidou()
        self.stats.by_link[link] = self.stats.by_link.get(link, 0) + 1
        return link

    def _send_beidou(self) -> None:
        assert self.beidou is not None and self.beidou.card is not None
        due = self.outbox.due("beidou", limit=20)
        if not due:
            return
        packed = pack([q.alert for q in due], self.key_id, self.key, self.beidou.card.payload_bytes)
        result = self.beidou.send(self.ground, packed.payload, retries=1)
        if result.ok:
            self.outbox.mark_sent([a.id for a in packed.alerts], "beidou")
            self.stats.beidou_messages += 1
            self.stats.beidou_alerts += len(packed.alerts)
            log.info("BeiDou message with %d alerts sent", len(packed.alerts))
        else:
            self.stats.beidou_failures += 1
            log.warning("BeiDou send failed: %s", result.reason)

    def run(self, stop: threading.Event, interval_s: float = 1.0, until_empty: bool = False) -> None:
        """Tick until `stop` (or, with `until_empty`, until every alert is acknowledged)."""
        while not stop.is_set():
            self.tick()
            if until_empty and set(self.outbox.counts()) <= {"acked"}:
                return
            stop.wait(interval_s)
