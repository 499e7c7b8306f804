"""The operators' lists and detail pages: alerts (filtered, paged, one with its photo and audit
trail), faults across flights, towers and lines, flights, releases and deployments, jobs.

Filters come from a plain GET form, whose empty fields arrive as empty strings: they are read
here, checked like the API's (cloud/api/routes/alerts.py:AlertFilter) and a bad value is said on
the page instead of a JSON error. Actions go through the API with the session cookie and its
CSRF token (static/actions.js), so there is one place each change is checked and audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from cloud.api.deps import db
from cloud.api.routes.alerts import AlertFilter
from cloud.api.web.common import me, page, script_json, to_login
from cloud.api.web.maps import basemap, lines_of, towers_near
from cloud.models import (
    ALERT_STATUSES,
    Alert,
    AlertEvent,
    Deployment,
    Fault,
    FaultObservation,
    Flight,
    Image,
    Job,
    ModelRelease,
    Tower,
)
from cloud.registry import rollout
from cloud.status_rules import OPEN, TRANSITIONS, classes

router = APIRouter(include_in_schema=False)
PAGE = 50
SEVERITIES = ("high", "medium", "low")
FAULT_STATUSES = ("open", "repaired", "repair_confirmed", "false_alarm")
TEXT = ("class", "severity", "status", "line", "tower", "flight", "drone", "q", "since", "until")


@dataclass
class Listing:
    """A page of rows, and the links to the pages around it."""

    rows: list
    total: int
    offset: int
    query: dict

    def link(self, offset: int) -> str:
        return "?" + urlencode({**self.query, "offset": offset})

    @property
    def previous(self) -> str | None:
        return self.link(max(0, self.offset - PAGE)) if self.offset > 0 else None

    @property
    def next(self) -> str | None:
        return self.link(self.offset + PAGE) if self.offset + PAGE < self.total else None


def _when(text: str, name: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name}: a date or time (2026-11-22 or 2026-11-22T09:30), not {text[:40]!r}") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def read_filters(request: Request) -> tuple[dict, AlertFilter | None, str | None, str | None]:
    """The form's non-empty fields; the filter they make, the text searched, and what is wrong."""
    given = {k: request.query_params.get(k, "").strip()[:64] for k in TEXT}
    given = {k: v for k, v in given.items() if v}
    try:
        if given.get("severity") not in (None, *SEVERITIES):
            raise ValueError(f"severity: one of {', '.join(SEVERITIES)}")
        if given.get("status") not in (None, "open", *ALERT_STATUSES):
            raise ValueError(f"status: open or one of {', '.join(ALERT_STATUSES)}")
        f = AlertFilter(flight=given.get("flight"), line=given.get("line"), tower=given.get("tower"),
                        fault_class=given.get("class"), severity=given.get("severity"),
                        status=None if given.get("status") == "open" else given.get("status"),
                        drone=given.get("drone"),
                        since=_when(given["since"], "since") if "since" in given else None,
                        until=_when(given["until"], "until") if "until" in given else None, bbox=None)
    except ValueError as exc:
        return given, None, None, str(exc)
    return given, f, given.get("q"), None


def _offset(request: Request) -> int:
    text = request.query_params.get("offset", "0")
    return min(int(text), 10_000_000) if text.isdigit() else 0


@router.get("/ui/alerts")
def alerts_page(request: Request, session: Session = Depends(db)) -> Response:
    who = me(request, session)
    if who is None:
        return to_login(request)
    given, f, text, error = read_filters(request)
    rows, total, offset = [], 0, _offset(request)
    if f is not None:
        q = f.apply(select(Alert), session.get_bind().dialect.name)
        if given.get("status") == "open":
            q = q.where(Alert.status.in_(OPEN))
        if text:
            like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"  # literal text
            q = q.where(or_(*(c.ilike(like, escape="\\") for c in (
                Alert.id, Alert.source_frame, Alert.fault_class, Alert.tower_id, Alert.line_id, Alert.span,
                Alert.flight_id, Alert.drone_id))))
        total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
        rows = list(session.scalars(q.order_by(Alert.time.desc(), Alert.id).offset(offset).limit(PAGE)))
    known = sorted(set(classes().fault_names) | set(session.scalars(select(Alert.fault_class).distinct())))
    return page(request, "alerts.html", who, listing=Listing(rows, total, offset, given), given=given, error=error,
                classes=known, severities=SEVERITIES, statuses=("open", *ALERT_STATUSES))


@router.get("/ui/alerts/{alert_id}")
def alert_page(alert_id: str, request: Request, session: Session = Depends(db)) -> Response:
    who = me(request, session)
    if who is None:
        return to_login(request)
    a = session.get(Alert, alert_id[:64])
    if a is None:
        return page(request, "not_found.html", who, status=404, what=f"alert {alert_id[:64]}")
    fault = session.get(Fault, a.fault_id) if a.fault_id else None
    image = session.get(Image, a.image_id) if a.image_id else None
    events = list(session.scalars(select(AlertEvent).where(AlertEvent.alert_id == a.id).order_by(AlertEvent.id)))
    data = {"id": a.id, "box": a.box, "photo": f"/alerts/{a.id}/photo" if image else None, "status": a.status}
    has_crop = session.scalar(select(Alert.thumbnail.is_not(None)).where(Alert.id == a.id))
    return page(request, "alert.html", who, a=a, fault=fault, events=events, data=script_json(data),
                has_photo=image is not None, has_crop=has_crop,
                allowed=TRANSITIONS.get(a.status, ()), fault_classes=classes().fault_names)


@router.get("/ui/faults")
def faults_page(request: Request, session: Session = Depends(db)) -> Response:
    who = me(request, session)
    if who is None:
        return to_login(request)
    given = {k: request.query_params.get(k, "").strip()[:64] for k in ("status", "class", "line", "tower")}
    given = {k: v for k, v in given.items() if v}
    q = select(Fault)
    for column, key in ((Fault.status, "status"), (Fault.fault_class, "class"), (Fault.line_id, "line"),
                        (Fault.tower_id, "tower")):
        if key in given:
            q = q.where(column == given[key])
    offset = _offset(request)
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = list(session.scalars(q.order_by(Fault.last_seen_at.desc(), Fault.id).offset(offset).limit(PAGE)))
    return page(request, "faults.html", who, listing=Listing(rows, total, offset, given), given=given,
                statuses=FAULT_STATUSES, classes=classes().fault_names)


@router.get("/ui/faults/{fault_id}")
def fault_page(fault_id: str, request: Request, session: Session = Depends(db)) -> Response:
    who = me(request, session)
    if who is None:
        return to_login(request)
    fault = session.get(Fault, int(fault_id)) if fault_id.isdigit() and int(fault_id) < 2**31 else None
    if fault is None:
        return page(request, "not_found.html", who, status=404, what=f"fault {fault_id[:20]}")
    alerts = {a.id: a for a in session.scalars(select(Alert).where(Alert.fault_id == fault.id))}
    history = [(o, alerts.get(o.alert_id)) for o in session.scalars(
        select(FaultObservation).where(FaultObservation.fault_id == fault.id).order_by(FaultObservation.at,
                                                                                      FaultObservation.id))]
    return page(request, "fault.html", who, fault=fault, history=history)


@router.get("/ui/towers")
def towers_page(request: Request, session: Session = Depends(db)) -> Response:
    who = me(request, session)
    if who is None:
        return to_login(request)
    towers = list(session.scalars(select(Tower).order_by(Tower.line_id, Tower.order)))
    open_faults = {(line, tower): n for line, tower, n in session.execute(
        select(Fault.line_id, Fault.tower_id, func.count()).where(Fault.status == "open")
        .group_by(Fault.line_id, Fault.tower_id))}
    faults = [{"id": f.id, "class": f.fault_class, "severity": f.severity, "status": f.status, "lat": f.lat,
               "lon": f.lon, "label": f"fault #{f.id} {f.fault_class}", "href": f"/ui/faults/{f.id}"}
              for f in session.scalars(select(Fault).where(Fault.status.in_(("open", "repaired"))))]
    data = {**lines_of(towers), "markers": faults, "track": [], "tiles": basemap()}
    return page(request, "towers.html", who, towers=towers, open_faults=open_faults, data=script_json(data))


@router.get("/ui/towers/{line_id}/{tower_id}")
def tower_page(line_id: str, tower_id: str, request: Request, session: Session = Depends(db)) -> Response:
    who = me(request, session)
    if who is None:
        return to_login(request)
    tower = session.scalars(select(Tower).where(Tower.line_id == line_id[:64], Tower.tower_id == tower_id[:32])).first()
    if tower is None:
        return page(request, "not_found.html", who, status=404, what=f"tower {tower_id[:32]} of line {line_id[:64]}")
    faults = list(session.scalars(select(Fault).where(Fault.line_id == tower.line_id, Fault.tower_id == tower.tower_id)
                                  .order_by(Fault.first_seen_at)))
    alerts = list(session.scalars(select(Alert).where(Alert.line_id == tower.line_id, Alert.tower_id == tower.tower_id)
                                  .order_by(Alert.time.desc()).limit(200)))
    return page(request, "tower.html", who, tower=tower, faults=faults, alerts=alerts)


@router.get("/ui/flights")
def flights_page(request: Request, session: Session = Depends(db)) -> Response:
    who = me(request, session)
    if who is None:
        return to_login(request)
    offset = _offset(request)
    total = session.scalar(select(func.count()).select_from(Flight)) or 0
    rows = list(session.scalars(select(Flight).order_by(Flight.started_at.desc().nulls_last(), Flight.id)
                                .offset(offset).limit(PAGE)))
    ids = [f.id for f in rows]
    counts = dict(session.execute(select(Alert.flight_id, func.count()).where(Alert.flight_id.in_(ids))
                                  .group_by(Alert.flight_id)).all())
    open_counts = dict(session.execute(select(Alert.flight_id, func.count()).where(
        Alert.flight_id.in_(ids), Alert.status.in_(OPEN)).group_by(Alert.flight_id)).all())
    return page(request, "flights.html", who, listing=Listing(rows, total, offset, {}), counts=counts,
                open_counts=open_counts)


@router.get("/ui/releases")
def releases_page(request: Request, session: Session = Depends(db)) -> Response:
    """Releases and where each is signed; admins promote, approve and roll back from here (the
    buttons call the API, which checks the role again)."""
    who = me(request, session)
    if who is None:
        return to_login(request)
    releases = [rollout.release_json(r) for r in session.scalars(select(ModelRelease).order_by(ModelRelease.id.desc()))]
    versions = dict(session.execute(select(ModelRelease.id, ModelRelease.version)).all())
    deployments = list(session.scalars(select(Deployment).order_by(Deployment.id.desc()).limit(200)))
    signed: dict[str, str] = {}  # group -> the version its latest deployment names
    for d in session.scalars(select(Deployment).where(Deployment.target.in_(rollout.GROUPS)).order_by(Deployment.id)):
        signed[d.target] = versions.get(d.release_id, "?")
    for r in releases:
        r["signed"] = [g for g in rollout.GROUPS if signed.get(g) == r["version"]]
    return page(request, "releases.html", who, releases=releases, deployments=deployments, versions=versions,
                groups=rollout.GROUPS)


@router.get("/ui/jobs")
def jobs_page(request: Request, session: Session = Depends(db)) -> Response:
    who = me(request, session)
    if who is None:
        return to_login(request)
    jobs = list(session.scalars(select(Job).order_by(Job.created_at.desc()).limit(100)))
    return page(request, "jobs.html", who, jobs=jobs)


def flight_map(session: Session, report) -> dict:
    """The flight page's map: track, towers and spans around it, one marker per alert."""
    alerts = [a.json() for a in report.alerts]
    points = [*report.track, *([a["lat"], a["lon"]] for a in alerts)]
    markers = [{"id": a["id"], "class": a["class"], "severity": a["severity"], "status": a["status"],
                "lat": a["lat"], "lon": a["lon"], "label": f"{a['class']} {a['id']}", "card": f"alert-{a['id']}",
                "href": f"/ui/alerts/{a['id']}"} for a in alerts]
    return {**towers_near(session, points), "track": report.track, "markers": markers, "tiles": basemap(),
            "alerts": alerts}

