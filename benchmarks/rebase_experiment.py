"""Issue 24, item 3: IDD as the second campaign through the learning service, from the base model
B0 (COCO init, CPLID + synthetic flights), with its two bounds trained for the same epochs.

    .venv/bin/python benchmarks/rebase_experiment.py [--epochs 10] [--arms service,no-replay,joint]

- `service`: what `pli cloud learn idd` does, here with the recipe this issue chose (`--recipe`,
  default everything trainable, ultralytics' AdamW at its automatic rate): B0 is the fleet's
  release (built, signed, canary then fleet), the run grows its head to class list 2, replays
  REPLAY_PHOTOS of the earlier campaigns, passes or fails the gates and golden frames, and a
  passing candidate goes to the canary group. `pli cloud release ship` then copies it out.
- `no-replay`: the same run without replay (the lower bound: fine-tuning only).
- `joint`: the upper bound: the COCO checkpoint trained on all three campaigns' training photos
  at once, scored on the same frozen test sets.

The campaigns are experiment (c)'s (benchmarks/forgetting_experiment.py): CPLID with the shipped
split (its 140 val photos are the test set), synthetic flights as 640 px tiles (seed 201 train,
seed 202 test), IDD with a fifth frozen as its test set (60 photos). B0's release is built from
B0's own training data (recipes/default_model.py:build_data), which is rebuilt when absent.

Resumable: each finished arm is kept in benchmarks/results/rebase_experiment.json and skipped when
run again; the joint arm keeps its checkpoint under the work folder and resumes from it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "recipes"))
os.environ.setdefault("YOLO_OFFLINE", "1")
RESULTS = REPO / "benchmarks" / "results" / "rebase_experiment.json"
B0_VERSION = "b0-2026.12.03"
SERVICE_RECIPE = {"freeze": 0, "lr0": None}  # everything trains, AdamW at ultralytics' automatic rate


def b0_files(b0: Path, out: Path, cplid: Path) -> list[Path]:
    """B0's release files (FP32 and INT8 builds, cards, golden frames), built once into `out` from
    B0's own training data (rebuilt when absent) and scored on the cloud's CPLID and flights test
    sets; kept, so several clouds (benchmarks/interactive_experiment.py) release the same build."""
    from default_model import build_data
    from sqlalchemy import select

    from cloud.db import session_scope
    from cloud.models import Campaign as CampaignRow
    from cloud.registry.build import TestSet, build

    done = out / "files.json"
    if done.exists():
        return [out / name for name in json.loads(done.read_text())]
    with session_scope() as s:
        tests = {r.name: r.data for r in s.scalars(select(CampaignRow))}
    data = build_data(cplid, REPO / "data" / "default_model", 640)
    if out.exists():
        shutil.rmtree(out)
    files = build(b0, B0_VERSION, out, [TestSet(n, Path(tests[n]), "test") for n in ("cplid", "flights")],
                  training_data=data)
    done.write_text(json.dumps([f.relative_to(out).as_posix() for f in files]))
    return files


def release_b0(b0: Path, work: Path, cplid: Path, files_dir: Path | None = None, preannotate: bool = False) -> str:
    """B0 as the fleet's release, as `pli cloud release add` + promote would make it (and, with
    `preannotate`, the model that pre-annotates Label Studio tasks, as `release preannotate`)."""
    from cloud.db import session_scope
    from cloud.learning import current_release
    from cloud.registry.rollout import add_release, promote, set_preannotation

    with session_scope() as s:
        if current_release(s) == B0_VERSION:
            return B0_VERSION
    files = b0_files(b0, files_dir or work / "b0-release", cplid)
    with session_scope() as s:
        add_release(s, B0_VERSION, files, None, weights=b0)
        promote(s, B0_VERSION, "canary", "issue 24: base model B0")
        promote(s, B0_VERSION, "fleet", "issue 24: base model B0")
        if preannotate:
            set_preannotation(s, B0_VERSION, "issue 27: B0 pre-annotates")
    return B0_VERSION


def joint(work: Path, coco: Path, epochs: int, seed: int) -> dict:
    """The upper bound: COCO init on every campaign's training photos at once (class list 2)."""
    from cloud.db import session_scope
    from cloud.learning import Recipe, matrix_row, read_curve
    from cloud.learning import _campaign_rows as campaign_rows
    from training.assemble import assemble
    from training.dataset import YoloDataset
    from training.train import train

    with session_scope() as s:
        tests = {r.name: Path(r.data) for r in campaign_rows(s, "idd")}
    names = YoloDataset.open(tests["idd"]).names
    for n in YoloDataset.open(tests["cplid"]).names + YoloDataset.open(tests["flights"]).names:
        if n not in names:
            names.append(n)
    rec = Recipe(epochs=epochs, seed=seed, **SERVICE_RECIPE)
    keep = work / "joint-last.pt"
    if keep.exists():
        result = train(work / "joint-data" / "data.yaml", resume=keep, keep_last=keep)
    else:
        parts = [(n, d, sorted(YoloDataset.open(d).images("train"))) for n, d in tests.items()]
        data_yaml = assemble(work / "joint-data", names, parts, tests["idd"])
        result = train(data_yaml, model=str(coco), imgsz=rec.imgsz, epochs=rec.epochs, batch=rec.batch,
                       project=work, name="joint", keep_last=keep, **rec.overrides())
    return {"matrix": {"candidate": matrix_row(result.last, tests, rec.imgsz)}, "curve": read_curve(result.run_dir),
            "photos": {n: len(YoloDataset.open(d).images("train")) for n, d in tests.items()}, "names": names}


def main() -> int:
    from forgetting_experiment import prepare
    from selection_experiment import cpu_flags

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cplid", type=Path, default=REPO.parent / "shared" / "datasets" / "cplid")
    ap.add_argument("--idd", type=Path, default=REPO.parent / "shared" / "datasets" / "idd")
    ap.add_argument("--coco", type=Path, default=REPO.parent / "shared" / "pretrained" / "yolov8n-coco" /
                    "yolov8n-coco.pt")
    ap.add_argument("--b0", type=Path, default=REPO / "models" / "checkpoints" / "b0-best.pt")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "rebase_experiment")
    ap.add_argument("--arms", default="service,no-replay,joint")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--replay", type=int, default=None, help="photos replayed in the service arm "
                    "(default: the service's REPLAY_PHOTOS)")
    ap.add_argument("--tag", default="r2", help="appended to the arms' keys and release versions, so a run "
                    "after a fix stands beside the earlier one (r1: the parent's head grown by shape, broken)")
    ap.add_argument("--recipe", type=json.loads, default=SERVICE_RECIPE,
                    help="the service arm's Recipe changes, JSON (default: %(default)s)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    prepare(args.work, args.cplid, args.idd)
    from cloud.learning import REPLAY_PHOTOS, backward_transfer, learn

    parent = release_b0(args.b0, args.work, args.cplid)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    results["setup"] = {"cpu_flags": cpu_flags(), "cores": os.cpu_count(), "imgsz": 640, "batch": 8,
                        "parent": parent, "b0": str(args.b0.relative_to(REPO)), "order": ["cplid", "flights", "idd"],
                        "epochs": args.epochs, "seed": args.seed, "replay": args.replay or REPLAY_PHOTOS}

    def save(key: str, row: dict) -> None:
        results["runs"][key] = row
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps({key: {k: v for k, v in row.items() if k != "curve"}}), flush=True)

    for arm in args.arms.split(","):
        key = f"{arm}:ep{args.epochs}:seed{args.seed}" + (f":{args.tag}" if arm != "joint" else "")
        if key in results["runs"]:
            continue
        t0 = time.perf_counter()
        if arm == "joint":
            out = joint(args.work, args.coco, args.epochs, args.seed)
            save(key, {**out, "arm": arm, "seconds": round(time.perf_counter() - t0)})
            continue
        replay = (args.replay or REPLAY_PHOTOS) if arm == "service" else 0
        recipe = {**args.recipe, "epochs": args.epochs, "seed": args.seed}
        out = learn("idd", trigger=f"issue 24 ({arm})", recipe=recipe, replay=replay,
                    version=f"{'2026.12.03-idd' if arm == 'service' else 'exp-noreplay'}-ep{args.epochs}-{args.tag}")
        save(key, {"arm": arm, "replay": replay, "recipe": recipe, "seconds": round(time.perf_counter() - t0),
                   "run": out["run"], "release": out["release"], "matrix": out["matrix"], "passed": out["passed"],
                   "reasons": out["reasons"],
                   "backward_transfer_points": round(backward_transfer(out["matrix"], "idd"), 2)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
