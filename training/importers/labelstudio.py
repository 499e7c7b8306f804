"""Label Studio JSON export (a list of tasks with their annotations) -> Samples.

Boxes are `rectanglelabels` results in percent of the image (x, y of the top-left corner,
width, height, and a rotation in degrees about that corner); they become pixel boxes (a rotated
rectangle becomes the axis-aligned box around it). The latest annotation of a task that was not
cancelled counts; a task nobody annotated is left out with a warning. Images are found, in
order: by the cloud's image id in the task data (`pli_image_id`, when the cloud made the task),
by file name under `images` with Label Studio's upload prefix (8 hex characters and a hyphen)
stripped, or fetched from the server (`fetch(url) -> bytes`, with a token).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import numpy as np

from training.dataset import IMAGE_SUFFIXES, Report, Sample, probe_image, unique_names
from training.importers.registry import register

UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


def percent_to_xyxy(x: np.ndarray, y: np.ndarray, w: np.ndarray, h: np.ndarray, rotation: np.ndarray,
                    width: float, height: float) -> np.ndarray:
    """Label Studio rectangles (percent; rotation in degrees, clockwise about the top-left corner)
    -> (N, 4) pixel xyxy of the axis-aligned box around each."""
    x, y, w, h, rot = (np.asarray(a, np.float64).reshape(-1) for a in (x, y, w, h, rotation))
    x0, y0 = x * width / 100, y * height / 100
    bw, bh = w * width / 100, h * height / 100
    t = np.radians(rot)
    c, s = np.cos(t), np.sin(t)
    # the four corners: (0,0), (bw,0), (bw,bh), (0,bh) rotated about the top-left corner
    cx = np.stack([np.zeros_like(bw), bw * c, bw * c - bh * s, -bh * s], 1) + x0[:, None]
    cy = np.stack([np.zeros_like(bw), bw * s, bw * s + bh * c, bh * c], 1) + y0[:, None]
    return np.stack([cx.min(1), cy.min(1), cx.max(1), cy.max(1)], 1)


def xyxy_to_percent(xyxy: np.ndarray, width: float, height: float) -> np.ndarray:
    """(N, 4) pixel xyxy -> (N, 4) Label Studio x, y, width, height in percent (no rotation)."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.stack([b[:, 0] / width * 100, b[:, 1] / height * 100, (b[:, 2] - b[:, 0]) / width * 100,
                     (b[:, 3] - b[:, 1]) / height * 100], 1)


def upload_name(url: str) -> str:
    """The photo's own file name in a Label Studio image URL (`/data/upload/3/8f3a2b1c-IMG_1.jpg`
    -> `IMG_1.jpg`; `/data/local-files/?d=photos/IMG_1.jpg` -> `IMG_1.jpg`)."""
    parsed = urlparse(url)
    path = unquote(parsed.path)
    if "d=" in parsed.query:
        path = unquote(parsed.query.split("d=", 1)[1].split("&", 1)[0])
    return UPLOAD_PREFIX.sub("", Path(path).name)


def _annotation(task: dict) -> dict | None:
    done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    return max(done, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0),
               default=None)


@register("labelstudio")
def read_labelstudio(src: Path, report: Report, images: Path | None = None,
                     resolve_id: Callable[[str], Path | None] | None = None,
                     fetch: Callable[[str], bytes] | None = None, cache: Path | None = None) -> Iterator[Sample]:
    tasks = json.loads(Path(src).read_text())
    if not isinstance(tasks, list):
        raise ValueError(f"{src}: not a Label Studio JSON export (a list of tasks)")
    by_name: dict[str, Path] = {}
    if images is not None:
        for p in sorted(Path(images).rglob("*")):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                by_name.setdefault(UPLOAD_PREFIX.sub("", p.name), p)
    found = []
    for task in tasks:
        tid = task.get("id")
        data = task.get("data") or {}
        url = next((v for v in data.values() if isinstance(v, str) and v), "")
        if isinstance(data.get("image"), str):
            url = data["image"]
        ann = _annotation(task)
        if ann is None:
            report.warn(f"task {tid}", "no annotation (or only cancelled ones): left out")
            continue
        path = None
        if data.get("pli_image_id") is not None and resolve_id is not None:
            path = resolve_id(str(data["pli_image_id"]))
        if path is None and url:
            path = by_name.get(upload_name(url))
        if path is None and url and fetch is not None and cache is not None:
            body = fetch(url)
            name = upload_name(url)
            if Path(name).suffix.lower() not in IMAGE_SUFFIXES:  # a link like /annotation/images/7?sig=...
                name += ".png" if body[:4] == b"\x89PNG" else ".jpg"
            path = Path(cache) / f"{tid}-{name}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        if path is None:
            report.warn(f"task {tid}", f"image {url!r} not found (no cloud id, not under --images, no server to "
                        "fetch it from): left out")
            continue
        rects = [r for r in ann.get("result") or [] if r.get("type") == "rectanglelabels"]
        if rects:
            width, height = float(rects[0]["original_width"]), float(rects[0]["original_height"])
        else:
            width, height = probe_image(path)
        v = [r["value"] for r in rects]
        xyxy = percent_to_xyxy([a["x"] for a in v], [a["y"] for a in v], [a["width"] for a in v],
                               [a["height"] for a in v], [a.get("rotation", 0) for a in v], width, height)
        labels = []
        for a in v:
            names = a.get("rectanglelabels") or []
            if len(names) != 1:
                report.warn(f"task {tid}", f"a box with labels {names}: taken as {names[:1]}")
            labels.append(names[0] if names else "")
        keep = np.array([bool(n) for n in labels], bool)
        found.append((path, round(width), round(height), xyxy[keep], [n for n in labels if n]))
    names = unique_names([f[0] for f in found], Path(images) if images is not None else Path("/"))
    for (path, w, h, xyxy, labels), name in zip(found, names, strict=True):
        yield Sample(path, name, w, h, xyxy, labels)


def image_fetcher(server: str, token: str):
    """A task's photo by its URL: relative ones from the Label Studio server with the token,
    absolute ones elsewhere (the cloud's signed links) without it: the token goes to Label Studio
    only."""
    import httpx

    def fetch(url: str) -> bytes:
        full = urljoin(server.rstrip("/") + "/", url)
        same = urlparse(full).netloc == urlparse(server).netloc
        r = httpx.get(full, headers={"Authorization": f"Token {token}"} if same else {}, timeout=60)
        r.raise_for_status()
        return r.content

    return fetch
