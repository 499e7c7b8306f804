"""Alerts: query (filters, pages), one alert with its audit trail, status changes, exports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import Boolean, func, select
from sqlalchemy.orm import Session

from cloud import alerts as alert_store
from cloud import exports
from cloud.alert_doc import API_COLUMNS, alert_json_of, api_doc
from cloud.api.deps import ERRORS, Caller, db, require
from cloud.models import ALERT_STATUSES, Alert, AlertEvent
from comms.classes import Severity

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=ERRORS)
SeverityName = Literal[tuple(s.name.lower() for s in Severity)]  # comms.classes.Severity, as the API spells it
Status = Literal["new", "confirmed", "false_alarm", "reclassified", "repaired"]
BBOX = r"^-?\d{1,3}(\.\d+)?,-?\d{1,2}(\.\d+)?,-?\d{1,3}(\.\d+)?,-?\d{1,2}(\.\d+)?$"


def utc(t: datetime | None) -> datetime | None:
    return None if t is None else (t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC))


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """`min lon, min lat, max lon, max lat` (GeoJSON's order)."""
    if text is None:
        return None
    w, s, e, n = (float(v) for v in text.split(","))
    if not (-180 <= w <= e <= 180 and -90 <= s <= n <= 90):
        raise HTTPException(400, "bbox is min_lon,min_lat,max_lon,max_lat within the globe, min <= max")
    return w, s, e, n


@dataclass
class AlertFilter:
    flight: str | None = Query(None, max_length=64)
    line: str | None = Query(None, max_length=64)
    tower: str | None = Query(None, max_length=32)
    fault_class: str | None = Query(None, alias="class", max_length=64)
    severity: SeverityName | None = None
    status: Status | None = None
    drone: str | None = Query(None, max_length=32)
    since: datetime | None = Query(None, description="alert time from (ISO 8601; UTC when no zone)")
    until: datetime | None = Query(None, description="alert time before (ISO 8601)")
    bbox: str | None = Query(None, pattern=BBOX, description="min_lon,min_lat,max_lon,max_lat")

    def apply(self, q, dialect: str = ""):
        """`dialect`: on PostgreSQL the box is also asked as `point <@ box`, which the GiST index on
        position and time answers (migration 0002); the BETWEENs stay, exact on every backend."""
        box = parse_bbox(self.bbox)
        for column, value in ((Alert.flight_id, self.flight), (Alert.line_id, self.line),
                              (Alert.tower_id, self.tower), (Alert.fault_class, self.fault_class),
                              (Alert.severity, self.severity), (Alert.status, self.status),
                              (Alert.drone_id, self.drone)):
            if value is not None:
                q = q.where(column == value)
        if self.since is not None:
            q = q.where(Alert.time >= utc(self.since))
        if self.until is not None:
            q = q.where(Alert.time < utc(self.until))
        if box is not None:
            q = q.where(Alert.lon.between(box[0], box[2]), Alert.lat.between(box[1], box[3]))
            if dialect == "postgresql":
                corners = func.box(func.point(box[0], box[1]), func.point(box[2], box[3]))
                q = q.where(func.point(Alert.lon, Alert.lat).op("<@", return_type=Boolean)(corners))
        return q


class AlertPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[dict]


@router.get("", response_model=AlertPage, summary="alerts, newest first, filtered and paged")
def list_alerts(f: AlertFilter = Depends(), offset: int = Query(0, ge=0, le=10_000_000),
                limit: int = Query(100, ge=1, le=1000), session: Session = Depends(db),
                _: Caller = Depends(require("any"))) -> Response:
    # one round trip: the page's rows and, on each, how many match (a window over the same scan)
    dialect = session.get_bind().dialect.name
    q = f.apply(select(*API_COLUMNS, func.count().over().label("total")), dialect)
    rows = session.execute(q.order_by(Alert.time.desc(), Alert.id).offset(offset).limit(limit)).mappings().all()
    total = rows[0]["total"] if rows else session.scalar(f.apply(select(func.count()).select_from(Alert), dialect))
    # the page as JSON at once (its shape is AlertPage's: documented, not validated twice)
    return JSONResponse({"total": total or 0, "offset": offset, "limit": limit, "items": [api_doc(r) for r in rows]})


@router.get("/export.{fmt}", summary="every alert the filters select, as GeoJSON, KML or CSV")
def export_alerts(fmt: Literal["geojson", "kml", "csv"], f: AlertFilter = Depends(),
                  session: Session = Depends(db), _: Caller = Depends(require("any"))) -> Response:
    q = f.apply(select(Alert), session.get_bind().dialect.name)
    items = [alert_json_of(r) for r in session.scalars(q.order_by(Alert.time, Alert.id))]
    return exports.response(items, fmt, "pli alerts")


@router.get("/{alert_id}", summary="one alert, with its thumbnail")
def get_alert(alert_id: str, session: Session = Depends(db), _: Caller = Depends(require("any"))) -> dict:
    row = session.get(Alert, alert_id)
    if row is None:
        raise HTTPException(404, f"no alert {alert_id}")
    return alert_json_of(row, with_thumbnail=True)


class StatusChange(BaseModel):
    status: Status
    fault_class: str | None = Field(None, max_length=64, description="the right class, with status reclassified")
    note: str = Field("", max_length=2000)


@router.patch("/{alert_id}", summary="confirm, mark a false alarm, reclassify or mark repaired (audited)")
def change_status(alert_id: str, change: StatusChange, session: Session = Depends(db),
                  caller: Caller = Depends(require("operator"))) -> dict:
    row = session.get(Alert, alert_id)
    if row is None:
        raise HTTPException(404, f"no alert {alert_id}")
    try:
        alert_store.change_status(session, row, change.status, f"{caller.name} ({caller.role})", caller.source,
                                  change.note, change.fault_class)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    session.commit()
    return alert_json_of(row)


@router.get("/{alert_id}/events", summary="the audit trail of one alert")
def alert_events(alert_id: str, session: Session = Depends(db), _: Caller = Depends(require("any"))) -> list[dict]:
    if session.get(Alert, alert_id) is None:
        raise HTTPException(404, f"no alert {alert_id}")
    rows = session.scalars(select(AlertEvent).where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id))
    return [{"field": e.field, "old": e.old, "new": e.new, "actor": e.actor, "source": e.source, "note": e.note,
             "at": e.at.isoformat()} for e in rows]


assert set(ALERT_STATUSES) == set(Status.__args__)  # one list of statuses
