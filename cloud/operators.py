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
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cloud.models import Operator, WebSession
from cloud.settings import settings

SESSION_HOURS = settings().session_hours
_N, _R, _P = 2**14, 8, 1  # scrypt cost: ~50 ms a check here, 16 MiB
# Failed logins: after FREE_FAILURES for one name (or FREE_FAILURES_IP from one address) within
# WINDOW_S, every further attempt waits, doubling from 1 s up to MAX_WAIT_S: guessing slows to a
# crawl while the real operator, once the wait is over, still gets in (no lockout to abuse).
FREE_FAILURES, FREE_FAILURES_IP, WINDOW_S, MAX_WAIT_S = 5, 20, 900.0, 900.0


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


class Throttle:
    """Failed logins per name and per client address, in this process's memory (one API process
    per database is the deployment; several would each count their own)."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._failures: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, []) if now - t < WINDOW_S]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def wait(self, name: str, address: str) -> float:
        """Seconds before this name may try again from this address (0: now)."""
        now = self.clock()
        with self._lock:
            waits = []
            for key, free in ((f"name:{name}", FREE_FAILURES), (f"ip:{address}", FREE_FAILURES_IP)):
                times = self._recent(key, now)
                if len(times) >= free:
                    waits.append(times[-1] + min(MAX_WAIT_S, 2.0 ** (len(times) - free)) - now)
            return max([0.0, *waits])

    def failed(self, name: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            for key in (f"name:{name}", f"ip:{address}"):
                self._failures[key] = [*self._recent(key, now), now]

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(f"name:{name}", None)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash to check an unknown name's password against: one scrypt, as for a known name."""
    return hash_password(secrets.token_urlsafe(12))


def login(session: Session, name: str, password: str) -> Login | None:
    """A new session when the name and password match a live operator, else None."""
    row = session.scalar(select(Operator).where(Operator.name == name))
    if row is None or row.disabled:
        check_password(password, _dummy_hash())  # the same time as a wrong password
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
