"""Experiment (c) of issue 17: CPLID (campaign 1) then IDD (campaign 2), fine-tuning only against
fine-tuning with replay, through the learning service itself (`cloud/learning.py:learn`, the
gates included): the mAP matrix, each arm's gate decision.

    .venv/bin/python benchmarks/forgetting_experiment.py [--replay 0,50] [--seeds 0] [--epochs 30]

Recipe, equal for both arms: from models/pli-default.pt (class head grown to four classes, the
three known ones kept), all of IDD's training photos, 640 px, backbone frozen (10 layers), batch 8,
one warmup epoch. CPLID's campaign split is the cloud's own (a fifth frozen as its test set, by
photo): it overlaps the photos the shipped model trained on, so its absolute mAP50 is optimistic;
the drop from parent to candidate is what this measures. Resumable: each finished arm is kept in
benchmarks/results/forgetting_experiment.json and skipped when run again.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cplid", type=Path, default=REPO.parent / "shared" / "datasets" / "cplid")
    ap.add_argument("--idd", type=Path, default=REPO.parent / "shared" / "datasets" / "idd")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "forgetting_experiment")
    ap.add_argument("--replay", default="0,50", help="replay sizes to compare (0: fine-tune only)")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ["PLI_CLOUD_DIR"] = str(args.work / "cloud")
    os.environ["PLI_DATABASE_URL"] = f"sqlite:///{args.work / 'cloud.db'}"
    from selection_experiment import cpu_flags

    from cloud import campaigns
    from cloud.db import session_scope, upgrade
    from cloud.learning import backward_transfer, learn

    upgrade()
    with session_scope() as s:
        for name, src, fmt, mapping, cl in (
                ("cplid", args.cplid, "voc", None, 1),
                ("idd", args.idd / "annotations.json", "coco",
                 {"broken": "defect", "pollution-flashover": "flashover"}, 2)):
            try:
                campaigns.get(s, name)
            except ValueError:
                campaigns.add(s, name, src, fmt, mapping, cl, description=f"{name} (forgetting experiment)")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    results["setup"] = {"cpu_flags": cpu_flags(), "cores": os.cpu_count(), "epochs": args.epochs, "imgsz": 640,
                        "batch": 8, "freeze": 10, "from": "pli-default.pt", "order": ["cplid", "idd"]}
    for seed in [int(x) for x in args.seeds.split(",")]:
        for replay in [int(x) for x in args.replay.split(",")]:
            key = f"replay{replay}:seed{seed}:ep{args.epochs}"
            if key in results["runs"]:
                continue
            t0 = time.perf_counter()
            # a gate-passing candidate would be built and released; the experiment wants the matrix
            out = learn("idd", trigger="experiment (c)", recipe={"epochs": args.epochs, "seed": seed},
                        replay=replay, version=f"exp-c-{key.replace(':', '-')}")
            results["runs"][key] = {"replay": replay, "seed": seed, "seconds": round(time.perf_counter() - t0),
                                    "matrix": out["matrix"], "passed": out["passed"], "reasons": out["reasons"],
                                    "backward_transfer_points": round(backward_transfer(out["matrix"], "idd"), 2)}
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=1) + "\n")
            print(json.dumps({key: results["runs"][key]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
