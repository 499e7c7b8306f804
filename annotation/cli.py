"""`pli annotate ...`: the Label Studio server, campaign projects wired to the cloud, and the
reconciliation poll. Label Studio's address and token come from `PLI_LS_URL`, `PLI_LS_TOKEN`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("annotate", help="Label Studio: server, projects, reconciliation",
                       description="The operators' annotation tool. Credentials from the environment: "
                       "PLI_LS_URL, PLI_LS_TOKEN (and PLI_LS_PASSWORD for the server's first boot).")
    asub = a.add_subparsers(dest="annotate_command", required=True,
                            metavar="{server,project,tasks,review,reconcile,export}")
    p = asub.add_parser("server", help="start Label Studio headless on loopback (until interrupted)")
    p.add_argument("--data-dir", type=Path, default=Path("pli-cloud/label-studio"))
    p.add_argument("--port", type=int, default=8081)
    p.set_defaults(func=_server)
    p = asub.add_parser("project", help="a campaign's project: the class list's rectangles, the cloud as ML "
                        "backend (PLI_ML_PASSWORD) and webhook (PLI_LS_WEBHOOK_SECRET)")
    p.add_argument("title")
    p.add_argument("--cloud-url", required=True, help="the cloud as Label Studio reaches it")
    p.add_argument("--review", action="store_true", help="a review project (alerts' verdicts) instead")
    p.set_defaults(func=_project)
    p = asub.add_parser("tasks", help="tasks for the cloud's photos (by image id), optionally with predictions",
                        description="One task per photo, pointing at the cloud behind a signed link. --predictions "
                        "computes the boxes here and imports them with the tasks, in batches (for large sets; "
                        "Label Studio's own 'retrieve predictions' times out past a minute). --missed-fault marks "
                        "photos where the model raised nothing but operators should look.")
    p.add_argument("--project", type=int, required=True)
    p.add_argument("--cloud-url", required=True)
    p.add_argument("--image", type=int, action="append", required=True, dest="images", help="image id (repeat)")
    p.add_argument("--predictions", action="store_true")
    p.add_argument("--missed-fault", action="store_true")
    p.add_argument("--batch", type=int, default=100)
    p.set_defaults(func=_tasks)
    p = asub.add_parser("review", help="review tasks for alerts not reviewed yet (their crop and photo)")
    p.add_argument("--project", type=int, required=True)
    p.add_argument("--cloud-url", required=True)
    p.add_argument("--flight", help="only this flight's alerts")
    p.set_defaults(func=_review)
    p = asub.add_parser("export", help="a project's annotations straight from the server into a YOLO dataset",
                        description="Photos the cloud made tasks of come from its object store by their id; others "
                        "are fetched from Label Studio with the token. Classes by name, boxes to the pixel.")
    p.add_argument("--project", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--split", default="0.8,0.2", help="train,val[,test] fractions (default 0.8,0.2)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_export)
    p = asub.add_parser("reconcile", help="read projects' annotations and record what the webhooks missed")
    p.add_argument("--project", type=int, action="append", required=True)
    p.set_defaults(func=_reconcile)


def _client():
    from annotation.client import LabelStudio

    url, token = os.environ.get("PLI_LS_URL"), os.environ.get("PLI_LS_TOKEN")
    if not url or not token:
        raise ValueError("set PLI_LS_URL and PLI_LS_TOKEN (Label Studio's address and API token)")
    return LabelStudio(url, token)


def _server(args: argparse.Namespace) -> int:
    import signal
    import threading

    from annotation.server import LabelStudioServer

    stop = threading.Event()
    # SIGTERM (a service manager, `kill`) and SIGINT, even when a shell started us in the
    # background with SIGINT ignored: both stop Label Studio's whole process group, then us.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = LabelStudioServer.from_env(args.data_dir, args.port).start()
    print(f"Label Studio at {server.url} (data {args.data_dir}); Ctrl-C stops it", flush=True)
    try:
        while server.proc is not None and server.proc.poll() is None and not stop.wait(1):
            pass
    finally:
        server.stop()
    return 0


def wire_project(ls, title: str, cloud_url: str, review: bool = False) -> int:
    """A project from the class list, pre-annotated by the cloud, its annotations sent back."""
    from annotation.label_config import detection_config, review_config
    from comms.classes import load_class_list

    classes = load_class_list()
    config = review_config(classes) if review else detection_config(classes)
    project = ls.create_project(title, config, evaluate_predictions_automatically=not review)
    password, secret = os.environ.get("PLI_ML_PASSWORD"), os.environ.get("PLI_LS_WEBHOOK_SECRET")
    if not review:
        if not password:
            raise ValueError("set PLI_ML_PASSWORD: the cloud's ML backend takes nothing anonymous")
        ls.add_ml_backend(project, f"{cloud_url.rstrip('/')}/ml", "pli cloud",
                          os.environ.get("PLI_ML_USER", "label-studio"), password)
    if not secret:
        raise ValueError("set PLI_LS_WEBHOOK_SECRET: the cloud's webhook takes nothing anonymous")
    ls.add_webhook(project, f"{cloud_url.rstrip('/')}/annotation/webhook", {"X-PLI-Webhook": secret},
                   ["ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED"])
    return project


def _project(args: argparse.Namespace) -> int:
    ls = _client()
    try:
        project = wire_project(ls, args.title, args.cloud_url, args.review)
    finally:
        ls.close()
    print(f"project {project}: {args.title}")
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    import json

    from cloud import annotations
    from cloud.db import session_scope, upgrade
    from cloud.jobs import enqueue

    upgrade()
    ls = _client()
    try:
        exported = {p: ls.export(p) for p in args.project}
    finally:
        ls.close()
    with session_scope() as s:
        counts = annotations.reconcile(s, exported)
    if counts["new_or_newer"]:
        counts["job"] = enqueue("annotations")
    print(json.dumps(counts))
    return 0


def cloud_images(cache: Path):
    """The cloud's photos by id, as files (copied out of the object store once)."""
    from cloud.db import session_scope
    from cloud.models import Image
    from cloud.storage import store

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


def _export(args: argparse.Namespace) -> int:
    import json
    import tempfile

    from annotation.client import image_fetcher
    from training.data_import import import_dataset
    from training.split import parse_ratios

    ls = _client()
    try:
        tasks = ls.export(args.project)
    finally:
        ls.close()
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / f"project-{args.project}.json"
        export.write_text(json.dumps(tasks))
        options = {"resolve_id": cloud_images(args.out / "photos"), "cache": args.out / "fetched",
                   "fetch": image_fetcher(ls.url, os.environ["PLI_LS_TOKEN"])}
        result = import_dataset(export, "labelstudio", args.out, ratios=parse_ratios(args.split), seed=args.seed,
                                importer_options=options)
    print(f"{result.stats['all'].images} images from project {args.project}; wrote {result.data_yaml}")
    return 0


def photo_tasks(image_ids: list[int], cloud_url: str, predictions: bool = False,
                missed_fault: bool = False) -> list[dict]:
    """Tasks for the cloud's photos; with `predictions`, the pre-annotation model's boxes on them."""
    import cv2
    import numpy as np

    from annotation import backend
    from cloud.db import session_scope
    from cloud.models import Image
    from cloud.storage import store

    extra = {"kind": "missed_fault"} if missed_fault else {}
    tasks = [backend.image_task(cloud_url, i, **extra) for i in image_ids]
    if predictions:
        from cloud.api.routes.annotation import preannotator
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


def _tasks(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    ls = _client()
    made = []
    try:
        for start in tqdm(range(0, len(args.images), args.batch), desc="task batches", unit="batch"):
            chunk = args.images[start:start + args.batch]
            made += ls.import_tasks(args.project, photo_tasks(chunk, args.cloud_url, args.predictions,
                                                              args.missed_fault))
    finally:
        ls.close()
    print(f"{len(made)} tasks in project {args.project}")
    return 0


def _review(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from annotation import backend
    from cloud.db import session_scope
    from cloud.models import Alert

    ls = _client()
    try:  # an alert already in the project is not tasked twice
        queued = {(t.get("data") or {}).get("pli_alert_id") for t in ls.export(args.project, all_tasks=True)}
        with session_scope() as s:
            q = select(Alert).where(Alert.status == "new")
            if args.flight:
                q = q.where(Alert.flight_id == args.flight)
            alerts = [{"id": a.id, "fault_class": a.fault_class, "confidence": a.confidence,
                       "model_version": a.model_version, "image_id": a.image_id}
                      for a in s.scalars(q.order_by(Alert.time)) if a.id not in queued]
        made = ls.import_tasks(args.project, [backend.review_task(args.cloud_url, a) for a in alerts])
    finally:
        ls.close()
    print(f"{len(made)} review tasks in project {args.project}")
    return 0
