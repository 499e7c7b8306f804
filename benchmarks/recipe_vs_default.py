"""The default-model recipe against ultralytics' default recipe, same wall-clock budget, one run.

    python benchmarks/recipe_vs_default.py --recipe-data OURS.yaml --default-data CPLID.yaml \
        --hours 0.125 --device 0 --out runs/recipe_vs_default [--eval-data CPLID_FULL.yaml]

Both trainings start together and run side by side on disjoint halves of the CPU cores (and
share the GPU), so neither gets a quieter machine than the other. Each gets `--hours` of
training (ultralytics' `time` argument fits the epoch count and schedule to it).

- recipe: `recipes/default_model.py` settings (CPLID train + synthetic-flight tiles, RAM cache,
  longer mosaic-off tail) from a yolov8n yaml.
- default: `pli train` with ultralytics' defaults (yolov8n yaml, same imgsz) on CPLID train only;
  only what offline use forces is set (no plots, no AMP check download).

With `--eval-data`, both final weights are scored by `pli eval` on that split and the last line
is one JSON object {"recipe": {...}, "default": {...}} (per-class mAP50 and mAP50-95).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _commands(args: argparse.Namespace, workers: int) -> dict[str, list[str]]:
    common = ["--imgsz", str(args.imgsz), "--device", args.device, "--workers", str(workers),
              "--time", str(args.hours)]
    return {
        "recipe": [sys.executable, str(REPO / "recipes" / "default_model.py"), "--data", str(args.recipe_data),
                   "--fresh", "--model", args.recipe_model, "--work", str(args.out / "recipe"), "--name", "run",
                   *common],
        "default": [sys.executable, "-m", "pli", "train", "--data", str(args.default_data), "--model", "yolov8n.yaml",
                    "--project", str(args.out / "default"), "--name", "run", *common],
    }


def _epochs(run_dir: Path) -> int:
    results = run_dir / "results.csv"
    if not results.exists():
        return 0
    with results.open() as fh:
        return sum(1 for _ in csv.DictReader(fh))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe-data", type=Path, required=True, help="data.yaml built by the recipe")
    ap.add_argument("--default-data", type=Path, required=True, help="data.yaml of CPLID train (and val) only")
    ap.add_argument("--hours", type=float, default=0.125, help="training budget of each run (default 0.125)")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--recipe-model", default="yolov8n.yaml", help="model yaml of the recipe run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "recipe_vs_default")
    ap.add_argument("--eval-data", type=Path, help="score both final weights on this data.yaml's val split")
    args = ap.parse_args()

    cores = sorted(os.sched_getaffinity(0))
    halves = {"recipe": set(cores[: len(cores) // 2] or cores), "default": set(cores[len(cores) // 2:] or cores)}
    workers = max(0, len(cores) // 2 - 1) if args.device != "cpu" else 0
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    procs = {}
    t0 = time.monotonic()
    for name, cmd in _commands(args, workers).items():
        log = (args.out / f"{name}.log").open("w")
        print(f"{name}: cores {sorted(halves[name])}: {' '.join(cmd)}", flush=True)
        procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                       preexec_fn=lambda cpus=halves[name]: os.sched_setaffinity(0, cpus))
    failed = [name for name, p in procs.items() if p.wait() != 0]
    print(f"both finished in {time.monotonic() - t0:.0f} s", flush=True)
    if failed:
        for name in failed:
            print(f"{name} failed; last lines of {args.out / (name + '.log')}:", file=sys.stderr)
            print("\n".join((args.out / f"{name}.log").read_text().splitlines()[-20:]), file=sys.stderr)
        return 1

    runs = {"recipe": args.out / "recipe" / "runs" / "run", "default": args.out / "default" / "run"}
    for name, run in runs.items():
        print(f"{name}: {_epochs(run)} epochs in {args.hours} h; weights {run / 'weights' / 'last.pt'}")
    if args.eval_data is None:
        return 0

    from training.evaluate import evaluate

    scores = {}
    for name, run in runs.items():
        result = evaluate(run / "weights" / "last.pt", args.eval_data, "val", args.imgsz).to_json()
        scores[name] = {"epochs": _epochs(run), **result}
    print(f"{'class':<12}{'recipe mAP50':>14}{'default mAP50':>15}{'recipe 50-95':>14}{'default 50-95':>15}")
    for cls in scores["recipe"]["per_class"]:
        r, d = scores["recipe"]["per_class"][cls], scores["default"]["per_class"].get(cls, {})
        print(f"{cls:<12}{r['map50']:>14.3f}{d.get('map50', float('nan')):>15.3f}"
              f"{r['map50_95']:>14.3f}{d.get('map50_95', float('nan')):>15.3f}")
    print(json.dumps(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
