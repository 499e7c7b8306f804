"""Driver of a BeiDou RDSS terminal over a serial port (pyserial), in any of the three dialects.

At start it finds the terminal's dialect (the first frame it hears, or the first answer to a
card query tried in each dialect in turn), reads the card (address, service frequency, comm
level -> bits per message) and turns beam status output on. A reader thread turns what the
terminal says into dialect-free events (dialects.py): beam power, feedback, received messages.
`send` paces itself to the card's service frequency, retries after a refusal with the
terminal's wait time, and gives up on transmit inhibit only after its retries.
"""

from __future__ import annotations

import itertools
import logging
import queue
import termios
import threading
import time
from dataclasses import dataclass

import serial

from comms.beidou.dialects import DIALECTS, Beams, Card, Dialect, Feedback, Message
from comms.beidou.protocol import BINARY_40, TEXT_21, TEXT_BDS3, Frame, ParseError
from comms.beidou.stream import StreamReader

log = logging.getLogger(__name__)

OFFLINE_AFTER_S = 30.0  # no beam status for this long: the terminal is treated as offline
PROBE_ORDER = (TEXT_21, BINARY_40, TEXT_BDS3)


class TerminalError(OSError):
    """The terminal cannot be reached or does not answer (an I/O failure: `pli` exits 2 on it)."""


@dataclass(frozen=True)
class SendResult:
    ok: bool
    attempts: int
    reason: str = ""


class Driver:
    def __init__(self, port: str, baudrate: int = 115200, card_timeout_s: float = 6.0,
                 dialect: str | None = None, max_bits: int | None = None):
        """`dialect` None detects it; `max_bits` overrides the message size the card implies."""
        if dialect is not None and dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}: one of {', '.join(DIALECTS)}")
        self.serial = serial.Serial(port, baudrate, timeout=0.05)
        self.dialect: Dialect | None = DIALECTS[dialect] if dialect else None
        self.powers: tuple[int, ...] = ()
        self.has_time = True
        self.last_bsi: float | None = None
        self.card: Card | None = None
        self.last_send: float | None = None
        self.failed: str | None = None  # why the port stopped working (unplugged): reopen the terminal
        self._heard: queue.Queue[Frame] = queue.Queue()
        self._feedback: queue.Queue[Feedback] = queue.Queue()
        self._received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._cards: queue.Queue[Card] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read_loop, daemon=True)
        self._thread.start()
        try:
            self.card = self._start(card_timeout_s, max_bits)
        except BaseException:
            self.close()
            raise
        log.info("BeiDou terminal (dialect %s), card %s: one message per %g s, level %d (%d bits, %d payload bytes)",
                 self.card.dialect, self.card.address, self.card.service_frequency_s, self.card.comm_level,
                 self.card.capacity_bits, self.card.payload_bytes)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.serial.close()

    def _write(self, data: bytes) -> None:
        try:
            self.serial.write(data)
            self.serial.flush()
        except (serial.SerialException, OSError, termios.error) as exc:  # unplugged: tcdrain raises termios
            self.failed = f"cannot write to the terminal on {self.serial.port}: {exc}"
            raise TerminalError(self.failed) from None

    def _start(self, timeout: float, max_bits: int | None) -> Card:
        deadline = time.monotonic() + timeout
        card = None
        if self.dialect is None:
            self.dialect, first = self._detect(deadline)
            card = self.dialect.event(first)  # when the probe's answer was the card itself
        while not isinstance(card, Card) and time.monotonic() < deadline:
            self._write(self.dialect.card_query())
            try:
                card = self._cards.get(timeout=min(1.0, max(0.05, deadline - time.monotonic())))
            except queue.Empty:
                continue
        if not isinstance(card, Card):
            raise TerminalError(f"the terminal did not answer the card query (dialect {self.dialect.name})")
        if max_bits:
            card = Card(card.address, card.service_frequency_s, card.comm_level, card.encrypted, card.dialect, max_bits)
        self._write(self.dialect.beam_output(True, 1.0))
        return card

    def _detect(self, deadline: float) -> tuple[Dialect, Frame]:
        """The dialect of the first frame the terminal sends, spontaneously or to a card query."""
        for name in itertools.cycle(PROBE_ORDER):
            if time.monotonic() >= deadline:
                break
            self._write(DIALECTS[name].card_query())
            try:
                frame = self._heard.get(timeout=min(0.5, max(0.05, deadline - time.monotonic())))
            except queue.Empty:
                continue
            log.info("terminal speaks dialect %s (heard %s)", frame.dialect, frame.type)
            return DIALECTS[frame.dialect], frame
        raise TerminalError("the terminal answered no card query in any dialect (2.1, 4.0, BDS-3)")

    def _read_loop(self) -> None:
        reader = StreamReader()
        errors = 0
        while not self._stop.is_set():
            try:
                chunk = self.serial.read(4096)
                errors = 0
            except (serial.SerialException, OSError, TypeError) as exc:  # TypeError: closed under us
                if self._stop.is_set():
                    return
                errors += 1
                log.warning("serial read failed: %s", exc)
                if errors >= 5:  # a second of errors: the device is gone, not hiccuping
                    self.failed = f"reading the terminal on {self.serial.port} failed: {exc}"
                    return
                time.sleep(0.2)
                continue
            for item in reader.feed(chunk):
                if isinstance(item, ParseError):
                    log.warning("terminal sent a bad frame: %s", item)
                    continue
                dialect = self.dialect
                if item.dialect not in DIALECTS:  # a vendor's sentence we do not need (status, ...)
                    log.debug("terminal sent %s: not needed, ignored", item.type)
                    continue
                if dialect is None:
                    if item.type[:2] != "CC":  # our own probes never echo, but a loopback would
                        self._heard.put(item)
                    continue
                self._on_event(dialect.event(item))

    def _on_event(self, event: Beams | Feedback | Message | Card | None) -> None:
        if isinstance(event, Beams):
            self.powers, self.has_time = event.powers, event.has_time
            self.last_bsi = time.monotonic()
        elif isinstance(event, Feedback):
            self._feedback.put(event)
        elif isinstance(event, Message):
            self._received.put((event.sender, event.content))
        elif isinstance(event, Card):
            self._cards.put(event)

    # -- state ------------------------------------------------------------------------------------

    def beam_ok(self) -> bool:
        fresh = self.last_bsi is not None and time.monotonic() - self.last_bsi < OFFLINE_AFTER_S
        return fresh and self.failed is None and self.has_time and any(self.powers)

    def next_send_in(self) -> float:
        """Seconds until the service interval allows a send (0 when it does)."""
        if self.last_send is None or self.card is None:
            return 0.0
        return max(0.0, self.last_send + self.card.service_frequency_s - time.monotonic())

    # -- messages ---------------------------------------------------------------------------------

    def send(self, to: str, payload: bytes, retries: int = 3, feedback_timeout_s: float = 5.0,
             cancel: threading.Event | None = None) -> SendResult:
        """Send `payload` to address `to`, paced and retried; blocks until done (run it in a worker
        thread). Setting `cancel` ends the waits between attempts: nothing goes out after it."""
        assert self.card is not None and self.dialect is not None
        if len(payload) > self.card.payload_bytes:
            raise ValueError(f"{len(payload)} bytes exceed the card's {self.card.payload_bytes} per message")
        cancel = cancel or threading.Event()
        reason = ""
        for attempt in range(1, retries + 2):
            if self.failed:  # the port is gone: waiting or retrying cannot help
                return SendResult(False, attempt - 1, self.failed)
            if cancel.wait(self.next_send_in()) or cancel.is_set():
                return SendResult(False, attempt - 1, "cancelled")
            while not self._feedback.empty():
                self._feedback.get_nowait()
            try:
                self._write(self.dialect.send(self.card.address, to, payload))
            except TerminalError as exc:
                reason = str(exc)
                log.warning("BeiDou send failed: %s; attempt %d", reason, attempt)
                continue
            fb = self._await_feedback(feedback_timeout_s)
            if fb is None:
                reason = self.failed or "no feedback from the terminal"
                continue
            if fb.ok:
                self.last_send = time.monotonic()
                return SendResult(True, attempt)
            reason = f"refused ({fb.reason}, wait {fb.wait_s:g} s)"
            log.info("BeiDou send refused: %s; attempt %d", reason, attempt)
            if fb.reason == "frequency" and fb.wait_s:
                self.last_send = time.monotonic() - self.card.service_frequency_s + fb.wait_s
            elif cancel.wait(1.0):
                return SendResult(False, attempt, "cancelled")
        return SendResult(False, retries + 1, reason)

    def _await_feedback(self, timeout: float) -> Feedback | None:
        deadline = time.monotonic() + timeout
        while not self.failed and (left := deadline - time.monotonic()) > 0:
            try:
                return self._feedback.get(timeout=min(0.2, left))
            except queue.Empty:
                continue
        return None

    def receive(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        try:
            return self._received.get(timeout=timeout)
        except queue.Empty:
            return None
