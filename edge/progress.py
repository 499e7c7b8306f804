"""Which frames of a photo folder (or video file) a flight run has done, so the same folder run
again after a crash resumes by photo under the same flight id instead of reporting its faults
again under a new epoch. A run that finished is not resumed: the folder run again is a new flight.
Kept in its own SQLite file beside the outbox, one row per frame, written as each frame is done
(after its alerts are in the outbox). Best effort: on a full or failing disk the run goes on
without it (the outbox, not this file, is what must not lose an alert)."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)


class RunProgress:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.db: sqlite3.Connection | None = None
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS runs (source TEXT NOT NULL, flight_id TEXT NOT NULL, "
                            "started_at TEXT NOT NULL, finished_at TEXT, PRIMARY KEY (source, flight_id))")
            self.db.execute("CREATE TABLE IF NOT EXISTS done (source TEXT NOT NULL, flight_id TEXT NOT NULL, "
                            "frame TEXT NOT NULL, PRIMARY KEY (source, flight_id, frame))")
        except sqlite3.Error as exc:
            self._lost(exc)

    def _lost(self, exc: sqlite3.Error) -> None:
        log.warning("%s: run progress not kept (%s): a restart would run this folder again", self.path, exc)
        if self.db is not None:
            self.db.close()
        self.db = None

    def begin(self, source: str, given: str | None, default: str, fresh: bool = False) -> tuple[str, set[str]]:
        """(flight id, frames done): the unfinished run of `source` (of flight `given`, when a flight
        id was given) is resumed; otherwise, or with `fresh`, a new run begins."""
        if self.db is None:
            return given or default, set()
        try:
            if not fresh:
                row = self.db.execute(
                    "SELECT flight_id FROM runs WHERE source = ? AND finished_at IS NULL AND flight_id = "
                    "coalesce(?, flight_id) ORDER BY started_at DESC LIMIT 1", (source, given)).fetchone()
                if row is not None:
                    done = {f for (f,) in self.db.execute(
                        "SELECT frame FROM done WHERE source = ? AND flight_id = ?", (source, row[0]))}
                    return row[0], done
            flight_id, n = given or default, 1
            while given is None and self.db.execute("SELECT 1 FROM runs WHERE flight_id = ?", (flight_id,)).fetchone():
                n += 1  # a folder run again within the second its last run began: still a new flight
                flight_id = f"{default}-{n}"
            self.db.execute("DELETE FROM done WHERE source = ? AND flight_id = ?", (source, flight_id))
            self.db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, NULL)", (source, flight_id, _now()))
            return flight_id, set()
        except sqlite3.Error as exc:
            self._lost(exc)
            return given or default, set()

    def mark(self, source: str, flight_id: str, frame: str) -> None:
        self._write("INSERT OR IGNORE INTO done VALUES (?, ?, ?)", (source, flight_id, frame))

    def finish(self, source: str, flight_id: str) -> None:
        self._write("UPDATE runs SET finished_at = ? WHERE source = ? AND flight_id = ?", (_now(), source, flight_id))

    def _write(self, sql: str, args: tuple) -> None:
        if self.db is None:
            return
        try:
            self.db.execute(sql, args)
        except sqlite3.Error as exc:
            self._lost(exc)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
