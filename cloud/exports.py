"""Exports that GIS tools load: GeoJSON (RFC 7946: longitude first, WGS-84), KML, CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any
from xml.sax.saxutils import escape

FIELDS = ("id", "lat", "lon")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet takes for a formula (OWASP's list)


def _props(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in ("lat", "lon", "thumbnail_jpeg_b64")}


def geojson(items: Iterable[dict[str, Any]]) -> str:
    """A FeatureCollection of Points; coordinates [lon, lat] (and altitude when known)."""
    features = []
    for it in items:
        coords = [round(it["lon"], 8), round(it["lat"], 8)]
        if it.get("alt") is not None:
            coords.append(round(float(it["alt"]), 2))
        features.append({"type": "Feature", "id": it["id"], "geometry": {"type": "Point", "coordinates": coords},
                         "properties": _props(it)})
    return json.dumps({"type": "FeatureCollection", "features": features}, default=str)


def kml(items: Iterable[dict[str, Any]], name: str = "pli") -> str:
    """KML 2.2 Placemarks (lon,lat[,alt] order as KML wants), properties as ExtendedData."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>', '<kml xmlns="http://www.opengis.net/kml/2.2">',
           f"<Document><name>{escape(name)}</name>"]
    for it in items:
        data = "".join(f'<Data name="{escape(str(k))}"><value>{escape("" if v is None else str(v))}</value></Data>'
                       for k, v in _props(it).items() if not isinstance(v, list | dict))
        alt = f",{float(it['alt']):.2f}" if it.get("alt") is not None else ""
        out.append(f"<Placemark><name>{escape(str(it['id']))}</name><ExtendedData>{data}</ExtendedData>"
                   f"<Point><coordinates>{it['lon']:.8f},{it['lat']:.8f}{alt}</coordinates></Point></Placemark>")
    out.append("</Document></kml>")
    return "\n".join(out)


def cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: a string that would start a formula (`=HYPERLINK(...)`
    in an operator's note) gets a leading apostrophe; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_text(items: Iterable[dict[str, Any]]) -> str:
    """One row per item, id, lat, lon first; lists and objects as JSON; text that a spreadsheet
    would run as a formula neutralised (`cell`)."""
    rows = [dict(it) for it in items]
    for r in rows:
        r.pop("thumbnail_jpeg_b64", None)
    keys = list(FIELDS) + sorted({k for r in rows for k in r} - set(FIELDS))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: cell(json.dumps(v) if isinstance(v, list | dict) else ("" if v is None else v))
                    for k, v in r.items()})
    return buf.getvalue()


def response(items: Iterable[dict[str, Any]], fmt: str, name: str):
    """An HTTP response of `items` as GeoJSON, KML or CSV (what the export endpoints return)."""
    from fastapi.responses import PlainTextResponse, Response

    if fmt == "geojson":
        return Response(geojson(items), media_type="application/geo+json")
    if fmt == "kml":
        return Response(kml(items, name), media_type="application/vnd.google-earth.kml+xml")
    return PlainTextResponse(csv_text(items), media_type="text/csv")
