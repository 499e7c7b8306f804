"""Clocks for timers that must survive a wall-clock step (a Jetson without an RTC steps at boot).

A re-send timer is (boot id, monotonic time): within one boot the monotonic clock never steps;
anything sent in an earlier boot is due at once. The boot id is the kernel's
(/proc/sys/kernel/random/boot_id), shared by every process of the boot, so the two processes on
the drone (edge run and link run) agree on it.
"""

from __future__ import annotations

import time
import uuid
from functools import lru_cache
from pathlib import Path

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@lru_cache(maxsize=1)
def boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:  # not Linux: one id per process is the safe side (timers fire early, never late)
        return f"process-{uuid.uuid4()}"


def monotonic() -> float:
    return time.monotonic()
