"""Experiments (a) and (b) of issues 16 and 27: which photos to label, and weak labels for the
rest, measured. IDD is the new campaign (a fifth of its photos frozen as the test set, `broken`
as `defect`, `pollution-flashover` as the new `flashover`); each arm picks a budget of its
training photos with one strategy, fine-tunes one start on them with one fixed recipe, and is
scored on the frozen test set (mAP50 per class, `pli eval`'s code). Random is the baseline;
"all" is the ceiling (every training photo).

    .venv/bin/python benchmarks/selection_experiment.py [--base b0] [--arms random:10,coreset:10,...] [--seeds 0]

Two bases, each with its own results file and work folder:
- `shipped` (issue 16): from models/pli-default.pt (its class head regrown for four classes),
  backbone frozen (10 layers), 30 epochs; no replay. Results: selection_experiment.json.
- `b0` (issue 27): from the base model B0 (models/checkpoints/b0-best.pt: COCO init, CPLID and
  synthetic flights; its head grown to class list 2 as the service grows it), everything
  trainable (what issue 24 found better), 10 epochs, and replay of the earlier campaigns as the
  service does (`cloud.learning.replay_set`: an even share of CPLID and the flights, k-center
  within each; `--replay` photos, the same for every arm). The campaigns are those of
  benchmarks/forgetting_experiment.py (its `prepare`). Selection uses B0's embeddings and B0's
  detector (exported to ONNX). Results: selection_b0.json.
Both: 640 px (IDD's faults are 17-31 px), batch 8, ultralytics' own optimizer choice (AdamW at
its small-data rate), one warmup epoch without warmup's bias learning rate (0.1 would wreck
AdamW), mosaic as ultralytics does, no validation during training.

Strategies: random, coreset, uncertainty, hybrid (cloud/selection.py), crops (k-center over the
crops around the insulators the detector finds), faults (uncertainty over fault classes only),
pseudo (experiment (b): the random arm's photos plus pseudo-labels from its own model on the
rest; `pseudo-faults`: the faults arm's photos and model instead), all. Resumable: every
finished run is kept in the results file, keyed by its parameters, and skipped when run again.
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
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("YOLO_OFFLINE", "1")

RECIPE = {"imgsz": 640, "epochs": 30, "batch": 8, "freeze": 10, "warmup_epochs": 1, "warmup_bias_lr": 0.0,
          "val": False}
BASES = {  # results file, work folder, recipe changes, replayed photos
    "shipped": ("selection_experiment.json", "selection_experiment", {}, 0),
    "b0": ("selection_b0.json", "selection_b0", {"freeze": 0, "epochs": 10}, 20),
}
RESULTS = REPO / "benchmarks" / "results" / "selection_experiment.json"
DEFAULT_ARMS = ("random:10,coreset:10,uncertainty:10,hybrid:10,pseudo:10,all:100,random:5,coreset:5,random:20,"
                "coreset:20")


def cpu_flags() -> str:
    flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f" {f}" in flags)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", choices=BASES, default="shipped", help="the start every arm fine-tunes (see above)")
    ap.add_argument("--idd", type=Path, default=REPO.parent / "shared" / "datasets" / "idd")
    ap.add_argument("--cplid", type=Path, default=REPO.parent / "shared" / "datasets" / "cplid")
    ap.add_argument("--b0", type=Path, default=REPO / "models" / "checkpoints" / "b0-best.pt")
    ap.add_argument("--work", type=Path, help="default runs/<the base's folder>")
    ap.add_argument("--arms", default=DEFAULT_ARMS, help="strategy:percent,... (all:100 = every training photo)")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, help="default: the base's recipe (shipped 30, b0 10)")
    ap.add_argument("--replay", type=int, help="photos of earlier campaigns replayed in every arm (b0 only; "
                    "default 20)")
    args = ap.parse_args()
    if args.replay and args.base != "b0":
        ap.error("--replay: the b0 base only (the shipped base's runs had none)")
    results_name, folder, changes, replay = BASES[args.base]
    recipe = {**RECIPE, **changes}
    if args.epochs is not None:
        recipe["epochs"] = args.epochs
    replay = replay if args.replay is None else args.replay
    results_file = RESULTS.parent / results_name
    work = args.work or REPO / "runs" / folder
    work.mkdir(parents=True, exist_ok=True)
    os.environ["PLI_CLOUD_DIR"] = str(work / "cloud")
    os.environ["PLI_DATABASE_URL"] = f"sqlite:///{work / 'cloud.db'}"
    from selection_table import teacher as teacher_of  # one reading of the pseudo arms' names, with their table

    from cloud import campaigns
    from cloud.db import session_scope, upgrade
    from cloud.paths import DEFAULT_MODEL, DEFAULT_WEIGHTS
    from cloud.selection import select
    from cloud.selection_job import features, frames_of
    from training.dataset import YoloDataset, write_data_yaml
    from training.evaluate import evaluate
    from training.train import train

    earlier: list[tuple[str, Path]] = []
    if args.base == "b0":
        from forgetting_experiment import prepare

        from cloud.learning import replay_set
        from training.assemble import assemble
        from training.export import export_model
        from training.heads import grow_head, run_classes

        prepare(work, args.cplid, args.idd)  # the three campaigns, as the service has them
        with session_scope() as s:
            data = Path(campaigns.get(s, "idd").data)
            earlier = [(n, Path(campaigns.get(s, n).data)) for n in ("cplid", "flights")]
        ds = YoloDataset.open(data)
        names = run_classes(args.b0, ds.names)
        start = grow_head(args.b0, names, work / "b0-grown.pt")
        embed_weights, scan_model = args.b0, work / "b0.onnx"
        if not scan_model.exists():
            export_model(args.b0, scan_model)
    else:
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
        names = ds.names
        start, embed_weights, scan_model = DEFAULT_WEIGHTS, DEFAULT_WEIGHTS, DEFAULT_MODEL
    pool = sorted(ds.images("train"))
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    results["setup"] = {"cpu_flags": cpu_flags(), "cores": os.cpu_count(), "pool": len(pool),
                        "test": len(ds.images("test")), "val": len(ds.images("val")), "recipe": recipe,
                        "from": args.b0.name if args.base == "b0" else DEFAULT_WEIGHTS.name, "replay": replay}
    runs = results.setdefault("runs", {})
    cache: dict = {}

    def choose_by(strategy: str) -> tuple:
        if strategy not in cache:
            cache[strategy] = features(strategy, pool, embed_weights, scan_model, progress=True)[:2]
        return cache[strategy]

    def weights_of(key: str) -> Path:
        return work / "runs" / key.replace(":", "_") / "weights" / "last.pt"

    def run_arm(strategy: str, pct: str, seed: int) -> None:
        key = f"{strategy}:{pct}%:seed{seed}:ep{recipe['epochs']}"
        budget = max(1, round(len(pool) * int(pct) / 100))
        pseudo = None
        if teacher_of(strategy):  # experiment (b): a teacher arm's photos plus pseudo-labels on the rest
            teacher = teacher_of(strategy)  # `pseudo`: random's arm; `pseudo-faults`: faults'
            teacher_key = f"{teacher}:{pct}%:seed{seed}:ep{recipe['epochs']}"
            if not weights_of(teacher_key).exists():  # the teacher's weights are not kept in the repo: retrain
                print(f"{key}: training its teacher {teacher_key} first", flush=True)
                run_arm(teacher, pct, seed)
            from cloud import pseudo_labels
            from training.export import export_model

            suffix = "" if teacher == "random" else f"-{teacher}"
            onnx = export_model(weights_of(teacher_key), work / f"teacher{suffix}-{pct}-s{seed}.onnx",
                                dynamic_batch=True).onnx
            labelled = [Path(x).name for x in (work / f"{teacher}-{pct}-s{seed}.txt").read_text().split()]
            pseudo = pseudo_labels.run("idd", labelled, onnx)
            yaml_path = Path(pseudo["data"])
            chosen = pool
        elif strategy == "all":
            chosen = pool
        else:
            emb, unc = choose_by(strategy)
            picks = select(strategy, budget, emb=emb, uncertainty=unc, frames=frames_of(pool), seed=seed,
                           n=len(pool))
            chosen = [pool[i] for i in picks]
        if pseudo is None:
            listing = work / f"{strategy}-{pct}-s{seed}.txt"
            listing.write_text("".join(f"{p.resolve()}\n" for p in chosen))
            yaml_path = write_data_yaml(work, ds.names, {"train": str(listing), "val": str(ds.root / "images" / "val")},
                                        f"{strategy}-{pct}-s{seed}.yaml")
        replayed = []
        if replay:  # as the service does: the new photos (or their pseudo-labelled set) plus the replay
            replayed = replay_set(earlier, replay, args.b0, seed, 2)
            new_data = yaml_path if pseudo is not None else data
            new = chosen if pseudo is None else sorted(YoloDataset.open(new_data).images("train"))
            parts = [("new", new_data, new)]
            parts += [(f"replay-{n}", d, [p for m, p in replayed if m == n]) for n, d in earlier]
            yaml_path = assemble(work / "data" / key.replace(":", "_"), names, parts, data)
        t0 = time.perf_counter()
        run = train(yaml_path, model=str(start), project=work / "runs", name=key.replace(":", "_"), seed=seed,
                    **recipe)
        seconds = time.perf_counter() - t0
        score = evaluate(run.last, data, "test", progress=False)
        runs[key] = {"strategy": strategy, "percent": int(pct), "photos": len(chosen), "seed": seed,
                     "replayed": len(replayed), "train_s": round(seconds), "map50": round(score.map50, 4),
                     "per_class": {k: round(v["map50"], 4) for k, v in score.per_class.items()},
                     **({"pseudo_labels": {k: pseudo[k] for k in ("pseudo_labelled", "boxes", "true_boxes",
                                                                   "precision", "recall", "thresholds", "per_class")
                                          if k in pseudo}}
                        if pseudo else {})}
        results_file.parent.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps({key: runs[key]}), flush=True)

    for seed in [int(x) for x in args.seeds.split(",")]:
        for arm in args.arms.split(","):
            strategy, pct = arm.split(":")
            if f"{strategy}:{pct}%:seed{seed}:ep{recipe['epochs']}" not in runs:
                run_arm(strategy, pct, seed)
    print(json.dumps(results["runs"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
