"""What a receiver (ground station, cloud store) has seen of each drone: epochs and sequence numbers.

One rule for every receiver (`verdict`): an alert id already held is a replay (acknowledge it again:
the drone missed the first answer); an alert of an epoch below the highest the receiver knows for
that drone is refused as superseded (the drone runs a wiped or restored outbox: its numbers may
collide with ids already held, so it must move above that epoch); anything else is new.

The ground station cannot keep every id, so `ReplayGuard` keeps, per drone and epoch, a sliding
window over the sequence numbers (as IPsec's anti-replay window, RFC 4303): the highest accepted
number plus a bitmap of the WINDOW numbers below it, persisted in SQLite so a restart re-opens no
hole, for the last KEEP_EPOCHS epochs. The outbox sends by priority, not in sequence order, so
"above the highest" alone would refuse genuine late alerts; a number older than the window is
refused as too old (the drone then keeps it for MQTT, where the cloud drops duplicates by id).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

WINDOW = 1024
KEEP_EPOCHS = 8
NEW, REPLAY, TOO_OLD, SUPERSEDED = "new", "replay", "too_old", "superseded_epoch"


def verdict(known: bool, epoch: int, highest_epoch: int | None) -> str:
    """The receivers' rule for one alert id (see the module's docstring)."""
    if known:
        return REPLAY
    if highest_epoch is not None and epoch < highest_epoch:
        return SUPERSEDED
    return NEW


class ReplayGuard:
    def __init__(self, path: str | Path):
        # One connection, used by whichever thread receives; every call is serialised by the lock.
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS windows (drone_id TEXT NOT NULL, epoch INTEGER NOT NULL, "
                        "highest INTEGER NOT NULL, window BLOB NOT NULL, PRIMARY KEY (drone_id, epoch))")

    def check(self, drone_id: str, epoch: int, seqs: Sequence[int]) -> list[str]:
        """NEW, REPLAY, TOO_OLD or SUPERSEDED for each number, without recording anything."""
        with self._lock:
            return self._run(drone_id, epoch, seqs, commit=False)

    def accept(self, drone_id: str, epoch: int, seqs: Sequence[int]) -> list[str]:
        """As `check`, and record the NEW ones as seen, atomically."""
        with self._lock:
            return self._run(drone_id, epoch, seqs, commit=True)

    def highest_epoch(self, drone_id: str) -> int | None:
        with self._lock:
            return self.db.execute("SELECT MAX(epoch) FROM windows WHERE drone_id = ?", (drone_id,)).fetchone()[0]

    def highest(self, drone_id: str, epoch: int) -> int | None:
        with self._lock:
            row = self.db.execute("SELECT highest FROM windows WHERE drone_id = ? AND epoch = ?",
                                  (drone_id, epoch)).fetchone()
        return row[0] if row else None

    def _run(self, drone_id: str, epoch: int, seqs: Sequence[int], commit: bool) -> list[str]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            top = self.db.execute("SELECT MAX(epoch) FROM windows WHERE drone_id = ?", (drone_id,)).fetchone()[0]
            row = self.db.execute("SELECT highest, window FROM windows WHERE drone_id = ? AND epoch = ?",
                                  (drone_id, epoch)).fetchone()
            highest, bits = (row[0], int.from_bytes(row[1], "big")) if row else (-1, 0)
            out = []
            for seq in seqs:
                seen = 0 <= highest - seq < WINDOW and bool(bits >> (highest - seq) & 1)
                v = verdict(seen, epoch, top)
                if v == NEW and highest - seq >= WINDOW and highest >= 0:
                    v = TOO_OLD  # cannot tell whether it was seen: the cloud decides, by id
                if v == NEW:
                    if seq > highest:
                        bits = ((bits << (seq - highest)) | 1) & ((1 << WINDOW) - 1) if highest >= 0 else 1
                        highest = seq
                    else:
                        bits |= 1 << (highest - seq)
                out.append(v)
            if not commit or NEW not in out:
                self.db.execute("ROLLBACK")
                return out
            self.db.execute("INSERT OR REPLACE INTO windows VALUES (?, ?, ?, ?)",
                            (drone_id, epoch, highest, bits.to_bytes(WINDOW // 8, "big")))
            self.db.execute("DELETE FROM windows WHERE drone_id = ? AND epoch NOT IN (SELECT epoch FROM windows "
                            "WHERE drone_id = ? ORDER BY epoch DESC LIMIT ?)", (drone_id, drone_id, KEEP_EPOCHS))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return out

    def close(self) -> None:
        self.db.close()
