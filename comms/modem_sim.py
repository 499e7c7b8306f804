"""A simulated 4G modem's AT port on a pseudo-terminal, for tests and the demo.

It answers `AT`, `ATE0`/`ATE1` and `AT+CSQ` (from a signal profile over time; None is 99,
unknown), echoes commands as real modems do by default, says `ERROR` to anything else, and can
interleave unsolicited result codes so the reader has to pick its answer out of them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from comms.pty_device import PtyDevice

SignalProfile = Callable[[float], int | None]


class SimModem(PtyDevice):
    def __init__(self, profile: SignalProfile, echo: bool = True, unsolicited: bool = True):
        super().__init__()
        self.profile, self.echo, self.unsolicited = profile, echo, unsolicited
        self.queries = 0
        self._serve(self._loop)

    def _loop(self) -> None:
        buf = b""
        while not self._stop.is_set():
            try:
                buf += os.read(self.master, 1024)
            except OSError:
                return
            *commands, buf = buf.split(b"\r")
            for cmd in commands:
                with contextlib.suppress(OSError):
                    os.write(self.master, self._answer(cmd.strip().upper()))

    def _answer(self, cmd: bytes) -> bytes:
        out = cmd + b"\r\r\n" if self.echo else b""
        if self.unsolicited:
            out += b"\r\n+CREG: 1,\"1A2B\",\"01C3D4E5\",7\r\n"
        if cmd == b"AT+CSQ":
            self.queries += 1
            rssi = self.profile(self.now())
            return out + f"\r\n+CSQ: {99 if rssi is None else rssi},99\r\n\r\nOK\r\n".encode()
        if cmd in (b"AT", b"ATE0", b"ATE1"):
            self.echo = self.echo if cmd == b"AT" else cmd == b"ATE1"
            return out + b"\r\nOK\r\n"
        return out + b"\r\nERROR\r\n"
