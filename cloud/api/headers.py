"""Security headers on every answer, pages and API alike, set in one place (the ASGI wrapper in
`cloud/api/app.py`): a Content-Security-Policy that allows no inline script, framing refused,
no MIME sniffing, no referrer to other sites, and HSTS when the request came over TLS.

Pages load their script from /static only (the flight's data travels in a JSON script element,
which a CSP does not run), so a string that slips past escaping still cannot execute. API
answers are data: their policy allows nothing at all.
"""

from __future__ import annotations

from cloud.settings import settings

HSTS = b"max-age=31536000; includeSubDomains"


def tile_origin() -> str:
    """The basemap's origin when `PLI_TILE_URL` names one (the map's tiles are images from there)."""
    url = settings().tile_url
    return "/".join(url.split("/")[:3]) if url.startswith("http") else ""


def page_policy() -> str:
    return ("default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            f"frame-ancestors 'none'; img-src 'self' data: {tile_origin()}".rstrip() + "; "
            "style-src 'self' 'unsafe-inline'")


API_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"


def add_security_headers(headers: list[tuple[bytes, bytes]], https: bool) -> list[tuple[bytes, bytes]]:
    """The answer's headers with the security headers added (those the route set itself stand)."""
    have = {k.lower() for k, _ in headers}
    ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
    policy = page_policy() if ctype.startswith(b"text/html") else API_POLICY
    extra = [(b"content-security-policy", policy.encode()), (b"x-frame-options", b"DENY"),
             (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
             (b"cross-origin-opener-policy", b"same-origin")]
    if https:
        extra.append((b"strict-transport-security", HSTS))
    return [*headers, *((k, v) for k, v in extra if k not in have)]
