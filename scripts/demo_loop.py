"""The loop the system exists for, in one run (`bash scripts/demo.sh --loop [OUT]`).

    .venv/bin/python scripts/demo_loop.py OUT [--small] [--serve]

A new line is flown at dusk, a light the fleet's model never saw (it was trained on day flights):

1. flight 1: drone UAV-01 flies it with the shipped INT8 model (`pli edge run`); its alerts go
   home over 4G and BeiDou (scripts/demo_links.py: Mosquitto, simulated terminals, the ground
   station, `pli cloud ingest`'s worker), its photos by `pli cloud upload`;
2. the operators' turn, in a real Label Studio: the alerts' review tasks and the flight's photos
   as tasks pre-annotated by the cloud's model; a simulated operator (the one thing here that
   cannot be real) answers through Label Studio's API from the flight's ground truth: it confirms
   true faults, rejects false alarms, keeps good boxes, deletes false ones, moves bad ones and
   draws the missed ones. Label Studio's webhooks bring every annotation to the cloud;
3. the last annotation queues a full learning run (PLI_LEARN_AFTER) that a real `pli cloud
   worker` trains with a short, stated budget, replaying the earlier campaign (day flights); the
   gates decide (newest campaign better, no earlier one down more than 1.5 points, golden frames),
   never this script: a refused candidate is reported with the gates' reasons;
4. flight 2 (another dusk line): the canary drone UAV-02 asks the registry at take-off, verifies
   the signed release (TUF), swaps it in during the flight after its probation checks and sends
   its alerts home; the fleet drone UAV-01 flies the same line on the shipped model (its group has
   no release: the fleet-wide step stays an operator's `pli cloud release promote`);
5. a summary: what each flight found against the ground truth, the operators' edits, the mAP
   matrix and the gates' decision, time per stage, and the pages to open (`--serve` keeps them up).

Everything runs on loopback; the secrets are made for the run and handed over in the environment.
`--small` is the test's scenario (tests/integration/test_demo_loop.py): smaller frames and flights,
one epoch. PLI_LS_URL and PLI_LS_TOKEN name a running Label Studio to use instead of starting one.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("YOLO_OFFLINE", "1")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(highlight=False)
MODEL = REPO / "models" / "pli-default-int8.onnx"
RADIUS_M = 15.0  # an alert within this of a true fault of its class found it (tests/integration/test_flight_acceptance)


@dataclass(frozen=True)
class Scenario:
    """The run's sizes and budget; the learning recipe is the service's Recipe with these changes."""

    frames: int = 40  # each dusk flight
    day_frames: int = 30  # the earlier campaign: day flights, what the fleet's model knew
    size: str = "1920x1080"
    seed: int = 21  # flight 1; flight 2 is seed + 1, the day campaign seed + 2
    epochs: int = 6
    imgsz: int = 640
    batch: int = 8
    freeze: int = 0  # every layer: a new light is in the first layers' features
    lr0: float | None = None  # ultralytics' AdamW at its small-data rate: SGD at 0.002 moves nothing in minutes
    replay: int = 20  # day photos replayed beside the operators' dusk photos

    def recipe(self) -> dict:
        return {"epochs": self.epochs, "imgsz": self.imgsz, "batch": self.batch, "freeze": self.freeze,
                "lr0": self.lr0, "warmup_epochs": 0.0, "replay_repeat": 1}


SMALL = Scenario(frames=12, day_frames=10, size="960x540", seed=22, epochs=1, imgsz=320, batch=4, replay=4)


class Stages:
    """Each stage's wall time, for the summary."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.t0 = time.perf_counter()

    @contextmanager
    def __call__(self, name: str):
        console.rule(f"[bold]{name}")
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - t
            console.print(f"[dim]{name}: {self.seconds[name]:.1f} s[/dim]")


def run(cmd: list[str], log: Path | None = None, capture: bool = False, **kw) -> subprocess.CompletedProcess:
    """A command of the system's own (`pli ...`), its output to `log`, captured or the terminal; it
    must succeed."""
    if capture:
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, **kw)
    elif log is not None:
        with log.open("a") as fh:
            out = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, text=True, **kw)
    else:
        out = subprocess.run(cmd, cwd=REPO, text=True, **kw)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {out.returncode}" + (f" (see {log})" if log else ""))
    return out


def pli(*args: str, log: Path | None = None, env: dict | None = None,
        capture: bool = False) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "pli", *args], log, capture, env=env)


def wait_for(what: str, check, timeout_s: float, every_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")


def cloud_env(out: Path, sc: Scenario) -> dict[str, str]:
    """The cloud's configuration as `pli cloud serve`, the worker and this script share it."""
    return {"PLI_DATABASE_URL": f"sqlite:///{out / 'cloud' / 'pli.db'}", "PLI_CLOUD_DIR": str(out / "cloud"),
            "PLI_TUF_DIR": str(out / "cloud" / "tuf"),
            "PLI_ML_PASSWORD": secrets.token_urlsafe(16), "PLI_LS_WEBHOOK_SECRET": secrets.token_urlsafe(16),
            "PLI_ANNOTATION_SECRET": secrets.token_urlsafe(16),
            "PLI_LEARN_CAMPAIGN": "dusk-line", "PLI_REFRESH_EVERY": "0",  # one full run, no interactive refresh
            "PLI_LEARN_RECIPE": json.dumps(sc.recipe()), "PLI_LEARN_REPLAY": str(sc.replay)}


def make_registry(keys_dir: Path, repo: Path) -> dict[str, str]:
    """Three offline root keys (two sign) and the online keys, in files; the TUF repository."""
    from cloud.registry import keys
    from cloud.registry.tuf_repo import TufRepo

    env = {}
    for role in keys.ONLINE_ROLES:
        keys.generate(keys_dir / f"{role}.pem")
        env[f"PLI_TUF_{role.upper()}_KEY_FILE"] = str(keys_dir / f"{role}.pem")
    os.environ.update(env)
    root_keys = [keys.generate(keys_dir / f"root-{i}.pem") for i in range(3)]
    signers = [keys.load_signer(keys_dir / f"root-{i}.pem") for i in range(2)]
    TufRepo.create(repo, root_keys, signers, {r: keys.online_signer(r) for r in keys.ONLINE_ROLES})
    return env


def faults_of(flight: Path) -> list[dict]:
    return list(csv.DictReader((flight / "faults.csv").open()))


def score_alerts(alerts: list[dict], faults: list[dict]) -> dict:
    """Alerts against the flight's true faults: a fault is found by an alert of its class within
    RADIUS_M; an alert that finds none is a false alarm."""
    from edge.geo import distance_m

    found, false = set(), []
    for a in alerts:
        near = [(distance_m(a["lat"], a["lon"], float(f["lat"]), float(f["lon"])), f["fault_id"])
                for f in faults if f["class"] == a["class"]]
        best = min(near) if near else None
        if best is not None and best[0] <= RADIUS_M:
            found.add(best[1])
        else:
            false.append(a["id"])
    return {"faults": len(faults), "found": len(found), "missed": len(faults) - len(found), "false_alarms": len(false),
            "alerts": len(alerts)}


def fly(name: str, device: Path, flight: Path, outbox: Path, token: str, log: Path, extra: list[str] = ()) -> None:
    env = {**os.environ, "PLI_TOKEN": token}
    flight_id = json.loads((flight / "flight.json").read_text())["flight_id"]
    pli("edge", "run", "--config", str(device), "--source", str(flight / "images"), "--flight-id",
        f"{flight_id}-{name}", "--model", str(MODEL), "--outbox", str(outbox), *extra, log=log, env=env)


def outbox_alerts(outbox: Path, drone: str) -> list[dict]:
    from comms.outbox import Outbox

    return Outbox(outbox, drone).alerts()


def operator_reviews(ls, project: int, faults: list[dict]) -> dict:
    """The operator's verdict on each alert: confirm a true fault, reject a false alarm."""
    from cloud.db import session_scope
    from cloud.models import Alert

    counts = {"confirm": 0, "false alarm": 0}
    for task_id in ls.task_ids(project):
        task = ls.task(task_id)
        with session_scope() as s:
            a = s.get(Alert, task["data"]["pli_alert_id"])
            alert = {"id": a.id, "class": a.fault_class, "lat": a.lat, "lon": a.lon}
        verdict = "confirm" if score_alerts([alert], faults)["found"] else "false alarm"
        ls.annotate(task_id, [{"from_name": "verdict", "to_name": "image", "type": "choices",
                               "value": {"choices": [verdict]}}])
        counts[verdict] += 1
    return counts


def operator_boxes(ls, task_ids: list[int], photos: list[Path], ds) -> dict:
    """The operator on each pre-annotated photo: the proposals as Label Studio shows them, put
    right against the ground truth (annotation/edits.py), saved through the API."""
    from annotation import backend
    from annotation.edits import corrected, edits
    from edge.detections import Detections

    tally = {"photos": 0, "kept": 0, "move": 0, "delete": 0, "add": 0}
    for task_id, photo in zip(task_ids, photos, strict=True):
        pred_xyxy, pred_names = backend.rectangles(backend.newest_prediction(ls.predictions(task_id)))
        image, gt_xyxy, gt_cls = ds.read(photo)
        gt_names = np.array([ds.names[c] for c in gt_cls], dtype=object)
        for k, v in edits(pred_xyxy, pred_names, gt_xyxy, gt_names).items():
            tally[k] += v
        xyxy, names = corrected(pred_xyxy, pred_names, gt_xyxy, gt_names)
        h, w = image.shape[:2]
        cls = np.array([ds.names.index(n) for n in names], int)
        ls.annotate(task_id, backend.prediction(Detections(xyxy, np.ones(len(cls)), cls, ds.names), w, h,
                                                "operator")["result"])
        tally["photos"] += 1
    return tally


def learning_run() -> dict | None:
    from cloud.db import session_scope
    from cloud.models import LearningRun

    with session_scope() as s:
        r = s.query(LearningRun).filter(LearningRun.trigger == "annotations").order_by(LearningRun.id).first()
        if r is None:
            return None
        return {"id": r.id, "status": r.status, "release": r.release, "decision": r.decision, "matrix": r.matrix,
                "recipe": r.recipe, "data": r.data, "parent": r.parent}


def epochs_done(cloud: Path, run_id: int) -> int:
    path = cloud / "learning" / f"run-{run_id}" / "train" / "results.csv"
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


def summary_tables(summary: dict) -> list[Table]:
    t = Table(title="flights against the ground truth (a fault found: an alert of its class within 15 m)")
    for c in ("flight", "drone", "model", "faults", "found", "missed", "false alarms", "alerts"):
        t.add_column(c, justify="left" if c in ("flight", "drone", "model") else "right")
    for f in summary["flights"]:
        t.add_row(f["flight"], f["drone"], f["model"], *(str(f[k]) for k in ("faults", "found", "missed",
                                                                             "false_alarms", "alerts")))
    ops = summary["operators"]
    o = Table(title="the operators' work in Label Studio (simulated from the ground truth)")
    for c in ("what", "count"):
        o.add_column(c)
    o.add_row("alerts confirmed / rejected as false alarms",
              f"{ops['reviews']['confirm']} / {ops['reviews']['false alarm']}")
    b = ops["boxes"]
    o.add_row("photos annotated", str(b["photos"]))
    o.add_row("proposed boxes kept / moved / deleted", f"{b['kept']} / {b['move']} / {b['delete']}")
    o.add_row("missed boxes drawn", str(b["add"]))
    o.add_row("edits per photo", f"{(b['move'] + b['delete'] + b['add']) / max(1, b['photos']):.2f}")
    run_ = summary["learning"]
    m = Table(title=f"learning run {run_['id']}: mAP50 on each campaign's frozen test set "
                    f"({run_['recipe']['epochs']} epochs at {run_['recipe']['imgsz']}, "
                    f"{run_['photos']} photos)")
    for c in ("campaign", "parent (shipped)", "candidate", "change (points)", "per class: parent -> candidate"):
        m.add_column(c, justify="right" if c in ("parent (shipped)", "candidate", "change (points)") else "left")
    matrix = run_.get("matrix") or {}
    for name in (matrix.get("parent") or {}):
        p, c = matrix["parent"][name]["map50"], matrix["candidate"][name]["map50"]
        pc, cc = matrix["parent"][name].get("per_class", {}), matrix["candidate"][name].get("per_class", {})
        m.add_row(name, f"{p:.3f}", f"{c:.3f}", f"{(c - p) * 100:+.1f}",
                  ", ".join(f"{k} {pc[k]:.2f}->{cc.get(k, 0.0):.2f}" for k in pc))
    s = Table(title="time per stage")
    s.add_column("stage")
    s.add_column("seconds", justify="right")
    for k, v in summary["seconds"].items():
        s.add_row(k, f"{v:.0f}")
    return [t, o, m, s]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/demo.sh --loop", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, nargs="?", default=Path("demo-out/loop"), help="work folder (made anew)")
    ap.add_argument("--small", action="store_true", help="the test's scenario: small flights, one epoch")
    ap.add_argument("--serve", action="store_true", help="keep the cloud and Label Studio up at the end "
                    "(until Ctrl-C) to open the pages")
    args = ap.parse_args(argv)
    sc = SMALL if args.small else Scenario()
    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    (out / "logs").mkdir(parents=True)
    (out / "cloud").mkdir()
    logs = out / "logs"
    os.environ.update(cloud_env(out, sc))
    stages = Stages()
    console.print(f"scenario: {json.dumps(asdict(sc))}")
    console.print(f"work folder {out}; logs in {logs}")

    from training.synth.flight import generate_flight, parse_size

    size = parse_size(sc.size)
    with stages("render the flights"):
        flights = {}
        for name, seed, frames, light in (("flight-1", sc.seed, sc.frames, "dusk"),
                                          ("flight-2", sc.seed + 1, sc.frames, "dusk"),
                                          ("day", sc.seed + 2, sc.day_frames, "day")):
            summary = generate_flight(out / name, frames, size, seed, progress=False, light=light)
            flights[name] = out / name
            console.print(f"{name} ({light}): " + "; ".join(summary.lines()[:3]))

    from annotation.client import LabelStudio
    from annotation.server import LabelStudioServer
    from cloud import campaigns
    from cloud.db import session_scope, upgrade
    from cloud.label_studio import photo_tasks, queue_reviews, wire_project
    from cloud.local_server import CloudServer
    from cloud.operators import add_operator
    from cloud.selection_job import register_photos
    from cloud.tokens import create_token
    from training.dataset import YoloDataset

    with ExitStack() as stack:
        with stages("the cloud: database, TUF repository, campaigns, servers"):
            upgrade()
            os.environ.update(make_registry(out / "keys", out / "cloud" / "tuf"))
            with session_scope() as s:
                campaigns.add(s, "day-lines", flights["day"], "yolo", description="day flights the fleet knew")
                dusk = campaigns.add(s, "dusk-line", flights["flight-1"], "yolo",
                                     description="flight 1 at dusk; its test fifth labelled once by an auditor")
                dusk_data = Path(dusk.data)
                tokens = {d: create_token(s, d.lower(), "fleet", "fleet1", drone=d) for d in ("UAV-01", "UAV-02")}
                password = secrets.token_urlsafe(12)
                add_operator(s, "demo", password)
            for f in ("flight-1", "flight-2"):
                pli("-q", "cloud", "towers", "import", str(flights[f] / "towers.csv"), log=logs / "cloud.log")
            ds = YoloDataset.open(dusk_data)
            to_label = sorted(ds.images("train"))
            os.environ["PLI_LEARN_AFTER"] = str(len(to_label))  # the last photo's annotation queues the run
            if os.environ.get("PLI_LS_URL") and os.environ.get("PLI_LS_TOKEN"):
                ls_url, ls_token = os.environ["PLI_LS_URL"], os.environ["PLI_LS_TOKEN"]
                console.print(f"Label Studio: the one at {ls_url}")
            else:
                server = LabelStudioServer(out / "label-studio")
                console.print("starting Label Studio (headless, loopback) ...")
                server.start()
                stack.callback(server.stop)
                ls_url, ls_token = server.url, server.token
                os.environ.update({"PLI_LS_URL": ls_url, "PLI_LS_TOKEN": ls_token})
            cloud = stack.enter_context(CloudServer({}))
            worker_log = (logs / "worker.log").open("w")
            worker = subprocess.Popen([sys.executable, "-m", "pli", "cloud", "worker", "--workers", "1"], cwd=REPO,
                                      stdout=worker_log, stderr=subprocess.STDOUT)
            stack.callback(lambda: (worker.terminate(), worker.wait(30)))
            console.print(f"cloud {cloud.base}, Label Studio {ls_url}, learning worker pid {worker.pid}")
            root = out / "cloud" / "tuf" / "metadata" / "1.root.json"
            devices = {}
            for n, (drone, group) in enumerate((("UAV-01", "fleet"), ("UAV-02", "canary")), start=1):
                key = out / drone / "device.key"
                key.parent.mkdir(parents=True)
                key.touch(0o600)
                key.write_text(secrets.token_hex(32))
                pli("device", "init", "--drone-id", drone, "--key-id", str(n), "--ground-address", "0179773",
                    "--key-file", str(key), "--group", group, "--update-url", cloud.base, "--tuf-root", str(root),
                    "--out", str(out / drone / "device.json"), log=logs / "edge.log")
                devices[drone] = out / drone / "device.json"

        with stages("flight 1: UAV-01 at dusk, alerts home by 4G and BeiDou, photos uploaded"):
            box1 = out / "UAV-01" / "flight-1.db"
            fly("a", devices["UAV-01"], flights["flight-1"], box1, tokens["UAV-01"], logs / "edge.log")
            run([sys.executable, str(REPO / "scripts" / "demo_links.py"), str(box1), str(devices["UAV-01"])],
                logs / "links.log")
            pli("cloud", "upload", str(flights["flight-1"]), "--config", str(devices["UAV-01"]), "--url", cloud.base,
                "--flight-id", json.loads((flights["flight-1"] / "flight.json").read_text())["flight_id"] + "-a",
                log=logs / "upload.log", env={**os.environ, "PLI_TOKEN": tokens["UAV-01"]})
            flight1 = score_alerts(outbox_alerts(box1, "UAV-01"), faults_of(flights["flight-1"]))
            console.print(f"flight 1: {flight1}")

        ls = stack.enter_context(LabelStudio(ls_url, ls_token))
        with stages("the operators: alerts reviewed, photos annotated in Label Studio"):
            review = wire_project(ls, "flight 1 alerts: review", cloud.base, review=True)
            queue_reviews(ls, review, cloud.base)
            reviews = operator_reviews(ls, review, faults_of(flights["flight-1"]))
            console.print(f"reviews: {reviews}")
            project = wire_project(ls, "dusk line: box every insulator and fault", cloud.base)
            ids = register_photos("dusk-line", to_label)
            task_ids = ls.import_tasks(project, photo_tasks(ids, cloud.base, predictions=True))
            boxes = operator_boxes(ls, task_ids, to_label, ds)
            console.print(f"boxes: {boxes}")
            last_annotation = time.perf_counter()

        with stages("learning: the worker trains, the gates decide"):
            # Label Studio fires each webhook once, with a short timeout: one lost under load is
            # caught by the reconciliation poll, run here as a deployment's timer runs it
            polled = {"at": 0.0, "new": 0}

            def started():
                if time.monotonic() - polled["at"] > 10:
                    got = pli("annotate", "reconcile", "--project", str(review), "--project", str(project),
                              log=None, capture=True)
                    polled["at"], polled["new"] = time.monotonic(), polled["new"] + \
                        json.loads(got.stdout.strip().splitlines()[-1]).get("new_or_newer", 0)
                return learning_run()

            run_ = wait_for("the learning run the annotations queue", started, 300)
            if polled["new"]:
                console.print(f"the reconciliation poll recorded {polled['new']} annotation(s) a webhook missed")
            console.print(f"learning run {run_['id']} started by the last annotation (recipe {run_['recipe']})")
            shown = -1

            def finished():
                nonlocal shown
                r = learning_run()
                n = epochs_done(out / "cloud", r["id"])
                if n != shown:
                    shown = n
                    console.print(f"  epoch {n}/{sc.epochs} done")
                if worker.poll() is not None:
                    raise RuntimeError(f"the learning worker exited {worker.returncode}; see {logs / 'worker.log'}")
                return r if r["status"] in ("released", "refused", "failed") else None

            run_ = wait_for("the learning run", finished, 1800, every_s=2)
            if run_["status"] == "failed":
                raise RuntimeError(f"learning run {run_['id']} failed: {run_['decision']}")
            verdict = (f"released {run_['release']} to the canary group" if run_["release"] else
                       "refused: " + "; ".join(run_["decision"]["reasons"]))
            console.print(f"learning run {run_['id']}: {verdict}")
            learn_s = time.perf_counter() - last_annotation

        with stages("flight 2: the canary takes the release in flight, the fleet drone keeps the shipped model"):
            box_c, box_f = out / "UAV-02" / "flight-2.db", out / "UAV-01" / "flight-2.db"
            fly("c", devices["UAV-02"], flights["flight-2"], box_c, tokens["UAV-02"], logs / "edge.log",
                ["--update-every", "5"])
            status = json.loads((out / "UAV-02" / "tuf" / "status.json").read_text()) \
                if (out / "UAV-02" / "tuf" / "status.json").exists() else {}
            fly("f", devices["UAV-01"], flights["flight-2"], box_f, tokens["UAV-01"], logs / "edge.log")
            run([sys.executable, str(REPO / "scripts" / "demo_links.py"), str(box_c), str(devices["UAV-02"])],
                logs / "links.log")
            canary = outbox_alerts(box_c, "UAV-02")
            models = sorted({a.get("model_version") or "?" for a in canary})
            console.print(f"the canary's status: {status}")

        faults2 = faults_of(flights["flight-2"])
        shipped = json.loads((REPO / "models" / "pli-default-int8.json").read_text())["version"]
        swapped = bool(run_["release"]) and status.get("release") == run_["release"]  # what the canary reports
        summary = {
            "scenario": asdict(sc),
            "flights": [
                {"flight": "1 (dusk)", "drone": "UAV-01 fleet", "model": f"shipped {shipped}", **flight1},
                {"flight": "2 (dusk)", "drone": "UAV-01 fleet", "model": f"shipped {shipped}",
                 **score_alerts(outbox_alerts(box_f, "UAV-01"), faults2)},
                {"flight": "2 (dusk)", "drone": "UAV-02 canary", "model": status.get("release") or "?",
                 **score_alerts(canary, faults2)}],
            "operators": {"reviews": reviews, "boxes": boxes},
            "learning": {**run_, "photos": len((run_["data"] or {}).get("operators") or []) +
                         sum(len(v) for v in ((run_["data"] or {}).get("replay") or {}).values()),
                         "seconds_from_last_annotation": round(learn_s, 1)},
            "canary": {"status": status, "swapped": swapped, "models": models},
            "seconds": {k: round(v, 1) for k, v in stages.seconds.items()},
            "urls": {"cloud": f"{cloud.base}/ui/", "learning": f"{cloud.base}/ui/learning",
                     "releases": f"{cloud.base}/ui/releases", "alerts": f"{cloud.base}/ui/alerts",
                     "label_studio": f"{ls_url}/projects/{project}/data"},
        }
        summary["seconds"]["total"] = round(time.perf_counter() - stages.t0, 1)
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        console.rule("[bold]summary")
        for table in summary_tables(summary):
            console.print(table)
        console.print(f"gates: {'passed' if run_['release'] else 'refused'}"
                      + ("" if run_["release"] else " - " + "; ".join(run_["decision"]["reasons"])))
        console.print(f"canary: {'flew flight 2 on ' + run_['release'] if swapped else 'kept the shipped model'}")
        console.print("pages: " + ", ".join(summary["urls"].values()))
        console.print(f"(the cloud's pages: log in as demo with the password {password}; "
                      f"Label Studio as {os.environ.get('PLI_LS_USERNAME', 'admin@pli.local')})")
        console.print(f"summary: {out / 'summary.json'}")
        if args.serve:
            console.print("serving until Ctrl-C ...")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
