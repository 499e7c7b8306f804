"""The cloud's side of Label Studio: the one place its address and token are read
(`PLI_LS_URL`, `PLI_LS_TOKEN`), projects wired to the cloud, tasks for the cloud's photos
(pre-annotated by the registry's model), review tasks for alerts, and a project's export as a
dataset. `annotation/` keeps what knows nothing of the cloud: the REST client, the server, the
ML-backend protocol and the label configs."""

from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path

from sqlalchemy import select

from annotation import backend
from annotation.client import LabelStudio
from annotation.label_config import detection_config, review_config
from cloud.db import session_scope
from cloud.models import Alert, Image
from cloud.paths import DEFAULT_MODEL
from cloud.registry.rollout import preannotation_model
from cloud.settings import secret, settings
from cloud.storage import store
from comms.classes import ClassList, class_list_for, load_class_list
from edge.detector import Detector
from edge.runtime import model_version
from training.data_import import import_dataset
from training.importers.labelstudio import image_fetcher

URL_ENV, TOKEN_ENV = "PLI_LS_URL", "PLI_LS_TOKEN"


def configured() -> bool:
    return bool(settings().ls_url and settings().ls_token)


def client() -> LabelStudio:
    """A client for the configured server (close it); a clear error when none is configured."""
    if not configured():
        raise ValueError(f"set {URL_ENV} and {TOKEN_ENV} (Label Studio's address and API token)")
    return LabelStudio(settings().ls_url, secret(settings().ls_token))


def check_tasks_deliverable(cloud_url: str | None) -> None:
    """Fail before the work, not after it, when tasks could not be delivered."""
    if not cloud_url or not configured():
        raise ValueError(f"tasks need the cloud's URL and {URL_ENV}, {TOKEN_ENV}")


def put_tasks(project: int, cloud_url: str | None, tasks: list[dict]) -> int:
    """Put tasks in a project (the one way jobs reach Label Studio); how many were made."""
    check_tasks_deliverable(cloud_url)
    with client() as ls:
        return len(ls.import_tasks(project, tasks)) if tasks else 0


def labelling_classes() -> ClassList:
    """The labels a project offers: the class list of the model that pre-annotates (so every class
    it predicts, flashover among them, can be kept or corrected), else the configured list."""
    detector, _ = preannotator()
    try:
        return class_list_for(list(detector.names))
    except ValueError:
        return load_class_list()


def wire_project(ls: LabelStudio, title: str, cloud_url: str, review: bool = False) -> int:
    """A project from the pre-annotating model's class list, pre-annotated by the cloud, its
    annotations sent back."""
    classes = labelling_classes()
    config = review_config(classes) if review else detection_config(classes)
    project = ls.create_project(title, config, evaluate_predictions_automatically=not review)
    password, hook = secret(settings().ml_password), secret(settings().ls_webhook_secret)
    if not review:
        if not password:
            raise ValueError("set PLI_ML_PASSWORD: the cloud's ML backend takes nothing anonymous")
        ls.add_ml_backend(project, f"{cloud_url.rstrip('/')}/ml", "pli cloud",
                          settings().ml_user, password)
    if not hook:
        raise ValueError("set PLI_LS_WEBHOOK_SECRET: the cloud's webhook takes nothing anonymous")
    ls.add_webhook(project, f"{cloud_url.rstrip('/')}/annotation/webhook", {"X-PLI-Webhook": hook},
                   ["ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED"])
    return project


@lru_cache(maxsize=2)
def _preannotator(path: str):
    return Detector(Path(path)), model_version(Path(path))


def preannotator():
    """The model that pre-annotates, and its version: `PLI_PREANNOTATE_MODEL`, else the release
    the registry names (`pli cloud release preannotate VERSION`), else the shipped default."""
    path = settings().preannotate_model or preannotation_model() or DEFAULT_MODEL
    return _preannotator(str(path))


def cloud_images(cache: Path):
    """The cloud's photos by id, as files (copied out of the object store once)."""

    def resolve(image_id: str) -> Path | None:
        with session_scope() as s:
            row = s.get(Image, int(image_id))
            key, name = (row.key, row.name) if row is not None else (None, "")
        if key is None:
            return None
        dest = Path(cache) / f"{image_id}-{Path(name).name}"
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(store().read(key))
        return dest

    return resolve


def photo_tasks(image_ids: list[int], cloud_url: str, predictions: bool = False,
                missed_fault: bool = False) -> list[dict]:
    """Tasks for the cloud's photos; with `predictions`, the pre-annotation model's boxes on them."""
    import cv2
    import numpy as np

    extra = {"kind": "missed_fault"} if missed_fault else {}
    tasks = [backend.image_task(cloud_url, i, **extra) for i in image_ids]
    if predictions:
        from edge.tiled import detect

        detector, version = preannotator()
        with session_scope() as s:
            keys = {i: (s.get(Image, i).key if s.get(Image, i) is not None else None) for i in image_ids}
        for task, i in zip(tasks, image_ids, strict=True):
            if keys[i] is None:
                raise ValueError(f"image {i} is not in the cloud's store")
            image = cv2.imdecode(np.frombuffer(store().read(keys[i]), np.uint8), cv2.IMREAD_COLOR)
            h, w = image.shape[:2]
            task["predictions"] = [backend.prediction(detect(detector, image, "auto"), w, h, version)]
    return tasks


def queue_reviews(ls: LabelStudio, project: int, cloud_url: str, flight: str | None = None) -> list[int]:
    """Review tasks for the alerts nobody reviewed yet (their crop and photo); an alert already
    in the project is not tasked twice. Returns the new tasks' ids."""
    queued = {(t.get("data") or {}).get("pli_alert_id") for t in ls.export(project, all_tasks=True)}
    with session_scope() as s:
        q = select(Alert).where(Alert.status == "new")
        if flight:
            q = q.where(Alert.flight_id == flight)
        alerts = [{"id": a.id, "fault_class": a.fault_class, "confidence": a.confidence, "severity": a.severity,
                   "tower": a.tower_id, "model_version": a.model_version, "image_id": a.image_id}
                  for a in s.scalars(q.order_by(Alert.time)) if a.id not in queued]
    return ls.import_tasks(project, [backend.review_task(cloud_url, a) for a in alerts])


def export_dataset(project: int, out: Path, ratios: tuple[float, ...], seed: int = 0):
    """A project's annotations straight from the server into a YOLO dataset: the cloud's photos
    from its object store by id, others fetched from Label Studio with the token."""

    with client() as ls:
        tasks = ls.export(project)
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / f"project-{project}.json"
        export.write_text(json.dumps(tasks))
        options = {"resolve_id": cloud_images(out / "photos"), "cache": out / "fetched",
                   "fetch": image_fetcher(ls.url, secret(settings().ls_token))}
        return import_dataset(export, "labelstudio", out, ratios=ratios, seed=seed, importer_options=options)
