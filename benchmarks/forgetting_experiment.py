"""Experiment (c) of issue 17: the shipped model's campaigns, then IDD, fine-tuning only against
fine-tuning with replay, through the learning service itself (`cloud/learning.py:learn`, the
gates included): the mAP matrix, each arm's gate decision.

    .venv/bin/python benchmarks/forgetting_experiment.py [--arms 0:10,50:10] [--seeds 0] [--epochs 30]

An arm is REPLAY:FREEZE: photos of the earlier campaigns replayed (0: fine-tune only) and backbone
layers frozen (10: the service's recipe; 0: everything trains, the ceiling the compute allows).
Otherwise equal: from `--from` (release 2026.11.22 for every run recorded; its class head grown
to four classes, the three known ones kept), all of IDD's training photos, 640 px, batch 8, one
warmup epoch; AdamW at ultralytics' automatic rate unless --lr0 (SGD), --epochs and
--replay-repeat (Recipe.replay_repeat) say otherwise. The earlier campaigns are what the shipped
model learnt: CPLID with the shipped model's own split (recipes/cplid_split.json: its test set is
the 140 val photos the shipped model never trained on; replay comes from its 560 training photos)
and synthetic flights as 640 px tiles (bird nests; new seeds: one flight to replay from, another
to test on).

Resumable: each finished arm is kept in benchmarks/results/forgetting_experiment.json and skipped
when run again; a gate-passing candidate is released to the experiment's canary group as the
service would, its build (FP32, INT8, cards, golden frames) kept under the work folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("YOLO_OFFLINE", "1")
RESULTS = REPO / "benchmarks" / "results" / "forgetting_experiment.json"
IDD_MAP = {"broken": "defect", "pollution-flashover": "flashover"}
FLIGHT_FRAMES = 24


def flights_source(work: Path) -> Path:
    """Synthetic flights cut into 640 px tiles, as the shipped model learnt them (bird nests, the
    demo's look): one flight's tiles to train and replay from, another's as the test set (frames
    of one flight on one side, so no overlapping tile is on both)."""
    from training.dataset import write_data_yaml
    from training.synth.flight import generate_flight
    from training.tiles import tile_dataset

    out = work / "flights"
    if (out / "data.yaml").exists():
        return out / "data.yaml"
    splits = {}
    for seed, split in ((201, "train"), (202, "test")):
        flight = generate_flight(work / f"flight-{seed}", FLIGHT_FRAMES, (1920, 1080), seed, progress=False).out
        tile_dataset(flight, work / f"tiles-{seed}", size=640, overlap=0.2, keep_empty=0.05, seed=seed,
                     progress=False)
        splits[split] = str(work / f"tiles-{seed}" / "images" / "train")
    out.mkdir(parents=True, exist_ok=True)
    names = ["insulator", "defect", "bird_nest"]  # class-list version 1
    return write_data_yaml(out, names, splits)


def add_campaigns(work: Path, cplid: Path, idd: Path) -> None:
    """The fleet's history as campaigns, oldest first: what the shipped model learnt (CPLID with
    its own split: the 140 val photos it never trained on are the test set; synthetic flights,
    fresh seeds), then IDD (class list 2, a fifth frozen as its test set)."""
    from cloud import campaigns
    from cloud.db import session_scope

    work = Path(work).resolve()  # the flights' data.yaml names its folders: relative ones would not resolve
    split = REPO / "recipes" / "cplid_campaign_split.json"  # the shipped split's val as the test set
    for name, src, fmt, mapping, cl, fixed in (
            ("cplid", cplid, "voc", None, 1, split),
            ("flights", None, "yolo", None, 1, None),
            ("idd", idd / "annotations.json", "coco", IDD_MAP, 2, None)):
        with session_scope() as s:
            try:
                campaigns.get(s, name)
                continue
            except ValueError:
                pass
        src = src or flights_source(work)
        with session_scope() as s:
            campaigns.add(s, name, src, fmt, mapping, cl, description=f"{name} (issue 17 experiments)",
                          split_file=fixed, source_splits=name == "flights")


def make_registry(work: Path) -> dict[str, str]:
    """A TUF repository with its keys under `work` (made once): a passing candidate is released to
    the canary group as the service does. Returns the variables that name it."""
    from cloud.registry import keys
    from cloud.registry.tuf_repo import TufRepo

    env = {"PLI_TUF_DIR": str(work / "repo")}
    for role in keys.ONLINE_ROLES:
        pem = work / "online" / f"{role}.pem"
        if not pem.exists():
            keys.generate(pem)
        env[f"PLI_TUF_{role.upper()}_KEY_FILE"] = str(pem)
    os.environ.update(env)
    if not (work / "repo" / "metadata" / "root.json").exists():
        root_keys = [keys.generate(work / "offline" / f"root-{i}.pem") for i in range(3)]
        signers = [keys.load_signer(work / "offline" / f"root-{i}.pem") for i in range(2)]
        TufRepo.create(work / "repo", root_keys, signers, {r: keys.online_signer(r) for r in keys.ONLINE_ROLES})
    return env


def prepare(work: Path, cplid: Path, idd: Path) -> None:
    """The experiment's own cloud under `work`: its database (migrated), a TUF repository with its
    keys, and the three campaigns (this experiment's and issue 24's rebase_experiment.py)."""
    work.mkdir(parents=True, exist_ok=True)
    os.environ["PLI_CLOUD_DIR"] = str(work / "cloud")
    os.environ["PLI_DATABASE_URL"] = f"sqlite:///{work / 'cloud.db'}"
    from cloud.db import upgrade

    upgrade()
    make_registry(work)
    add_campaigns(work, cplid, idd)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cplid", type=Path, default=REPO.parent / "shared" / "datasets" / "cplid")
    ap.add_argument("--idd", type=Path, default=REPO.parent / "shared" / "datasets" / "idd")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "forgetting_experiment")
    ap.add_argument("--arms", default="0:10,50:10", help="REPLAY:FREEZE pairs, comma-separated")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--replay-repeat", type=int, default=1,
                    help="a campaign smaller than its replay share is shown up to this many times "
                         "(Recipe.replay_repeat)")
    ap.add_argument("--from", dest="start", type=Path, default=REPO / "models" / "pli-default.pt",
                    help="the weights every arm starts from (the runs recorded so far: release 2026.11.22, "
                         "`git show 2d85120:models/pli-default.pt`)")
    ap.add_argument("--lr0", type=float, help="SGD at this rate (Recipe.lr0); default: ultralytics' AdamW choice")
    args = ap.parse_args()
    from selection_experiment import cpu_flags

    prepare(args.work, args.cplid, args.idd)
    from cloud.learning import backward_transfer, learn

    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    results["setup"] = {"cpu_flags": cpu_flags(), "cores": os.cpu_count(), "imgsz": 640, "batch": 8,
                        "from": "pli-default.pt, release 2026.11.22", "order": ["cplid", "flights", "idd"],
                        "cplid_test": "recipes/cplid_split.json val (140 photos)",
                        "flights": f"synthetic flights, {FLIGHT_FRAMES} frames 1920x1080 each, 640 px tiles: "
                                   "seed 201 train, seed 202 test"}
    for seed in [int(x) for x in args.seeds.split(",")]:
        for arm in args.arms.split(","):
            replay, freeze = (int(x) for x in arm.split(":"))
            key = f"replay{replay}:freeze{freeze}:seed{seed}:ep{args.epochs}"
            key += f":repeat{args.replay_repeat}" if args.replay_repeat != 1 else ""
            key += f":lr{args.lr0:g}" if args.lr0 else ""
            if key in results["runs"]:
                continue
            t0 = time.perf_counter()
            recipe = {"epochs": args.epochs, "seed": seed, "freeze": freeze, "replay_repeat": args.replay_repeat,
                      "lr0": args.lr0}
            out = learn("idd", trigger="experiment (c)", recipe=recipe,
                        replay=replay, version=f"exp-c-{key.replace(':', '-')}",
                        weights=str(args.start))  # every arm from the same model
            results["runs"][key] = {"replay": replay, "freeze": freeze, "seed": seed, "epochs": args.epochs,
                                    "replay_repeat": args.replay_repeat, "lr0": args.lr0, "from": args.start.name,
                                    "seconds": round(time.perf_counter() - t0), "run": out["run"],
                                    "release": out["release"],
                                    "matrix": out["matrix"], "passed": out["passed"], "reasons": out["reasons"],
                                    "backward_transfer_points": round(backward_transfer(out["matrix"], "idd"), 2)}
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=1) + "\n")
            print(json.dumps({key: results["runs"][key]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
