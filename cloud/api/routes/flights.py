"""Flights: their alerts' span and, once a track is sent, the clean passes over known faults."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.api.deps import ERRORS, Caller, FlightId, db, require
from cloud.flights import TrackError, flight_json, record_track
from cloud.models import Alert, Flight

router = APIRouter(prefix="/flights", tags=["flights"], responses=ERRORS)


@router.get("", summary="flights, newest first")
def list_flights(drone: str | None = Query(None, max_length=32), offset: int = Query(0, ge=0, le=10_000_000),
                 limit: int = Query(100, ge=1, le=1000), session: Session = Depends(db),
                 _: Caller = Depends(require("any"))) -> dict:
    q = select(Flight)
    if drone is not None:
        q = q.where(Flight.drone_id == drone)
    total = session.scalar(select(func.count()).select_from(q.subquery()))
    rows = list(session.scalars(q.order_by(Flight.started_at.desc(), Flight.id).offset(offset).limit(limit)))
    counts = dict(session.execute(select(Alert.flight_id, func.count()).where(
        Alert.flight_id.in_([f.id for f in rows])).group_by(Alert.flight_id)).all())
    return {"total": total or 0, "offset": offset, "limit": limit,
            "items": [flight_json(f, counts.get(f.id, 0)) for f in rows]}


@router.get("/{flight_id}", summary="one flight")
def get_flight(flight_id: FlightId, session: Session = Depends(db), _: Caller = Depends(require("any"))) -> dict:
    f = session.get(Flight, flight_id)
    if f is None:
        raise HTTPException(404, f"no flight {flight_id}")
    return flight_json(f, session.scalar(select(func.count()).where(Alert.flight_id == flight_id)) or 0)


class Track(BaseModel):
    drone_id: str = Field(max_length=32)
    points: list[tuple[float, float]] = Field(max_length=200_000, description="[lat, lon] where the drone flew")
    started_at: AwareDatetime | None = Field(None, description="when the track begins (its drone's alerts without "
                                             "a flight id from then on are this flight's own)")
    ended_at: AwareDatetime | None = None


@router.put("/{flight_id}/track", summary="the flight's track: records clean passes over known faults")
def put_track(flight_id: FlightId, track: Track, session: Session = Depends(db),
              caller: Caller = Depends(require("fleet"))) -> dict:
    caller.check_drone(session, track.drone_id)
    try:
        span = (track.started_at, track.ended_at) if track.started_at and track.ended_at else None
        passed = record_track(session, flight_id, track.drone_id, track.points, span)
    except TrackError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    session.commit()
    return {"flight_id": flight_id, "clean_passes": sorted(x.id for x in passed)}
