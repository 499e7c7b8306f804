"""Which frames of a photo folder (or video file) a flight run has done, so the same folder run
again after a crash resumes by photo under the same flight id instead of reporting its faults
again under a new epoch. Kept in its own SQLite file beside the outbox, one row per frame,
committed as each frame is done (after its alerts are in the outbox)."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)


class RunProgress:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS runs (source TEXT PRIMARY KEY, flight_id TEXT NOT NULL, "
                        "started_at TEXT NOT NULL, finished_at TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS done (source TEXT NOT NULL, frame TEXT NOT NULL, "
                        "PRIMARY KEY (source, frame))")

    def begin(self, source: str, flight_id: str, fresh: bool = False) -> tuple[str, set[str], bool]:
        """(flight id, frames done, finished) for `source`: a run begun before keeps its flight id
        and the frames it did; `fresh` forgets them (a deliberate second pass, another model)."""
        if fresh:
            self.db.execute("DELETE FROM done WHERE source = ?", (source,))
            self.db.execute("DELETE FROM runs WHERE source = ?", (source,))
        row = self.db.execute("SELECT flight_id, finished_at FROM runs WHERE source = ?", (source,)).fetchone()
        if row is None:
            self.db.execute("INSERT INTO runs VALUES (?, ?, ?, NULL)", (source, flight_id, _now()))
            return flight_id, set(), False
        done = {f for (f,) in self.db.execute("SELECT frame FROM done WHERE source = ?", (source,))}
        return row[0], done, row[1] is not None

    def mark(self, source: str, frame: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO done VALUES (?, ?)", (source, frame))

    def finish(self, source: str) -> None:
        self.db.execute("UPDATE runs SET finished_at = ? WHERE source = ?", (_now(), source))

    def close(self) -> None:
        self.db.close()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
