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
                            metavar="{server,project,reconcile,export}")
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
    import time

    from annotation.server import LabelStudioServer

    server = LabelStudioServer.from_env(args.data_dir, args.port).start()
    print(f"Label Studio at {server.url} (data {args.data_dir}); Ctrl-C stops it")
    try:
        while server.proc is not None and server.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
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
