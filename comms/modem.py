"""Cellular signal from the 4G modem's AT port: `AT+CSQ` over a serial port (pyserial).

Modems echo commands by default, interleave unsolicited result codes (`+CREG: ...`, `RING`)
and answer `+CSQ: <rssi>,<ber>` then `OK`; `rssi` 0..31, 99 unknown. Anything else (no answer
within the timeout, `ERROR`, a garbled line, a port that went away) reads as unknown, so the
selector leaves 4G for it: a modem that cannot report its signal is not trusted with alerts.
"""

from __future__ import annotations

import logging
import termios
import threading
import time

import serial

from comms.selector import parse_csq

log = logging.getLogger(__name__)


class Modem:
    def __init__(self, port: str, baudrate: int = 115200, timeout_s: float = 1.0, min_interval_s: float = 0.0):
        """`min_interval_s` caches a reading so a fast control loop does not flood the modem."""
        self.port, self.baudrate, self.timeout_s, self.min_interval_s = port, baudrate, timeout_s, min_interval_s
        self._serial: serial.Serial | None = None
        self._lock = threading.Lock()
        self._last: tuple[float, int | None] | None = None
        self.errors = 0

    def _open(self) -> serial.Serial:
        if self._serial is None:
            self._serial = serial.Serial(self.port, self.baudrate, timeout=0.05)
        return self._serial

    def close(self) -> None:
        with self._lock:
            if self._serial is not None:
                self._serial.close()
                self._serial = None

    def csq(self) -> int | None:
        """The signal as CSQ 0..31, or None when unknown."""
        with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last[0] < self.min_interval_s:
                return self._last[1]
            value = self._query()
            self._last = (now, value)
            return value

    __call__ = csq  # a Modem is the forwarder's signal source

    def _query(self) -> int | None:
        try:
            port = self._open()
            port.reset_input_buffer()  # stale unsolicited codes are not the answer
            port.write(b"AT+CSQ\r")
            port.flush()
            deadline = time.monotonic() + self.timeout_s
            buf = b""
            value: int | None = None
            while time.monotonic() < deadline:
                buf += port.read(256)
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    line = raw.strip().decode("ascii", "replace")
                    if line.startswith("+CSQ:"):
                        value = parse_csq(line)
                    elif line == "OK":
                        return value
                    elif line.endswith("ERROR"):
                        log.warning("modem %s answered %s to AT+CSQ", self.port, line)
                        return None
            log.warning("modem %s did not answer AT+CSQ within %g s", self.port, self.timeout_s)
        except (serial.SerialException, OSError, termios.error) as exc:  # tcdrain on a vanished tty: termios
            self.errors += 1
            log.warning("modem %s: %s; signal unknown", self.port, exc)
            if self._serial is not None:
                self._serial.close()
                self._serial = None  # reopened on the next reading (a USB modem that re-enumerated)
        return None
