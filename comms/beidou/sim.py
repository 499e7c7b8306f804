"""A simulated BeiDou RDSS terminal (text dialect 2.1) on a pseudo-terminal.

The driver talks to it through the real serial path (pyserial on the pty's device), exactly as
to a terminal on /dev/ttyUSB0. The satellite is what is simulated: card info (address, service
frequency, comm level) answers CCICA; CCRMO turns beam status (BDBSI) on, following a power
profile that may include outages; CCTXA is refused with a wait time before the service interval
has passed, refused when no beam has power, else accepted and delivered to the addressed peer
terminal after a delay, or lost with a given probability.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field

from comms.beidou.protocol import Frame, ParseError, encode_text
from comms.beidou.stream import StreamReader

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


class Network:
    """The satellite: delivers messages between simulated terminals by address."""

    def __init__(self) -> None:
        self.terminals: dict[str, SimTerminal] = {}

    def deliver(self, sender: str, to: str, form: int, content: bytes, delay: float, lost: bool) -> None:
        peer = self.terminals.get(to)
        if peer is None or lost:
            log.info("message %s -> %s lost", sender, to)
            return
        threading.Timer(delay, peer.receive, args=(sender, form, content)).start()


class SimTerminal:
    def __init__(self, cfg: TerminalConfig, network: Network):
        self.cfg, self.network = cfg, network
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.device = os.ttyname(slave)
        self._slave = slave
        self.rng = random.Random(cfg.seed)
        self.started = time.monotonic()
        self.last_send: float | None = None
        self.bsi_on = False
        self.sent = self.refused = 0
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        network.terminals[cfg.address] = self
        self._threads = [threading.Thread(target=self._read_loop, daemon=True),
                         threading.Thread(target=self._bsi_loop, daemon=True)]

    def start(self) -> SimTerminal:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def now(self) -> float:
        return time.monotonic() - self.started

    def _write(self, data: bytes) -> None:
        with self._write_lock, contextlib.suppress(OSError):  # the port was closed under us
            os.write(self.master, data)

    def _read_loop(self) -> None:
        reader = StreamReader()
        while not self._stop.is_set():
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            for item in reader.feed(chunk):
                if isinstance(item, ParseError):
                    log.warning("terminal %s: %s", self.cfg.address, item)
                else:
                    self._handle(item)

    def _bsi_loop(self) -> None:
        while not self._stop.wait(self.cfg.bsi_interval_s):
            if self.bsi_on:
                p = self.cfg.profile(self.now())
                best = max(range(10), key=lambda i: p[i]) + 1 if any(p) else 0
                fields = {"response_beam": best, "time_diff_beam": best,
                          **{f"power_{i + 1}": p[i] for i in range(10)}}
                self._write(encode_text("BDBSI", fields))

    def _feedback(self, ok: bool, inhibit: int = 0, wait: int = 0) -> None:
        self._write(encode_text("BDFKI", {"command": "TXA", "executed": ok, "frequency_flag": True,
                                          "inhibit": inhibit, "wait": wait}))

    def _handle(self, frame: Frame) -> None:
        kind = frame.type[2:]
        if kind == "ICA":
            self._write(encode_text("BDICI", {
                "address": self.cfg.address, "serial": "24000000", "broadcast_address": "1933442", "user_type": 6,
                "service_frequency_s": self.cfg.service_frequency_s, "comm_level": self.cfg.comm_level,
                "encryption": "N", "subordinates": 0}))
        elif kind == "RMO":
            if frame.fields["sentence"] in ("BSI", "") and frame.fields["mode"] in (2, 4):
                self.bsi_on = True
            elif frame.fields["mode"] in (1, 3):
                self.bsi_on = False
        elif kind == "TXA":
            now = self.now()
            if self.last_send is not None and now - self.last_send < self.cfg.service_frequency_s:
                self.refused += 1
                self._feedback(False, 0, min(59, max(1, round(self.cfg.service_frequency_s - (now - self.last_send)))))
                return
            if not any(self.cfg.profile(now)):
                self.refused += 1
                self._feedback(False, 1, 0)  # no beam: the system inhibits transmission
                return
            self.last_send = now
            self.sent += 1
            self._feedback(True)
            self.network.deliver(self.cfg.address, frame.fields["recipient"], frame.fields["transfer_type"],
                                 frame.fields["content"], self.cfg.delay_s, self.rng.random() < self.cfg.loss)

    def receive(self, sender: str, form: int, content: bytes) -> None:
        if not self._stop.is_set():
            self._write(encode_text("BDTXR", {"info_class": 1, "sender": sender, "form": form, "send_time": "",
                                              "content": content}))
