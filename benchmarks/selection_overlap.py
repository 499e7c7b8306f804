"""Which of IDD's training photos two strategies share when both pick from B0 (issue 27): e.g.
whether `uncertainty` and `faults` choose the same photos at 5, 10 and 20 %, so that arms of
benchmarks/selection_experiment.py repeat each other. No training; the detector's scan of the
pool once. Needs the work folder selection_experiment.py --base b0 made (its campaigns and
B0's ONNX export).

    .venv/bin/python benchmarks/selection_overlap.py [--a uncertainty --b faults] [--shares 5,10,20]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "selection_b0")
    ap.add_argument("--a", default="uncertainty")
    ap.add_argument("--b", default="faults")
    ap.add_argument("--shares", default="5,10,20")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not (args.work / "b0.onnx").exists():
        ap.error(f"{args.work}: no b0.onnx; run benchmarks/selection_experiment.py --base b0 first")
    os.environ["PLI_CLOUD_DIR"] = str(args.work / "cloud")
    os.environ["PLI_DATABASE_URL"] = f"sqlite:///{args.work / 'cloud.db'}"
    from cloud import campaigns
    from cloud.db import session_scope
    from cloud.selection import select
    from cloud.selection_job import features, frames_of
    from training.dataset import YoloDataset

    with session_scope() as s:
        pool = sorted(YoloDataset.open(Path(campaigns.get(s, "idd").data)).images("train"))
    weights = REPO / "models" / "checkpoints" / "b0-best.pt"
    feats = {name: features(name, pool, weights, args.work / "b0.onnx")[:2] for name in (args.a, args.b)}
    for pct in (int(x) for x in args.shares.split(",")):
        budget = max(1, round(len(pool) * pct / 100))
        picks = [set(select(name, budget, emb=emb, uncertainty=unc, frames=frames_of(pool), seed=args.seed,
                            n=len(pool))) for name, (emb, unc) in feats.items()]
        shared = len(picks[0] & picks[1])
        print(f"{pct} % ({budget} photos): {args.a} and {args.b} share {shared}"
              + (" (the same photos)" if shared == budget else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
