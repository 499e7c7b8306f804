"""`pli cloud serve`: the HTTP API (FastAPI), one router module per resource.

Listens on 127.0.0.1 unless told otherwise. Nothing but `/health` answers without a token.
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter, Histogram

from cloud.api.headers import add_security_headers
from cloud.api.limits import BodyTooLarge, body_limit, limited, too_large
from cloud.api.routes import (
    alerts,
    annotation,
    campaigns,
    faults,
    flights,
    health,
    jobs,
    learning,
    releases,
    tokens,
    towers,
    tuf,
    uploads,
)
from cloud.api.web import browse, docs, maps, pages
from cloud.api.web.common import STATIC
from cloud.db import read_sessions, sessions


def create_app(url: str | None = None) -> Measured:
    app = FastAPI(title="pli cloud", version="1", description="Alerts, faults, flights, towers, releases, jobs of "
                  "the power-line inspection fleet. Every endpoint but /health needs a token (Bearer).",
                  docs_url=None, redoc_url=None)  # served from bundled assets (cloud/api/web/docs.py)
    app.state.sessions = sessions(url)
    app.state.read_sessions = read_sessions(url)
    registry = CollectorRegistry()
    app.state.registry = registry
    requests = Counter("pli_http_requests", "HTTP requests", ["route", "status"], registry=registry)
    latency = Histogram("pli_http_request_seconds", "HTTP request latency", ["route"], registry=registry)

    for module in (health, alerts, faults, flights, towers, releases, jobs, tokens, uploads, tuf, annotation,
                   campaigns, learning):
        app.include_router(module.router)
    for module in (pages, browse, maps, docs):  # the operators' pages (not in the API's spec)
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return Measured(app, requests, latency)


class Measured:
    """Counts and times every request (Prometheus), limits request bodies before anything reads
    them (cloud/api/limits.py) and puts the security headers on every answer
    (cloud/api/headers.py), as plain ASGI around the app: Starlette's `BaseHTTPMiddleware` costs
    a task and a stream per request, a large share of a short one.
    Attribute access falls through to the FastAPI app (`app.state`, `app.openapi()`)."""

    def __init__(self, app: FastAPI, requests: Counter, latency: Histogram):
        self.app, self._requests, self._latency = app, requests, latency

    def __getattr__(self, name: str):
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]
        https = scope.get("scheme") == "https"

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": add_security_headers(list(message.get("headers", [])), https)}
            await send(message)

        limit = body_limit(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        try:
            if not declared.isdigit() or int(declared) > limit:  # refused unread
                for message in too_large(limit):
                    await send_status(message)
                return
            try:
                await self.app(scope, limited(receive, limit), send_status)
            except BodyTooLarge:
                if status[0] == 500:  # nothing answered yet
                    for message in too_large(limit):
                        await send_status(message)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self._requests.labels(route, str(status[0])).inc()
            self._latency.labels(route).observe(time.perf_counter() - t0)
