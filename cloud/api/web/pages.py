"""The operators' pages: login, fleet overview, flight report (map, faults, actions), PDF.

People log in with a name and password (cloud/operators.py) and get a session cookie; machines
keep their API tokens. The pages read through the same database session as the API; the actions
on a flight report call the API itself (PATCH /alerts/{id}) with the cookie and the session's
CSRF token, so the audit trail names the operator.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.api.deps import COOKIE, db
from cloud.api.web.browse import flight_map
from cloud.api.web.common import me, page, script_json, templates, to_login
from cloud.flight_report import Report, flight_report, pdf
from cloud.models import Alert, Drone, Flight, LearningRun, ModelRelease
from cloud.operators import Login, Throttle, login, logout
from cloud.settings import settings
from cloud.status_rules import OPEN, TRANSITIONS, classes

router = APIRouter(include_in_schema=False)
THROTTLE = Throttle()  # failed logins of this process
log = logging.getLogger(__name__)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=303)


@router.get("/login")
def login_form(request: Request, next: str = "/ui/", failed: int = 0) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"next": _local(next), "failed": bool(failed)})


def _local(target: str) -> str:
    """Only a path on this site: a login never sends its user elsewhere."""
    return target if target.startswith("/") and not target.startswith("//") else "/ui/"


def cross_site(request: Request) -> bool:
    """A form posted from another site (login CSRF: it would log the victim in as the attacker).
    Browsers send Sec-Fetch-Site, and Origin on every POST; a client that sends neither (a script
    of the operators' own) is not a browser another site can drive."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}"


@router.post("/login")
async def login_submit(request: Request, session: Session = Depends(db)) -> Response:
    if cross_site(request):
        return PlainTextResponse("a login form posted from another site is refused", status_code=403)
    form = parse_qs((await request.body()).decode(errors="replace"))
    name, password = form.get("name", [""])[0][:128], form.get("password", [""])[0][:1024]
    target = _local(form.get("next", ["/ui/"])[0])
    address = request.client.host if request.client else "-"
    wait = THROTTLE.wait(name, address)
    if wait > 0:
        log.warning("login of %r from %s refused: too many failures, %.0f s to wait", name[:40], address, wait)
        return PlainTextResponse(f"too many failed logins: try again in {int(wait) + 1} s", status_code=429,
                                 headers={"Retry-After": str(int(wait) + 1)})
    made = login(session, name, password)
    if made is None:
        THROTTLE.failed(name, address)
        return RedirectResponse(f"/login?failed=1&next={quote(target)}", status_code=303)
    THROTTLE.succeeded(name)
    session.commit()
    r = RedirectResponse(target, status_code=303)
    r.set_cookie(COOKIE, made.token, httponly=True, samesite="strict", path="/",
                 secure=request.url.scheme == "https" or settings().cookie_secure)
    return r


@router.post("/logout")
def logout_submit(request: Request, session: Session = Depends(db)) -> RedirectResponse:
    logout(session, request.cookies.get(COOKIE))
    session.commit()
    r = RedirectResponse("/login", status_code=303)
    r.delete_cookie(COOKIE, path="/")
    return r


@router.get("/ui/")
def overview(request: Request, session: Session = Depends(db)) -> Response:
    who = me(request, session)
    if who is None:
        return to_login(request)
    flights = list(session.scalars(select(Flight).order_by(Flight.started_at.desc().nulls_last(), Flight.id)
                                   .limit(20)))
    counts = dict(session.execute(select(Alert.flight_id, func.count()).where(
        Alert.flight_id.in_([f.id for f in flights])).group_by(Alert.flight_id)).all())
    open_alerts = session.execute(select(Alert.severity, Alert.line_id, func.count()).where(
        Alert.status.in_(OPEN)).group_by(Alert.severity, Alert.line_id)).all()
    severities = ("high", "medium", "low")
    lines = sorted({line or "-" for _, line, _ in open_alerts})
    table = {(sev, line or "-"): n for sev, line, n in open_alerts}
    drones = list(session.scalars(select(Drone).order_by(Drone.id)))
    return page(request, "overview.html", who, flights=flights, counts=counts, lines=lines, severities=severities,
                 table=table, drones=drones)


def curve_points(values: list[float], width: int = 360, height: int = 120) -> str:
    """An SVG polyline's points for one learning-curve column (scaled to the box, y up)."""
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = width / max(1, len(values) - 1)
    return " ".join(f"{i * step:.1f},{height - (v - lo) / span * height:.1f}" for i, v in enumerate(values))


@router.get("/ui/learning")
def learning(request: Request, session: Session = Depends(db)) -> Response:
    """Every learning run: its gate decision, the mAP matrix (candidate against parent on every
    campaign's frozen test set) and its learning curves."""

    who = me(request, session)
    if who is None:
        return to_login(request)
    runs = list(session.scalars(select(LearningRun).order_by(LearningRun.id.desc()).limit(50)))
    releases = list(session.scalars(select(ModelRelease).order_by(ModelRelease.id.desc()).limit(20)))
    curves = {r.id: {k: curve_points(v) for k, v in (r.curve or {}).items() if "loss" in k or "mAP50" in k}
              for r in runs}
    return page(request, "learning.html", who, runs=runs, curves=curves, releases=releases)


def _flight(request: Request, session: Session, flight_id: str,
            photos: bool = False) -> tuple[Login, Report] | Response:
    """The operator and the flight's report, or the answer instead: to the login, or 404."""
    who = me(request, session)
    if who is None:
        return to_login(request)
    report = flight_report(session, flight_id, photos)
    if report is None:
        return page(request, "not_found.html", who, status=404, what=f"flight {flight_id}")
    return who, report


@router.get("/ui/flights/{flight_id}")
def flight_page(flight_id: str, request: Request, session: Session = Depends(db)) -> Response:
    found = _flight(request, session, flight_id)
    if isinstance(found, Response):
        return found
    who, report = found
    data = {"flight": flight_id, **flight_map(session, report)}
    return page(request, "flight.html", who, report=report, data=script_json(data),
                fault_classes=classes().fault_names, transitions=TRANSITIONS)


@router.get("/ui/flights/{flight_id}/report.pdf")
def flight_pdf(flight_id: str, request: Request, session: Session = Depends(db)) -> Response:
    found = _flight(request, session, flight_id, photos=True)
    if isinstance(found, Response):
        return found
    return Response(pdf(found[1]), media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="flight-{flight_id}.pdf"'})
