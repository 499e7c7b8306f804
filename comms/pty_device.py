"""A simulated serial device: a raw pseudo-terminal whose far end (`device`) a driver opens
with pyserial exactly as it would /dev/ttyUSB0, served by the subclass's threads."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import tty
from typing import Self


class PtyDevice:
    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.device = os.ttyname(self._slave)
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _serve(self, *targets) -> None:
        self._threads += [threading.Thread(target=t, daemon=True) for t in targets]

    def start(self) -> Self:
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
