"""What a receiver (ground station, cloud store) has seen of each drone: epochs and sequence numbers.

One rule for every receiver (`verdict`):
- an alert id already held, with the same content, is a replay: acknowledge it again (the drone
  missed the first answer);
- an id already held with other content, or an id of an epoch below the highest the receiver
  knows for that drone, is refused as superseded: the drone runs a wiped or restored outbox whose
  numbers collide with ids already used, so it must move above the highest epoch and number its
  alert again (never acknowledged: that would settle an alert nobody received);
- anything else is new.

The ground station cannot keep every id, so `ReplayGuard` keeps, per drone and epoch, the highest
sequence number and a digest of every alert within WINDOW numbers below it (as IPsec's
anti-replay window, RFC 4303, with the content kept to tell a replay from a reused number), for
the last KEEP_EPOCHS epochs, persisted in SQLite so a restart re-opens no hole. The outbox sends
by priority, not in sequence order, so "above the highest" alone would refuse genuine late
alerts; a number older than the window is refused as too old (the drone then keeps it for MQTT,
where the cloud decides by id and content).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

WINDOW = 1024
KEEP_EPOCHS = 8
NEW, REPLAY, TOO_OLD, SUPERSEDED = "new", "replay", "too_old", "superseded_epoch"
INVALID = "invalid"  # the cloud can never store it (refused by the payload's schema): not to be sent again


def verdict(known: bool, epoch: int, highest_epoch: int | None, same: bool = True) -> str:
    """The receivers' rule for one alert id (see the module's docstring)."""
    if known:
        return REPLAY if same else SUPERSEDED
    if highest_epoch is not None and epoch < highest_epoch:
        return SUPERSEDED
    return NEW


def digest(alert) -> bytes:
    """What identifies an alert's content as both links carry it (the BeiDou form's quantization)."""
    text = (f"{alert.seq}|{int(alert.time.timestamp())}|{round(alert.lat * 1e7)}|{round(alert.lon * 1e7)}|"
            f"{alert.fault_class}|{round(alert.confidence * 255)}|{max(-32768, min(32767, round(alert.alt)))}")
    return hashlib.sha256(text.encode()).digest()[:8]


class ReplayGuard:
    def __init__(self, path: str | Path):
        # One connection, used by whichever thread receives; every call is serialised by the lock.
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(
            "CREATE TABLE IF NOT EXISTS tops (drone_id TEXT NOT NULL, epoch INTEGER NOT NULL, highest INTEGER NOT NULL,"
            " PRIMARY KEY (drone_id, epoch));"
            "CREATE TABLE IF NOT EXISTS seen (drone_id TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL,"
            " digest BLOB, PRIMARY KEY (drone_id, epoch, seq));")

    def check(self, drone_id: str, epoch: int, seqs: Sequence[int],
              digests: Sequence[bytes | None] | None = None) -> list[str]:
        """NEW, REPLAY, TOO_OLD or SUPERSEDED for each number, without recording anything.
        Without `digests` a known number counts as a replay (content not compared)."""
        with self._lock:
            return self._run(drone_id, epoch, seqs, digests, commit=False)

    def accept(self, drone_id: str, epoch: int, seqs: Sequence[int],
               digests: Sequence[bytes | None] | None = None) -> list[str]:
        """As `check`, and record the NEW ones as seen, atomically."""
        with self._lock:
            return self._run(drone_id, epoch, seqs, digests, commit=True)

    def highest_epoch(self, drone_id: str) -> int | None:
        with self._lock:
            return self.db.execute("SELECT MAX(epoch) FROM tops WHERE drone_id = ?", (drone_id,)).fetchone()[0]

    def highest(self, drone_id: str, epoch: int) -> int | None:
        with self._lock:
            row = self.db.execute("SELECT highest FROM tops WHERE drone_id = ? AND epoch = ?",
                                  (drone_id, epoch)).fetchone()
        return row[0] if row else None

    def _run(self, drone_id: str, epoch: int, seqs: Sequence[int], digests: Sequence[bytes | None] | None,
             commit: bool) -> list[str]:
        digests = list(digests) if digests is not None else [None] * len(seqs)
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            top = db.execute("SELECT MAX(epoch) FROM tops WHERE drone_id = ?", (drone_id,)).fetchone()[0]
            row = db.execute("SELECT highest FROM tops WHERE drone_id = ? AND epoch = ?", (drone_id, epoch)).fetchone()
            highest = row[0] if row else -1
            fresh: dict[int, bytes | None] = {}
            out = []
            for seq, dig in zip(seqs, digests, strict=True):
                if highest >= 0 and highest - seq >= WINDOW:
                    out.append(TOO_OLD)  # cannot tell whether it was seen: the cloud decides, by id
                    continue
                if seq in fresh:
                    known, held = True, fresh[seq]
                else:
                    hit = db.execute("SELECT digest FROM seen WHERE drone_id = ? AND epoch = ? AND seq = ?",
                                     (drone_id, epoch, seq)).fetchone()
                    known, held = hit is not None, hit[0] if hit else None
                same = dig is None or held is None or bytes(held) == dig
                v = verdict(known, epoch, top, same)
                if v == NEW:
                    fresh[seq] = dig
                    highest = max(highest, seq)
                out.append(v)
            if not commit or not fresh:
                db.execute("ROLLBACK")
                return out
            db.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?, ?, ?)",
                           [(drone_id, epoch, s, d) for s, d in fresh.items()])
            db.execute("INSERT OR REPLACE INTO tops VALUES (?, ?, ?)", (drone_id, epoch, highest))
            db.execute("DELETE FROM seen WHERE drone_id = ? AND epoch = ? AND seq <= ?",
                       (drone_id, epoch, highest - WINDOW))
            old = [e for (e,) in db.execute("SELECT epoch FROM tops WHERE drone_id = ? ORDER BY epoch DESC "
                                            "LIMIT -1 OFFSET ?", (drone_id, KEEP_EPOCHS))]
            for e in old:
                db.execute("DELETE FROM seen WHERE drone_id = ? AND epoch = ?", (drone_id, e))
                db.execute("DELETE FROM tops WHERE drone_id = ? AND epoch = ?", (drone_id, e))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return out

    def close(self) -> None:
        self.db.close()
