"""Label Studio's side of the cloud: the ML-backend protocol (`/ml/health`, `/ml/setup`,
`/ml/predict`, `/ml/webhook`), behind the basic auth Label Studio is configured with
(`PLI_ML_USER`, `PLI_ML_PASSWORD`), and the task images behind signed links."""

from __future__ import annotations

import secrets
from pathlib import Path

import cv2
import numpy as np
from fastapi import APIRouter, Depends, Header, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from sqlalchemy.orm import Session

from annotation import backend
from cloud import annotations
from cloud.api.deps import ERRORS, db
from cloud.jobs import enqueue
from cloud.label_studio import preannotator
from cloud.models import Alert, Image
from cloud.photos import boxed_crop, boxed_photo
from cloud.settings import secret, settings
from cloud.storage import store
from edge.tiled import detect

router = APIRouter(tags=["annotation"], responses=ERRORS)
_basic = HTTPBasic(auto_error=False)


def label_studio(credentials: HTTPBasicCredentials | None = Depends(_basic)) -> str:
    """Label Studio, as its ML backend settings authenticate it; nothing anonymous."""
    password = secret(settings().ml_password)
    user = settings().ml_user
    if not password:  # no credentials can be right: the backend is off
        raise HTTPException(401, "the ML backend is off: PLI_ML_PASSWORD is not set")
    if credentials is None or not (secrets.compare_digest(credentials.username.encode(), user.encode())
                                   and secrets.compare_digest(credentials.password.encode(), password.encode())):
        raise HTTPException(401, "Label Studio's basic auth is required", headers={"WWW-Authenticate": "Basic"})
    return user


@router.get("/ml/health", summary="Label Studio's ML backend: alive")
def ml_health(_: str = Depends(label_studio)) -> dict:
    return {"status": "UP", "model_class": "pli-detector"}


@router.post("/ml/setup", summary="Label Studio's ML backend: a project connects")
def ml_setup(body: dict, _: str = Depends(label_studio)) -> dict:
    return {"model_version": preannotator()[1]}


def _load(session: Session):
    def load(task: dict) -> np.ndarray | None:
        image_id = (task.get("data") or {}).get("pli_image_id")
        if image_id is None:
            return None
        row = session.get(Image, int(image_id))
        if row is None or row.key is None:
            return None
        return cv2.imdecode(np.frombuffer(store().read(row.key), np.uint8), cv2.IMREAD_COLOR)

    return load


@router.post("/ml/predict", summary="Label Studio's ML backend: boxes for tasks")
def ml_predict(body: dict, session: Session = Depends(db), _: str = Depends(label_studio)) -> dict:
    tasks = body.get("tasks")
    if not isinstance(tasks, list):
        raise HTTPException(422, "expected {'tasks': [...]}")
    detector, version = preannotator()
    return {"results": backend.predict(tasks, _load(session), lambda im: detect(detector, im, "auto"), version)}


def _record(session: Session, body: dict) -> dict:
    action = str(body.get("action", ""))[:64]
    new = annotations.from_webhook(session, body) if action.startswith("ANNOTATION") and "DELETED" not in action else 0
    session.commit()
    job = enqueue("annotations") if new else None  # applied by a worker, never inside the request
    return {"action": action, "recorded": new, "job": job}


@router.post("/ml/webhook", summary="Label Studio's ML backend: annotation events (recorded and queued)")
def ml_webhook(body: dict, session: Session = Depends(db), _: str = Depends(label_studio)) -> dict:
    return _record(session, body)


def webhook_caller(x_pli_webhook: str | None = Header(None, max_length=256)) -> None:
    """Label Studio's project webhook, by the header it is configured to send (`X-PLI-Webhook`)."""
    hook = secret(settings().ls_webhook_secret)
    if not hook or x_pli_webhook is None or not secrets.compare_digest(x_pli_webhook.encode(), hook.encode()):
        raise HTTPException(401, "Label Studio's webhook header is required")


@router.post("/annotation/webhook", summary="Label Studio's webhook: annotations (recorded and queued)")
def ls_webhook(body: dict, session: Session = Depends(db), _: None = Depends(webhook_caller)) -> dict:
    return _record(session, body)


def _signed(subject: int | str, exp: int, sig: str) -> None:
    try:
        ok = bool(sig) and backend.verify(subject, exp, sig)
    except KeyError:  # no link can be valid
        raise HTTPException(403, "task images are off: PLI_ANNOTATION_SECRET is not set") from None
    if not ok:
        raise HTTPException(403, "a signed, unexpired link is required")


_CORS = {"Cache-Control": "private, max-age=3600", "Access-Control-Allow-Origin": "*"}


def _photo_of(session: Session, row: Alert) -> bytes | None:
    image = session.get(Image, row.image_id) if row.image_id else None
    if image is None or image.key is None or not row.box or len(row.box) != 4:
        return None
    return store().read(image.key)


@router.get("/annotation/crops/{alert_id}", summary="a review task's crop (the box drawn), behind a signed link",
            response_class=Response)
def task_crop(alert_id: str, exp: int = Query(0), sig: str = Query("", max_length=64),
              session: Session = Depends(db)) -> Response:
    """Cut from the uploaded photo around the alert's box, the box drawn; before the photo is
    uploaded, the drone's thumbnail."""
    _signed(f"crop/{alert_id}", exp, sig)
    row = session.get(Alert, alert_id)
    if row is None:
        raise HTTPException(404, f"no crop for alert {alert_id}")
    photo = _photo_of(session, row)
    crop = boxed_crop(photo, row.box) if photo is not None else None
    if crop is None and not row.thumbnail:
        raise HTTPException(404, f"no crop for alert {alert_id}")
    return Response(crop or row.thumbnail, media_type="image/jpeg", headers=_CORS)


@router.get("/annotation/alerts/{alert_id}/photo", summary="a review task's photo with the alert's box drawn, "
            "behind a signed link", response_class=Response)
def task_alert_photo(alert_id: str, exp: int = Query(0), sig: str = Query("", max_length=64),
                     session: Session = Depends(db)) -> Response:
    _signed(f"photo/{alert_id}", exp, sig)
    row = session.get(Alert, alert_id)
    photo = _photo_of(session, row) if row is not None else None
    drawn = boxed_photo(photo, row.box) if photo is not None else None
    if drawn is None:
        raise HTTPException(404, f"no photo with a box for alert {alert_id}")
    return Response(drawn, media_type="image/jpeg", headers=_CORS)


@router.get("/annotation/images/{image_id}", summary="a task's photo, behind a signed link",
            response_class=Response)
def task_image(image_id: int = PathParam(ge=1, le=2**31 - 1), exp: int = Query(0, ge=0, le=2**62),
               sig: str = Query("", max_length=64), session: Session = Depends(db)) -> Response:
    _signed(image_id, exp, sig)
    row = session.get(Image, image_id)
    if row is None or row.key is None:
        raise HTTPException(404, f"no stored image {image_id}")
    suffix = Path(row.name).suffix.lower()
    # Label Studio's page loads the photo cross-origin (crossorigin="anonymous"): the signed link is
    # the credential, so any origin may read what it names, and nothing else.
    return Response(store().read(row.key), media_type="image/png" if suffix == ".png" else "image/jpeg",
                    headers=_CORS)
