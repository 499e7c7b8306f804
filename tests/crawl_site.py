"""A fixture web site for the crawler, served on loopback: pages, a sitemap, robots.txt that
disallows /private/, a MediaWiki-like api.php answering `imageinfo` with licences (two pages of
results), photos with duplicates and near duplicates, a truncated JPEG, a decompression bomb, a
page behind a `.jpg` name, a slow photo, a failing one and a flaky one. Every request is logged,
so tests can say what was fetched and how often."""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np
import piexif
from PIL import Image


def photo(seed: int, size: tuple[int, int] = (640, 480), gps: bool = False) -> bytes:
    """A distinct photo: smooth shapes from `seed` (different seeds differ in perceptual hash)."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.full((h, w, 3), rng.integers(40, 200, 3), np.uint8)
    for _ in range(6):
        cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(30, 160)),
                   tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    cv2.rectangle(img, (int(rng.integers(0, w // 2)), 0), (int(rng.integers(w // 2, w)), h // 3),
                  tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    exif = {"0th": {piexif.ImageIFD.Make: b"pli-test", piexif.ImageIFD.Model: b"camera"}, "Exif": {}, "1st": {},
            "GPS": {}}
    if gps:
        exif["GPS"] = {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: ((25, 1), (18, 1), (0, 1)),
                       piexif.GPSIFD.GPSLongitudeRef: b"E", piexif.GPSIFD.GPSLongitude: ((103, 1), (6, 1), (0, 1))}
    out = io.BytesIO()
    piexif.insert(piexif.dump(exif), jpeg, out)
    return out.getvalue()


def near_copy(data: bytes) -> bytes:
    """The same photo resized to 85 % and re-encoded at another quality."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    small = cv2.resize(img, None, fx=0.85, fy=0.85, interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 70])[1].tobytes()


def bomb() -> bytes:
    """A small PNG that claims 10000 x 10000 pixels."""
    out = io.BytesIO()
    Image.new("1", (10000, 10000)).save(out, "PNG")
    return out.getvalue()


def png(seed: int) -> bytes:
    img = cv2.imdecode(np.frombuffer(photo(seed), np.uint8), cv2.IMREAD_COLOR)
    return cv2.imencode(".png", img)[1].tobytes()


class Site:
    """Started on enter; `base` its URL, `log` a Counter of request paths (with the query for the API)."""

    def __init__(self):
        a = photo(1, (800, 600), gps=True)
        self.files: dict[str, tuple[str, bytes]] = {
            "/photos/a.jpg": ("image/jpeg", a),
            "/photos/b_small.jpg": ("image/jpeg", photo(20, (320, 240))),
            "/photos/b.jpg": ("image/jpeg", photo(2, (1280, 960))),
            "/photos/c.jpg": ("image/jpeg", photo(3)),
            "/photos/d.png": ("image/png", png(4)),
            "/photos/e.jpg": ("image/jpeg", photo(5)),
            "/photos/direct.jpg": ("image/jpeg", photo(6)),
            "/photos/tiny.jpg": ("image/jpeg", photo(7, (200, 150))),
            "/photos/dup_a.jpg": ("image/jpeg", a),
            "/photos/near_a.jpg": ("image/jpeg", near_copy(a)),
            "/photos/truncated.jpg": ("image/jpeg", photo(8)[:-3000]),
            "/photos/bomb.png": ("image/png", bomb()),
            "/photos/fake.jpg": ("image/jpeg", b"<html><body>not a photo</body></html>"),
            "/photos/slow.jpg": ("image/jpeg", photo(9)),
            "/photos/flaky.jpg": ("image/jpeg", photo(10)),
            "/private/p.jpg": ("image/jpeg", photo(11)),
            "/wiki/w1.jpg": ("image/jpeg", photo(12)),
            "/wiki/w2.jpg": ("image/jpeg", photo(13)),
            "/wiki/w3.jpg": ("image/jpeg", photo(14)),
        }
        self.log: Counter = Counter()
        self.flaky_failures = 2
        self.httpd: ThreadingHTTPServer | None = None
        self.base = ""

    def pages(self) -> dict[str, str]:
        return {
            "/robots.txt": "User-agent: *\nDisallow: /private/\n",
            "/sitemap.xml": ('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                             f"<url><loc>{self.base}/gallery.html</loc></url>"
                             f"<url><loc>{self.base}/photos/direct.jpg</loc></url></urlset>"),
            "/index.html": ('<html><head><title>Line 7 inspection</title>'
                            '<meta property="og:image" content="/photos/c.jpg"></head><body>'
                            '<img src="/photos/a.jpg"><img srcset="/photos/b_small.jpg 320w, /photos/b.jpg 1280w">'
                            '<a href="/photos/d.png">big</a><a href="/page2.html">more</a>'
                            '<a href="/private/secret.html">private</a><img src="/photos/tiny.jpg">'
                            '<img src="/photos/dup_a.jpg"><img src="/photos/near_a.jpg">'
                            '<img src="/photos/truncated.jpg"><img src="/photos/bomb.png"><img src="/photos/fake.jpg">'
                            '<img src="/photos/slow.jpg"><img src="/photos/fail.jpg"><img src="/photos/flaky.jpg">'
                            '<a href="http://elsewhere.invalid/x.html">another site</a></body></html>'),
            "/page2.html": '<html><body><img src="/photos/e.jpg"></body></html>',
            "/gallery.html": '<html><body><img src="/photos/a.jpg"></body></html>',
            "/private/secret.html": '<html><body><img src="/private/p.jpg"></body></html>',
        }

    def api(self, query: dict) -> dict:
        def page(n: int, licence: str, author: str) -> dict:
            return {"title": f"File:W{n}.jpg", "imageinfo": [{
                "url": f"{self.base}/wiki/w{n}.jpg", "descriptionurl": f"{self.base}/wiki/File:W{n}.jpg",
                "extmetadata": {"LicenseShortName": {"value": licence},
                                "Artist": {"value": f"<a href='u'>{author}</a>"},
                                "ImageDescription": {"value": f"insulator string {n}"}}}]}

        if query.get("gcmtitle") != ["Category:Insulators"]:
            return {"batchcomplete": True}
        if "gcmcontinue" not in query:
            return {"continue": {"gcmcontinue": "page2", "continue": "gcmcontinue||"},
                    "query": {"pages": [page(1, "CC BY-SA 4.0", "Ann Author"), page(2, "CC BY-NC 4.0", "Bo")]}}
        return {"query": {"pages": [page(3, "Public domain", "Cy")]}}

    def __enter__(self) -> Site:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                site.log[url.path if url.path != "/w/api.php" else self.path] += 1
                if url.path == "/w/api.php":
                    return self._send(200, "application/json", json.dumps(site.api(parse_qs(url.query))).encode())
                if url.path == "/photos/slow.jpg":
                    time.sleep(1.5)
                if url.path == "/photos/fail.jpg":
                    return self._send(500, "text/plain", b"broken")
                if url.path == "/photos/flaky.jpg" and site.flaky_failures > 0:
                    site.flaky_failures -= 1
                    return self._send(503, "text/plain", b"busy")
                if url.path in site.files:
                    kind, body = site.files[url.path]
                    return self._send(200, kind, body)
                pages = site.pages()
                if url.path in pages:
                    kind = "application/xml" if url.path.endswith(".xml") else "text/plain" \
                        if url.path.endswith(".txt") else "text/html"
                    return self._send(200, kind, pages[url.path].encode())
                return self._send(404, "text/plain", b"no such page")

            def _send(self, status: int, kind: str, body: bytes):
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
