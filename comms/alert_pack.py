"""The compact binary form of alerts for BeiDou short messages, several to a message, signed.

A level-3 civil card sends 628 bits per message (77 bytes of mixed-mode payload) once a minute,
so every byte counts. Layout, big-endian:

    header   version<<4 | count (1)   key id (2)   base time, s since 2020-01-01 UTC (4)
    record   seq (4)  lat, lon in 1e-7 deg (4 + 4)  time - base, s (3)
             class id<<4 | projected<<3 | has tower<<2 | severity-1 (1)  confidence*255 (1)
             altitude, m (2, signed)  [tower number (2), when the has-tower bit is set]
    tag      HMAC-SHA256(drone key, header + records)[:4]

Acknowledgements back to the drone (ground station -> drone, so lost messages are re-sent
without waiting for 4G) share the header with kind ACK in the version nibble, the lowest
acknowledged sequence number as base, then 2 bytes (seq - base) per alert, and the same tag
with the drone's key: 15 acknowledgements in 41 bytes.

A record is 19 bytes, 21 with a tower (`T<number>` ids; others travel in the MQTT form only).
77 bytes hold 3 alerts with towers: 7 + 3 x 21 + 4 = 74. The key id names the drone at the
ground station, which rebuilds the same alert id (drone id + sequence number) as the MQTT path.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from comms.alert import Alert
from comms.classes import ClassList, Severity, load_class_list

VERSION = 1
ACK = 0xA  # version nibble of an acknowledgement message
ACK_OFFSET = struct.Struct(">H")
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
HEADER = struct.Struct(">BHI")
RECORD = struct.Struct(">Iii3sBBh")
TOWER = struct.Struct(">H")
TAG_BYTES = 4
MAX_COUNT = 15
MAX_DT = 2**24 - 1
_TOWER_ID = re.compile(r"^T(\d{1,5})$")


class PackError(ValueError):
    """A message that is not a well-formed, authentic alert batch."""


@dataclass(frozen=True)
class Packed:
    payload: bytes
    alerts: tuple[Alert, ...]  # the alerts it carries, in order (what the outbox marks sent)


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


def _seconds(t: datetime) -> int:
    return int((t - EPOCH).total_seconds())


def pack(alerts: Sequence[Alert], key_id: int, key: bytes, capacity: int,
         classes: ClassList | None = None) -> Packed:
    """As many of `alerts` (in the order given: sort by priority first) as fit in `capacity` bytes."""
    classes = classes or load_class_list()
    if not 0 <= key_id <= 0xFFFF:
        raise ValueError(f"key id {key_id} out of range 0..65535")
    if capacity < HEADER.size + RECORD.size + TAG_BYTES:
        raise ValueError(f"{capacity} bytes cannot hold one alert ({HEADER.size + RECORD.size + TAG_BYTES} needed)")
    if not alerts:
        raise ValueError("nothing to pack")
    chosen: list[Alert] = []
    size = HEADER.size + TAG_BYTES
    for a in alerts:
        if len(chosen) == MAX_COUNT or size + record_size(a) > capacity:
            break
        times = [_seconds(c.time) for c in (*chosen, a)]
        if max(times) - min(times) > MAX_DT:
            break
        chosen.append(a)
        size += record_size(a)
    base = min(max(_seconds(a.time), 0) for a in chosen)
    body = b"".join(_record(a, base, classes) for a in chosen)
    header = HEADER.pack(VERSION << 4 | len(chosen), key_id, base)
    return Packed(header + body + _tag(key, header + body), tuple(chosen))


def _record(a: Alert, base: int, classes: ClassList) -> bytes:
    class_id = classes.id_of(a.fault_class)
    if class_id > 15:
        raise ValueError(f"class id {class_id} ({a.fault_class}) does not fit the 4-bit field")
    dt = _seconds(a.time) - base
    if not 0 <= dt <= MAX_DT:
        raise ValueError(f"alert {a.id}: time {a.time} outside the message's range")
    tower = _tower_number(a.tower_id)
    flags = class_id << 4 | (a.position_source == "projected") << 3 | (tower is not None) << 2 | (a.severity - 1)
    alt = max(-32768, min(32767, round(a.alt)))
    rec = RECORD.pack(a.seq, round(a.lat * 1e7), round(a.lon * 1e7), dt.to_bytes(3, "big"), flags,
                      round(a.confidence * 255), alt)
    return rec + (TOWER.pack(tower) if tower is not None else b"")


def peek_key_id(payload: bytes) -> int:
    """The key id of a message, to look up the drone and its key before verifying."""
    if len(payload) < HEADER.size + TAG_BYTES:
        raise PackError(f"message of {len(payload)} bytes is shorter than header and tag")
    return HEADER.unpack_from(payload)[1]


def unpack(payload: bytes, key_for: Callable[[int], tuple[str, bytes] | None],
           classes: ClassList | None = None, flight_id: str = "") -> list[Alert]:
    """Verify and decode a message. `key_for(key_id)` gives (drone id, key), or None if unknown.

    Raises PackError for anything but an authentic, well-formed message; the tag is checked
    before any field is trusted.
    """
    classes = classes or load_class_list()
    key_id = peek_key_id(payload)
    found = key_for(key_id)
    if found is None:
        raise PackError(f"unknown key id {key_id}")
    drone_id, key = found
    signed = _verified(payload, key, "message")
    version_count, _, base = HEADER.unpack_from(signed)
    if version_count >> 4 != VERSION:
        raise PackError(f"unsupported version {version_count >> 4}")
    count, at = version_count & 0x0F, HEADER.size
    alerts = []
    for _ in range(count):
        if at + RECORD.size > len(signed):
            raise PackError("message ends inside a record")
        seq, lat, lon, dt, flags, conf, alt = RECORD.unpack_from(signed, at)
        at += RECORD.size
        tower = None
        if flags & 0x04:
            if at + TOWER.size > len(signed):
                raise PackError("message ends inside a tower number")
            tower = f"T{TOWER.unpack_from(signed, at)[0]:02d}"
            at += TOWER.size
        class_id = flags >> 4
        if class_id >= len(classes.names) or (flags & 0x03) + 1 not in Severity._value2member_map_:
            raise PackError(f"record {len(alerts)}: unknown class id {class_id} or severity {flags & 0x03}")
        try:
            alerts.append(Alert(drone_id, seq, flight_id, EPOCH + timedelta(seconds=base + int.from_bytes(dt, "big")),
                                lat / 1e7, lon / 1e7, float(alt), classes.names[class_id], conf / 255,
                                Severity((flags & 0x03) + 1), tower_id=tower,
                                position_source="projected" if flags & 0x08 else "drone"))
        except ValueError as exc:
            raise PackError(f"record {len(alerts)}: {exc}") from None
    if at != len(signed):
        raise PackError(f"{len(signed) - at} bytes left after {count} records")
    return alerts


def pack_ack(seqs: Sequence[int], key_id: int, key: bytes, capacity: int = 77) -> tuple[bytes, list[int]]:
    """An acknowledgement of as many of `seqs` (lowest first) as fit; returns it and those seqs."""
    todo = sorted(set(seqs))
    if not todo:
        raise ValueError("nothing to acknowledge")
    base = todo[0]
    room = min(MAX_COUNT, (capacity - HEADER.size - TAG_BYTES) // ACK_OFFSET.size)
    if room < 1:
        raise ValueError(f"{capacity} bytes cannot hold one acknowledgement")
    chosen = [s for s in todo if s - base <= 0xFFFF][:room]
    header = HEADER.pack(ACK << 4 | len(chosen), key_id, base)
    body = b"".join(ACK_OFFSET.pack(s - base) for s in chosen)
    return header + body + _tag(key, header + body), chosen


def unpack_ack(payload: bytes, key_id: int, key: bytes) -> list[int]:
    """The sequence numbers an authentic acknowledgement for this drone (`key_id`) confirms."""
    if peek_key_id(payload) != key_id:
        raise PackError(f"acknowledgement for key id {peek_key_id(payload)}, not {key_id}")
    signed = _verified(payload, key, "acknowledgement")
    kind_count, _, base = HEADER.unpack_from(signed)
    if kind_count >> 4 != ACK:
        raise PackError(f"not an acknowledgement (kind {kind_count >> 4})")
    count = kind_count & 0x0F
    if len(signed) != HEADER.size + count * ACK_OFFSET.size:
        raise PackError(f"acknowledgement of {count} alerts has {len(signed)} bytes")
    return [base + ACK_OFFSET.unpack_from(signed, HEADER.size + i * ACK_OFFSET.size)[0] for i in range(count)]
