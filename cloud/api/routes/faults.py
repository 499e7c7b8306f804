"""Faults: one physical fault across flights, with its sightings and clean passes; exports."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud import exports
from cloud.api.deps import ERRORS, Caller, db, require
from cloud.api.routes.alerts import BBOX, parse_bbox
from cloud.models import Fault

router = APIRouter(prefix="/faults", tags=["faults"], responses=ERRORS)
FaultStatus = Literal["open", "repaired", "repair_confirmed", "false_alarm"]


def fault_json(f: Fault, observations: bool = False) -> dict:
    doc = {"id": f.id, "class": f.fault_class, "severity": f.severity, "status": f.status, "lat": f.lat, "lon": f.lon,
           "line_id": f.line_id, "tower_id": f.tower_id, "first_seen_at": f.first_seen_at.isoformat(),
           "last_seen_at": f.last_seen_at.isoformat(), "sightings": f.sightings, "clean_passes": f.clean_passes}
    if observations:
        doc["observations"] = [{"flight_id": o.flight_id, "alert_id": o.alert_id, "seen": o.seen,
                                "at": o.at.isoformat()} for o in f.observations]
    return doc


def _query(fault_class, status, line, tower, bbox):
    q = select(Fault)
    for column, value in ((Fault.fault_class, fault_class), (Fault.status, status), (Fault.line_id, line),
                          (Fault.tower_id, tower)):
        if value is not None:
            q = q.where(column == value)
    box = parse_bbox(bbox)
    if box is not None:
        q = q.where(Fault.lon.between(box[0], box[2]), Fault.lat.between(box[1], box[3]))
    return q


@router.get("", summary="faults, filtered and paged")
def list_faults(fault_class: str | None = Query(None, alias="class", max_length=64), status: FaultStatus | None = None,
                line: str | None = Query(None, max_length=64), tower: str | None = Query(None, max_length=32),
                bbox: str | None = Query(None, pattern=BBOX), offset: int = Query(0, ge=0, le=10_000_000),
                limit: int = Query(100, ge=1, le=1000), session: Session = Depends(db),
                _: Caller = Depends(require("any"))) -> dict:
    q = _query(fault_class, status, line, tower, bbox)
    total = session.scalar(select(func.count()).select_from(q.subquery()))
    rows = session.scalars(q.order_by(Fault.last_seen_at.desc(), Fault.id).offset(offset).limit(limit))
    return {"total": total or 0, "offset": offset, "limit": limit, "items": [fault_json(f) for f in rows]}


@router.get("/export.{fmt}", summary="faults as GeoJSON, KML or CSV")
def export_faults(fmt: Literal["geojson", "kml", "csv"], fault_class: str | None = Query(None, alias="class"),
                  status: FaultStatus | None = None, line: str | None = Query(None, max_length=64),
                  tower: str | None = Query(None, max_length=32), bbox: str | None = Query(None, pattern=BBOX),
                  session: Session = Depends(db), _: Caller = Depends(require("any"))) -> Response:
    q = _query(fault_class, status, line, tower, bbox).order_by(Fault.id)
    items = [fault_json(f) for f in session.scalars(q)]
    return exports.response(items, fmt, "pli faults")


@router.get("/{fault_id}", summary="one fault and every flight that saw it or passed it clean")
def get_fault(fault_id: int = Path(ge=1, le=2**31 - 1), session: Session = Depends(db),
              _: Caller = Depends(require("any"))) -> dict:
    f = session.get(Fault, fault_id)
    if f is None:
        raise HTTPException(404, f"no fault {fault_id}")
    return fault_json(f, observations=True)
