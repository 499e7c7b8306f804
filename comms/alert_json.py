"""The JSON form of an alert, for MQTT (4G) and the cloud API. Versioned by `schema`.

Over 4G there is room for a small JPEG thumbnail of the fault's crop (base64) and the whole
provenance (source frame and its time, pixel box, model and class-list versions, position
source); over BeiDou the binary form (alert_pack.py) carries the same alert id and what fits.
`pli.alert/2` added the epoch to the id and the provenance fields.
"""

from __future__ import annotations

import base64
import json
import math
import re
from datetime import datetime
from typing import Any

import numpy as np

from comms.alert import Alert, alert_id, flag_fields
from comms.classes import Severity

SCHEMA = "pli.alert/2"
THUMB_SIDE = 160  # px, long side
THUMB_QUALITY = 70
# What the wire allows (a drone never sends more; anything beyond is refused, never stored):
# (the cloud's columns are as wide: cloud/models.py)
MAX_TEXT = {"flight_id": 64, "tower_id": 32, "model_version": 128, "source_frame": 255, "crop": 512, "class": 32,
            "beidou_refused": 255}
FLIGHT_ID = re.compile(r"^[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,63}$")  # also a folder name: never "." or ".."
CLASS_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
ALT_RANGE = (-1000.0, 20000.0)  # metres: below the Dead Sea to far above any drone's ceiling
MAX_BOX = 100_000.0  # px: a box beyond any camera's frame is a corrupt one
MAX_THUMB_B64 = 64 * 1024  # a 160 px thumbnail is a few kB
MAX_FLAGS = 8


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
        "flags": alert.flags,
        "position_error_m": alert.position_error_m,
    }
    if alert.crop_path:  # the drone's own file: for its operators, not for the cloud
        doc["crop"] = alert.crop_path
    if thumb:
        doc["thumbnail_jpeg_b64"] = base64.b64encode(thumb).decode("ascii")
    return doc


def dumps(alert: Alert, thumb: bytes | None = None) -> bytes:
    return json.dumps(to_json(alert, thumb), separators=(",", ":")).encode()


def _finite(doc: dict[str, Any], name: str, default: Any = None) -> float:
    if name not in doc and default is None:
        raise KeyError(name)
    value = doc.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, not {value}")
    return float(value)


def _error(value: Any) -> float | None:
    return None if value is None else _finite({"position_error_m": value}, "position_error_m")


def check_fields(doc: dict[str, Any]) -> None:
    """The schema's limits, before anything is built or stored: every number finite and in range,
    every text of the wire's length, types as the schema says (a hostile or corrupt message is
    refused with the first problem, never half stored)."""
    for name in ("lat", "lon", "confidence"):
        _finite(doc, name)
    if not ALT_RANGE[0] <= _finite(doc, "alt", 0.0) <= ALT_RANGE[1]:
        raise ValueError(f"alt {doc.get('alt')} out of range {ALT_RANGE[0]:g}..{ALT_RANGE[1]:g} m")
    for name, limit in MAX_TEXT.items():
        value = doc.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be text, not {type(value).__name__}")
        if value is not None and len(value) > limit:
            raise ValueError(f"{name} is {len(value)} characters long (at most {limit})")
    if not CLASS_NAME.match(str(doc.get("class", ""))):
        raise ValueError(f"class {str(doc.get('class'))[:40]!r} is not a class name ([a-z][a-z0-9_]*)")
    flight = doc.get("flight_id")
    if flight and not FLIGHT_ID.match(flight):
        raise ValueError(f"flight_id {flight[:40]!r} must be 1-64 of [A-Za-z0-9_.:-], not starting with a dot")
    for name in ("drone_id", "time", "severity"):
        if name in doc and not isinstance(doc[name], str):
            raise ValueError(f"{name} must be text, not {type(doc[name]).__name__}")
    for name in ("position_source", "frame_time"):
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise ValueError(f"{name} must be text, not {type(doc[name]).__name__}")
    box = doc.get("box")
    if box is not None:
        if not isinstance(box, list) or len(box) != 4:
            raise ValueError("box must be a list of four numbers x1, y1, x2, y2")
        values = [_finite({"box": v}, "box") for v in box]
        if any(abs(v) > MAX_BOX for v in values):
            raise ValueError(f"box {values} lies beyond any frame (|coordinate| > {MAX_BOX:g} px)")
    flags = doc.get("flags")
    if flags is not None and (not isinstance(flags, list) or len(flags) > MAX_FLAGS
                              or not all(isinstance(f, str) and len(f) <= 32 for f in flags)):
        raise ValueError(f"flags must be a list of at most {MAX_FLAGS} short strings")
    thumb = doc.get("thumbnail_jpeg_b64")
    if thumb is not None and (not isinstance(thumb, str) or len(thumb) > MAX_THUMB_B64):
        raise ValueError(f"thumbnail_jpeg_b64 must be base64 text of at most {MAX_THUMB_B64} characters")


def from_json(doc: dict[str, Any]) -> tuple[Alert, bytes | None]:
    """Validate and rebuild; raises ValueError naming the first problem."""
    if not isinstance(doc, dict):
        raise ValueError("alert JSON must be an object")
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"unsupported alert schema {str(doc.get('schema'))[:40]!r} (expected {SCHEMA})")
    try:
        check_fields(doc)
        flags = doc.get("flags") or []
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
                      position_error_m=_error(doc.get("position_error_m")), **flag_fields(flags))
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
