"""The drone's sending loop: outbox -> the link the selector picks -> home.

Each `tick` reads the cellular signal, asks the selector for a link, and sends: over MQTT
everything due (the link pumps PUBACKs and the cloud's acknowledgements back into the outbox);
over BeiDou one signed batch, as many alerts as the card's message holds, most severe first,
when the service interval allows. Alerts sent by BeiDou stay unconfirmed until an
acknowledgement arrives: the cloud's over MQTT (after the ground station republished them), or,
with `beidou_acks`, the ground station's signed short message back. They are sent again over
MQTT when 4G returns and, with `beidou_acks`, over BeiDou when no acknowledgement came within
`beidou_resend_after_s` (a lost message); the receivers drop duplicates by id.

The loop never blocks: a BeiDou send (which waits for the service interval and the terminal's
refusals) runs on its own thread, and is given up when the link moves to MQTT during a wait; its
alerts are kept out of MQTT while it is in flight, so nothing goes twice. Signed refusals from
the ground station (too old, unknown class-list version, superseded epoch) stop re-sending over
BeiDou (outbox.refuse); an alert that cannot be packed at all is marked and left for MQTT.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from comms.alert_pack import Ack, Packed, PackError, pack, unpack_answer
from comms.beidou.driver import Driver, SendResult
from comms.classes import ClassList, known_class_lists
from comms.mqtt_link import MqttLink
from comms.outbox import Outbox, ids_of
from comms.selector import BEIDOU, MQTT, LinkSelector

log = logging.getLogger(__name__)


@dataclass
class ForwarderStats:
    beidou_messages: int = 0
    beidou_alerts: int = 0
    beidou_failures: int = 0
    beidou_cancelled: int = 0  # sends given up because the link moved to MQTT during a wait
    beidou_acks: int = 0  # alerts confirmed by the ground station's short messages
    beidou_refused: int = 0  # alerts the ground station refused (they go by MQTT)
    unpackable: int = 0
    by_link: dict[str, int] = field(default_factory=dict)


class _Job:
    """One BeiDou send on its own daemon thread (a send waits for the card's service interval and
    the terminal's refusals, up to a minute): the loop goes on with MQTT, answers and switching."""

    def __init__(self, packed: Packed, send: Callable[[threading.Event], SendResult]):
        self.packed, self.cancel, self.done = packed, threading.Event(), threading.Event()
        self.result = SendResult(False, 0, "not finished")
        threading.Thread(target=self._run, args=(send,), daemon=True, name="beidou-send").start()

    def _run(self, send: Callable[[threading.Event], SendResult]) -> None:
        try:
            self.result = send(self.cancel)
        except Exception as exc:  # the driver raised: a failed send, the loop goes on
            self.result = SendResult(False, 0, f"{type(exc).__name__}: {exc}")
        finally:
            self.done.set()


class Forwarder:
    def __init__(self, outbox: Outbox, mqtt: MqttLink, beidou: Driver | None, selector: LinkSelector,
                 signal: Callable[[], int | None], key_id: int, key: bytes, ground_address: str,
                 beidou_acks: bool = False, beidou_resend_after_s: float | None = None,
                 class_lists: Mapping[int, ClassList] | None = None):
        """`beidou_resend_after_s` defaults to three service intervals: one for the ground
        station's own turn to send, and margin for delivery delays. `class_lists`: the versions
        this drone can pack (default: the packaged ones)."""
        self.outbox, self.mqtt, self.beidou, self.selector = outbox, mqtt, beidou, selector
        self.signal, self.key_id, self.key, self.ground = signal, key_id, key, ground_address
        self.beidou_acks = beidou_acks
        self.beidou_resend_after_s = beidou_resend_after_s
        self.class_lists = known_class_lists() if class_lists is None else class_lists
        self.stats = ForwarderStats()
        self._reopen: tuple[Callable[[], Driver], threading.Event, float] | None = None
        self._job: _Job | None = None  # the BeiDou send in flight, if any
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
        if self.beidou is not None and self.beidou.failed and self._reopen is not None and self._job is None:
            lost, self.beidou = self.beidou, None
            log.warning("BeiDou terminal lost (%s): opening it again", lost.failed)
            lost.close()
            self.open_beidou(*self._reopen)
        # The selector sees whether BeiDou can carry alerts at all (beams with power); the service
        # interval only decides when the next message goes, so the link does not flap with it.
        beidou_up = self.beidou is not None and self.beidou.beam_ok()
        link = self.selector.update(now, self.signal(), self.mqtt.connected.is_set(), beidou_up)
        if self._job is not None and link != BEIDOU and not self._job.done.is_set():
            self._job.cancel.set()  # 4G is back: what waits for the terminal goes by MQTT instead
            self._job.done.wait(0.1)
        self._finish_job()
        in_flight = [a.id for a in self._job.packed.alerts] if self._job is not None else []
        # acknowledgements are applied on every link; alerts in a BeiDou send are not published twice
        self.mqtt.pump(limit=0 if link != MQTT else 50, exclude=in_flight)
        if self.beidou is not None:
            self._read_beidou()
        if link == BEIDOU and self.beidou is not None and self._job is None and self.beidou.next_send_in() == 0:
            try:
                self._send_beidou()
            except ValueError as exc:  # a configuration the codec refuses (key id, capacity): said, loop goes on
                self.stats.beidou_failures += 1
                log.error("BeiDou send not possible: %s", exc)
        self.stats.by_link[link] = self.stats.by_link.get(link, 0) + 1
        return link

    def _read_beidou(self) -> None:
        assert self.beidou is not None
        drone = self.outbox.drone_id
        while (got := self.beidou.receive(timeout=0)) is not None:
            sender, payload = got
            try:
                answer = unpack_answer(payload, self.key_id, self.key)
            except PackError as exc:
                log.warning("BeiDou message from %s is not an answer for us: %s", sender, exc)
                continue
            ids = ids_of(drone, answer.epoch, answer.seqs)
            if isinstance(answer, Ack):
                checks = dict(zip(ids, answer.checks, strict=True)) if answer.checks is not None else None
                changed = self.outbox.ack(ids, checks)
                self.outbox.note_epoch(answer.epoch)
                self.stats.beidou_acks += changed
                log.info("ground station %s acknowledged %d alerts over BeiDou (%d new)", sender, len(ids), changed)
            else:
                self.outbox.refuse(ids, answer.reason, "beidou", answer.highest_epoch)
                self.stats.beidou_refused += len(ids)
                log.warning("ground station %s refused %d alerts of epoch %d: %s%s", sender, len(ids), answer.epoch,
                            answer.reason, f" (highest epoch {answer.detail})" if answer.highest_epoch else "")

    def _send_beidou(self) -> None:
        assert self.beidou is not None and self.beidou.card is not None
        due = self.outbox.due("beidou", limit=20, resend_after_s=self.mqtt.resend_after_s,
                              beidou_resend_after_s=self.beidou_resend_after_s if self.beidou_acks else None)
        if not due:
            return
        packed = pack([q.alert for q in due], self.key_id, self.key, self.beidou.card.payload_bytes,
                      self.class_lists)
        for alert, why in packed.unpackable:  # never blocks the loop: kept for MQTT, reason logged
            self.outbox.mark_unpackable(alert, why)
            self.stats.unpackable += 1
        if not packed.alerts:
            return
        driver, ground = self.beidou, self.ground
        self._job = _Job(packed, lambda cancel: driver.send(ground, packed.payload, retries=1, cancel=cancel))

    def _finish_job(self) -> None:
        job = self._job
        if job is None or not job.done.is_set():
            return
        self._job = None
        result = job.result
        ids = [a.id for a in job.packed.alerts]
        if result.ok:
            self.outbox.mark_sent(ids, "beidou")
            self.stats.beidou_messages += 1
            self.stats.beidou_alerts += len(ids)
            log.info("BeiDou message with %d alerts sent", len(ids))
        elif result.reason == "cancelled":
            self.stats.beidou_cancelled += 1
            log.info("BeiDou send of %d alerts given up: the link moved to MQTT", len(ids))
        else:
            self.stats.beidou_failures += 1
            log.warning("BeiDou send failed: %s", result.reason)

    def run(self, stop: threading.Event, interval_s: float = 1.0, until_empty: bool = False) -> None:
        """Tick until `stop` (or, with `until_empty`, until every alert is acknowledged)."""
        try:
            while not stop.is_set():
                self.tick()
                if until_empty and set(self.outbox.counts()) <= {"acked"}:
                    return
                stop.wait(interval_s)
        finally:
            self.close()

    def close(self) -> None:
        """Give up a BeiDou send still waiting (nothing goes out after it) and record how it ended."""
        if self._job is not None:
            self._job.cancel.set()
            self._job.done.wait(6.0)  # at most the feedback wait of a frame already written
        self._finish_job()
