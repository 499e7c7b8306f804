"""`pli annotate ...`: the Label Studio server, campaign projects wired to the cloud, tasks and
review tasks for the cloud's photos and alerts, the reconciliation poll, and a project's export.
Thin over cloud/label_studio.py; Label Studio's address and token come from `PLI_LS_URL`,
`PLI_LS_TOKEN`. Only argparse at module level (see pli/cli.py)."""

from __future__ import annotations

import argparse
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


def _project(args: argparse.Namespace) -> int:
    from cloud.label_studio import client, wire_project

    with client() as ls:
        project = wire_project(ls, args.title, args.cloud_url, args.review)
    print(f"project {project}: {args.title}")
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    import json

    from cloud.annotations import reconcile_projects

    print(json.dumps(reconcile_projects(args.project)))
    return 0


def _export(args: argparse.Namespace) -> int:
    from cloud.label_studio import export_dataset
    from training.split import parse_ratios

    result = export_dataset(args.project, args.out, parse_ratios(args.split), args.seed)
    print(f"{result.stats['all'].images} images from project {args.project}; wrote {result.data_yaml}")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cloud.label_studio import client, photo_tasks

    made = []
    with client() as ls:
        for start in tqdm(range(0, len(args.images), args.batch), desc="task batches", unit="batch"):
            chunk = args.images[start:start + args.batch]
            made += ls.import_tasks(args.project, photo_tasks(chunk, args.cloud_url, args.predictions,
                                                              args.missed_fault))
    print(f"{len(made)} tasks in project {args.project}")
    return 0


def _review(args: argparse.Namespace) -> int:
    from cloud.label_studio import client, queue_reviews

    with client() as ls:
        made = queue_reviews(ls, args.project, args.cloud_url, args.flight)
    print(f"{len(made)} review tasks in project {args.project}")
    return 0
