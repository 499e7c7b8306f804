"""`pli cloud serve`: the HTTP API (FastAPI), one router module per resource.

Listens on 127.0.0.1 unless told otherwise. Nothing but `/health` answers without a token.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry, Counter, Histogram

from cloud.api.routes import alerts, faults, flights, health, jobs, releases, tokens, towers
from cloud.db import sessions


def create_app(url: str | None = None) -> FastAPI:
    app = FastAPI(title="pli cloud", version="1", description="Alerts, faults, flights, towers, releases, jobs of "
                  "the power-line inspection fleet. Every endpoint but /health needs a token (Bearer).")
    app.state.sessions = sessions(url)
    registry = CollectorRegistry()
    app.state.registry = registry
    requests = Counter("pli_http_requests", "HTTP requests", ["route", "status"], registry=registry)
    latency = Histogram("pli_http_request_seconds", "HTTP request latency", ["route"], registry=registry)

    @app.middleware("http")
    async def measure(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        requests.labels(route, str(response.status_code)).inc()
        latency.labels(route).observe(time.perf_counter() - t0)
        return response

    for module in (health, alerts, faults, flights, towers, releases, jobs, tokens):
        app.include_router(module.router)
    return app
