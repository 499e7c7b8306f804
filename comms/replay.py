"""Replay protection at the ground station: which alert sequence numbers each drone has used.

A sliding window over each drone's sequence numbers (as IPsec's anti-replay window, RFC 4303):
the highest accepted number plus a bitmap of the WINDOW numbers below it, persisted in SQLite
so a restart of the ground station re-opens no hole. The outbox sends by priority, not in
sequence order, so "above the highest" alone would refuse genuine late alerts; a number seen
before, or older than the window, is refused. Such alerts still reach the cloud over MQTT,
where duplicates are dropped by id.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

WINDOW = 1024


class ReplayGuard:
    def __init__(self, path: str | Path):
        # One connection, used by whichever thread receives; `accept` is serialised by the lock.
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS replay (drone_id TEXT PRIMARY KEY, highest INTEGER NOT NULL,"
                        " window BLOB NOT NULL)")

    def accept(self, drone_id: str, seqs: Sequence[int]) -> list[bool]:
        """Mark `seqs` as used, atomically; True for each number not seen before (and not too old)."""
        with self._lock:
            return self._accept(drone_id, seqs, commit=True)

    def check(self, drone_id: str, seqs: Sequence[int]) -> list[bool]:
        """What `accept` would answer, without marking anything used."""
        with self._lock:
            return self._accept(drone_id, seqs, commit=False)

    def _accept(self, drone_id: str, seqs: Sequence[int], commit: bool) -> list[bool]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT highest, window FROM replay WHERE drone_id = ?", (drone_id,)).fetchone()
            highest, bits = (row[0], int.from_bytes(row[1], "big")) if row else (-1, 0)
            fresh = []
            for seq in seqs:
                if seq > highest:
                    bits = ((bits << (seq - highest)) | 1) & ((1 << WINDOW) - 1) if highest >= 0 else 1
                    highest = seq
                    fresh.append(True)
                elif highest - seq >= WINDOW or bits >> (highest - seq) & 1:
                    fresh.append(False)
                else:
                    bits |= 1 << (highest - seq)
                    fresh.append(True)
            if not commit:
                self.db.execute("ROLLBACK")
                return fresh
            self.db.execute("INSERT OR REPLACE INTO replay VALUES (?, ?, ?)",
                            (drone_id, highest, bits.to_bytes(WINDOW // 8, "big")))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return fresh

    def highest(self, drone_id: str) -> int | None:
        row = self.db.execute("SELECT highest FROM replay WHERE drone_id = ?", (drone_id,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self.db.close()
