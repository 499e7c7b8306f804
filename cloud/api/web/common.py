"""What every operator page shares: the templates, who is logged in, the redirect to the login,
and a page answer (autoescaped, never cached; its CSP comes from cloud/api/headers.py)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from cloud.api.deps import COOKIE
from cloud.operators import Login, current
from cloud.status_rules import TRANSITIONS

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))
NAV = (("/ui/", "Overview"), ("/ui/alerts", "Alerts"), ("/ui/faults", "Faults"), ("/ui/towers", "Towers"),
       ("/ui/flights", "Flights"), ("/ui/releases", "Releases"), ("/ui/jobs", "Jobs"), ("/ui/learning", "Learning"),
       ("/docs", "API"))


def me(request: Request, session: Session) -> Login | None:
    return current(session, request.cookies.get(COOKIE))


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


def page(request: Request, name: str, who: Login | None, status: int = 200, **context) -> HTMLResponse:
    """A page, autoescaped; its security headers (CSP and others) come with every answer."""
    context = {"me": who, "nav": NAV, "here": request.url.path, "transitions_json": script_json(TRANSITIONS),
               **context}
    return templates.TemplateResponse(request, name, context,
                                      status_code=status, headers={"Cache-Control": "no-store"})


def script_json(data: object) -> str:
    """JSON for a `<script type="application/json">` element: no "</" may end it early, whatever an
    operator typed in a note (a CSP does not run such an element; pages read it with JSON.parse)."""
    return json.dumps(data).replace("</", "<\\/")
