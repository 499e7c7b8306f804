"""The drone's durable store-and-forward outbox: SQLite in WAL mode, one row per alert.

States: `pending` (never sent) -> `sent_beidou` (sent by short message, not yet confirmed) or
`sent_mqtt` (published, PUBACK awaited) -> `acked` (the cloud or ground station confirmed it).
An alert is done only when acknowledged. One sent over BeiDou stays due for MQTT, so it is
re-sent when 4G returns; the receiver drops duplicates by id. One acknowledged through BeiDou
alone still goes once by MQTT when 4G is there and nothing else waits, so the cloud gets what
the short message could not carry (flight, thumbnail, provenance). A crash between sending and
marking re-sends (at least once, never lost); ids make the second copy harmless.

Identity: the outbox records its owner (drone id and fleet from the device file) and refuses to
open under another identity. Alert ids are drone id + epoch + sequence number (comms/alert.py):
every open starts a new epoch, strictly above the stored one and above the highest epoch the drone
has seen in a signed answer; a receiver's "superseded epoch, highest is E" moves it above E. An
alert refused as superseded that no other receiver can hold (refused by the cloud itself, or by
the ground station and never published over MQTT) is numbered again in the new epoch; one that
might be held elsewhere keeps its id and goes by MQTT, where the cloud decides. Epochs do not
wrap: past 65,535 opens (nine years at twenty a day) the outbox refuses to open and the drone must
be enrolled again under a new drone id. Sequence numbers are 32-bit; should one run out, the
outbox starts a new epoch and counts from 1 again.

Refusals: alerts the ground station refused (too old for its window, unknown class-list version)
or that cannot be packed at all are marked with the reason and no longer go by BeiDou; they still
go by MQTT.

Timers survive wall-clock steps: a send is stamped with the boot id and the monotonic clock
(comms/clock.py); anything sent in an earlier boot is due at once.

Size policy, when the store holds more than `max_bytes` or `max_alerts`: first thumbnails go
(oldest first), then acknowledged rows, then the oldest unsent low- and medium-severity
alerts. An unsent high-severity alert is never dropped: the store grows past its bound instead,
and says so in the log.

A full disk (SQLite's "database or disk is full"): the drone keeps flying and detecting. The
outbox keeps a reserve file beside it (`<outbox>-reserve`, 1 MiB, allocated at open) for
high-severity alerts: the first one that cannot be written releases the reserve and goes in
without its thumbnail. Low- and medium-severity alerts, and high ones once the reserve is used
up, are held in memory (most severe kept first, at most `max_held`), with numbers that continue
the committed counter; they are written, and the reserve made again, as soon as space returns
(checked at most once a second, at each put and `recover()`). The edge runtime writes no crops
while the disk is full. Held alerts are lost only if the process dies before space returns: the
log says how many are held.

The links' bookkeeping on a full disk (`pli link run`: sent, acknowledged, refused): what cannot
be written is kept in memory and written when space returns (retried at most once a second, at
each `due`). A send kept so waits its resend interval as a written one would (no flood of
republishing), an acknowledgement kept so is never sent again; a refusal not written comes
again with the next send. A process that dies meanwhile only sends those alerts once more, and
the receivers deduplicate by id: nothing is lost, nothing stored twice.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from comms import alert_json, clock
from comms.alert import MAX_EPOCH, MAX_SEQ, VALID_FROM, Alert, alert_id, restamp
from comms.classes import Severity
from comms.replay import INVALID, SUPERSEDED, digest

log = logging.getLogger(__name__)

PENDING, SENT_BEIDOU, SENT_MQTT, ACKED = "pending", "sent_beidou", "sent_mqtt", "acked"
REJECTED = "rejected"  # the cloud refused it as invalid (its schema): kept, with the reason, never sent again
_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL,
    severity INTEGER NOT NULL, created REAL NOT NULL, doc TEXT NOT NULL, thumb BLOB,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, link TEXT,
    sent_boot TEXT, sent_mono REAL, mqtt_sent INTEGER NOT NULL DEFAULT 0, beidou_refused TEXT, rejected TEXT);
CREATE INDEX IF NOT EXISTS alerts_due ON alerts (state, severity DESC, n);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


RESERVE_BYTES = 1 << 20  # a few hundred high-severity alerts without thumbnails


def disk_full(exc: BaseException) -> bool:
    """Whether an error is the disk (or the database's quota) being full."""
    if isinstance(exc, sqlite3.OperationalError):
        return "full" in str(exc).lower()
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class OutboxOwnerError(ValueError):
    """The outbox belongs to another drone (or fleet) than the one opening it."""


@dataclass(frozen=True)
class Queued:
    alert: Alert
    thumb: bytes | None
    state: str
    attempts: int
    beidou_refused: str | None = None


class Outbox:
    def __init__(self, path: str | Path, drone_id: str, fleet: str | None = None, key_id: int | None = None,
                 max_bytes: int = 64 << 20, max_alerts: int = 100_000, new_epoch: bool = True,
                 boot_id: Callable[[], str] = clock.boot_id, monotonic: Callable[[], float] = clock.monotonic,
                 reserve_bytes: int = RESERVE_BYTES, max_held: int = 10_000):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.drone_id = drone_id
        self.max_bytes, self.max_alerts = max_bytes, max_alerts
        self._boot_id, self._monotonic = boot_id, monotonic
        in_memory = str(path) == ":memory:"
        self.reserve = None if in_memory or not reserve_bytes else self.path.with_name(self.path.name + "-reserve")
        self.reserve_bytes, self.max_held = reserve_bytes, max_held
        self.full = False  # the disk was found full and not yet seen with room again
        self._in_reserve = False  # high-severity alerts are being written into the released reserve
        self._held: list[tuple[Alert, bytes | None]] = []  # alerts waiting in memory for space
        self._mem_seq = 0  # numbers handed out while the counter could not be written
        self._last_retry = float("-inf")
        self._unrecorded_sent: dict[str, tuple[str, float]] = {}  # id -> (link, monotonic): sends not written
        self._unrecorded_acks: dict[str, bytes | None] = {}  # id -> digest: acknowledgements not written
        self._book_retry = float("-inf")
        self._unrecorded_epoch = 0  # the highest epoch of an answer, not written
        self._book_full = False  # the links' bookkeeping found the disk full (said once per episode)
        self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a committed put survives a power cut
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(alerts)")}
        if columns and "epoch" not in columns:
            self.db.close()
            raise ValueError(f"{self.path} was written by an older pli (alert ids without epochs): empty it with "
                             "that version or move it aside")
        if columns and "rejected" not in columns:  # an outbox of an earlier version: one more column
            self.db.execute("ALTER TABLE alerts ADD COLUMN rejected TEXT")
        self.db.executescript(_SCHEMA)
        with self._tx():
            meta = self._meta()
            owner = meta.get("drone_id")
            if owner is not None and owner != drone_id:
                raise OutboxOwnerError(f"{self.path} belongs to drone {owner} (fleet {meta.get('fleet')}), not "
                                       f"{drone_id}: use that drone's device file, or another outbox")
            if fleet is not None and meta.get("fleet") not in (None, fleet):
                raise OutboxOwnerError(f"{self.path} belongs to drone {owner} of fleet {meta['fleet']}, not of "
                                       f"fleet {fleet}")
            if key_id is not None and meta.get("key_id") not in (None, str(key_id)):
                log.warning("outbox %s: key id changed from %s to %d (key rotation)", self.path, meta["key_id"], key_id)
            epoch = max(int(meta.get("epoch", 0)), int(meta.get("seen_epoch", 0))) + 1
            if not new_epoch and "epoch" in meta:  # a look from outside (`pli link status`): no new numbers
                epoch = int(meta["epoch"])
            if epoch > MAX_EPOCH:
                raise ValueError(f"{self.path}: the epochs of drone {drone_id} are used up ({MAX_EPOCH}): enroll the "
                                 "drone again under a new drone id")
            want = {"drone_id": drone_id, "epoch": str(epoch), **({"fleet": fleet} if fleet is not None else {}),
                    **({"key_id": str(key_id)} if key_id is not None else {})}
            if any(meta.get(k) != v for k, v in want.items()):  # a look that changes nothing writes nothing
                self._set_meta(**want)  # (so `pli link run` and `status` open on a full disk)
        self.epoch_at_open = epoch
        self._make_reserve()
        log.info("outbox %s of drone %s open, epoch %d", self.path, drone_id, epoch)

    # -- a full disk ------------------------------------------------------------------------------

    def _make_reserve(self) -> bool:
        """Allocate the reserve file (real blocks, not a sparse file), when it is not there."""
        if self.reserve is None or self.reserve.exists():
            return True
        tmp = self.reserve.with_name(self.reserve.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
            tmp.replace(self.reserve)
            return True
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning("outbox %s: no room for its %d-byte reserve for high-severity alerts (%s)", self.path,
                        self.reserve_bytes, exc.strerror or exc)
            return False

    def _release_reserve(self) -> bool:
        if self.reserve is None or not self.reserve.exists():
            return False
        self.reserve.unlink()
        log.error("outbox %s: disk full: released the %d-byte reserve for high-severity alerts", self.path,
                  self.reserve_bytes)
        return True

    def _note_full(self, what: str, exc: BaseException) -> None:
        if not self.full:
            log.error("outbox %s: disk full while %s (%s): the flight goes on; high-severity alerts use the "
                      "reserve, the rest are held in memory (crops are not written) until space returns",
                      self.path, what, exc)
        self.full = True

    def _note_book_full(self, what: str, exc: BaseException) -> None:
        if not self._book_full:
            self._book_full = True
            log.error("outbox %s: disk full while %s (%s): kept in memory, written when space returns; the links "
                      "go on (receivers deduplicate a resend)", self.path, what, exc)

    def _not_due_unrecorded(self, link: str, now: float, resend_after_s: float,
                            beidou_resend_after_s: float | None) -> set[str]:
        """Alerts not due over `link` by what is kept in memory: acknowledged, or sent within their
        resend interval (as `due` treats the written ones)."""
        out = set(self._unrecorded_acks)
        for i, (sent_by, at) in self._unrecorded_sent.items():
            age = now - at
            if sent_by == "mqtt" and age < resend_after_s:
                out.add(i)  # neither link takes a fresh MQTT send (BeiDou only after resend_after_s)
            elif sent_by == "beidou" and link == "beidou" and (beidou_resend_after_s is None
                                                                or age < beidou_resend_after_s):
                out.add(i)
        return out

    def _write_unrecorded(self) -> None:
        """Write the bookkeeping kept in memory once there is room (at most once a second)."""
        if not (self._unrecorded_acks or self._unrecorded_sent or self._unrecorded_epoch):
            self._book_full = False
            return
        if self._monotonic() - self._book_retry < 1.0:
            return
        self._book_retry = self._monotonic()
        acks, sent = dict(self._unrecorded_acks), dict(self._unrecorded_sent)
        try:
            if self._unrecorded_epoch:
                with self._tx():
                    if self._unrecorded_epoch > int(self._meta().get("seen_epoch", 0)):
                        self._set_meta(seen_epoch=self._unrecorded_epoch)
                self._unrecorded_epoch = 0
            self._ack(list(acks), {i: d for i, d in acks.items() if d is not None})
            with self._tx():
                self._record_sent([(i, link, at) for i, (link, at) in sent.items()])
        except sqlite3.OperationalError as exc:
            if not disk_full(exc):
                raise
            return
        for i in acks:
            self._unrecorded_acks.pop(i, None)
        for i in sent:
            self._unrecorded_sent.pop(i, None)
        self._book_full = False
        log.warning("outbox %s: space returned: %d acknowledgements and %d sends written", self.path, len(acks),
                    len(sent))

    def _hold(self, alert: Alert, thumb: bytes | None) -> None:
        self._held.append((alert, thumb))
        if len(self._held) > self.max_held:  # most severe first, then oldest: the last one goes
            self._held.sort(key=lambda h: (-int(h[0].severity), h[0].seq))
            dropped, _ = self._held.pop()
            log.error("outbox: %d alerts held in memory: dropped %s (%s)", self.max_held, dropped.id,
                      dropped.severity.name.lower())
        log.warning("outbox: alert %s (%s) held in memory (%d held): the disk is full", alert.id,
                    alert.severity.name.lower(), len(self._held))

    @property
    def held(self) -> int:
        """How many alerts wait in memory for disk space."""
        return len(self._held)

    def recover(self, force: bool = False) -> int:
        """After a full disk: write the held alerts (most severe first) and make the reserve again
        when there is room. At most once a second unless `force`; returns how many were written."""
        if not self.full or (not force and self._monotonic() - self._last_retry < 1.0):
            return 0
        self._last_retry = self._monotonic()
        self._held.sort(key=lambda h: (-int(h[0].severity), h[0].seq))
        written = 0
        try:
            while self._held:
                alert, thumb = self._held[0]
                self._insert(alert, thumb, seq_at_least=max(self._mem_seq, alert.seq))
                self._held.pop(0)
                written += 1
            if self._mem_seq:
                with self._tx():
                    self._raise_counter(self._mem_seq)
                self._mem_seq = 0
        except sqlite3.OperationalError as exc:
            if not disk_full(exc):
                raise
        if written:
            log.warning("outbox %s: space returned: %d held alerts written (%d still held)", self.path, written,
                        len(self._held))
        room = shutil.disk_usage(self.path.parent).free if self.reserve is not None else 0
        if not self._held and not self._mem_seq and (self.reserve is None or (
                room > 2 * self.reserve_bytes and self._make_reserve())):
            self.full = self._in_reserve = False
            log.warning("outbox %s: writing normally again (reserve in place)", self.path)
        return written

    def _raise_counter(self, seq: int) -> None:
        if seq > self._counter("seq"):
            self.db.execute("INSERT OR REPLACE INTO counters VALUES ('seq', ?)", (seq,))

    # -- identity and counters --------------------------------------------------------------------

    def _meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def _set_meta(self, **values) -> None:
        self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in values.items()])

    @property
    def epoch(self) -> int:
        """The epoch new alerts get now (another process may have moved it since this one opened)."""
        return int(self._meta()["epoch"])

    def _counter(self, name: str) -> int:
        row = self.db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def _bump(self, name: str) -> int:
        value = self._counter(name) + 1
        self.db.execute("INSERT OR REPLACE INTO counters VALUES (?, ?)", (name, value))
        return value

    def next_id(self) -> tuple[int, int]:
        """(epoch, sequence number) for a new alert, committed before it is handed out; on a full
        disk, the next number above the committed and the held ones, written with them later."""
        if not self.full:
            try:
                with self._tx():
                    return self._next_id()
            except sqlite3.OperationalError as exc:
                if not disk_full(exc):
                    raise
                self._note_full("numbering an alert", exc)
        self._mem_seq = max(self._mem_seq, self._counter("seq")) + 1
        return int(self._meta()["epoch"]), self._mem_seq

    def _next_id(self) -> tuple[int, int]:
        epoch, seq = int(self._meta()["epoch"]), self._bump("seq")
        if seq > MAX_SEQ:  # 4 billion alerts in one epoch: start the next one
            epoch = self._move_epoch(epoch)
            seq = 1
            self.db.execute("INSERT OR REPLACE INTO counters VALUES ('seq', 1)")
        return epoch, seq

    def _move_epoch(self, above: int) -> int:
        epoch = max(above, int(self._meta()["epoch"])) + 1
        if epoch > MAX_EPOCH:
            raise ValueError(f"the epochs of drone {self.drone_id} are used up: enroll it again under a new id")
        self._set_meta(epoch=epoch)
        log.warning("outbox of %s moves to epoch %d", self.drone_id, epoch)
        return epoch

    def next_message(self) -> int:
        with self._tx():
            return self._bump("message")

    def note_epoch(self, epoch: int) -> None:
        """The highest epoch seen in a signed answer: the next open starts above it (on a full
        disk, kept in memory until there is room; lost with the process, it only costs one
        `superseded` refusal and a renumbering)."""
        try:
            with self._tx():
                if epoch > int(self._meta().get("seen_epoch", 0)):
                    self._set_meta(seen_epoch=epoch)
        except sqlite3.OperationalError as exc:
            if not disk_full(exc):
                raise
            self._unrecorded_epoch = max(self._unrecorded_epoch, epoch)
            self._note_book_full("recording the epoch of an answer", exc)

    # -- queue ------------------------------------------------------------------------------------

    def put(self, alert: Alert, thumb: bytes | None = None) -> Alert:
        """Make an alert durable (committed, fsync'd); putting the same id again changes nothing.

        An alert time before 2020 (an unset clock) is re-stamped with the time it arrived here and
        flagged, never dropped. Returns the alert as stored."""
        if alert.drone_id != self.drone_id:
            raise ValueError(f"alert of {alert.drone_id} in the outbox of {self.drone_id}")
        if alert.time < VALID_FROM:
            when, flagged = restamp(alert.time, None, datetime.now(UTC))
            alert = replace(alert, time=when, time_restamped=flagged)
            log.warning("alert %s: time before 2020 (an unset clock): re-stamped %s", alert.id, when.isoformat())
        self.recover()
        if not self.full:
            try:
                self._insert(alert, thumb)
                self._enforce_bounds()
                return alert
            except sqlite3.OperationalError as exc:
                if not disk_full(exc):
                    raise
                self._note_full(f"writing alert {alert.id}", exc)
        if alert.severity >= Severity.HIGH and (self._release_reserve() or self._in_reserve):
            self._in_reserve = True
            try:
                self._insert(alert, None, seq_at_least=self._mem_seq)  # without its thumbnail: fewer pages
                log.error("outbox: high-severity alert %s written into the reserved space (no thumbnail)", alert.id)
                return alert
            except sqlite3.OperationalError as exc:
                if not disk_full(exc):
                    raise
                self._in_reserve = False  # the reserve is used up
                log.error("outbox %s: the reserve for high-severity alerts is used up", self.path)
        self._hold(alert, thumb)
        return alert

    def _insert(self, alert: Alert, thumb: bytes | None, seq_at_least: int = 0) -> None:
        doc = alert_json.dumps(alert).decode()
        with self._tx():
            self.db.execute("INSERT OR IGNORE INTO alerts (id, epoch, seq, severity, created, doc, thumb) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)", (alert.id, alert.epoch, alert.seq, int(alert.severity),
                                                             time.time(), doc, thumb))
            if seq_at_least:
                self._raise_counter(seq_at_least)

    def due(self, link: str, limit: int = 100, resend_after_s: float = 30.0,
            beidou_resend_after_s: float | None = None, exclude: Sequence[str] = ()) -> list[Queued]:
        """What to send next over `link` ("mqtt" or "beidou"): most severe first, then oldest.

        MQTT takes everything not acknowledged (BeiDou-sent alerts included, so they are confirmed
        through the cloud), an alert already published only once `resend_after_s` has passed
        without the cloud's acknowledgement (the broker session retries within that time; after a
        crash the acknowledgement may have been lost with the process). BeiDou takes alerts that
        have not left the drone yet, those published over MQTT `resend_after_s` ago without an
        acknowledgement (4G died under them) and, when the ground station acknowledges over BeiDou
        (`beidou_resend_after_s` set), those it sent that long ago without an answer; never one
        refused for BeiDou. `exclude`: ids in flight on the other link right now.
        """
        self._write_unrecorded()
        boot, now = self._boot_id(), self._monotonic()
        skip = set(exclude) | self._not_due_unrecorded(link, now, resend_after_s, beidou_resend_after_s)
        stale = "(sent_boot IS NOT ? OR sent_mono < ?)"
        if link == "mqtt":
            # Last: alerts home by BeiDou only go once by 4G too, so the cloud gets their flight,
            # thumbnail and provenance (it merges the copy into the row the BeiDou copy made).
            where, args = f"(state IN (?, ?) OR (state = ? AND {stale}) OR (state = ? AND mqtt_sent = 0))", (
                PENDING, SENT_BEIDOU, SENT_MQTT, boot, now - resend_after_s, ACKED)
        else:
            where, args = f"beidou_refused IS NULL AND (state = ? OR (state = ? AND {stale})", (
                PENDING, SENT_MQTT, boot, now - resend_after_s)
            if beidou_resend_after_s is not None:
                where, args = where + f" OR (state = ? AND {stale})", (
                    *args, SENT_BEIDOU, boot, now - beidou_resend_after_s)
            where += ")"
        rows = self.db.execute(f"SELECT id, doc, thumb, state, attempts, beidou_refused FROM alerts WHERE {where} "
                               "ORDER BY state = 'acked', severity DESC, n LIMIT ?",
                               (*args, limit + len(skip))).fetchall()
        out = []
        for i, doc, thumb, state, attempts, refused in rows:
            if i in skip:
                continue
            try:
                out.append(Queued(alert_json.loads(doc)[0], thumb, state, attempts, refused))
            except ValueError as exc:  # a row this version cannot read: kept, said, never blocks the rest
                log.error("outbox row %s cannot be read (%s): left in place", i, exc)
        return out[:limit]

    def mark_sent(self, ids: Sequence[str], link: str) -> None:
        now = self._monotonic()
        try:
            with self._tx():
                self._record_sent([(i, link, now) for i in ids])
        except sqlite3.OperationalError as exc:
            if not disk_full(exc):
                raise
            self._unrecorded_sent.update((i, (link, now)) for i in ids)
            self._note_book_full(f"recording {len(ids)} alerts sent by {link}", exc)
            return
        for i in ids:
            self._unrecorded_sent.pop(i, None)

    def _record_sent(self, sends: Sequence[tuple[str, str, float]]) -> None:
        """(id, link, monotonic time) of each send, in the caller's transaction."""
        boot = self._boot_id()
        self.db.executemany(
            "UPDATE alerts SET state = CASE WHEN state = 'acked' THEN state ELSE ? END, "
            "attempts = attempts + 1, sent_boot = ?, sent_mono = ?, link = ?, mqtt_sent = mqtt_sent OR ? "
            "WHERE id = ?", [(SENT_BEIDOU if link == "beidou" else SENT_MQTT, boot, at, link, link == "mqtt", i)
                             for i, link, at in sends])

    def ack(self, ids: Sequence[str], digests: Mapping[str, bytes] | None = None) -> int:
        """Mark alerts acknowledged; returns how many changed (repeated acks are harmless).

        Where `digests` gives the content the receiver holds under an id (comms.replay.digest, or its
        first bytes), an alert of other content (its number reused after a wipe or restore) is not
        settled by it."""
        digests = digests or {}
        try:
            changed = self._ack(ids, digests)
        except sqlite3.OperationalError as exc:
            if not disk_full(exc):
                raise
            new = [i for i in ids if i not in self._unrecorded_acks]
            self._unrecorded_acks.update((i, digests.get(i)) for i in ids)
            self._note_book_full(f"recording {len(ids)} acknowledgements", exc)
            return len(new)
        for i in ids:
            self._unrecorded_acks.pop(i, None)
        return changed

    def _ack(self, ids: Sequence[str], digests: Mapping[str, bytes]) -> int:
        changed = 0
        with self._tx():
            for i in ids:
                if i in digests:
                    row = self.db.execute("SELECT doc FROM alerts WHERE id = ?", (i,)).fetchone()
                    if row is not None and digest(alert_json.loads(row[0])[0])[:len(digests[i])] != digests[i]:
                        log.warning("acknowledgement of %s is for another alert under that id (a reused number): "
                                    "ignored", i)
                        continue
                changed += self.db.execute("UPDATE alerts SET state = 'acked' WHERE id = ? AND state != 'acked'",
                                           (i,)).rowcount
        return changed

    def refuse(self, ids: Sequence[str], reason: str, by: str, highest_epoch: int | None = None,
               detail: str | None = None) -> dict[str, str]:
        """A receiver refused these alerts (see `_refuse`); on a full disk the refusal is not
        written, and comes again with the next send."""
        try:
            return self._refuse(ids, reason, by, highest_epoch, detail)
        except sqlite3.OperationalError as exc:
            if not disk_full(exc):
                raise
            self._note_book_full(f"recording a refusal ({reason}) of {len(ids)} alerts", exc)
            return {}

    def _refuse(self, ids: Sequence[str], reason: str, by: str, highest_epoch: int | None = None,
                detail: str | None = None) -> dict[str, str]:
        """A receiver refused these alerts: `by` "beidou" (the ground station) or "mqtt" (the cloud).
        The cloud's `invalid` (a payload its schema refuses, `detail` says why) is final: the row is
        kept as `rejected`, with the reason, and never sent again.

        Returns {old id: new id} for the alerts numbered again (superseded epoch, see the module).
        """
        renamed: dict[str, str] = {}
        if reason == INVALID and by == "mqtt":
            with self._tx():
                n = sum(self.db.execute("UPDATE alerts SET state = ?, rejected = ? WHERE id = ? AND state != ?",
                                        (REJECTED, (detail or reason)[:500], i, ACKED)).rowcount for i in ids)
            if n:
                log.error("%d alerts refused by the cloud as invalid (%s): kept in the outbox, not sent again", n,
                          (detail or reason)[:200])
            return renamed
        with self._tx():
            if reason == SUPERSEDED and highest_epoch is not None:
                if highest_epoch > int(self._meta().get("seen_epoch", 0)):
                    self._set_meta(seen_epoch=highest_epoch)
                if int(self._meta()["epoch"]) <= highest_epoch:
                    self._move_epoch(highest_epoch)
            for old in ids:
                row = self.db.execute("SELECT n, doc, state, mqtt_sent FROM alerts WHERE id = ?", (old,)).fetchone()
                if row is None or row[2] == ACKED:
                    continue
                n, doc, _, mqtt_sent = row
                if reason == SUPERSEDED and (by == "mqtt" or not mqtt_sent):
                    alert = replace(alert_json.loads(doc)[0], **dict(zip(("epoch", "seq"), self._next_id(),
                                                                         strict=True)))
                    self.db.execute("UPDATE alerts SET id = ?, epoch = ?, seq = ?, doc = ?, state = 'pending', "
                                    "sent_boot = NULL, sent_mono = NULL, mqtt_sent = 0, beidou_refused = NULL "
                                    "WHERE n = ?", (alert.id, alert.epoch, alert.seq,
                                                    json.dumps(alert_json.to_json(alert), separators=(",", ":")), n))
                    renamed[old] = alert.id
                elif by == "beidou":
                    self.db.execute("UPDATE alerts SET beidou_refused = ? WHERE n = ?", (reason, n))
        for old, new in renamed.items():
            log.warning("alert %s refused (%s by %s): numbered again as %s", old, reason, by, new)
        if len(renamed) < len(ids) and by == "beidou":
            log.warning("%d alerts refused by the ground station (%s): they go by MQTT only", len(ids) - len(renamed),
                        reason)
        return renamed

    def mark_unpackable(self, alert: Alert, reason: str) -> None:
        try:
            with self._tx():
                self.db.execute("UPDATE alerts SET beidou_refused = ? WHERE id = ?",
                                (f"unpackable: {reason}", alert.id))
        except sqlite3.OperationalError as exc:
            if not disk_full(exc):
                raise
            self._note_book_full(f"marking {alert.id} unpackable", exc)
        log.warning("alert %s cannot go by BeiDou (%s): kept for MQTT", alert.id, reason)

    def state(self, alert_id: str) -> str | None:
        row = self.db.execute("SELECT state FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return row[0] if row else None

    def beidou_refused(self, alert_id: str) -> str | None:
        row = self.db.execute("SELECT beidou_refused FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return row[0] if row else None

    def counts(self) -> dict[str, int]:
        """Alerts by state; an acknowledgement kept in memory (a full disk) counts as acknowledged."""
        out = dict(self.db.execute("SELECT state, COUNT(*) FROM alerts GROUP BY state").fetchall())
        for i in self._unrecorded_acks:
            state = self.state(i)
            if state is not None and state not in (ACKED, REJECTED):
                out[state] -= 1
                out[ACKED] = out.get(ACKED, 0) + 1
        return {k: v for k, v in out.items() if v}

    def alerts(self) -> list[dict]:
        """Every stored alert as its JSON document (the interface the edge runtime's tests read)."""
        return [json.loads(d) for (d,) in self.db.execute("SELECT doc FROM alerts ORDER BY n")]

    def status(self) -> dict:
        """What is still unsent, by severity and state (`pli link status`)."""
        unsent: dict[str, dict[str, int]] = {}
        for severity, state, link, n in self.db.execute(
                "SELECT severity, state, COALESCE(beidou_refused, ''), COUNT(*) FROM alerts WHERE state NOT IN "
                "('acked', 'rejected') GROUP BY severity, state, beidou_refused IS NOT NULL"):
            key = state if not link else f"{state}, BeiDou refused: MQTT only"
            unsent.setdefault(Severity(severity).name.lower(), {})[key] = n
        refused = dict(self.db.execute("SELECT beidou_refused, COUNT(*) FROM alerts WHERE state != 'acked' AND "
                                       "beidou_refused IS NOT NULL GROUP BY beidou_refused").fetchall())
        total = sum(sum(v.values()) for v in unsent.values())
        meta = self._meta()
        return {"drone_id": self.drone_id, "fleet": meta.get("fleet"), "epoch": int(meta["epoch"]),
                "acknowledged": self.counts().get(ACKED, 0), "unacknowledged": total,
                "unsent_by_severity": {k: unsent[k] for k in ("high", "medium", "low") if k in unsent},
                "beidou_refused": refused, "rejected_by_cloud": self.counts().get(REJECTED, 0),
                "disk_full": self.full or bool(self._unrecorded_acks or self._unrecorded_sent),
                "held_in_memory": len(self._held), "acks_in_memory": len(self._unrecorded_acks),
                "safe_to_power_off": total == 0 and not self._held}

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
            ("thumbnails", "UPDATE alerts SET thumb = NULL WHERE n IN (SELECT n FROM alerts WHERE thumb IS NOT NULL"
                           " ORDER BY n LIMIT 64)"),
            ("acknowledged alerts", "DELETE FROM alerts WHERE n IN (SELECT n FROM alerts WHERE state = 'acked'"
                                    " ORDER BY n LIMIT 64)"),
            ("unsent low/medium alerts", f"DELETE FROM alerts WHERE n IN (SELECT n FROM alerts WHERE severity < "
                                         f"{int(Severity.HIGH)} AND state != 'acked' ORDER BY severity, n LIMIT 1)"),
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


def ids_of(drone_id: str, epoch: int, seqs: Sequence[int]) -> list[str]:
    return [alert_id(drone_id, epoch, s) for s in seqs]


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
