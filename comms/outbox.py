"""The drone's durable store-and-forward outbox: SQLite in WAL mode, one row per alert.

States: `pending` (never sent) -> `sent_beidou` (sent by short message, not yet confirmed) or
`sent_mqtt` (published, PUBACK awaited) -> `acked` (the cloud or ground station confirmed it).
An alert is done only when acknowledged. One sent over BeiDou stays due for MQTT, so it is
re-sent when 4G returns; the receiver drops duplicates by id. A crash between sending and
marking re-sends (at least once, never lost); ids make the second copy harmless.

Size policy, when the store holds more than `max_bytes` or `max_alerts`: first thumbnails go
(oldest first), then acknowledged rows, then the oldest unsent low- and medium-severity
alerts. An unsent high-severity alert is never dropped: the store grows past its bound instead,
and says so in the log.

The drone's sequence numbers and BeiDou message counter live here too, so a restart never
reuses one.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from comms import alert_json
from comms.alert import Alert
from comms.classes import Severity

log = logging.getLogger(__name__)

PENDING, SENT_BEIDOU, SENT_MQTT, ACKED = "pending", "sent_beidou", "sent_mqtt", "acked"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, severity INTEGER NOT NULL, created REAL NOT NULL,
    doc TEXT NOT NULL, thumb BLOB, state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    last_sent REAL, link TEXT);
CREATE INDEX IF NOT EXISTS alerts_due ON alerts (state, severity DESC, seq);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Queued:
    alert: Alert
    thumb: bytes | None
    state: str
    attempts: int


class Outbox:
    def __init__(self, path: str | Path, drone_id: str, max_bytes: int = 64 << 20, max_alerts: int = 100_000):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.drone_id = drone_id
        self.max_bytes, self.max_alerts = max_bytes, max_alerts
        self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a committed put survives a power cut
        self.db.executescript(_SCHEMA)

    # -- counters ---------------------------------------------------------------------------------

    def _bump(self, name: str) -> int:
        with self._tx():
            row = self.db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
            if name == "seq" and row is None:  # an older store: continue after its highest alert
                top = self.db.execute("SELECT MAX(seq) FROM alerts").fetchone()[0]
                row = (top or 0,)
            value = (row[0] if row else 0) + 1
            self.db.execute("INSERT OR REPLACE INTO counters VALUES (?, ?)", (name, value))
        return value

    def next_seq(self) -> int:
        """A new sequence number for this drone, committed before it is handed out."""
        return self._bump("seq")

    def next_message(self) -> int:
        return self._bump("message")

    # -- queue ------------------------------------------------------------------------------------

    def put(self, alert: Alert, thumb: bytes | None = None) -> None:
        """Make an alert durable (committed, fsync'd); putting the same id again changes nothing."""
        if alert.drone_id != self.drone_id:
            raise ValueError(f"alert of {alert.drone_id} in the outbox of {self.drone_id}")
        doc = alert_json.dumps(alert).decode()
        with self._tx():
            self.db.execute("INSERT OR IGNORE INTO alerts (seq, id, severity, created, doc, thumb) "
                            "VALUES (?, ?, ?, ?, ?, ?)", (alert.seq, alert.id, int(alert.severity), time.time(), doc,
                                                           thumb))
        self._enforce_bounds()

    def due(self, link: str, limit: int = 100, resend_after_s: float = 30.0,
            beidou_resend_after_s: float | None = None) -> list[Queued]:
        """What to send next over `link` ("mqtt" or "beidou"): most severe first, then oldest.

        MQTT takes everything not acknowledged (BeiDou-sent alerts included, so they are confirmed
        through the cloud), an alert already published only once `resend_after_s` has passed
        without the cloud's acknowledgement (the broker session retries within that time; after a
        crash the acknowledgement may have been lost with the process). BeiDou takes alerts that
        have not left the drone yet, those published over MQTT `resend_after_s` ago without an
        acknowledgement (4G died under them) and, when the ground station acknowledges over BeiDou
        (`beidou_resend_after_s` set), those it sent that long ago without an answer.
        """
        now = time.time()
        if link == "mqtt":
            where, args = "(state IN (?, ?) OR (state = ? AND last_sent < ?))", (
                PENDING, SENT_BEIDOU, SENT_MQTT, now - resend_after_s)
        else:
            where, args = "(state = ? OR (state = ? AND last_sent < ?)", (PENDING, SENT_MQTT, now - resend_after_s)
            if beidou_resend_after_s is not None:
                where, args = where + " OR (state = ? AND last_sent < ?)", (
                    *args, SENT_BEIDOU, now - beidou_resend_after_s)
            where += ")"
        rows = self.db.execute(f"SELECT doc, thumb, state, attempts FROM alerts WHERE {where} "
                               "ORDER BY severity DESC, seq LIMIT ?", (*args, limit)).fetchall()
        return [Queued(alert_json.loads(doc)[0], thumb, state, attempts) for doc, thumb, state, attempts in rows]

    def mark_sent(self, ids: Sequence[str], link: str) -> None:
        state = SENT_BEIDOU if link == "beidou" else SENT_MQTT
        with self._tx():
            self.db.executemany(
                "UPDATE alerts SET state = CASE WHEN state = 'acked' THEN state ELSE ? END, "
                "attempts = attempts + 1, last_sent = ?, link = ? WHERE id = ?",
                [(state, time.time(), link, i) for i in ids])

    def ack(self, ids: Sequence[str]) -> int:
        """Mark alerts acknowledged; returns how many changed (repeated acks are harmless)."""
        with self._tx():
            cur = self.db.executemany("UPDATE alerts SET state = 'acked' WHERE id = ? AND state != 'acked'",
                                      [(i,) for i in ids])
        return cur.rowcount

    def state(self, alert_id: str) -> str | None:
        row = self.db.execute("SELECT state FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return row[0] if row else None

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT state, COUNT(*) FROM alerts GROUP BY state").fetchall())

    def alerts(self) -> list[dict]:
        """Every stored alert as its JSON document (the interface the edge runtime's tests read)."""
        import json

        return [json.loads(d) for (d,) in self.db.execute("SELECT doc FROM alerts ORDER BY seq")]

    # -- bounds -----------------------------------------------------------------------------------

    def _size(self) -> tuple[int, int]:
        n, size = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(doc) + COALESCE(LENGTH(thumb), 0)), 0) FROM alerts").fetchone()
        return n, size

    def _over(self) -> bool:
        n, size = self._size()
        return n > self.max_alerts or size > self.max_bytes

    def _enforce_bounds(self) -> None:
        if not self._over():
            return
        steps = (
            ("thumbnails", "UPDATE alerts SET thumb = NULL WHERE seq IN (SELECT seq FROM alerts WHERE thumb IS NOT NULL"
                           " ORDER BY seq LIMIT 64)"),
            ("acknowledged alerts", "DELETE FROM alerts WHERE seq IN (SELECT seq FROM alerts WHERE state = 'acked'"
                                    " ORDER BY seq LIMIT 64)"),
            ("unsent low/medium alerts", f"DELETE FROM alerts WHERE seq IN (SELECT seq FROM alerts WHERE severity < "
                                         f"{int(Severity.HIGH)} AND state != 'acked' ORDER BY severity, seq LIMIT 1)"),
        )
        for what, sql in steps:
            while self._over():
                with self._tx():
                    changed = self.db.execute(sql).rowcount
                if not changed:
                    break
                log.warning("outbox over its bound: dropped %d %s", changed, what)
        if self._over():
            log.warning("outbox holds only unsent high-severity alerts and grows past its bound (%d alerts, %d bytes)",
                        *self._size())

    # -- plumbing ---------------------------------------------------------------------------------

    def _tx(self):
        return _Transaction(self.db)

    def close(self) -> None:
        self.db.close()


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
