"""What the cloud answers Label Studio as its ML backend (`/ml/...`, cloud/api/routes/annotation.py),
and the image links its tasks carry.

Predictions come from the model the registry names for pre-annotation, as rectangles in
Label Studio's percent units with a score per box and the model's version, so an operator
opening a task sees the model's boxes. Task images are the cloud's own photos behind links
signed with `PLI_ANNOTATION_SECRET` (HMAC, with an expiry): Label Studio's pages load them in
the operator's browser, which holds no cloud token; a link without a valid signature is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
import uuid
from collections.abc import Callable

import numpy as np

from annotation.label_config import FROM_NAME, TO_NAME
from edge.detections import Detections
from training.importers.labelstudio import percent_to_xyxy, xyxy_to_percent

LINK_TTL_S = 30 * 24 * 3600  # tasks wait in a queue for days


def _secret() -> bytes:
    secret = os.environ.get("PLI_ANNOTATION_SECRET")
    if not secret:
        raise KeyError("PLI_ANNOTATION_SECRET")
    return secret.encode()


def _subject(subject: int | str) -> str:
    return f"image/{subject}" if isinstance(subject, int) else str(subject)


def sign(subject: int | str, expires: int | None = None) -> str:
    """The query string that lets Label Studio (and the operator's browser) read one photo (an
    image id) or one alert's crop (`crop/<alert id>`)."""
    exp = int(expires if expires is not None else time.time() + LINK_TTL_S)
    sig = hmac.new(_secret(), f"{_subject(subject)}:{exp}".encode(), hashlib.sha256).hexdigest()
    return f"exp={exp}&sig={sig}"


def verify(subject: int | str, exp: int, sig: str, now: float | None = None) -> bool:
    if exp < (now if now is not None else time.time()):
        return False
    want = hmac.new(_secret(), f"{_subject(subject)}:{exp}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, sig)


def image_url(base_url: str, image_id: int) -> str:
    return f"{base_url.rstrip('/')}/annotation/images/{image_id}?{sign(image_id)}"


TITLES = {
    None: "Photo {id}: box every insulator and every fault",
    "missed_fault": "MISSED FAULT? Photo {id}: the model raised nothing here, box every fault you see",
    "pseudo_label": "Photo {id}: check the model's boxes (weak labels): keep, move, relabel or delete",
}


def image_task(base_url: str, image_id: int, **data) -> dict:
    """A Label Studio task for one of the cloud's photos (its id kept for the way back), titled
    with what to do. `kind="missed_fault"` marks a photo where the model raised nothing but
    operators should look: its title says so and `data.kind` keeps it for the way back."""
    title = data.pop("title", None) or TITLES.get(data.get("kind"), TITLES[None]).format(id=image_id)
    return {"data": {"image": image_url(base_url, image_id), "pli_image_id": image_id, "title": title, **data}}


def review_task(base_url: str, alert: dict) -> dict:
    """A review-project task for an alert: a crop and its photo, both with the alert's box drawn
    by the cloud, and the verdict to give. `alert`: id, fault_class, confidence, model_version,
    image_id (None when the photo is not uploaded), and optionally severity and tower."""
    aid = str(alert["id"])
    crop = f"{base_url.rstrip('/')}/annotation/crops/{aid}?{sign(f'crop/{aid}')}"
    photo = f"{base_url.rstrip('/')}/annotation/alerts/{aid}/photo?{sign(f'photo/{aid}')}"
    where = f" at tower {alert['tower']}" if alert.get("tower") else ""
    title = (f"Alert {alert['fault_class']} ({alert.get('severity') or '?'}){where}, confidence "
             f"{float(alert['confidence']):.2f}, model {alert.get('model_version') or '?'} · {aid}")
    return {"data": {"title": title, "crop": crop, "image": photo if alert.get("image_id") else crop,
                     "pli_alert_id": aid, **({"pli_image_id": alert["image_id"]} if alert.get("image_id") else {})}}


def prediction(dets: Detections, width: int, height: int, model_version: str) -> dict:
    """Detections as one Label Studio prediction: a rectangle per box, its score, the model."""
    pct = xyxy_to_percent(dets.xyxy, width, height)
    result = [{"id": uuid.uuid4().hex[:10], "type": "rectanglelabels", "from_name": FROM_NAME, "to_name": TO_NAME,
               "original_width": int(width), "original_height": int(height), "image_rotation": 0,
               "score": round(float(s), 4),
               "value": {"x": float(p[0]), "y": float(p[1]), "width": float(p[2]), "height": float(p[3]),
                         "rotation": 0, "rectanglelabels": [dets.class_names[int(c)]]}}
              for p, s, c in zip(pct, dets.confidence, dets.class_id, strict=True)]
    score = float(np.mean(dets.confidence)) if len(dets) else 0.0
    return {"result": result, "score": round(score, 4), "model_version": model_version}


def predict(tasks: list[dict], load_image: Callable[[dict], np.ndarray | None],
            detect: Callable[[np.ndarray], Detections], model_version: str) -> list[dict]:
    """One prediction per task, in order; a task whose image cannot be read gets an empty one
    (Label Studio expects a result per task)."""
    out = []
    for task in tasks:
        image = load_image(task)
        if image is None:
            out.append({"result": [], "score": 0.0, "model_version": model_version})
            continue
        h, w = image.shape[:2]
        out.append(prediction(detect(image), w, h, model_version))
    return out


def rectangles(result: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """A prediction's or annotation's rectangles back in pixels: (N, 4) xyxy and their class
    names (what an operator opening the task sees); the inverse of `prediction`."""
    rects = [r for r in result if r.get("type") == "rectanglelabels" and (r.get("value") or {}).get("rectanglelabels")]
    if not rects:
        return np.zeros((0, 4)), np.array([], dtype=object)
    v = {k: np.array([float(r["value"].get(k, 0.0)) for r in rects]) for k in ("x", "y", "width", "height", "rotation")}
    xyxy = percent_to_xyxy(v["x"], v["y"], v["width"], v["height"], v["rotation"],
                           float(rects[0]["original_width"]), float(rects[0]["original_height"]))
    return xyxy, np.array([r["value"]["rectanglelabels"][0] for r in rects], dtype=object)


def newest_prediction(predictions: list[dict]) -> list[dict]:
    """The result of a task's newest prediction (Label Studio keeps every one it was given)."""
    return max(predictions, key=lambda p: p["id"])["result"] if predictions else []
