"""A stored alert as the API, the webhooks and the tests show it: the wire JSON
(comms/alert_json.py, less `schema`) plus what the cloud adds. Its own module, so that storing
alerts (cloud/alerts.py) and notifying about them (cloud/notify.py) need not import each other."""

from __future__ import annotations

import base64
from datetime import datetime

from cloud.models import Alert
from comms.alert import FLAGS


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat().replace("+00:00", "Z")


API_COLUMNS = tuple(c for c in Alert.__table__.c if c.name != "thumbnail")


def api_doc(v) -> dict:
    """The API's form of a stored alert from its columns (a row mapping or an Alert): the wire JSON
    (comms/alert_json.py, less `schema`) plus what the cloud adds."""
    get = v.__getitem__ if hasattr(v, "__getitem__") else lambda k: getattr(v, k)
    doc = {"id": get("id"), "drone_id": get("drone_id"), "epoch": get("epoch"), "seq": get("seq"),
           "flight_id": get("flight_id") or "", "time": _iso(get("time")), "lat": get("lat"), "lon": get("lon"),
           "alt": get("alt"), "class": get("fault_class"), "confidence": get("confidence"),
           "severity": get("severity"), "tower_id": get("tower_id"), "position_source": get("position_source"),
           "position_error_m": get("position_error_m"),
           "class_list_version": get("class_list_version"), "model_version": get("model_version"),
           "source_frame": get("source_frame"), "frame_time": _iso(get("frame_time")), "box": get("box"),
           "flags": [f for f in FLAGS if f in (get("flags") or [])]}
    if get("beidou_refused"):
        doc["beidou_refused"] = get("beidou_refused")
    doc.update({"status": get("status"), "line_id": get("line_id"), "span": get("span"), "via": get("via"),
                "conflict": get("conflict"), "fault_id": get("fault_id"),
                "received_at": get("received_at").isoformat()})
    return doc


def alert_json_of(row: Alert, with_thumbnail: bool = False) -> dict:
    doc = api_doc(row)
    if with_thumbnail and row.thumbnail:
        doc["thumbnail_jpeg_b64"] = base64.b64encode(row.thumbnail).decode()
    return doc
