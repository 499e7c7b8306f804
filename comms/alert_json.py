"""The JSON form of an alert, for MQTT (4G) and the cloud API. Versioned by `schema`.

Over 4G there is room for a small JPEG thumbnail of the fault's crop (base64) and the whole
provenance (source frame and its time, pixel box, model and class-list versions, position
source); over BeiDou the binary form (alert_pack.py) carries the same alert id and what fits.
`pli.alert/2` added the epoch to the id and the provenance fields.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

import numpy as np

from comms.alert import Alert, alert_id
from comms.classes import Severity

SCHEMA = "pli.alert/2"
THUMB_SIDE = 160  # px, long side
THUMB_QUALITY = 70


def thumbnail(jpeg_path: str, side: int = THUMB_SIDE, quality: int = THUMB_QUALITY) -> bytes | None:
    """A small JPEG of a crop file (a few kB), or None when the crop cannot be read."""
    import cv2

    image = cv2.imread(jpeg_path, cv2.IMREAD_COLOR)
    return None if image is None else thumbnail_of(image, side, quality)


def thumbnail_of(image: np.ndarray, side: int = THUMB_SIDE, quality: int = THUMB_QUALITY) -> bytes | None:
    """A small JPEG of a crop already in memory (BGR), or None when it cannot be encoded."""
    import cv2

    scale = side / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return np.asarray(buf).tobytes() if ok else None


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat().replace("+00:00", "Z")


def _time(text: Any) -> datetime | None:
    return None if text is None else datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def to_json(alert: Alert, thumb: bytes | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": SCHEMA, "id": alert.id, "drone_id": alert.drone_id, "epoch": alert.epoch, "seq": alert.seq,
        "flight_id": alert.flight_id, "time": _iso(alert.time),
        "lat": alert.lat, "lon": alert.lon, "alt": alert.alt, "class": alert.fault_class,
        "confidence": alert.confidence, "severity": alert.severity.name.lower(),
        "tower_id": alert.tower_id, "position_source": alert.position_source,
        "class_list_version": alert.class_list_version, "model_version": alert.model_version,
        "source_frame": alert.source_frame, "frame_time": _iso(alert.frame_time),
        "box": list(alert.box) if alert.box is not None else None,
        "flags": ["time_restamped"] if alert.time_restamped else [],
    }
    if alert.crop_path:  # the drone's own file: for its operators, not for the cloud
        doc["crop"] = alert.crop_path
    if thumb:
        doc["thumbnail_jpeg_b64"] = base64.b64encode(thumb).decode("ascii")
    return doc


def dumps(alert: Alert, thumb: bytes | None = None) -> bytes:
    return json.dumps(to_json(alert, thumb), separators=(",", ":")).encode()


def from_json(doc: dict[str, Any]) -> tuple[Alert, bytes | None]:
    """Validate and rebuild; raises ValueError naming the first problem."""
    if not isinstance(doc, dict):
        raise ValueError("alert JSON must be an object")
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"unsupported alert schema {doc.get('schema')!r} (expected {SCHEMA})")
    try:
        flags = doc.get("flags") or []
        if not isinstance(flags, list):
            raise ValueError("flags must be a list")
        box = doc.get("box")
        version = doc.get("class_list_version")
        alert = Alert(str(doc["drone_id"]), int(doc["seq"]), str(doc.get("flight_id", "")), _time(doc["time"]),
                      float(doc["lat"]), float(doc["lon"]), float(doc.get("alt", 0.0)), str(doc["class"]),
                      float(doc["confidence"]), Severity.parse(str(doc["severity"])), tower_id=doc.get("tower_id"),
                      position_source=str(doc.get("position_source", "drone")), crop_path=doc.get("crop"),
                      epoch=int(doc["epoch"]), class_list_version=int(version) if version is not None else None,
                      model_version=doc.get("model_version"), source_frame=doc.get("source_frame"),
                      frame_time=_time(doc.get("frame_time")),
                      box=tuple(float(v) for v in box) if box is not None else None,
                      time_restamped="time_restamped" in flags)
    except KeyError as exc:
        raise ValueError(f"alert JSON lacks field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"alert JSON: {exc}") from None
    if doc.get("id") not in (None, alert_id(alert.drone_id, alert.epoch, alert.seq)):
        raise ValueError(f"alert JSON: id {doc['id']!r} disagrees with drone_id, epoch and seq")
    thumb = doc.get("thumbnail_jpeg_b64")
    try:
        return alert, base64.b64decode(thumb, validate=True) if thumb else None
    except ValueError:
        raise ValueError("alert JSON: thumbnail is not valid base64") from None


def loads(data: bytes | str) -> tuple[Alert, bytes | None]:
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"alert JSON does not parse: {exc}") from None
    return from_json(doc)
