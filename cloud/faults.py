"""Fault history: one physical fault seen across flights, and flights that passed it clean.

An alert joins a known fault of the same class within `RADIUS_M` (and, when both name a tower,
at the same tower); otherwise it opens a new fault. A flight whose track passed within
`PASS_RADIUS_M` of a fault without alerting it records a clean pass; a clean pass after an
operator marked the fault repaired confirms the repair, and a sighting after it reopens it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.models import Alert, Fault, FaultObservation, _now
from cloud.towers import distance_m

RADIUS_M = 15.0  # the edge tracker reports each place once within 15 m: the same granularity
PASS_RADIUS_M = 60.0  # the drone flew this close: its camera had the fault in view
_DEG_M = 111_320.0


def _near(session: Session, lat: float, lon: float, radius_m: float, *where) -> list[Fault]:
    d = radius_m / _DEG_M
    dl = d / max(0.05, math.cos(math.radians(lat)))
    return list(session.scalars(select(Fault).where(Fault.lat.between(lat - d, lat + d),
                                                    Fault.lon.between(lon - dl, lon + dl), *where)))


def attach(session: Session, alert: Alert, radius_m: float = RADIUS_M) -> Fault:
    """Link `alert` to its fault, opening one when it matches none; returns the fault."""
    candidates = [f for f in _near(session, alert.lat, alert.lon, radius_m, Fault.fault_class == alert.fault_class,
                                   Fault.status != "false_alarm")
                  if distance_m(alert.lat, alert.lon, f.lat, f.lon) <= radius_m
                  and not (f.tower_id and alert.tower_id and f.tower_id != alert.tower_id)]
    if candidates:
        fault = min(candidates, key=lambda f: distance_m(alert.lat, alert.lon, f.lat, f.lon))
        fault.sightings += 1
        fault.last_seen_at = max(fault.last_seen_at, alert.time)
        if fault.status in ("repaired", "repair_confirmed"):
            fault.status = "open"  # seen again after the repair: it was not fixed
    else:
        fault = Fault(fault_class=alert.fault_class, lat=alert.lat, lon=alert.lon, line_id=alert.line_id,
                      tower_id=alert.tower_id, severity=alert.severity, status="open", first_seen_at=alert.time,
                      last_seen_at=alert.time, sightings=1, clean_passes=0)
        session.add(fault)
        session.flush()
    alert.fault_id = fault.id
    session.add(FaultObservation(fault_id=fault.id, flight_id=alert.flight_id or None, alert_id=alert.id, seen=True,
                                 at=alert.time))
    return fault


def record_passes(session: Session, flight_id: str, track: Sequence[Sequence[float]],
                  pass_radius_m: float = PASS_RADIUS_M) -> list[Fault]:
    """Clean passes of a flight over known faults it did not alert; returns those faults."""
    seen_here = set(session.scalars(select(FaultObservation.fault_id).where(
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
