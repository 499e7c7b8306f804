"""What every endpoint shares: a database session, and who is calling (token and role).

A token comes as `Authorization: Bearer <token>`; for what Label Studio can send, also as the
password of HTTP basic auth (an ML backend) or an `X-PLI-Token` header (webhooks).
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session

from cloud.models import Drone
from cloud.operators import current
from cloud.tokens import ALLOWED, lookup
from comms.alert_json import FLIGHT_ID

# A flight id in a path, as the alerts carry it: it names a folder of the object store too.
FlightId = Annotated[str, Path(pattern=FLIGHT_ID.pattern, max_length=64,
                               description="1-64 of A-Z a-z 0-9 _ . : -, not starting with a dot")]


class Message(BaseModel):
    detail: str


# What every endpoint may answer besides its own result (one line in `detail`).
ERRORS = {400: {"model": Message, "description": "a request that cannot be served as asked"},
          401: {"model": Message, "description": "no token, or an unknown or revoked one"},
          403: {"model": Message, "description": "the token's role may not do this"},
          404: {"model": Message, "description": "no such item"},
          409: {"model": Message, "description": "in conflict with what is stored"}}


def db(request: Request) -> Iterator[Session]:
    """A session for the request; a GET's only reads (cloud/db.py:read_sessions)."""
    make = request.app.state.read_sessions if request.method in ("GET", "HEAD") else request.app.state.sessions
    with make() as session:
        yield session


@dataclass(frozen=True)
class Caller:
    name: str
    role: str
    source: str  # client address and agent, for the audit trail
    fleet: str | None = None  # a fleet token's fleet
    drone: str | None = None  # a drone token's drone

    def check_drone(self, session: Session, drone_id: str) -> Drone:
        """The drone a fleet caller acts for: registered, in the token's fleet, and the token's own
        drone when it names one (admins act for any registered drone)."""
        drone = session.get(Drone, drone_id)
        if drone is None:
            raise HTTPException(404, f"unknown drone {drone_id[:32]}: a drone is registered by its first alert "
                                     "or its token (pli cloud token create --role fleet --fleet F --drone D)")
        if self.role == "fleet" and drone.fleet != self.fleet:
            raise HTTPException(403, f"drone {drone_id} is not in this token's fleet {self.fleet}")
        if self.drone is not None and drone_id != self.drone:
            raise HTTPException(403, f"this token is drone {self.drone}'s: it cannot act for {drone_id}")
        return drone


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if scheme.lower() == "basic" and value:
        try:
            return base64.b64decode(value, validate=True).decode().partition(":")[2] or None
        except (ValueError, UnicodeDecodeError):
            return None
    return request.headers.get("x-pli-token")


COOKIE = "pli_session"


def require(role: str):
    """A dependency: the caller, when its token (or, for an operator at the pages, its session
    cookie) allows `role` (see cloud/tokens.py). A change asked with the cookie must carry the
    session's CSRF token in `X-CSRF-Token`: another site's page cannot forge one."""

    def check(request: Request, session: Session = Depends(db)) -> Caller:
        host = request.client.host if request.client else "?"
        source = f"{host} {request.headers.get('user-agent', '')}"[:255]
        token = _token(request)
        if not token and (cookie := request.cookies.get(COOKIE)):
            login = current(session, cookie)
            if login is None:
                raise HTTPException(401, "session expired or logged out: log in again")
            if request.method not in ("GET", "HEAD") and not hmac.compare_digest(
                    request.headers.get("x-csrf-token", ""), login.csrf):
                raise HTTPException(403, "missing or wrong X-CSRF-Token for this session")
            if login.role not in ALLOWED[role]:
                raise HTTPException(403, f"an operator at the pages cannot do this (needs {role})")
            return Caller(login.name, login.role, source)
        if not token:
            raise HTTPException(401, "no token: send Authorization: Bearer <token>",
                                headers={"WWW-Authenticate": "Bearer"})
        row = lookup(session, token, cached=True)
        if row is None:
            raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
        if row.role == "fleet" and role == "any":
            raise HTTPException(403, "a fleet token reaches uploads, tracks and model updates only: reading the "
                                     "fleet's data needs an operator token")
        if row.role not in ALLOWED[role]:
            article = "an" if row.role[0] in "aeiou" else "a"
            raise HTTPException(403, f"{article} {row.role} token cannot do this (needs {role})")
        return Caller(row.name, row.role, source, row.fleet, row.drone)

    return check
