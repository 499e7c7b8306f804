"""The operators' pages: login, fleet overview, flight report (map, faults, actions), PDF.

People log in with a name and password (cloud/operators.py) and get a session cookie; machines
keep their API tokens. The pages read through the same database session as the API; the actions
on a flight report call the API itself (PATCH /alerts/{id}) with the cookie and the session's
CSRF token, so the audit trail names the operator.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.api.deps import COOKIE, db
from cloud.flight_report import Report, flight_report, pdf
from cloud.models import Alert, Drone, Flight, LearningRun
from cloud.operators import Login, Throttle, current, login, logout
from cloud.settings import settings
from cloud.status_rules import OPEN

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)
THROTTLE = Throttle()  # failed logins of this process
log = logging.getLogger(__name__)


def _me(request: Request, session: Session) -> Login | None:
    return current(session, request.cookies.get(COOKIE))


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


def _page(request: Request, name: str, me: Login | None, status: int = 200, **context) -> HTMLResponse:
    """A page, autoescaped; its security headers (CSP and others) come with every answer
    (cloud/api/headers.py)."""
    return templates.TemplateResponse(request, name, {"me": me, **context}, status_code=status,
                                      headers={"Cache-Control": "no-store"})


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
    me = _me(request, session)
    if me is None:
        return _to_login(request)
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
    return _page(request, "overview.html", me, flights=flights, counts=counts, lines=lines, severities=severities,
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

    me = _me(request, session)
    if me is None:
        return _to_login(request)
    runs = list(session.scalars(select(LearningRun).order_by(LearningRun.id.desc()).limit(50)))
    curves = {r.id: {k: curve_points(v) for k, v in (r.curve or {}).items() if "loss" in k or "mAP50" in k}
              for r in runs}
    return _page(request, "learning.html", me, runs=runs, curves=curves)


def _flight(request: Request, session: Session, flight_id: str) -> tuple[Login, Report] | Response:
    """The operator and the flight's report, or the answer instead: to the login, or 404."""
    me = _me(request, session)
    if me is None:
        return _to_login(request)
    report = flight_report(session, flight_id)
    if report is None:
        return _page(request, "not_found.html", me, status=404, what=f"flight {flight_id}")
    return me, report


@router.get("/ui/flights/{flight_id}")
def flight_page(flight_id: str, request: Request, session: Session = Depends(db)) -> Response:
    found = _flight(request, session, flight_id)
    if isinstance(found, Response):
        return found
    me, report = found
    data = {"flight": flight_id, "track": report.track, "alerts": [a.json() for a in report.alerts],
            "tiles": settings().tile_url or None}
    # inside a <script> element: no "</" may end it early, whatever an operator typed in a note
    return _page(request, "flight.html", me, report=report, data=json.dumps(data).replace("</", "<\\/"))


@router.get("/ui/flights/{flight_id}/report.pdf")
def flight_pdf(flight_id: str, request: Request, session: Session = Depends(db)) -> Response:
    found = _flight(request, session, flight_id)
    if isinstance(found, Response):
        return found
    return Response(pdf(found[1]), media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="flight-{flight_id}.pdf"'})
