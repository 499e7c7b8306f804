"""Flights: their API form, and a track (where the drone flew) recorded with the clean passes it
makes over known faults. One flow for the API (`PUT /flights/{id}/track`) and the CLI
(`pli cloud flights track`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from cloud.faults import record_passes
from cloud.models import Fault, Flight


class TrackError(ValueError):
    """A track that cannot be recorded (one line); `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def flight_json(f: Flight, alerts: int) -> dict:
    return {"id": f.id, "drone_id": f.drone_id, "started_at": f.started_at.isoformat() if f.started_at else None,
            "ended_at": f.ended_at.isoformat() if f.ended_at else None, "alerts": alerts,
            "track_points": len(f.track or []), "passes_recorded": f.passes_recorded}


def record_track(session: Session, flight_id: str, drone_id: str, points: Sequence[Sequence[float]],
                 span: tuple[datetime, datetime] | None = None) -> list[Fault]:
    """Store the flight's track (`[lat, lon]` points; the flight is made when new) and return the
    known faults it passed cleanly. `span`: when the track was flown (UTC), which widens the
    flight's time span: its drone's alerts without a flight id in it are its own sightings
    (cloud/faults.py). The caller commits."""
    if any(not (-90 <= lat <= 90 and -180 <= lon <= 180) for lat, lon in points):
        raise TrackError("a track point is off the globe (points are [lat, lon])")
    if span is not None and (span[0].tzinfo is None or span[1].tzinfo is None or span[0] > span[1]):
        raise TrackError("a track's span is two times with a zone, the first not after the second")
    f = session.get(Flight, flight_id)
    if f is None:
        f = Flight(id=flight_id, drone_id=drone_id)
        session.add(f)
    elif f.drone_id != drone_id:
        raise TrackError(f"flight {flight_id} belongs to drone {f.drone_id}", 409)
    f.track = [list(p) for p in points]
    if span is not None:
        f.started_at = span[0] if f.started_at is None else min(f.started_at, span[0])
        f.ended_at = span[1] if f.ended_at is None else max(f.ended_at, span[1])
    session.flush()
    passed = record_passes(session, flight_id, f.track)
    f.passes_recorded = True
    return passed
