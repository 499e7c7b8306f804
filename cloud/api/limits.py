"""Request body limits, per route, enforced before anything reads the body (and before
authentication): a 300 MB body to `/tokens` is answered 413 at its Content-Length, and a body
sent without one is cut off the moment it passes the limit.

Upload chunks are the only large bodies; a flight's manifest names thousands of files; a login
form is a name and a password. Everything else is a small JSON document.
"""

from __future__ import annotations

import json
import re

from starlette.exceptions import HTTPException

KIB, MIB = 1 << 10, 1 << 20
CHUNK = 16 * MIB  # an upload chunk (cloud/api/routes/uploads.py)
LIMITS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"^/flights/[^/]+/files/"), CHUNK + 64 * KIB),
    (re.compile(r"^/flights/[^/]+/manifest$"), 16 * MIB),
    (re.compile(r"^/(login|logout)$"), 16 * KIB),
)
DEFAULT = 1 * MIB


def body_limit(path: str) -> int:
    """The most bytes a request to `path` may carry."""
    return next((limit for pattern, limit in LIMITS if pattern.match(path)), DEFAULT)


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a body without a Content-Length passes its limit: the route that
    reads it answers 413 (an HTTP exception), whatever it was doing."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body over the limit of {limit} bytes for this route")


def too_large(limit: int) -> tuple[dict, dict]:
    """The 413 answer's two ASGI messages."""
    body = json.dumps({"detail": f"request body over the limit of {limit} bytes for this route"}).encode()
    return ({"type": "http.response.start", "status": 413,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         (b"connection", b"close")]},
            {"type": "http.response.body", "body": body})


def limited(receive, limit: int):
    """`receive` that counts the body's bytes and stops at `limit`."""
    seen = 0

    async def wrapped():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return wrapped
