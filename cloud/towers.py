"""The asset register: lines and their towers, imported from CSV or KML; nearest tower and span.

CSV: a header with `line`, `tower`, `lat`, `lon` (and optionally `order`); KML: Placemarks with a
Point, named `<line>/<tower>` or with `line`/`tower` in their ExtendedData, in line order.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.models import Line, Tower

MAX_TOWER_DISTANCE_M = 300.0  # farther than this from every tower: no tower assigned
_DEG_M = 111_320.0


@dataclass(frozen=True)
class TowerRow:
    line: str
    tower: str
    lat: float
    lon: float
    order: int | None = None


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance: exact enough within a span (metres to a few hundred)."""
    dy = (lat2 - lat1) * _DEG_M
    dx = (lon2 - lon1) * _DEG_M * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(dx, dy)


def read_csv(text: str, source: str = "<csv>") -> list[TowerRow]:
    rows = []
    reader = csv.DictReader(io.StringIO(text))
    missing = {"line", "tower", "lat", "lon"} - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"{source}: the header lacks {sorted(missing)} (needs line, tower, lat, lon)")
    for n, r in enumerate(reader, start=2):
        try:
            lat, lon = float(r["lat"]), float(r["lon"])
            order = int(r["order"]) if r.get("order") not in (None, "") else None
        except ValueError:
            raise ValueError(f"{source}:{n}: lat, lon (and order) must be numbers") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180) or not r["line"] or not r["tower"]:
            raise ValueError(f"{source}:{n}: a tower needs a line, an id and a position on the globe")
        rows.append(TowerRow(r["line"].strip(), r["tower"].strip(), lat, lon, order))
    return rows


def read_kml(data: bytes, source: str = "<kml>") -> list[TowerRow]:
    from fastkml import kml

    try:
        doc = kml.KML.from_string(data)
    except Exception as exc:  # fastkml and lxml raise their own types for broken files
        raise ValueError(f"{source}: not KML ({type(exc).__name__}: {exc})") from None
    rows = []

    def walk(node) -> None:
        for f in getattr(node, "features", None) or []:
            if getattr(f, "geometry", None) is not None and f.geometry.geom_type == "Point":
                extra = {d.name: d.value for d in (getattr(f.extended_data, "elements", None) or [])
                         if hasattr(d, "name")}
                line, _, tower = (f.name or "").rpartition("/")
                line, tower = extra.get("line", line), extra.get("tower", tower)
                if not line or not tower:
                    raise ValueError(f"{source}: placemark {f.name!r} names no line/tower")
                rows.append(TowerRow(str(line), str(tower), f.geometry.y, f.geometry.x))
            walk(f)

    walk(doc)
    return rows


def read_register(path: Path) -> list[TowerRow]:
    path = Path(path)
    if path.suffix.lower() == ".kml":
        return read_kml(path.read_bytes(), str(path))
    if path.suffix.lower() == ".csv":
        return read_csv(path.read_text(encoding="utf-8-sig"), str(path))
    raise ValueError(f"{path}: a tower register is a .csv or .kml file")


def import_towers(session: Session, rows: list[TowerRow]) -> int:
    """Insert or move towers (idempotent by line and tower id); returns how many were written."""
    per_line: dict[str, int] = {}
    session.info.pop("any_towers", None)
    for row in rows:
        if session.get(Line, row.line) is None:
            session.add(Line(id=row.line, name=row.line))
            session.flush()
        order = row.order if row.order is not None else per_line.get(row.line, 0)
        per_line[row.line] = order + 1
        tower = session.scalar(select(Tower).where(Tower.line_id == row.line, Tower.tower_id == row.tower))
        if tower is None:
            session.add(Tower(line_id=row.line, tower_id=row.tower, order=order, lat=row.lat, lon=row.lon))
        else:
            tower.order, tower.lat, tower.lon = order, row.lat, row.lon
    return len(rows)


def any_towers(session: Session) -> bool:
    """Whether the register holds any tower (asked once per transaction: most alerts then skip the lookup)."""
    if "any_towers" not in session.info:
        session.info["any_towers"] = session.scalar(select(Tower.id).limit(1)) is not None
    return session.info["any_towers"]


def _box(lat: float, radius_m: float) -> tuple[float, float]:
    d = radius_m / _DEG_M
    return d, d / max(0.05, math.cos(math.radians(lat)))


def _pick(lat: float, lon: float, near: list[Tower], neighbours) -> tuple[Tower, str | None] | None:
    """The nearest of `near` within MAX_TOWER_DISTANCE_M, and the span towards the nearer of its
    neighbours along the line (`neighbours(tower)` gives them)."""
    if not near:
        return None
    best = min(near, key=lambda t: distance_m(lat, lon, t.lat, t.lon))
    if distance_m(lat, lon, best.lat, best.lon) > MAX_TOWER_DISTANCE_M:
        return None
    around = neighbours(best)
    if not around:
        return best, None
    other = min(around, key=lambda t: distance_m(lat, lon, t.lat, t.lon))
    a, b = sorted((best, other), key=lambda t: t.order)
    return best, f"{a.tower_id}-{b.tower_id}"


def nearest(session: Session, lat: float, lon: float) -> tuple[Tower, str | None] | None:
    """The nearest tower within MAX_TOWER_DISTANCE_M and the span (`T03-T04`) the point lies in."""
    d, dl = _box(lat, MAX_TOWER_DISTANCE_M)
    near = session.scalars(select(Tower).where(Tower.lat.between(lat - d, lat + d),
                                               Tower.lon.between(lon - dl, lon + dl))).all()
    return _pick(lat, lon, list(near), lambda best: session.scalars(select(Tower).where(
        Tower.line_id == best.line_id, Tower.order.in_([best.order - 1, best.order + 1]))).all())


SPAN_PAD_M = 2000.0  # towers this far around a batch are loaded with it: most spans are shorter


def place_many(session: Session, points: list[tuple[float, float]]) -> list[tuple[Tower, str | None] | None]:
    """`nearest` for many points: the towers of their area in one query; a neighbour beyond it
    (a line's end, a span longer than SPAN_PAD_M) is asked for as `nearest` does, once per batch."""
    if not points or not any_towers(session):
        return [None] * len(points)
    lats, lons = [p[0] for p in points], [p[1] for p in points]
    d, dl = _box(max(abs(v) for v in lats), MAX_TOWER_DISTANCE_M + SPAN_PAD_M)
    loaded = list(session.scalars(select(Tower).where(Tower.lat.between(min(lats) - d, max(lats) + d),
                                                      Tower.lon.between(min(lons) - dl, max(lons) + dl))))
    by_place: dict[tuple[str, int], Tower | None] = {(t.line_id, t.order): t for t in loaded}

    def neighbours(best: Tower) -> list[Tower]:
        for order in (best.order - 1, best.order + 1):
            if (best.line_id, order) not in by_place:
                by_place[(best.line_id, order)] = session.scalar(select(Tower).where(
                    Tower.line_id == best.line_id, Tower.order == order))
        return [t for o in (best.order - 1, best.order + 1) if (t := by_place[(best.line_id, o)]) is not None]

    out = []
    for lat, lon in points:
        rd, rdl = _box(lat, MAX_TOWER_DISTANCE_M)
        out.append(_pick(lat, lon, [t for t in loaded if abs(t.lat - lat) <= rd and abs(t.lon - lon) <= rdl],
                         neighbours))
    return out
