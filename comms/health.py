"""A service's heartbeat file, and the check a health check runs on it.

The API answers `/health`; the services that serve nothing over HTTP (the ingest workers, the
job worker, the ground station) write a small JSON file every few seconds instead, saying whether
what they need is reachable. `pli health FILE` is what a container's health check (and
`scripts/stack.sh`) runs: healthy only if the file is fresh and says ok, so a hung process (no
beats) and a disconnected one (beats that say why) both fail it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class Heartbeat:
    """Beats every `every_s` seconds from a daemon thread: `problem()` returns None when the
    service can do its work, else what is wrong (written into the file, and logged once)."""

    def __init__(self, path: str | Path, problem: Callable[[], str | None], every_s: float = 5.0, name: str = ""):
        self.path, self.problem, self.every_s, self.name = Path(path), problem, every_s, name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{name}", daemon=True)
        self._said: str | None = None

    def start(self) -> Heartbeat:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every_s + 1)
        self.path.unlink(missing_ok=True)  # a stopped service is not healthy

    def beat(self) -> None:
        try:
            problem = self.problem()
        except Exception as exc:  # a check that raises is a problem, not a dead heartbeat
            problem = f"{type(exc).__name__}: {exc}"
        if problem != self._said:
            (log.warning if problem else log.info)("%s: %s", self.name or self.path.name, problem or "healthy")
            self._said = problem
        doc = {"at": time.time(), "pid": os.getpid(), "name": self.name, "ok": problem is None, "problem": problem}
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.path)  # a reader sees the old beat or the new, never half of one

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except OSError as exc:  # a full disk: the check will see a stale file, which is right
                log.warning("heartbeat %s not written: %s", self.path, exc)
            self._stop.wait(self.every_s)


def check(path: str | Path, max_age_s: float = 15.0, now: float | None = None) -> str | None:
    """None when the heartbeat at `path` is fresh and ok, else why not. A process killed outright
    leaves its last beat behind: it goes stale after `max_age_s` (three missed beats)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        at, ok = float(doc["at"]), bool(doc["ok"])
    except FileNotFoundError:
        return f"{path}: no heartbeat (not started, or stopped)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{path}: unreadable heartbeat ({type(exc).__name__})"
    age = (time.time() if now is None else now) - at
    if age > max_age_s:
        return f"{path}: last beat {age:.0f} s ago (more than {max_age_s:g} s: hung or stopped)"
    if not ok:
        return f"{path}: {doc.get('problem') or 'not ok'}"
    return None
