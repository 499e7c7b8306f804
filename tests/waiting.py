"""Polling with a deadline, for tests that wait on threads, processes and brokers."""

from __future__ import annotations

import time


def until(cond, timeout: float, step=None) -> bool:
    """Call `step` (if any) and check `cond` every 50 ms until it holds or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if step:
            step()
        if cond():
            return True
        time.sleep(0.05)
    return cond()
