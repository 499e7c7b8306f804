"""API tokens per role (operator, fleet, admin), stored only as their SHA-256.

A token is shown once, when made (`pli cloud token create`); the database keeps its hash, so a
copy of the database gives no access. Roles do not nest except that admin may do what an operator
may: an operator token cannot act as admin, a fleet token (drones, the ground station) only
reaches the fleet's endpoints.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.models import ROLES, ApiToken

# who may call an endpoint that needs `role`
ALLOWED = {"operator": {"operator", "admin"}, "admin": {"admin"}, "fleet": {"fleet", "admin"},
           "any": set(ROLES)}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    token = f"pli_{role}_{secrets.token_urlsafe(32)}"
    session.add(ApiToken(name=name, role=role, token_hash=hash_token(token)))
    return token


def lookup(session: Session, token: str) -> ApiToken | None:
    """The live token row for `token`, or None (unknown or revoked)."""
    digest = hash_token(token)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    if row is None or row.revoked or not hmac.compare_digest(row.token_hash, digest):
        return None
    return row
