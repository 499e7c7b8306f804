"""Experiment (a) of issue 16: which photos to label, measured. IDD is campaign 2 (a fifth of its
photos frozen as the test set, `broken` as `defect`, `pollution-flashover` as the new
`flashover`); each arm picks a budget of its training photos with one strategy, fine-tunes the
shipped weights on them with one fixed recipe, and is scored on the frozen test set (mAP50 per
class, `pli eval`'s code). Random is the baseline; "all" is the ceiling (every training photo).

    .venv/bin/python benchmarks/selection_experiment.py [--arms random:10,coreset:10,...] [--seeds 0]

The recipe, equal for every arm: from models/pli-default.pt (its class head regrown for four
classes), 640 px (IDD's faults are 17-31 px), backbone frozen (10 layers), 30 epochs, batch 8,
ultralytics' own optimizer choice (AdamW at its small-data rate), one warmup epoch without
warmup's bias learning rate (0.1 would wreck AdamW), mosaic as ultralytics does. Resumable:
every finished run is kept in benchmarks/results/selection_experiment.json, keyed by its
parameters, and skipped when run again.
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

RECIPE = {"imgsz": 640, "epochs": 30, "batch": 8, "freeze": 10, "warmup_epochs": 1, "warmup_bias_lr": 0.0,
          "val": False}
RESULTS = REPO / "benchmarks" / "results" / "selection_experiment.json"
DEFAULT_ARMS = ("random:10,coreset:10,uncertainty:10,hybrid:10,pseudo:10,all:100,random:5,coreset:5,random:20,"
                "coreset:20")


def cpu_flags() -> str:
    flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f" {f}" in flags)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--idd", type=Path, default=REPO.parent / "shared" / "datasets" / "idd")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "selection_experiment")
    ap.add_argument("--arms", default=DEFAULT_ARMS, help="strategy:percent,... (all:100 = every training photo)")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ["PLI_CLOUD_DIR"] = str(args.work / "cloud")
    os.environ["PLI_DATABASE_URL"] = f"sqlite:///{args.work / 'cloud.db'}"
    from cloud import campaigns
    from cloud.db import session_scope, upgrade
    from cloud.embeddings import embed
    from cloud.paths import DEFAULT_MODEL, DEFAULT_WEIGHTS
    from cloud.selection import select
    from cloud.selection_job import frames_of, uncertainty
    from training.dataset import YoloDataset, write_data_yaml
    from training.evaluate import evaluate
    from training.train import train

    upgrade()
    with session_scope() as s:
        try:
            row = campaigns.get(s, "idd")
        except ValueError:
            row = campaigns.add(s, "idd", args.idd / "annotations.json", "coco",
                                {"broken": "defect", "pollution-flashover": "flashover"}, 2,
                                description="IDD: real broken and flashover insulators (CC BY 4.0)")
        data = Path(row.data)
    ds = YoloDataset.open(data)
    pool = sorted(ds.images("train"))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["setup"] = {"cpu_flags": cpu_flags(), "cores": os.cpu_count(), "pool": len(pool),
                        "test": len(ds.images("test")), "val": len(ds.images("val")),
                        "recipe": {**RECIPE, "epochs": args.epochs}, "from": DEFAULT_WEIGHTS.name}
    runs = results.setdefault("runs", {})
    cache: dict = {}

    def features(strategy: str) -> tuple:
        if strategy in ("coreset", "hybrid") and "emb" not in cache:
            cache["emb"] = embed(DEFAULT_WEIGHTS, pool, args.work / "cloud" / "embeddings")
        if strategy in ("uncertainty", "hybrid") and "unc" not in cache:
            cache["unc"] = uncertainty(DEFAULT_MODEL, pool)
        return cache.get("emb"), cache.get("unc")

    def weights_of(key: str) -> Path:
        return args.work / "runs" / key.replace(":", "_") / "weights" / "last.pt"

    def run_arm(strategy: str, pct: str, seed: int) -> None:
        key = f"{strategy}:{pct}%:seed{seed}:ep{args.epochs}"
        budget = max(1, round(len(pool) * int(pct) / 100))
        pseudo = None
        if strategy == "pseudo":  # experiment (b): the random arm's photos plus pseudo-labels on the rest
            teacher_key = f"random:{pct}%:seed{seed}:ep{args.epochs}"
            if not weights_of(teacher_key).exists():  # the teacher's weights are not kept in the repo: retrain
                print(f"{key}: training its teacher {teacher_key} first", flush=True)
                run_arm("random", pct, seed)
            from cloud import pseudo_labels
            from training.export import export_model

            onnx = export_model(weights_of(teacher_key), args.work / f"teacher-{pct}-s{seed}.onnx",
                                dynamic_batch=True).onnx
            labelled = [Path(x).name for x in (args.work / f"random-{pct}-s{seed}.txt").read_text().split()]
            pseudo = pseudo_labels.run("idd", labelled, onnx)
            yaml_path = Path(pseudo["data"])
            chosen = pool
        elif strategy == "all":
            chosen = pool
        else:
            emb, unc = features(strategy)
            picks = select(strategy, budget, emb=emb, uncertainty=unc, frames=frames_of(pool), seed=seed,
                           n=len(pool))
            chosen = [pool[i] for i in picks]
        if pseudo is None:
            listing = args.work / f"{strategy}-{pct}-s{seed}.txt"
            listing.write_text("".join(f"{p.resolve()}\n" for p in chosen))
            yaml_path = write_data_yaml(args.work, ds.names, {"train": str(listing),
                                                              "val": str(ds.root / "images" / "val")},
                                        f"{strategy}-{pct}-s{seed}.yaml")
        t0 = time.perf_counter()
        run = train(yaml_path, model=str(DEFAULT_WEIGHTS), project=args.work / "runs", name=key.replace(":", "_"),
                    seed=seed, **{**RECIPE, "epochs": args.epochs})
        seconds = time.perf_counter() - t0
        score = evaluate(run.last, data, "test", progress=False)
        runs[key] = {"strategy": strategy, "percent": int(pct), "photos": len(chosen), "seed": seed,
                     "train_s": round(seconds), "map50": round(score.map50, 4),
                     "per_class": {k: round(v["map50"], 4) for k, v in score.per_class.items()},
                     **({"pseudo_labels": {k: pseudo[k] for k in ("pseudo_labelled", "boxes", "true_boxes",
                                                                   "precision", "recall", "thresholds")}}
                        if pseudo else {})}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps({key: runs[key]}), flush=True)

    for seed in [int(x) for x in args.seeds.split(",")]:
        for arm in args.arms.split(","):
            strategy, pct = arm.split(":")
            if f"{strategy}:{pct}%:seed{seed}:ep{args.epochs}" not in runs:
                run_arm(strategy, pct, seed)
    print(json.dumps(results["runs"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
