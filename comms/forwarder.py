"""The drone's sending loop: outbox -> the link the selector picks -> home.

Each `tick` reads the cellular signal, asks the selector for a link, and sends: over MQTT
everything due (the link pumps PUBACKs and the cloud's acknowledgements back into the outbox);
over BeiDou one signed batch, as many alerts as the card's message holds, most severe first,
when the service interval allows. Alerts sent by BeiDou stay unconfirmed until an
acknowledgement arrives: the cloud's over MQTT (after the ground station republished them), or,
with `beidou_acks`, the ground station's signed short message back. They are sent again over
MQTT when 4G returns and, with `beidou_acks`, over BeiDou when no acknowledgement came within
`beidou_resend_after_s` (a lost message); the receivers drop duplicates by id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from comms.alert import alert_id
from comms.alert_pack import PackError, pack, unpack_ack
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
    beidou_acks: int = 0  # alerts confirmed by the ground station's short messages
    by_link: dict[str, int] = field(default_factory=dict)


class Forwarder:
    def __init__(self, outbox: Outbox, mqtt: MqttLink, beidou: Driver | None, selector: LinkSelector,
                 signal: Callable[[], int | None], key_id: int, key: bytes, ground_address: str,
                 beidou_acks: bool = False, beidou_resend_after_s: float | None = None):
        """`beidou_resend_after_s` defaults to three service intervals: one for the ground
        station's own turn to send, and margin for delivery delays."""
        self.outbox, self.mqtt, self.beidou, self.selector = outbox, mqtt, beidou, selector
        self.signal, self.key_id, self.key, self.ground = signal, key_id, key, ground_address
        self.beidou_acks = beidou_acks
        self.beidou_resend_after_s = beidou_resend_after_s
        self.stats = ForwarderStats()
        self._reopen: tuple[Callable[[], Driver], threading.Event, float] | None = None
        if beidou is not None:
            self.attach_beidou(beidou)

    def attach_beidou(self, driver: Driver) -> None:
        if self.beidou_acks and self.beidou_resend_after_s is None and driver.card is not None:
            self.beidou_resend_after_s = 3 * driver.card.service_frequency_s
        self.beidou = driver

    def open_beidou(self, opener: Callable[[], Driver], stop: threading.Event, every_s: float = 30.0) -> None:
        """Open the terminal in the background, retrying every `every_s` until it answers: a
        terminal that is late on USB at boot must not hold 4G alerts back, nor be given up on.
        One that fails later (unplugged, re-enumerated) is closed and opened again the same way."""
        self._reopen = (opener, stop, every_s)

        def attempt() -> None:
            while not stop.is_set():
                try:
                    self.attach_beidou(opener())
                    return
                except OSError as exc:  # TerminalError, or the serial port cannot be opened
                    log.warning("BeiDou terminal not available (%s); trying again in %g s", exc, every_s)
                stop.wait(every_s)

        threading.Thread(target=attempt, daemon=True, name="open-beidou").start()

    def tick(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        if self.beidou is not None and self.beidou.failed and self._reopen is not None:
            lost, self.beidou = self.beidou, None
            log.warning("BeiDou terminal lost (%s): opening it again", lost.failed)
            lost.close()
            self.open_beidou(*self._reopen)
        # The selector sees whether BeiDou can carry alerts at all (beams with power); the service
        # interval only decides when the next message goes, so the link does not flap with it.
        beidou_up = self.beidou is not None and self.beidou.beam_ok()
        link = self.selector.update(now, self.signal(), self.mqtt.connected.is_set(), beidou_up)
        self.mqtt.pump(limit=0 if link != MQTT else 50)  # acknowledgements are applied on every link
        if self.beidou is not None:
            self._read_beidou()
        if link == BEIDOU and self.beidou is not None and self.beidou.next_send_in() == 0:
            self._send_beidou()
        self.stats.by_link[link] = self.stats.by_link.get(link, 0) + 1
        return link

    def _read_beidou(self) -> None:
        assert self.beidou is not None
        while (got := self.beidou.receive(timeout=0)) is not None:
            sender, payload = got
            try:
                seqs = unpack_ack(payload, self.key_id, self.key)
            except PackError as exc:
                log.warning("BeiDou message from %s is not an acknowledgement for us: %s", sender, exc)
                continue
            changed = self.outbox.ack([alert_id(self.outbox.drone_id, s) for s in seqs])
            self.stats.beidou_acks += changed
            log.info("ground station %s acknowledged %d alerts over BeiDou (%d new)", sender, len(seqs), changed)

    def _send_beidou(self) -> None:
        assert self.beidou is not None and self.beidou.card is not None
        due = self.outbox.due("beidou", limit=20, resend_after_s=self.mqtt.resend_after_s,
                              beidou_resend_after_s=self.beidou_resend_after_s if self.beidou_acks else None)
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
