"""Selecting 1,000 of 100,000 256-d embeddings (issue 16's target: <= 10 s), per strategy.

    .venv/bin/python benchmarks/selection_speed.py [--n 100000] [--dim 256] [--budget 1000]

Embeddings: 200 Gaussian clusters of unequal size (float32), with flight frame indices so the
near-duplicate rule runs too. One JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cloud.selection import Frames, coverage_radius, select


def cpu_flags() -> str:
    flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f" {f}" in flags)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    sizes = rng.multinomial(args.n, rng.dirichlet(np.ones(200) * 0.5))
    centres = rng.normal(0, 4, (200, args.dim)).astype(np.float32)
    emb = np.concatenate([c + rng.normal(0, 1, (k, args.dim)).astype(np.float32) for c, k in zip(centres, sizes,
                                                                                               strict=True)])
    frames = Frames(np.arange(args.n) // 100, np.arange(args.n) % 100)  # flights of 100 frames
    unc = rng.random(args.n)
    out = {"n": args.n, "dim": args.dim, "budget": args.budget, "cpu_flags": cpu_flags(), "cores": os.cpu_count()}
    for strategy in ("coreset", "hybrid", "uncertainty", "random"):
        t0 = time.perf_counter()
        picks = select(strategy, args.budget, emb=emb, uncertainty=unc, frames=frames, seed=args.seed)
        secs = time.perf_counter() - t0
        sample = rng.choice(args.n, 5000, replace=False)  # radius over a sample: the full matrix is 100k x 1k
        radius = coverage_radius(np.concatenate([emb[sample], emb[picks]]), np.arange(5000, 5000 + len(picks)))
        out[strategy] = {"seconds": round(secs, 2), "picked": len(picks), "coverage_radius_sample": round(radius, 2)}
        print(f"{strategy:12s} {secs:6.2f} s  {len(picks)} picked")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
