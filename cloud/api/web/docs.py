"""The API's documentation pages, Swagger UI at /docs and ReDoc at /redoc, from assets bundled by
scripts/setup.sh (npm registry): FastAPI's own pages load them from a CDN, which a cloud on a
utility's network cannot reach and the pages' CSP (script-src 'self') would refuse anyway."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from cloud.api.headers import page_policy
from cloud.api.web.common import templates

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def swagger(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "swagger.html", {"spec": request.app.openapi_url})


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """ReDoc parses the spec in a web worker it makes from a blob: this page's policy allows that."""
    return templates.TemplateResponse(request, "redoc.html", {"spec": request.app.openapi_url},
                                      headers={"Content-Security-Policy": page_policy() + "; worker-src 'self' blob:"})
