"""Operators (people at the pages): passwords and login sessions.

Passwords are kept as salted scrypt hashes (hashlib's, from OpenSSL: no extra dependency for a
standard KDF). A login makes a session: a random token in an HttpOnly, SameSite=Strict cookie,
its SHA-256 in the database (so a copy of the database logs nobody in), a CSRF token the pages
send back on every change, and an expiry. Logging out deletes the row.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cloud.models import Operator, WebSession

SESSION_HOURS = float(os.environ.get("PLI_SESSION_HOURS", "12"))
_N, _R, _P = 2**14, 8, 1  # scrypt cost: ~50 ms a check here, 16 MiB


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(base64.b64decode(key)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(key))


def add_operator(session: Session, name: str, password: str, role: str = "operator") -> Operator:
    if role not in ("operator", "admin"):
        raise ValueError(f"an operator's role is operator or admin, not {role!r}")
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    row = session.scalar(select(Operator).where(Operator.name == name))
    if row is None:
        row = Operator(name=name, password_hash=hash_password(password), role=role, disabled=False)
        session.add(row)
    else:  # setting the password again
        row.password_hash, row.role, row.disabled = hash_password(password), role, False
    session.flush()
    return row


@dataclass(frozen=True)
class Login:
    token: str  # for the cookie; shown nowhere else
    csrf: str
    name: str
    role: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def login(session: Session, name: str, password: str) -> Login | None:
    """A new session when the name and password match a live operator, else None."""
    row = session.scalar(select(Operator).where(Operator.name == name))
    if row is None or row.disabled:
        check_password(password, hash_password("x" * 8))  # the same time as a wrong password
        return None
    if not check_password(password, row.password_hash):
        return None
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    now = datetime.now(UTC)
    session.execute(delete(WebSession).where(WebSession.expires_at < now))  # sweep old ones
    session.add(WebSession(token_hash=_digest(token), operator_id=row.id, csrf=csrf, created_at=now,
                           expires_at=now + timedelta(hours=SESSION_HOURS)))
    return Login(token, csrf, row.name, row.role)


def current(session: Session, token: str | None) -> Login | None:
    """The live session of a cookie's token (without the token), or None."""
    if not token:
        return None
    ws = session.scalar(select(WebSession).where(WebSession.token_hash == _digest(token)))
    if ws is None or ws.expires_at < datetime.now(UTC):
        return None
    op = session.get(Operator, ws.operator_id)
    if op is None or op.disabled:
        return None
    return Login("", ws.csrf, op.name, op.role)


def logout(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(WebSession).where(WebSession.token_hash == _digest(token)))
