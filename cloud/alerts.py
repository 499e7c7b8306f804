"""Alerts into the database: idempotent by id, copies merged, conflicts kept, every receiver's rule.

`record` takes one alert document as it came off the broker (the drone's over 4G, or the ground
station's republished BeiDou copy, marked `"via": "beidou"`) and returns what to answer the
drone. It follows the rule all receivers share (comms/replay.py): an id held with the same
content is a duplicate (merged: a BeiDou copy has no flight, thumbnail or provenance and quantized
numbers; the MQTT copy brings them, in either order), one held with other content is kept apart
in `alert_copies`, flagged, and refused as superseded, and an epoch below the drone's highest is
refused as superseded. The caller commits, then acknowledges.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import bindparam, case, insert, select, update
from sqlalchemy.orm import Session

from cloud import faults, status_rules, towers, uploads
from cloud.models import Alert, AlertCopy, AlertEvent, Drone, Fault, Flight, UTCDateTime
from cloud.notify import notify_many
from comms import alert_json
from comms.alert import BEIDOU_POSITION_SOURCES, alert_id, flag_fields, parse_alert_id
from comms.alert import Alert as AlertRecord
from comms.classes import Severity, known_class_lists
from comms.replay import INVALID, NEW, REPLAY, SUPERSEDED, digest, verdict


class IngestError(ValueError):
    """A message that cannot be an alert of the drone that sent it (one line, logged, not stored).

    `refusal`: (fleet, drone, alert id) when the message names an alert of the drone that sent
    it: the drone is told (reason `invalid`) and stops resending what can never be stored."""

    def __init__(self, message: str, refusal: tuple[str, str, str] | None = None):
        super().__init__(message)
        self.refusal = refusal

    def outcome(self) -> Outcome | None:
        """The answer to the drone, when there is one to give."""
        if self.refusal is None:
            return None
        fleet, drone, alert = self.refusal
        return Outcome(alert, drone, INVALID, refusal={"id": alert, "reason": INVALID, "highest_epoch": None,
                                                       "detail": str(self)[:240]}, fleet=fleet)


@dataclass
class Outcome:
    alert_id: str
    drone_id: str
    verdict: str  # new, duplicate, conflict, superseded_epoch
    ack: tuple[str, bytes] | None = None  # (id, content digest) to acknowledge
    refusal: dict | None = None  # {"id", "reason", "highest_epoch"}
    new_high_severity: bool = False
    changed: list[str] = field(default_factory=list)  # fields a merge filled in
    fleet: str = ""  # from the topic: where the answer goes


def as_record(row: Alert) -> AlertRecord:
    """The comms record of a stored alert (for digests and the JSON form)."""
    return AlertRecord(row.drone_id, row.seq, row.flight_id or "", row.time, row.lat, row.lon, row.alt,
                       row.fault_class, row.confidence, _severity(row.severity), tower_id=row.tower_id,
                       position_source=row.position_source, epoch=row.epoch,
                       class_list_version=row.class_list_version, model_version=row.model_version,
                       source_frame=row.source_frame, frame_time=row.frame_time,
                       box=tuple(row.box) if row.box else None, position_error_m=row.position_error_m,
                       **flag_fields(row.flags))


def _severity(name: str) -> Severity:
    return Severity.parse(name)


FLEET = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # as wide as drones.fleet


def parse_topic(topic: str) -> tuple[str, str]:
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "pli" or parts[3] != "alerts" or not FLEET.match(parts[1]):
        raise IngestError(f"topic {topic[:120]!r} is not pli/<fleet>/<drone>/alerts")
    return parts[1], parts[2]


def _claimed_id(doc: object, drone: str) -> str | None:
    """The id a message claims for an alert of `drone`, when it names one at all (to refuse it by)."""
    if not isinstance(doc, dict):
        return None
    try:
        if isinstance(doc.get("id"), str) and parse_alert_id(doc["id"])[0] == drone:
            return doc["id"]
        return alert_id(drone, int(doc["epoch"]), int(doc["seq"]))
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def check_class(alert: AlertRecord) -> None:
    """The class and severity against the class list the alert names (comms/class_lists; the newest
    when it names none): a fault class of that list, with that list's severity."""
    lists = known_class_lists()
    version = alert.class_list_version if alert.class_list_version is not None else max(lists)
    found = lists.get(version)
    if found is None:
        raise ValueError(f"class-list version {version} is unknown here (known: {sorted(lists)})")
    if alert.fault_class not in found.names:
        raise ValueError(f"class {alert.fault_class!r} is not in class list v{version} {found.names}")
    severity = found.severity_of(alert.fault_class)
    if severity is None:
        raise ValueError(f"class {alert.fault_class!r} raises no alert in class list v{version}")
    if alert.severity != severity:
        raise ValueError(f"severity {alert.severity.name.lower()} of {alert.fault_class} is not class list "
                         f"v{version}'s {severity.name.lower()}")


def _read(topic: str, payload: bytes | dict) -> tuple[str, AlertRecord, bytes | None, str, dict]:
    """(fleet, alert, thumbnail, link it came by, document) of one message, or IngestError saying why not."""
    fleet, topic_drone = parse_topic(topic)
    doc: object = payload
    try:
        doc = json.loads(payload) if isinstance(payload, bytes | str) else payload
        alert, thumb = alert_json.from_json(doc)
        check_class(alert)
    except (ValueError, TypeError, RecursionError) as exc:
        claimed = _claimed_id(doc, topic_drone)
        raise IngestError(f"malformed alert {claimed or ''} on {topic}: {exc}".replace("  ", " "),
                          (fleet, topic_drone, claimed) if claimed else None) from None
    if alert.drone_id != topic_drone:  # the broker's ACL vouches for the topic, not for the payload
        raise IngestError(f"alert {alert.id} on {topic}: the payload's drone {alert.drone_id} is not the topic's "
                          f"{topic_drone}: refused")
    return fleet, alert, thumb, "beidou" if doc.get("via") == "beidou" else "mqtt", doc


def other_fleet(alert: AlertRecord, fleet: str, registered: str) -> IngestError:
    """A drone's alert under another fleet's topic (a ground station or bridge that names the
    wrong fleet; the broker's ACL stops the drones themselves): refused, never paged to that fleet."""
    return IngestError(f"alert {alert.id} came under fleet {fleet}, but drone {alert.drone_id} is in fleet "
                       f"{registered}: refused", (fleet, alert.drone_id, alert.id))


def record(session: Session, topic: str, payload: bytes | dict) -> Outcome:
    """`payload`: the message's bytes, or its JSON document when the caller already parsed it."""
    fleet, alert, thumb, via, doc = _read(topic, payload)
    out = _record(session, fleet, alert, thumb, via, doc)
    out.fleet = fleet
    return out


def _record(session: Session, fleet: str, alert: AlertRecord, thumb: bytes | None, via: str, doc: dict) -> Outcome:
    drones = session.info.setdefault("drones_locked", {})  # one lock per drone per transaction
    drone = drones.get(alert.drone_id)
    if drone is None:
        drone = session.get(Drone, alert.drone_id, with_for_update=True)
        if drone is None:
            drone = Drone(id=alert.drone_id, fleet=fleet, highest_epoch=0)
            session.add(drone)
            session.flush()
        drone.last_seen_at = datetime.now(UTC)
        drones[alert.drone_id] = drone
    if drone.fleet != fleet:
        raise other_fleet(alert, fleet, drone.fleet)
    absent = session.info.setdefault("absent_alerts", set())  # known absent (prefetch): no query
    row = None if alert.id in absent else session.get(Alert, alert.id)
    if row is None:
        v = verdict(False, alert.epoch, drone.highest_epoch or None)
        if v == SUPERSEDED:
            return Outcome(alert.id, alert.drone_id, v, refusal={"id": alert.id, "reason": v,
                                                                  "highest_epoch": drone.highest_epoch})
        row = _insert(session, alert, thumb, via, doc)
        absent.discard(alert.id)
        drone.highest_epoch = max(drone.highest_epoch, alert.epoch)
        if alert.model_version:
            drone.model_version = alert.model_version
        return Outcome(alert.id, alert.drone_id, NEW, ack=(alert.id, digest(alert)),
                       new_high_severity=row.severity == "high")
    held = as_record(row)
    if verdict(True, alert.epoch, drone.highest_epoch or None, digest(held) == digest(alert)) == REPLAY:
        changed = _merge(row, alert, thumb, via, doc)
        if {"flight_id", "source_frame"} & set(changed):
            session.flush()
            uploads.link_alerts(session, [row.id])
        return Outcome(alert.id, alert.drone_id, "duplicate", ack=(alert.id, digest(held)), changed=changed)
    # Same id, other content: a wiped or restored outbox reused the number. Both kept, never merged.
    session.add(AlertCopy(alert_id=row.id, doc={k: v for k, v in doc.items() if k != "thumbnail_jpeg_b64"}, via=via))
    row.conflict = True
    highest = max(drone.highest_epoch, alert.epoch)
    return Outcome(alert.id, alert.drone_id, "conflict",
                   refusal={"id": alert.id, "reason": SUPERSEDED, "highest_epoch": highest})


def _values(a: AlertRecord, thumb: bytes | None, via: str, doc: dict) -> dict:
    """The alert's row, as a dict of Alert's columns (the ORM path and the bulk path build the same)."""
    return {"id": a.id, "drone_id": a.drone_id, "epoch": a.epoch, "seq": a.seq, "flight_id": a.flight_id or None,
            "time": a.time, "lat": a.lat, "lon": a.lon, "alt": a.alt, "fault_class": a.fault_class,
            "confidence": a.confidence, "severity": a.severity.name.lower(), "line_id": None,
            "tower_id": a.tower_id, "span": None, "position_source": a.position_source,
            "position_error_m": a.position_error_m, "class_list_version": a.class_list_version,
            "model_version": a.model_version,
            "source_frame": a.source_frame, "frame_time": a.frame_time, "box": list(a.box) if a.box else None,
            "flags": a.flags, "thumbnail": thumb, "via": via,
            "beidou_refused": doc.get("beidou_refused") if isinstance(doc.get("beidou_refused"), str) else None,
            "precise": via == "mqtt", "status": "new", "conflict": False, "fault_id": None, "image_id": None,
            "received_at": datetime.now(UTC)}


def _place(values: dict, found) -> None:
    """Nearest tower and span from the asset register (`towers.nearest`'s answer), when any."""
    if found is not None:
        tower, span = found
        values["line_id"], values["span"] = tower.line_id, span
        values["tower_id"] = values["tower_id"] or tower.tower_id


def _insert(session: Session, a: AlertRecord, thumb: bytes | None, via: str, doc: dict) -> Alert:
    flight = session.get(Flight, a.flight_id) if a.flight_id else None
    if a.flight_id and flight is None:
        flight = Flight(id=a.flight_id, drone_id=a.drone_id, started_at=a.time, ended_at=a.time)
        session.add(flight)
        session.flush()
    values = _values(a, thumb, via, doc)
    _place(values, towers.nearest(session, a.lat, a.lon) if towers.any_towers(session) else None)
    observations = faults.attach_many(session, [values])  # the one matching rule, as the bulk path uses it
    row = Alert(**values)
    session.add(row)
    session.flush()
    faults.insert_observations(session, observations)
    uploads.link_alerts(session, [row.id])
    if flight is not None:
        if flight.started_at is None or a.time < flight.started_at:
            flight.started_at = a.time
        if flight.ended_at is None or a.time > flight.ended_at:
            flight.ended_at = a.time
    return row


def _merge(row: Alert, a: AlertRecord, thumb: bytes | None, via: str, doc: dict) -> list[str]:
    """Fill what the stored copy lacks from this one (never overwrite richer with poorer)."""
    changed = []
    if via != row.via and row.via != "both":
        row.via = "both"
    if via == "mqtt" and not row.precise:  # the 4G copy carries the unquantized numbers
        row.lat, row.lon, row.alt, row.confidence, row.time = a.lat, a.lon, a.alt, a.confidence, a.time
        row.precise = True
        changed.append("precise")
    for name, value in (("flight_id", a.flight_id or None), ("model_version", a.model_version),
                        ("position_error_m", a.position_error_m),
                        ("source_frame", a.source_frame), ("frame_time", a.frame_time),
                        ("box", list(a.box) if a.box else None)):
        if getattr(row, name) is None and value is not None:
            setattr(row, name, value)
            changed.append(name)
    if row.thumbnail is None and thumb:
        row.thumbnail = thumb
        changed.append("thumbnail")
    if row.position_source == "other" and a.position_source not in BEIDOU_POSITION_SOURCES:
        row.position_source = a.position_source  # BeiDou's two bits said "other": multi_view, say
        changed.append("position_source")
    if missing := [f for f in a.flags if f not in (row.flags or [])]:  # e.g. telemetry_stale: not on BeiDou
        row.flags = [*(row.flags or []), *missing]
        changed.append("flags")
    if row.beidou_refused is None and isinstance(doc.get("beidou_refused"), str):
        row.beidou_refused = doc["beidou_refused"]
        changed.append("beidou_refused")
    return changed


def _insert_ignoring_held(session: Session, table):
    """INSERT ... ON CONFLICT DO NOTHING, in the dialect at hand: rows another worker created stay."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def prefetch(session: Session, ids: list[str], drones: dict[str, str] | None = None) -> None:
    """Create the batch's new drones (`{drone: fleet}`), lock them all in one statement, in id order
    (two workers then never wait on each other crosswise: no deadlock), and load its stored alerts
    in one query, so `record` finds them, or knows them absent, without one query each."""
    if drones:
        order = sorted(drones)
        held = set(session.scalars(select(Drone.id).where(Drone.id.in_(order))))
        if missing := [d for d in order if d not in held]:
            session.execute(_insert_ignoring_held(session, Drone.__table__),
                            [{"id": d, "fleet": drones[d], "highest_epoch": 0} for d in missing])
        locked = session.scalars(select(Drone).where(Drone.id.in_(order)).order_by(Drone.id)
                                 .with_for_update()).all()
        now = datetime.now(UTC)
        for d in locked:
            d.last_seen_at = now
        session.info["drones_locked"] = {d.id: d for d in locked}
    found: set[str] = set()
    for i in range(0, len(ids), 500):
        found |= set(session.scalars(select(Alert.id).where(Alert.id.in_(ids[i:i + 500]))))
    session.info["absent_alerts"] = set(ids) - found


Result = Outcome | IngestError | None


def record_batch(session: Session, messages: list[tuple[str, bytes | dict]],
                 publish: Callable[[str, bytes], bool] | None = None) -> tuple[list[Result], list[int]]:
    """`record` for a batch, its new alerts (nearly all of a queue) in a few bulk statements: one
    insert each for the alerts, their new faults, flights, observations and notifications. What is
    not plainly new (a copy of a held id, an id twice in the batch) comes back as None, for
    `record`, one at a time. Returns the outcomes, in the messages' order, and the webhook
    notifications to enqueue after the commit (notify.py)."""

    out: list[Result] = [None] * len(messages)
    read: list[tuple[int, str, AlertRecord, bytes | None, str, dict] | None] = []
    for i, (topic, payload) in enumerate(messages):
        try:
            read.append((i, *_read(topic, payload)))
        except IngestError as exc:
            out[i] = exc
            read.append(None)
    valid = [r for r in read if r is not None]
    prefetch(session, [r[2].id for r in valid], {r[2].drone_id: r[1] for r in valid})
    drones, absent = session.info.get("drones_locked", {}), session.info["absent_alerts"]
    rows, fleets, taken = [], [], set()
    for i, fleet, alert, thumb, via, doc in valid:
        if alert.id not in absent or alert.id in taken:
            continue  # held, or twice here: `record` compares the copies
        drone = drones[alert.drone_id]
        if drone.fleet != fleet:
            out[i] = other_fleet(alert, fleet, drone.fleet)
            continue
        if verdict(False, alert.epoch, drone.highest_epoch or None) == SUPERSEDED:
            out[i] = Outcome(alert.id, alert.drone_id, SUPERSEDED, refusal={
                "id": alert.id, "reason": SUPERSEDED, "highest_epoch": drone.highest_epoch}, fleet=fleet)
            continue
        taken.add(alert.id)
        drone.highest_epoch = max(drone.highest_epoch, alert.epoch)
        if alert.model_version:
            drone.model_version = alert.model_version
        rows.append(_values(alert, thumb, via, doc))
        fleets.append(fleet)
        out[i] = Outcome(alert.id, alert.drone_id, NEW, ack=(alert.id, digest(alert)),
                         new_high_severity=rows[-1]["severity"] == "high", fleet=fleet)
    if not rows:
        return out, []
    for values, found in zip(rows, towers.place_many(session, [(r["lat"], r["lon"]) for r in rows]), strict=True):
        _place(values, found)
    session.flush()  # the drones' new epochs before the statements below
    _upsert_flights(session, rows)
    observations = faults.attach_many(session, rows)
    session.execute(insert(Alert.__table__), rows)
    faults.insert_observations(session, observations)
    absent -= taken
    uploads.link_alerts(session, [r["id"] for r in rows if r["flight_id"] and r["source_frame"]])
    high = [(r, f) for r, f in zip(rows, fleets, strict=True) if r["severity"] == "high"]
    return out, notify_many(session, high, publish) if high else []


def _upsert_flights(session: Session, rows: list[dict]) -> None:
    """Create the batch's flights and widen their time span, in id order."""
    span: dict[str, list] = {}
    for r in rows:
        if r["flight_id"]:
            s = span.setdefault(r["flight_id"], [r["drone_id"], r["time"], r["time"]])
            s[1], s[2] = min(s[1], r["time"]), max(s[2], r["time"])
    if not span:
        return
    t = Flight.__table__
    order = sorted(span)
    session.execute(_insert_ignoring_held(session, t),
                    [{"id": f, "drone_id": span[f][0], "started_at": span[f][1], "ended_at": span[f][2],
                      "passes_recorded": False} for f in order])
    first, last = bindparam("b_first", type_=UTCDateTime()), bindparam("b_last", type_=UTCDateTime())
    session.execute(update(t).where(t.c.id == bindparam("b_id")).values(
        started_at=case((t.c.started_at.is_(None) | (t.c.started_at > first), first), else_=t.c.started_at),
        ended_at=case((t.c.ended_at.is_(None) | (t.c.ended_at < last), last), else_=t.c.ended_at)),
        [{"b_id": f, "b_first": span[f][1], "b_last": span[f][2]} for f in order])


def change_status(session: Session, row: Alert, status: str, actor: str, source: str, note: str = "",
                  fault_class: str | None = None) -> None:
    """An operator's verdict on an alert, with its audit trail: from the API, the pages and the
    Label Studio review project alike, by the rules of cloud/status_rules.py (TransitionRefused,
    a ValueError of one line, when they say no). The caller commits."""
    fault = session.get(Fault, row.fault_id) if row.fault_id else None
    others_all_false = fault is None or all(
        s == "false_alarm" for s in session.scalars(select(Alert.status).where(
            Alert.fault_id == fault.id, Alert.id != row.id)))
    effect = status_rules.decide(row.status, status, row.fault_class, row.severity, fault_class,
                                 fault.status if fault is not None else None, others_all_false)
    events = [(name, old, new) for name, old, new in (("status", row.status, effect.status),
                                                      ("fault_class", row.fault_class, effect.fault_class),
                                                      ("severity", row.severity, effect.severity)) if old != new]
    row.status, row.fault_class, row.severity = effect.status, effect.fault_class, effect.severity
    if fault is not None:
        if effect.fault_status is not None:
            fault.status = effect.fault_status
        if status == "reclassified":  # the fault is the one physical thing the operator named
            fault.fault_class, fault.severity = effect.fault_class, effect.severity
    for name, old, new in events:
        session.add(AlertEvent(alert_id=row.id, field=name, old=old, new=new, actor=actor, source=source, note=note))
