"""Every table and plot of issue 27's experiments from B0, regenerated from the kept results
(benchmarks/results/selection_b0.json, interactive_b0.json) into docs/benchmarks.md and docs/:
(a) and (b) by benchmarks/selection_table.py, (d) and (e) by benchmarks/learning_tables.py.

    .venv/bin/python benchmarks/b0_report.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def main() -> int:
    from learning_tables import render_b0
    from selection_table import render

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    ap.add_argument("--plots", type=Path, default=REPO / "docs", help="folder for selection_b0.png, interactive_b0.png")
    args = ap.parse_args()
    render("b0", args.doc, args.plots / "selection_b0.png")
    render_b0(args.doc, args.plots / "interactive_b0.png")
    print(f"wrote the tables of (a), (b), (d) and (e) into {args.doc}, the plots into {args.plots}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
