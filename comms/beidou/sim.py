"""A simulated BeiDou RDSS terminal on a pseudo-terminal, in any of the three dialects.

The driver talks to it through the real serial path (pyserial on the pty's device), exactly as
to a terminal on /dev/ttyUSB0. The satellite is what is simulated: the card query is answered
with the configured card (address, service frequency, comm level); beam status follows a power
profile that may include outages (2.1 and 4.0 terminals report it once the host turns it on,
BDS-3 terminals from power-up, as real ones do); a send is refused with the wait before the
service interval has passed, refused when no beam has power, else accepted and delivered to the
addressed peer terminal (in the peer's own dialect) after a delay, or lost with a given
probability. Requests in another dialect than the terminal's are ignored, as a real terminal
ignores them: that is what lets the driver detect the dialect by probing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from comms.beidou.dialects import DIALECTS, BeamOutput, Card, CardQuery, Feedback, SendRequest
from comms.beidou.protocol import TEXT_21, TEXT_BDS3, Frame, ParseError
from comms.beidou.stream import StreamReader
from comms.pty_device import PtyDevice

log = logging.getLogger(__name__)

# power of beams 1..10 at time t (seconds since start)
PowerProfile = Callable[[float], list[int]]


def steady(power: int = 3) -> PowerProfile:
    return lambda t: [power, power, 2, 0, power, 0, 0, 1, 0, 0]


def outage(start: float, end: float, power: int = 3) -> PowerProfile:
    """Beams at `power`, all zero between `start` and `end` seconds (a ridge, a tunnel)."""
    return lambda t: [0] * 10 if start <= t < end else steady(power)(t)


@dataclass
class TerminalConfig:
    address: str = "0247718"
    service_frequency_s: float = 60.0
    comm_level: int = 3
    bsi_interval_s: float = 1.0
    delay_s: float = 2.0  # satellite delivery delay
    loss: float = 0.0  # probability a sent message never arrives
    profile: PowerProfile = field(default_factory=steady)
    seed: int = 0
    dialect: str = TEXT_21


class Network:
    """The satellite: delivers messages between simulated terminals by address."""

    def __init__(self) -> None:
        self.terminals: dict[str, SimTerminal] = {}

    def deliver(self, sender: str, to: str, content: bytes, delay: float, lost: bool) -> None:
        peer = self.terminals.get(to)
        if peer is None or lost:
            log.info("message %s -> %s lost", sender, to)
            return
        threading.Timer(delay, peer.receive, args=(sender, content)).start()


class SimTerminal(PtyDevice):
    def __init__(self, cfg: TerminalConfig, network: Network):
        if cfg.dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {cfg.dialect!r}: one of {', '.join(DIALECTS)}")
        super().__init__()
        self.cfg, self.network, self.dialect = cfg, network, DIALECTS[cfg.dialect]
        self.rng = random.Random(cfg.seed)
        self.last_send: float | None = None
        self.bsi_on = cfg.dialect == TEXT_BDS3  # BDS-3 terminals report beam power from power-up
        self.bsi_interval_s = cfg.bsi_interval_s
        self.sent = self.refused = 0
        self._write_lock = threading.Lock()
        network.terminals[cfg.address] = self
        self._serve(self._read_loop, self._bsi_loop)

    def _write(self, data: bytes) -> None:
        # Like a UART with nobody listening, output is dropped when the host does not read
        # (a BDS-3 terminal reports beams from power-up, before any driver opens the port).
        with self._write_lock, contextlib.suppress(OSError, ValueError):  # the port was closed under us
            if select.select([], [self.master], [], 0.5)[1]:
                os.write(self.master, data)

    def _read_loop(self) -> None:
        reader = StreamReader()
        while not self._stop.is_set():
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            for item in reader.feed(chunk):
                if self._stop.is_set():  # unplugged while a read was under way: nothing more goes out
                    return
                if isinstance(item, ParseError):
                    log.warning("terminal %s: %s", self.cfg.address, item)
                else:
                    self._handle(item)

    def _bsi_loop(self) -> None:
        while not self._stop.wait(self.bsi_interval_s):
            if self.bsi_on:
                self._write(self.dialect.beams(self.cfg.address, self.cfg.profile(self.now())))

    def _handle(self, frame: Frame) -> None:
        req = self.dialect.request(frame)
        if req is None:
            log.debug("terminal %s (%s) ignores %s", self.cfg.address, self.cfg.dialect, frame.type)
            return
        own = self.cfg.address
        if isinstance(req, CardQuery):
            self._write(self.dialect.card(Card(own, self.cfg.service_frequency_s, self.cfg.comm_level, False,
                                               self.cfg.dialect)))
        elif isinstance(req, BeamOutput):
            self.bsi_on = req.on
            self.bsi_interval_s = min(self.cfg.bsi_interval_s, req.interval_s)
        elif isinstance(req, SendRequest):
            now = self.now()
            card = Card(own, self.cfg.service_frequency_s, self.cfg.comm_level, False, self.cfg.dialect)
            if len(req.content) > card.payload_bytes:  # longer than the card's class allows: refused, said why
                self.refused += 1
                log.warning("terminal %s: %d bytes to send, the card's class allows %d: refused", own,
                            len(req.content), card.payload_bytes)
                self._write(self.dialect.feedback(own, Feedback(False, "too_long")))
                return
            if self.last_send is not None and now - self.last_send < self.cfg.service_frequency_s:
                self.refused += 1
                wait = max(1, round(self.cfg.service_frequency_s - (now - self.last_send)))
                self._write(self.dialect.feedback(own, Feedback(False, "frequency", wait)))
                return
            if not any(self.cfg.profile(now)):
                self.refused += 1
                self._write(self.dialect.feedback(own, Feedback(False, "no_signal")))
                return
            self.last_send = now
            self.sent += 1
            self._write(self.dialect.feedback(own, Feedback(True)))
            self.network.deliver(own, req.recipient, req.content, self.cfg.delay_s, self.rng.random() < self.cfg.loss)

    def receive(self, sender: str, content: bytes) -> None:
        if not self._stop.is_set():
            self._write(self.dialect.message(self.cfg.address, sender, content))
