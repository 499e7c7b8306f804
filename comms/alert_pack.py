"""The compact binary form of alerts for BeiDou short messages, several to a message, signed.

A level-3 civil card sends 628 bits per message (77 bytes of mixed-mode payload) once a minute,
so every byte counts. Three kinds of message share the first byte (kind << 4 | count) and the
key id after it; all are big-endian and end with a 4-byte tag, HMAC-SHA256(drone key, the rest)[:4].

    alerts (kind 2)   header: kind|count (1)  key id (2)  epoch (2)  class-list version (1)
                              base time, s since 2020-01-01 UTC (4)                     = 10 bytes
                      record: seq (4)  lat, lon in 1e-7 deg (4 + 4)  time - base, s (3)
                              class id<<4 | position source<<2 | has tower<<1 | re-stamped (1)
                              confidence*255 (1)  altitude, m (2, signed)               = 19 bytes
                              [tower number (2), when the has-tower bit is set]         = 21 bytes
    ack (kind 10)     kind|count  key id (2)  epoch (2)  lowest seq (4)  then seq - lowest (2 each)
    checked ack (12)  the same, then per alert seq - lowest (2) and its content check (2): the first
                      bytes of comms.replay.digest, so an acknowledgement of an old alert never
                      settles a new one whose number was reused (a wiped or restored outbox); 15
                      alerts in 73 bytes, a false match once in 65,536 reused numbers
    refusal (kind 11) kind|count  key id (2)  epoch (2)  reason (1)  detail (2)  lowest seq (4)
                      then seq - lowest (2 each); detail: the highest epoch known (superseded),
                      the class-list version refused (unknown list), else 0

Budget: 10 + 3 x 21 + 4 = 77, exactly a level-3 card's message, 3 alerts with towers. What gave
way for the epoch and the class-list version: severity left the record (it follows from the class
and the list version), and its two bits now carry the position source's second bit and the
re-stamped flag; the 3 spare bytes of the old layout are gone. BDS-3 at the global 560 bits (70
bytes) holds 2 alerts (10 + 2 x 21 + 4 = 56). Every alert in one message shares its epoch and
class-list version. What the record does not carry (flight id, crop, thumbnail, source frame, box,
model version, tower ids other than `T<n>`) travels in the MQTT form only.

The key id names the drone at the ground station, which rebuilds the same alert id (drone id +
epoch + sequence number) as the MQTT path. An old-epoch acknowledgement can never settle a
new-epoch alert: the epoch is part of the id it rebuilds.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from comms.alert import BEIDOU_POSITION_SOURCES, MAX_EPOCH, VALID_FROM, Alert
from comms.classes import ClassList, known_class_lists
from comms.replay import SUPERSEDED, TOO_OLD

ALERTS, ACK, REFUSAL, CHECKED_ACK = 0x2, 0xA, 0xB, 0xC  # kind nibble (kind 1 was the layout without epochs)
CHECK_BYTES = 2  # per acknowledged alert in a checked acknowledgement: its content digest's first bytes
EPOCH = VALID_FROM
HEADER = struct.Struct(">BHHBI")
RECORD = struct.Struct(">Iii3sBBh")
TOWER = struct.Struct(">H")
ACK_HEADER = struct.Struct(">BHHI")
REFUSAL_HEADER = struct.Struct(">BHHBHI")
OFFSET = struct.Struct(">H")
TAG_BYTES = 4
MAX_COUNT = 15
MAX_DT = 2**24 - 1
_TOWER_ID = re.compile(r"^T(\d{1,5})$")

# Refusal reasons (the ground station's signed answers besides acknowledgements).
UNKNOWN_CLASS_LIST = "unknown_class_list"
_REASON_CODES = {TOO_OLD: 1, UNKNOWN_CLASS_LIST: 2, SUPERSEDED: 3}
_REASONS = {v: k for k, v in _REASON_CODES.items()}


class PackError(ValueError):
    """A message that is not a well-formed, authentic message of ours."""


class UnknownClassList(PackError):
    """An authentic alert message packed with a class-list version this side does not know."""

    def __init__(self, drone_id: str, key_id: int, epoch: int, version: int, seqs: list[int]):
        super().__init__(f"class-list version {version} is unknown here (alerts {seqs} of {drone_id}, epoch {epoch})")
        self.drone_id, self.key_id, self.epoch, self.version, self.seqs = drone_id, key_id, epoch, version, seqs


@dataclass(frozen=True)
class Packed:
    payload: bytes
    alerts: tuple[Alert, ...]  # the alerts it carries, in order (what the outbox marks sent)
    # alerts that can never travel by BeiDou, with the reason (they go by MQTT only)
    unpackable: tuple[tuple[Alert, str], ...] = ()


@dataclass(frozen=True)
class Refusal:
    reason: str  # TOO_OLD, UNKNOWN_CLASS_LIST or SUPERSEDED
    epoch: int
    seqs: list[int]
    detail: int = 0  # highest epoch known (SUPERSEDED) or the class-list version refused

    @property
    def highest_epoch(self) -> int | None:
        return self.detail if self.reason == SUPERSEDED else None


@dataclass(frozen=True)
class Ack:
    epoch: int
    seqs: list[int]
    checks: list[bytes] | None = None  # per seq, when the acknowledgement is checked


@dataclass
class Batch:
    """An authentic alert message, decoded."""

    drone_id: str
    key_id: int
    epoch: int
    class_list_version: int
    alerts: list[Alert] = field(default_factory=list)

    @property
    def seqs(self) -> list[int]:
        return [a.seq for a in self.alerts]


def record_size(alert: Alert) -> int:
    return RECORD.size + (TOWER.size if _tower_number(alert.tower_id) is not None else 0)


def _tower_number(tower_id: str | None) -> int | None:
    """The number of a `T<nn>` tower id that the 2-byte field rebuilds exactly, else None."""
    m = _TOWER_ID.match(tower_id or "")
    if not m or int(m.group(1)) > 0xFFFF or f"T{int(m.group(1)):02d}" != tower_id:
        return None
    return int(m.group(1))


def _tag(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()[:TAG_BYTES]


def _verified(payload: bytes, key: bytes, what: str) -> bytes:
    """The signed part of `payload`, once its tag checks out with `key`."""
    signed, tag = payload[:-TAG_BYTES], payload[-TAG_BYTES:]
    if not hmac.compare_digest(_tag(key, signed), tag):
        raise PackError(f"authentication tag does not match (forged or corrupted {what})")
    return signed


def _seconds(t) -> int:
    return int((t - EPOCH).total_seconds())


def packable(alert: Alert, lists: Mapping[int, ClassList]) -> str | None:
    """Why an alert can never go by BeiDou (it still goes by MQTT), or None when it can."""
    if alert.class_list_version is None:
        return "its class list has no version"
    classes = lists.get(alert.class_list_version)
    if classes is None:
        return f"class-list version {alert.class_list_version} is not known on this drone"
    if alert.fault_class not in classes.names:
        return f"class {alert.fault_class!r} is not in class-list version {alert.class_list_version}"
    if classes.names.index(alert.fault_class) > 15:
        return f"class {alert.fault_class!r} has id {classes.names.index(alert.fault_class)}, past the 4-bit field"
    if alert.time < EPOCH:
        return f"time {alert.time.isoformat()} is before 2020 and no clock could re-stamp it"
    if not 0 <= alert.epoch <= MAX_EPOCH:
        return f"epoch {alert.epoch} out of range"
    return None


def pack(alerts: Sequence[Alert], key_id: int, key: bytes, capacity: int,
         lists: Mapping[int, ClassList] | None = None) -> Packed:
    """As many of `alerts` (in the order given: sort by priority first) as fit in `capacity` bytes.

    The first packable alert fixes the message's epoch and class-list version; alerts of another
    epoch or version wait for a later message. Alerts that can never be packed come back in
    `unpackable`: the caller keeps them for MQTT. An empty `alerts` in the result means none fit.
    """
    lists = known_class_lists() if lists is None else lists
    if not 0 <= key_id <= 0xFFFF:
        raise ValueError(f"key id {key_id} out of range 0..65535")
    if capacity < HEADER.size + RECORD.size + TAG_BYTES:
        raise ValueError(f"{capacity} bytes cannot hold one alert ({HEADER.size + RECORD.size + TAG_BYTES} needed)")
    chosen: list[Alert] = []
    bad: list[tuple[Alert, str]] = []
    size = HEADER.size + TAG_BYTES
    for a in alerts:
        why = packable(a, lists)
        if why is not None:
            bad.append((a, why))
            continue
        if len(chosen) == MAX_COUNT or size + record_size(a) > capacity:
            break
        if chosen and (a.epoch, a.class_list_version) != (chosen[0].epoch, chosen[0].class_list_version):
            continue
        times = [_seconds(c.time) for c in (*chosen, a)]
        if max(times) - min(times) > MAX_DT:
            continue
        chosen.append(a)
        size += record_size(a)
    if not chosen:
        return Packed(b"", (), tuple(bad))
    version = chosen[0].class_list_version
    assert version is not None
    classes = lists[version]
    base = min(_seconds(a.time) for a in chosen)
    body = b"".join(_record(a, base, classes) for a in chosen)
    header = HEADER.pack(ALERTS << 4 | len(chosen), key_id, chosen[0].epoch, version, base)
    return Packed(header + body + _tag(key, header + body), tuple(chosen), tuple(bad))


def _source_bits(source: str) -> int:
    """Two bits: the first four sources as they are, any later one (multi_view) as "other"."""
    return BEIDOU_POSITION_SOURCES.index(source) if source in BEIDOU_POSITION_SOURCES else 3


def _record(a: Alert, base: int, classes: ClassList) -> bytes:
    class_id = classes.id_of(a.fault_class)
    dt = _seconds(a.time) - base
    tower = _tower_number(a.tower_id)
    flags = (class_id << 4 | _source_bits(a.position_source) << 2 | (tower is not None) << 1
             | a.time_restamped)
    alt = max(-32768, min(32767, round(a.alt)))
    rec = RECORD.pack(a.seq, round(a.lat * 1e7), round(a.lon * 1e7), dt.to_bytes(3, "big"), flags,
                      round(a.confidence * 255), alt)
    return rec + (TOWER.pack(tower) if tower is not None else b"")


def peek_key_id(payload: bytes) -> int:
    """The key id of a message, to look up the drone and its key before verifying."""
    if len(payload) < ACK_HEADER.size + TAG_BYTES:
        raise PackError(f"message of {len(payload)} bytes is shorter than header and tag")
    return int.from_bytes(payload[1:3], "big")


def unpack(payload: bytes, key_for: Callable[[int], tuple[str, bytes] | None],
           lists: Mapping[int, ClassList] | None = None, flight_id: str = "") -> Batch:
    """Verify and decode an alert message. `key_for(key_id)` gives (drone id, key), or None.

    Raises PackError for anything but an authentic, well-formed alert message (the tag is checked
    before any field is trusted), and UnknownClassList, which names the epoch and sequence numbers,
    for an authentic one packed with a class-list version not in `lists`.
    """
    lists = known_class_lists() if lists is None else lists
    key_id = peek_key_id(payload)
    found = key_for(key_id)
    if found is None:
        raise PackError(f"unknown key id {key_id}")
    drone_id, key = found
    signed = _verified(payload, key, "message")
    if len(signed) < HEADER.size:
        raise PackError(f"message of {len(payload)} bytes is shorter than an alert header and tag")
    kind_count, _, epoch, version, base = HEADER.unpack_from(signed)
    if kind_count >> 4 != ALERTS:
        raise PackError(f"not an alert message (kind {kind_count >> 4})")
    count, at = kind_count & 0x0F, HEADER.size
    raw = []
    for i in range(count):
        if at + RECORD.size > len(signed):
            raise PackError(f"message ends inside record {i}")
        rec = RECORD.unpack_from(signed, at)
        at += RECORD.size
        tower = None
        if rec[4] & 0x02:
            if at + TOWER.size > len(signed):
                raise PackError("message ends inside a tower number")
            tower = f"T{TOWER.unpack_from(signed, at)[0]:02d}"
            at += TOWER.size
        raw.append((rec, tower))
    if at != len(signed):
        raise PackError(f"{len(signed) - at} bytes left after {count} records")
    classes = lists.get(version)
    if classes is None:
        raise UnknownClassList(drone_id, key_id, epoch, version, [r[0][0] for r in raw])
    batch = Batch(drone_id, key_id, epoch, version)
    for i, ((seq, lat, lon, dt, flags, conf, alt), tower) in enumerate(raw):
        class_id = flags >> 4
        if class_id >= len(classes.names):
            raise PackError(f"record {i}: class id {class_id} is not in class-list version {version}")
        name = classes.names[class_id]
        severity = classes.severity_of(name)
        if severity is None:
            raise PackError(f"record {i}: class {name!r} raises no alert in class-list version {version}")
        try:
            batch.alerts.append(Alert(
                drone_id, seq, flight_id, EPOCH + timedelta(seconds=base + int.from_bytes(dt, "big")),
                lat / 1e7, lon / 1e7, float(alt), name, conf / 255, severity, tower_id=tower,
                position_source=BEIDOU_POSITION_SOURCES[flags >> 2 & 0x03], epoch=epoch, class_list_version=version,
                time_restamped=bool(flags & 0x01)))
        except ValueError as exc:
            raise PackError(f"record {i}: {exc}") from None
    return batch


def _answer(kind: int, head: bytes, seqs: Sequence[int], key: bytes, capacity: int,
            checks: Mapping[int, bytes] | None = None) -> tuple[bytes, list[int]]:
    todo = sorted(set(seqs))
    if not todo:
        raise ValueError("no sequence numbers to answer")
    entry = OFFSET.size + (CHECK_BYTES if checks is not None else 0)
    room = min(MAX_COUNT, (capacity - 1 - len(head) - 4 - TAG_BYTES) // entry)
    if room < 1:
        raise ValueError(f"{capacity} bytes cannot hold one answer")
    chosen = [s for s in todo if s - todo[0] <= 0xFFFF][:room]
    signed = bytes([kind << 4 | len(chosen)]) + head + todo[0].to_bytes(4, "big")
    for s in chosen:
        signed += OFFSET.pack(s - todo[0]) + (bytes(checks[s][:CHECK_BYTES]) if checks is not None else b"")
    return signed + _tag(key, signed), chosen


def pack_ack(seqs: Sequence[int], key_id: int, key: bytes, epoch: int, capacity: int = 77,
             checks: Mapping[int, bytes] | None = None) -> tuple[bytes, list[int]]:
    """An acknowledgement of as many of `seqs` (lowest first, all of `epoch`) as fit; returns it and
    those. With `checks` (seq -> content digest) it is a checked acknowledgement."""
    kind = ACK if checks is None else CHECKED_ACK
    return _answer(kind, struct.pack(">HH", key_id, epoch), seqs, key, capacity, checks)


def pack_refusal(refusal: Refusal, key_id: int, key: bytes, capacity: int = 77) -> tuple[bytes, list[int]]:
    """A signed refusal of as many of `refusal.seqs` as fit; returns it and those sequence numbers."""
    head = struct.pack(">HHBH", key_id, refusal.epoch, _REASON_CODES[refusal.reason], refusal.detail)
    return _answer(REFUSAL, head, refusal.seqs, key, capacity)


def unpack_answer(payload: bytes, key_id: int, key: bytes) -> Ack | Refusal:
    """An authentic acknowledgement or refusal for this drone (`key_id`); PackError otherwise."""
    if peek_key_id(payload) != key_id:
        raise PackError(f"answer for key id {peek_key_id(payload)}, not {key_id}")
    signed = _verified(payload, key, "answer")
    kind, count = signed[0] >> 4, signed[0] & 0x0F
    entry = OFFSET.size
    if kind in (ACK, CHECKED_ACK):
        _, _, epoch, base = ACK_HEADER.unpack_from(signed)
        at = ACK_HEADER.size
        entry += CHECK_BYTES if kind == CHECKED_ACK else 0
    elif kind == REFUSAL and len(signed) >= REFUSAL_HEADER.size:
        _, _, epoch, code, detail, base = REFUSAL_HEADER.unpack_from(signed)
        at = REFUSAL_HEADER.size
        if code not in _REASONS:
            raise PackError(f"refusal with unknown reason code {code}")
    else:
        raise PackError(f"not an acknowledgement or refusal (kind {kind})")
    if len(signed) != at + count * entry:
        raise PackError(f"answer about {count} alerts has {len(signed)} bytes")
    offsets = [at + i * entry for i in range(count)]
    seqs = [base + OFFSET.unpack_from(signed, o)[0] for o in offsets]
    if kind == CHECKED_ACK:
        return Ack(epoch, seqs, [signed[o + OFFSET.size:o + entry] for o in offsets])
    return Ack(epoch, seqs) if kind == ACK else Refusal(_REASONS[code], epoch, seqs, detail)


def unpack_ack(payload: bytes, key_id: int, key: bytes) -> Ack:
    """An authentic acknowledgement for this drone; PackError for anything else (refusals too)."""
    answer = unpack_answer(payload, key_id, key)
    if not isinstance(answer, Ack):
        raise PackError("a refusal, not an acknowledgement")
    return answer
