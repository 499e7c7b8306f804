"""API tokens per role (operator, fleet, admin), stored only as their SHA-256.

A token is shown once, when made (`pli cloud token create`); the database keeps its hash, so a
copy of the database gives no access. Roles do not nest except that admin may do what an operator
may: an operator token cannot act as admin, a fleet token (drones, the ground station) only
reaches the fleet's endpoints (uploads, tracks, model updates), and there only for its own fleet;
a drone token (a fleet token that names a drone) only for that drone. Reading alerts, crops and
photos is for operators and admins.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.models import ROLES, ApiToken, Drone
from cloud.settings import settings

# who may call an endpoint that needs `role`
ALLOWED = {"operator": {"operator", "admin"}, "admin": {"admin"}, "fleet": {"fleet", "admin"},
           "any": {"operator", "admin"}}  # "any": anyone who reads the fleet's data (not a drone)
NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,32}$")  # a drone id or fleet name, as the topics carry them


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, role: str, fleet: str | None = None, drone: str | None = None) -> str:
    """A new token, returned once. A fleet token names its fleet; with `drone` it is that drone's
    alone, and the drone is registered in the fleet (a drone of another fleet is refused)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if role == "fleet" and not fleet:
        raise ValueError("a fleet token belongs to one fleet: name it (--fleet)")
    if role != "fleet" and (fleet or drone):
        raise ValueError(f"an {role} token reaches every fleet: it names no fleet or drone")
    for what, value in (("fleet", fleet), ("drone", drone)):
        if value is not None and not NAME.match(value):
            raise ValueError(f"{what} {value[:40]!r}: 1-32 of A-Z a-z 0-9 _ . : -")
    if drone is not None:
        row = session.get(Drone, drone)
        if row is None:
            session.add(Drone(id=drone, fleet=fleet, highest_epoch=0))
        elif row.fleet != fleet:
            raise ValueError(f"drone {drone} is in fleet {row.fleet}, not {fleet}")
    token = f"pli_{role}_{secrets.token_urlsafe(32)}"
    session.add(ApiToken(name=name, role=role, token_hash=hash_token(token), fleet=fleet, drone=drone))
    session.flush()
    return token


def revoke_tokens(session: Session, token_id: int | None = None, name: str | None = None,
                  drone: str | None = None) -> list[int]:
    """Revoke the live tokens with this id, name or drone (a lost or retired drone: every token it
    had); their ids. Revoked tokens stop working within CACHE_S seconds in every server process."""
    if (token_id, name, drone) == (None, None, None):
        raise ValueError("name the token(s) to revoke: an id, a name or a drone")
    q = select(ApiToken).where(ApiToken.revoked.is_(False))
    for column, value in ((ApiToken.id, token_id), (ApiToken.name, name), (ApiToken.drone, drone)):
        if value is not None:
            q = q.where(column == value)
    rows = list(session.scalars(q))
    for row in rows:
        row.revoked = True
        forget(row.token_hash)
    return [r.id for r in rows]


@dataclass(frozen=True)
class TokenInfo:
    name: str
    role: str
    fleet: str | None = None
    drone: str | None = None


CACHE_S = settings().token_cache_s
_cache: dict[str, tuple[float, TokenInfo]] = {}  # sha256 -> (valid until, monotonic clock)


def lookup(session: Session, token: str, cached: bool = False) -> TokenInfo | None:
    """Who `token` is, or None (unknown or revoked). `cached`: a live token found in the last
    CACHE_S seconds is not looked up again (the API: a database round trip less per request), so a
    token revoked through another server process stops working within CACHE_S seconds; revoked
    through this one (`forget`), at once. Unknown tokens are never cached."""
    digest = hash_token(token)
    now = time.monotonic()
    if cached and (hit := _cache.get(digest)) is not None and hit[0] > now:
        return hit[1]
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    if row is None or row.revoked or not hmac.compare_digest(row.token_hash, digest):
        _cache.pop(digest, None)
        return None
    info = TokenInfo(row.name, row.role, row.fleet, row.drone)
    if cached and CACHE_S > 0:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[digest] = (now + CACHE_S, info)
    return info


def forget(token_hash: str) -> None:
    """Drop a revoked token from this process's cache."""
    _cache.pop(token_hash, None)
