"""The tables of experiments (a) and (b) of issue 16 from benchmarks/results/selection_experiment.json:
mean and spread (min..max) over the seeds run, per arm, as markdown for docs/benchmarks.md.

    .venv/bin/python benchmarks/selection_table.py
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "selection_experiment.json"
CLASSES = ("insulator", "defect", "flashover")


def fmt(values: list[float]) -> str:
    mean = sum(values) / len(values)
    return f"{mean:.3f}" if len(values) == 1 else f"{mean:.3f} ({min(values):.3f}..{max(values):.3f})"


def main() -> int:
    doc = json.loads(RESULTS.read_text())
    arms: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for run in doc["runs"].values():
        arms[(run["strategy"], run["percent"])].append(run)
    print("| arm | photos | seeds | mAP50 | " + " | ".join(CLASSES) + " | train s |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in CLASSES) + " | --- |")
    order = {"random": 0, "coreset": 1, "uncertainty": 2, "hybrid": 3, "pseudo": 4, "all": 5}
    for (strategy, pct), runs in sorted(arms.items(), key=lambda kv: (kv[0][1], order.get(kv[0][0], 9))):
        name = f"{strategy} {pct} %" if strategy != "pseudo" else f"random {pct} % + pseudo-labels on the rest"
        cells = [fmt([r["map50"] for r in runs])] + [fmt([r["per_class"].get(c, 0.0) for r in runs]) for c in CLASSES]
        print(f"| {name} | {runs[0]['photos']} | {','.join(str(r['seed']) for r in runs)} | "
              + " | ".join(cells) + f" | {round(sum(r['train_s'] for r in runs) / len(runs))} |")
    pseudo = [r for r in doc["runs"].values() if r.get("pseudo_labels")]
    if pseudo:
        print("\n| pseudo-labels (teacher: the random arm) | seed | photos | boxes | true boxes | precision | recall |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for r in pseudo:
            q = r["pseudo_labels"]
            print(f"| {r['percent']} % labelled | {r['seed']} | {q['pseudo_labelled']} | {q['boxes']} | "
                  f"{q['true_boxes']} | {q['precision']} | {q['recall']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
