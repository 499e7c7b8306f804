"""What the pages' maps show besides alerts: the towers and spans of the lines near a place, and
the basemap (a tile URL template, a local MBTiles file served here, or none, which the map says).

MBTiles is SQLite with the tiles in TMS rows (y counted from the south), served read-only; a
utility's own tiles stay on its network, no CDN is asked."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import closing
from itertools import pairwise

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.deps import db
from cloud.api.web.common import me
from cloud.models import Tower
from cloud.settings import settings

router = APIRouter(include_in_schema=False)
MARGIN = 0.01  # degrees (about 1 km) around what a map shows: the towers at its edges too
NO_BASEMAP = ("No basemap is configured: set PLI_TILE_URL to a tile URL template (…/{z}/{x}/{y}.png, e.g. the "
              "utility's own tile server) or PLI_TILE_FILE to a local MBTiles file.")


def basemap() -> dict:
    """The map's tiles for the page's script: {"url": ...} or {"url": None, "note": why there is none}."""
    s = settings()
    if s.tile_url:
        return {"url": s.tile_url}
    if s.tile_file is not None:
        return {"url": "/ui/tiles/{z}/{x}/{y}"}
    return {"url": None, "note": NO_BASEMAP}


def towers_near(session: Session, points: Iterable[Sequence[float]]) -> dict:
    """The towers within `MARGIN` of `[lat, lon]` points, and the spans between consecutive towers
    of each line (by their order along it)."""
    pts = [(p[0], p[1]) for p in points]
    if not pts:
        return {"towers": [], "spans": []}
    lats, lons = [p[0] for p in pts], [p[1] for p in pts]
    rows = session.scalars(select(Tower).where(
        Tower.lat.between(min(lats) - MARGIN, max(lats) + MARGIN),
        Tower.lon.between(min(lons) - MARGIN, max(lons) + MARGIN)).order_by(Tower.line_id, Tower.order))
    return lines_of(list(rows))


def lines_of(rows: list[Tower]) -> dict:
    by_line: dict[str, list[Tower]] = defaultdict(list)
    for t in rows:
        by_line[t.line_id].append(t)
    towers = [{"line": t.line_id, "tower": t.tower_id, "lat": t.lat, "lon": t.lon} for t in rows]
    spans = [{"line": line, "from": a.tower_id, "to": b.tower_id, "points": [[a.lat, a.lon], [b.lat, b.lon]]}
             for line, ts in by_line.items() for a, b in pairwise(ts) if b.order == a.order + 1]
    return {"towers": towers, "spans": spans}


@router.get("/ui/tiles/{z}/{x}/{y}")
def tile(request: Request, z: int = Path(ge=0, le=24), x: int = Path(ge=0), y: int = Path(ge=0),
         session: Session = Depends(db)) -> Response:
    """A basemap tile from `PLI_TILE_FILE` (MBTiles), for a logged-in operator."""
    if me(request, session) is None:
        return Response(status_code=401)
    path = settings().tile_file
    if path is None or x >= 2**z or y >= 2**z:
        return Response(status_code=404)
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        found = con.execute("SELECT tile_data FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
                            (z, x, 2**z - 1 - y)).fetchone()
        fmt = con.execute("SELECT value FROM metadata WHERE name='format'").fetchone()
    if found is None:
        return Response(status_code=404)
    kind = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}.get((fmt or ["png"])[0], "image/png")
    return Response(found[0], media_type=kind, headers={"Cache-Control": "private, max-age=86400"})
