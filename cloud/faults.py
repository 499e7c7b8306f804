"""Fault history: one physical fault seen across flights, and flights that passed it clean.

An alert joins a known fault of the same class within `RADIUS_M` (and, when both name a tower,
at the same tower); otherwise it opens a new fault. A flight whose track passed within
`PASS_RADIUS_M` of a fault without alerting it records a clean pass; a clean pass after an
operator marked the fault repaired confirms the repair, and a sighting after it reopens it.
A fault judged a false alarm keeps its later sightings (its history stays in one place) and stays
a false alarm until an operator confirms one of them (cloud/status_rules.py).

A flight's own sightings are the alerts with its flight id and, since a BeiDou short message
carries none, the alerts of its drone without a flight id sent while it flew (its alerts' and
its track's time span, `SAME_FLIGHT` either side): a flight never passes clean over a fault it
reported itself.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import and_, bindparam, case, insert, or_, select, update
from sqlalchemy.orm import Session

from cloud.models import Alert, Fault, FaultObservation, Flight, UTCDateTime, _now
from cloud.towers import distance_m

RADIUS_M = 15.0  # the edge tracker reports each place once within 15 m: the same granularity
PASS_RADIUS_M = 60.0  # the drone flew this close: its camera had the fault in view
_DEG_M = 111_320.0
_CELL = 0.001  # degrees: the grid the batch matcher files faults in (wider than RADIUS_M up to 60° N/S)
SAME_FLIGHT = timedelta(minutes=5)  # a drone's alerts without a flight id this close to a flight are its own
_AREA = 0.1  # degrees: a batch's alerts are looked up in one query per area this size


def _near(session: Session, lat: float, lon: float, radius_m: float, *where) -> list[Fault]:
    d = radius_m / _DEG_M
    dl = d / max(0.05, math.cos(math.radians(lat)))
    return list(session.scalars(select(Fault).where(Fault.lat.between(lat - d, lat + d),
                                                    Fault.lon.between(lon - dl, lon + dl), *where)))


def _fits(f: dict, a: dict, radius_m: float) -> float | None:
    """The distance from alert `a` to fault `f` when `a` may join it, else None."""
    if f["fault_class"] != a["fault_class"]:
        return None
    if f["tower_id"] and a["tower_id"] and f["tower_id"] != a["tower_id"]:
        return None
    d = distance_m(a["lat"], a["lon"], f["lat"], f["lon"])
    return d if d <= radius_m else None


def _cells(lat: float, lon: float, radius_m: float) -> list[tuple[int, int]]:
    d = radius_m / _DEG_M
    dl = d / max(0.05, math.cos(math.radians(lat)))
    return [(i, j) for i in range(math.floor((lat - d) / _CELL), math.floor((lat + d) / _CELL) + 1)
            for j in range(math.floor((lon - dl) / _CELL), math.floor((lon + dl) / _CELL) + 1)]


def attach_many(session: Session, alerts: list[dict], radius_m: float = RADIUS_M) -> list[dict]:
    """Link alert rows about to be inserted (dicts of Alert's columns), in their order, to their
    faults, opening new ones where none matches (the module's rule), in a few statements:
    candidates fetched per area, new faults inserted in one statement, sightings added in one.
    Sets each row's `fault_id`; returns the observations, to insert once the alerts are."""
    if not alerts:
        return []
    t = Fault.__table__
    areas: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for a in alerts:
        areas[(math.floor(a["lat"] / _AREA), math.floor(a["lon"] / _AREA))].append(a)
    grid: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for group in areas.values():
        d = radius_m / _DEG_M
        dl = d / max(0.05, min(math.cos(math.radians(a["lat"])) for a in group))
        rows = session.execute(select(t.c.id, t.c.fault_class, t.c.lat, t.c.lon, t.c.tower_id, t.c.status).where(
            t.c.fault_class.in_({a["fault_class"] for a in group}),
            t.c.lat.between(min(a["lat"] for a in group) - d, max(a["lat"] for a in group) + d),
            t.c.lon.between(min(a["lon"] for a in group) - dl, max(a["lon"] for a in group) + dl)))
        for r in rows.mappings():
            grid[(math.floor(r["lat"] / _CELL), math.floor(r["lon"] / _CELL))].append(dict(r))
    seen: dict[int, dict] = {}  # stored faults sighted: id -> sightings to add, latest time
    new: list[dict] = []
    for a in alerts:
        best, best_d = None, None
        for cell in _cells(a["lat"], a["lon"], radius_m):
            for f in grid.get(cell, ()):
                d = _fits(f, a, radius_m)
                if d is not None and (best_d is None or d < best_d):
                    best, best_d = f, d
        if best is None:
            best = {"id": None, "fault_class": a["fault_class"], "lat": a["lat"], "lon": a["lon"],
                    "line_id": a["line_id"], "tower_id": a["tower_id"], "severity": a["severity"], "status": "open",
                    "first_seen_at": a["time"], "last_seen_at": a["time"], "sightings": 1, "clean_passes": 0}
            new.append(best)
            grid[(math.floor(a["lat"] / _CELL), math.floor(a["lon"] / _CELL))].append(best)
        elif best["id"] is None:  # opened earlier in this batch
            best["sightings"] += 1
            best["last_seen_at"] = max(best["last_seen_at"], a["time"])
        else:
            n, last = seen.get(best["id"], (0, a["time"]))
            seen[best["id"]] = (n + 1, max(last, a["time"]))
            if best["status"] in ("repaired", "repair_confirmed"):
                best["status"] = "open"
        a["_fault"] = best
    if new:
        ids = session.execute(insert(t).returning(t.c.id, sort_by_parameter_order=True),
                              [{k: f[k] for k in f if k != "id"} for f in new]).scalars().all()
        for f, fid in zip(new, ids, strict=True):
            f["id"] = fid
    if seen:
        last = bindparam("b_last", type_=UTCDateTime())
        session.execute(update(t).where(t.c.id == bindparam("b_id")).values(
            sightings=t.c.sightings + bindparam("b_n"),
            last_seen_at=case((t.c.last_seen_at < last, last), else_=t.c.last_seen_at),
            status=case(((t.c.status == "repaired") | (t.c.status == "repair_confirmed"), "open"), else_=t.c.status)),
            [{"b_id": fid, "b_n": n, "b_last": at} for fid, (n, at) in sorted(seen.items())])  # id order: no deadlock
    for a in alerts:
        a["fault_id"] = a.pop("_fault")["id"]
    return [{"fault_id": a["fault_id"], "flight_id": a["flight_id"], "alert_id": a["id"], "seen": True,
             "at": a["time"]} for a in alerts]


def insert_observations(session: Session, rows: list[dict]) -> None:
    if rows:
        session.execute(insert(FaultObservation.__table__), rows)


def record_passes(session: Session, flight_id: str, track: Sequence[Sequence[float]],
                  pass_radius_m: float = PASS_RADIUS_M) -> list[Fault]:
    """Clean passes of a flight over known faults it did not alert; returns those faults."""
    flight = session.get(Flight, flight_id)
    own = Alert.flight_id == flight_id
    if flight is not None:
        beidou = and_(Alert.flight_id.is_(None), Alert.drone_id == flight.drone_id)
        if flight.started_at is not None and flight.ended_at is not None:
            beidou = and_(beidou, Alert.time.between(flight.started_at - SAME_FLIGHT, flight.ended_at + SAME_FLIGHT))
        own = or_(own, beidou)  # no time span known: every such alert of the drone could be this flight's
    seen_here = set(session.scalars(select(Alert.fault_id).where(own, Alert.fault_id.is_not(None))))
    seen_here |= set(session.scalars(select(FaultObservation.fault_id).where(
        FaultObservation.flight_id == flight_id, FaultObservation.seen.is_(True))))
    passed: dict[int, Fault] = {}
    for lat, lon, *_ in track:
        for f in _near(session, lat, lon, pass_radius_m, Fault.status.in_(("open", "repaired", "repair_confirmed"))):
            if f.id not in seen_here and distance_m(lat, lon, f.lat, f.lon) <= pass_radius_m:
                passed[f.id] = f
    done = set(session.scalars(select(FaultObservation.fault_id).where(
        FaultObservation.flight_id == flight_id, FaultObservation.seen.is_(False))))
    for f in passed.values():
        if f.id in done:
            continue  # recorded before: a track sent twice counts once
        f.clean_passes += 1
        if f.status == "repaired":
            f.status = "repair_confirmed"
        session.add(FaultObservation(fault_id=f.id, flight_id=flight_id, alert_id=None, seen=False, at=_now()))
    return list(passed.values())
