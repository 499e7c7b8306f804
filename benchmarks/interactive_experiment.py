"""Experiments (d) and (e) of issue 17, through the running service: a simulated operator (the
ground truth as the operator) annotates IDD's training photos in Label Studio in batches of 25.

    .venv/bin/python benchmarks/interactive_experiment.py [--arms refresh,none] [--seeds 0,1,2] [--learn-seed 0]

(d) Each batch's tasks are made by the cloud (`photo_tasks`, pre-annotated by the model the
registry names for pre-annotation) and imported into a real Label Studio; the operator reads each
task's predictions back through Label Studio's API, counts the boxes to add, delete and move
(annotation/edits.py) and submits the true boxes; Label Studio's webhook brings them to the cloud
(`pli cloud serve`), whose worker (`pli cloud worker`) applies them. Arm `refresh`: the service's
quick refresh every 25 annotations (job `refresh`, the first QUICK recipe: 3 epochs, backbone
frozen; `refresh-eN`: N epochs, `refresh-eN-f0`: and every layer trainable, `-t`: its threshold
tuned; through PLI_REFRESH_RECIPE; today's QUICK is `refresh-e5-f0-t`), and the
operator starts the next batch once it has finished; arm `none`: no refresh, the shipped model
throughout. Both arms meet the same photos in the same order (seeded).

(e) With --learn-seed, that seed's refresh arms also have PLI_LEARN_AFTER=100: the 100th
annotation queues the full learning run (the service's recipe, cloud/learning.py:Recipe, and
its replay; the runs recorded before 2026-12-02 had the first recipe: 30 epochs, AdamW, 50
photos replayed). A canary drone (`run_flight` with its update loop, as `pli
edge run` runs it, checking every --drone-check seconds) flies from the last annotation on; the
figure is the time from that annotation to the first frame the new model detects on.

Every arm is a fresh cloud (SQLite, object store, TUF repository) beside one Label Studio server.
Results: benchmarks/results/interactive_experiment.json, kept per finished arm and skipped when
run again (an interrupted arm starts over).

`--base b0` (issue 27): every arm's cloud starts with the base model B0 as its fleet release
(benchmarks/rebase_experiment.py:release_b0, one build shared by the arms) whose FP32 build
pre-annotates, so the refreshes fine-tune B0 and arm `none` is B0 throughout; the canary drone
starts on B0 too. Results: benchmarks/results/interactive_b0.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "recipes"))
os.environ.setdefault("YOLO_OFFLINE", "1")
RESULTS = REPO / "benchmarks" / "results" / "interactive_experiment.json"


def boxes_of(predictions: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The newest prediction's rectangles (pixel xyxy, class names), as the operator sees them."""
    from annotation.backend import newest_prediction, rectangles

    return rectangles(newest_prediction(predictions))


def wait_for(what: str, check, timeout_s: float, every_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")


def refresh_recipe(arm: str) -> dict:
    """The quick refresh's recipe as an arm names it, over the first QUICK the arms ran with
    (3 epochs, backbone frozen, untuned), so a name keeps meaning what it measured whatever QUICK
    is now: `refresh-e15` 15 epochs, `refresh-e5-f0` 5 epochs with every layer trainable (`f10`:
    the backbone frozen), `refresh-t` its model's threshold the one leaving the fewest edits on the
    annotated photos (Recipe.tune_conf). QUICK today is `refresh-e5-f0-t`."""
    out: dict = {"epochs": 3, "freeze": 10, "tune_conf": False}
    for part in arm.split("-")[1:]:
        if part == "t":
            out["tune_conf"] = True
        elif part[:1] == "e" and part[1:].isdigit():
            out["epochs"] = int(part[1:])
        elif part[:1] == "f" and part[1:].isdigit():
            out["freeze"] = int(part[1:])
        else:
            raise ValueError(f"arm {arm!r}: {part!r} is none of eN (epochs), fN (frozen layers), t (tuned threshold)")
    return out


def make_cloud(work: Path, arm_env: dict[str, str], cplid: Path, idd: Path) -> str:
    """A fresh cloud: database, campaigns (as experiment (c) has them), a TUF repository with its
    keys; returns a fleet token for the drone."""
    from forgetting_experiment import add_campaigns, make_registry

    from cloud.db import session_scope, upgrade
    from cloud.tokens import create_token

    os.environ.update(arm_env)
    arm_env.update(make_registry(work))
    upgrade()
    add_campaigns(work.parent, cplid, idd)  # as experiment (c): CPLID, synthetic flights, IDD (shared sources)
    with session_scope() as s:
        return create_token(s, "uav-canary", "fleet", "fleet1")


class Drone(threading.Thread):
    """A canary drone in flight: frames every `period_s`, its update loop checking every `check_s`."""

    def __init__(self, work: Path, base: str, token: str, check_s: float, period_s: float = 1.0,
                 model: Path = REPO / "models" / "pli-default.onnx"):
        super().__init__(daemon=True)
        from edge.update import UpdateClient, UpdateLoop, install_root
        from training.synth.flight import generate_flight

        self.work, self.period_s, self.model = work, period_s, model
        install_root(work / "state", (Path(os.environ["PLI_TUF_DIR"]) / "metadata" / "1.root.json").read_bytes())
        self.loop = UpdateLoop(UpdateClient(work / "state", base, token, "canary"), work / "models", check_s)
        self.flight = generate_flight(work / "flight", frames=6, size=(960, 540), seed=7, progress=False).out
        self.stop_event = threading.Event()
        self.swapped_at: float | None = None
        self.release: str | None = None
        self.started_on: str | None = None
        self.refused: list = []
        self.summary = None
        self.error: BaseException | None = None

    def frames(self):
        from edge.sources import open_source

        while not self.stop_event.is_set():
            for frame in open_source(self.flight / "images"):
                if self.stop_event.is_set():
                    return
                self.look()
                yield frame
                time.sleep(self.period_s)

    def look(self) -> None:
        """What the drone reports (edge/status.py): a release swapped in, or refused."""
        try:
            report = json.loads((self.work / "status.json").read_text())
        except (OSError, ValueError):
            return
        if self.started_on is None:
            self.started_on = report.get("release")  # the shipped model's card version
        elif self.swapped_at is None and report.get("release") != self.started_on:
            self.swapped_at, self.release = time.time(), report["release"]
        self.refused = report.get("refused") or []

    def run(self) -> None:
        from comms.outbox import Outbox
        from edge.runtime import RunConfig, run_flight

        try:
            self.summary = run_flight(self.frames(), self.model,
                                      Outbox(self.work / "outbox" / "outbox.db", "UAV-CANARY"),
                                      RunConfig(drone_id="UAV-CANARY", flight_id="F-e", updates=self.loop,
                                                state=self.work / "models" / "state.json",
                                                status=self.work / "status.json"), progress=False)
        except BaseException as exc:  # reported by the caller
            self.error = exc


def run_arm(arm: str, seed: int, learn_too: bool, args, ls_server) -> dict:
    from annotation import backend
    from annotation.client import LabelStudio
    from annotation.edits import edits, total
    from cloud.annotations import reconcile_projects
    from cloud.db import session_scope
    from cloud.label_studio import photo_tasks, wire_project
    from cloud.local_server import CloudServer
    from cloud.models import Annotation, LearningRun
    from cloud.selection_job import register_photos
    from edge.detections import Detections
    from training.dataset import YoloDataset

    work = args.work / f"{arm}-seed{seed}{'-e' if learn_too else ''}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    n_total = args.batches * args.batch_size
    secret = secrets.token_hex(8)
    arm_env = {"PLI_DATABASE_URL": f"sqlite:///{work / 'cloud.db'}", "PLI_CLOUD_DIR": str(work / "cloud"),
               "PLI_TUF_DIR": str(work / "repo"), "PLI_ML_PASSWORD": secret, "PLI_LS_WEBHOOK_SECRET": secret,
               "PLI_ANNOTATION_SECRET": secret, "PLI_LS_URL": ls_server.url, "PLI_LS_TOKEN": ls_server.token,
               "PLI_CLASSES": str(REPO / "comms" / "class_lists" / "2.toml"), "PLI_LEARN_CAMPAIGN": "idd",
               "PLI_REFRESH_EVERY": str(args.batch_size if arm.startswith("refresh") else 0),
               "PLI_REFRESH_RECIPE": json.dumps(refresh_recipe(arm)),
               "PLI_LEARN_AFTER": str(n_total if learn_too else 0)}
    from cloud import jobs

    jobs.reset_queue()
    token = make_cloud(work, arm_env, args.cplid, args.idd)
    start_model = REPO / "models" / "pli-default.onnx"
    if args.base == "b0":
        from rebase_experiment import release_b0

        from cloud.registry.rollout import preannotation_model

        release_b0(args.b0, work, args.cplid, files_dir=args.work / "b0-release", preannotate=True)
        start_model = preannotation_model()  # B0's FP32 build, as the registry keeps it
    with session_scope() as s:
        from cloud import campaigns

        ds = YoloDataset.open(Path(campaigns.get(s, "idd").data))
    photos = sorted(ds.images("train"))
    random.Random(seed).shuffle(photos)
    photos = photos[:n_total]
    ids = register_photos("idd", photos)
    result: dict = {"arm": arm, "seed": seed, "batch_size": args.batch_size, "batches": [], "learn": learn_too}
    worker_log = (work / "worker.log").open("w")
    with CloudServer(arm_env) as cloud:
        worker = subprocess.Popen([sys.executable, "-m", "pli", "cloud", "worker", "--workers", "1"],
                                  env={**os.environ, **arm_env}, cwd=REPO, stdout=worker_log, stderr=worker_log)
        ls = LabelStudio(ls_server.url, ls_server.token)
        drone = None
        try:
            project = wire_project(ls, f"interactive {arm} seed {seed}", cloud.base)
            for b in range(args.batches):
                chunk = slice(b * args.batch_size, (b + 1) * args.batch_size)
                from cloud.label_studio import preannotator

                model_version = preannotator()[1]
                t0 = time.perf_counter()
                task_ids = ls.import_tasks(project, photo_tasks(ids[chunk], cloud.base, predictions=True))
                tasks_s = time.perf_counter() - t0
                per_image, parts = [], {"add": 0, "delete": 0, "move": 0, "kept": 0}
                for task_id, photo in zip(task_ids, photos[chunk], strict=True):
                    pred_xyxy, pred_names = boxes_of(ls.predictions(task_id))
                    image, gt_xyxy, gt_cls = ds.read(photo)
                    gt_names = np.array([ds.names[c] for c in gt_cls], dtype=object)
                    e = edits(pred_xyxy, pred_names, gt_xyxy, gt_names)
                    per_image.append(total(e))
                    for k in parts:
                        parts[k] += e[k]
                    h, w = image.shape[:2]
                    truth = Detections(gt_xyxy, np.ones(len(gt_cls)), gt_cls, ds.names)
                    ls.annotate(task_id, backend.prediction(truth, w, h, "operator")["result"])
                last_annotation = time.time()
                if learn_too and b == args.batches - 1:
                    drone = Drone(work / "drone", cloud.base, token, args.drone_check, model=start_model)
                    drone.start()
                done = (b + 1) * args.batch_size

                polled = {"at": time.monotonic(), "recovered": 0}

                def recorded(n: int = done, polled: dict = polled) -> bool:
                    with session_scope() as s:
                        if s.query(Annotation).filter(Annotation.applied.is_(True)).count() >= n:
                            return True
                    if time.monotonic() - polled["at"] > 30:  # a webhook Label Studio never resent: the poll
                        polled["at"] = time.monotonic()  # the service runs (`pli annotate reconcile`) finds it
                        polled["recovered"] += reconcile_projects([project])["new_or_newer"]
                    return False

                wait_for("annotations applied", recorded, 600)
                refresh_s = None
                if arm.startswith("refresh"):
                    def refreshed(n: int = done):
                        with session_scope() as s:
                            rows = s.query(LearningRun).filter(LearningRun.trigger == "refresh").all()
                            bad = [r for r in rows if r.status == "failed"]
                            if bad:
                                raise RuntimeError(f"refresh failed: {bad[-1].decision}")
                            return any(r.status == "refreshed" and r.data.get("annotations", 0) >= n for r in rows)

                    wait_for(f"refresh after {done} annotations", refreshed, 1800)
                    refresh_s = round(time.time() - last_annotation, 1)
                n_img = len(per_image)
                batch = {"batch": b + 1, "annotations_before": done - args.batch_size, "model": model_version,
                         "images": len(per_image), "edits_per_image": round(float(np.mean(per_image)), 3),
                         "true_boxes_per_image": round((parts["add"] + parts["move"] + parts["kept"]) / n_img, 3),
                         **parts, "tasks_s": round(tasks_s, 1), "refresh_s_after": refresh_s,
                         "webhooks_missed": polled["recovered"]}
                result["batches"].append(batch)
                print(json.dumps({f"{arm}:seed{seed}": batch}), flush=True)
            if drone is not None:
                result["e"] = measure_e(drone, last_annotation, args)
        finally:
            if drone is not None:
                drone.stop_event.set()
                drone.join(60)
            ls.close()
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
            worker_log.close()
    first, last = result["batches"][0]["edits_per_image"], result["batches"][-1]["edits_per_image"]
    result["edits_change_pct"] = round((last - first) / first * 100, 1) if first else None
    return result


def measure_e(drone: Drone, last_annotation: float, args) -> dict:
    """Wait for the full run the 100th annotation queued, then for the canary drone to swap."""
    from cloud.db import session_scope
    from cloud.models import LearningRun

    def finished():
        with session_scope() as s:
            rows = s.query(LearningRun).filter(LearningRun.trigger == "annotations").all()
            done = [r for r in rows if r.status in ("released", "refused", "failed")]
            if not done:
                return None
            r = done[0]
            return {"run": r.id, "status": r.status, "release": r.release, "decision": r.decision,
                    "matrix": r.matrix, "recipe": r.recipe, "started": r.started_at.timestamp(),
                    "finished": r.finished_at.timestamp(), "photos": r.data}

    run = wait_for("the full learning run", finished, args.learn_timeout, every_s=5)
    out = {"run": run["run"], "status": run["status"], "release": run["release"], "decision": run["decision"],
           "matrix": run["matrix"], "recipe": run["recipe"], "drone_check_s": args.drone_check,
           "queue_wait_s": round(run["started"] - last_annotation, 1),
           "learn_run_s": round(run["finished"] - run["started"], 1),
           "replay": {k: len(v) for k, v in (run["photos"].get("replay") or {}).items()},
           "operators_photos": len(run["photos"].get("operators") or [])}
    if run["status"] == "released":
        wait_for("the canary drone's swap", lambda: drone.swapped_at or drone.refused or drone.error,
                 args.drone_check * 2 + 600)
        if drone.error is not None:
            raise drone.error
        out["drone_refused"] = drone.refused
        if drone.swapped_at is not None:
            time.sleep(drone.period_s * 3)
            out["drone_release"] = drone.release
            out["drone_after_release_s"] = round(drone.swapped_at - run["finished"], 1)
            out["annotation_to_drone_s"] = round(drone.swapped_at - last_annotation, 1)
    drone.stop_event.set()
    drone.join(120)
    if drone.summary is not None:
        out["drone"] = {"frames": drone.summary.frames, "swaps": drone.summary.swaps, "model": drone.summary.model}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cplid", type=Path, default=REPO.parent / "shared" / "datasets" / "cplid")
    ap.add_argument("--idd", type=Path, default=REPO.parent / "shared" / "datasets" / "idd")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "interactive_experiment")
    ap.add_argument("--arms", default="refresh,none", help="refresh (QUICK), refresh-eN (N epochs), "
                    "refresh-eN-fM (and M frozen layers: f0 trains everything), refresh-t (tuned threshold), none")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--learn-seed", type=int, help="this seed's refresh arms also measure (e) (one named other than "
                    "`refresh` is run again, kept as ARM:seedN:...+e)")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=25)
    ap.add_argument("--drone-check", type=float, default=60.0, help="the canary drone's update interval (s)")
    ap.add_argument("--learn-timeout", type=float, default=5400.0)
    ap.add_argument("--base", choices=("shipped", "b0"), default="shipped",
                    help="the model the arms start from (b0: B0 as every arm's fleet release)")
    ap.add_argument("--b0", type=Path, default=REPO / "models" / "checkpoints" / "b0-best.pt")
    ap.add_argument("--results", type=Path, help="default benchmarks/results/interactive_experiment.json "
                    "(interactive_b0.json with --base b0)")
    args = ap.parse_args()
    args.work = args.work.resolve()
    args.results = args.results or (RESULTS.with_name("interactive_b0.json") if args.base == "b0" else RESULTS)
    from selection_experiment import cpu_flags

    from annotation.server import LabelStudioServer

    args.work.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.results.read_text()) if args.results.exists() else {"runs": {}}
    results["setup"] = {"cpu_flags": cpu_flags(), "cores": os.cpu_count(), "batch_size": args.batch_size,
                        "batches": args.batches, "refresh_recipe": "QUICK (cloud/learning.py)",
                        "operator": "ground truth through Label Studio's API",
                        "base": args.b0.name if args.base == "b0" else "models/pli-default.pt"}
    def learns(arm: str, seed: int) -> bool:
        return arm.startswith("refresh") and seed == args.learn_seed

    def key(arm: str, seed: int) -> str:  # a refresh arm run again to measure (e) is kept beside its (d) run
        return f"{arm}:seed{seed}:{args.batches}x{args.batch_size}" + ("+e" if learns(arm, seed) and arm != "refresh"
                                                                       else "")

    todo = [(arm, int(seed)) for seed in args.seeds.split(",") for arm in args.arms.split(",")]
    todo = [(a, s) for a, s in todo if key(a, s) not in results["runs"]]
    if not todo:
        print("every arm is done: " + str(args.results))
        return 0
    shutil.rmtree(args.work / "ls", ignore_errors=True)  # a fresh Label Studio: an old one's token is gone
    ls_server = LabelStudioServer(args.work / "ls").start()
    try:
        for arm, seed in todo:
            out = run_arm(arm, seed, learns(arm, seed), args, ls_server)
            results["runs"][key(arm, seed)] = out
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(json.dumps(results, indent=1) + "\n")
    finally:
        ls_server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
