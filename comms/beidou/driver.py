"""Driver of a BeiDou RDSS terminal (text dialect 2.1) over a serial port (pyserial).

At start it reads the card (address, service frequency, comm level -> bits per message) and
turns beam status output on; a reader thread tracks beam power, feedback and received
messages. `send` paces itself to the card's service frequency, retries after a refusal with the
terminal's wait time, and gives up on transmit inhibit only after its retries.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import serial

from comms.beidou.protocol import Frame, ParseError, encode_text
from comms.beidou.stream import StreamReader

log = logging.getLogger(__name__)

# Bits per message by comm level 1..4 (non-encrypted, encrypted): ../shared/docs/beidou-rdss.md
CAPACITY_BITS = {False: (110, 408, 628, 848), True: (140, 360, 580, 1680)}
OFFLINE_AFTER_S = 30.0  # no beam status for this long: the terminal is treated as offline


class TerminalError(RuntimeError):
    pass


@dataclass(frozen=True)
class Card:
    address: str
    service_frequency_s: float
    comm_level: int
    encrypted: bool

    @property
    def capacity_bits(self) -> int:
        return CAPACITY_BITS[self.encrypted][self.comm_level - 1]

    @property
    def mixed_payload_bytes(self) -> int:
        """Bytes of content per message in mixed mode (the 0xA4 marker takes one byte)."""
        return self.capacity_bits // 8 - 1


@dataclass(frozen=True)
class SendResult:
    ok: bool
    attempts: int
    reason: str = ""


class Driver:
    def __init__(self, port: str, baudrate: int = 115200, card_timeout_s: float = 5.0):
        self.serial = serial.Serial(port, baudrate, timeout=0.05)
        self.powers: list[int] = [0] * 10
        self.last_bsi: float | None = None
        self.card: Card | None = None
        self.last_send: float | None = None
        self._feedback: queue.Queue[Frame] = queue.Queue()
        self._received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._cards: queue.Queue[Frame] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read_loop, daemon=True)
        self._thread.start()
        self.card = self._read_card(card_timeout_s)
        self._write(encode_text("CCRMO", {"sentence": "BSI", "mode": 2, "interval": 1}))
        log.info("BeiDou card %s: one message per %.0f s, level %d (%d bits, %d bytes mixed)", self.card.address,
                 self.card.service_frequency_s, self.card.comm_level, self.card.capacity_bits,
                 self.card.mixed_payload_bytes)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.serial.close()

    def _write(self, data: bytes) -> None:
        self.serial.write(data)
        self.serial.flush()

    def _read_card(self, timeout: float) -> Card:
        for _ in range(3):
            self._write(encode_text("CCICA", {"query_type": 0, "frame_no": 0}))
            try:
                f = self._cards.get(timeout=timeout / 3)
            except queue.Empty:
                continue
            return Card(f.fields["address"], float(f.fields["service_frequency_s"]), int(f.fields["comm_level"]),
                        f.fields["encryption"] == "E")
        raise TerminalError("the terminal did not answer the card query (CCICA)")

    def _read_loop(self) -> None:
        reader = StreamReader()
        while not self._stop.is_set():
            try:
                chunk = self.serial.read(4096)
            except (serial.SerialException, OSError) as exc:
                log.warning("serial read failed: %s", exc)
                time.sleep(0.2)
                continue
            for item in reader.feed(chunk):
                if isinstance(item, ParseError):
                    log.warning("terminal sent a bad frame: %s", item)
                    continue
                kind = item.type[2:]
                if kind == "BSI":
                    self.powers = [item.fields[f"power_{i}"] for i in range(1, 11)]
                    self.last_bsi = time.monotonic()
                elif kind == "FKI":
                    self._feedback.put(item)
                elif kind == "TXR":
                    self._received.put((item.fields["sender"], item.fields["content"]))
                elif kind == "ICI":
                    self._cards.put(item)

    # -- state ------------------------------------------------------------------------------------

    def beam_ok(self) -> bool:
        fresh = self.last_bsi is not None and time.monotonic() - self.last_bsi < OFFLINE_AFTER_S
        return fresh and any(self.powers)

    def next_send_in(self) -> float:
        """Seconds until the service interval allows a send (0 when it does)."""
        if self.last_send is None or self.card is None:
            return 0.0
        return max(0.0, self.last_send + self.card.service_frequency_s - time.monotonic())

    # -- messages ---------------------------------------------------------------------------------

    def send(self, to: str, payload: bytes, retries: int = 3, feedback_timeout_s: float = 5.0) -> SendResult:
        """Send `payload` (mixed mode) to address `to`, paced and retried; blocks until done."""
        assert self.card is not None
        if len(payload) > self.card.mixed_payload_bytes:
            raise ValueError(f"{len(payload)} bytes exceed the card's {self.card.mixed_payload_bytes} per message")
        reason = ""
        for attempt in range(1, retries + 2):
            time.sleep(self.next_send_in())
            while not self._feedback.empty():
                self._feedback.get_nowait()
            self._write(encode_text("CCTXA", {"recipient": to, "comm_type": 1, "transfer_type": 2,
                                              "content": payload}))
            try:
                fb = self._feedback.get(timeout=feedback_timeout_s)
            except queue.Empty:
                reason = "no feedback from the terminal"
                continue
            if fb.fields.get("executed"):
                self.last_send = time.monotonic()
                return SendResult(True, attempt)
            wait = fb.fields.get("wait") or 0
            inhibit = fb.fields.get("inhibit") or 0
            reason = f"refused (inhibit {inhibit}, wait {wait} s)"
            log.info("BeiDou send refused: %s; attempt %d", reason, attempt)
            if inhibit == 0 and wait:
                self.last_send = time.monotonic() - self.card.service_frequency_s + wait
            else:
                time.sleep(1.0)
        return SendResult(False, retries + 1, reason)

    def receive(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        try:
            return self._received.get(timeout=timeout)
        except queue.Empty:
            return None
