"""The tables of experiments (a) and (b) from their kept results: mean and spread (min..max) over
the seeds run, per arm, as markdown for docs/benchmarks.md; and the plot of IDD test mAP50
against the share of labelled photos.

    .venv/bin/python benchmarks/selection_table.py [--plot docs/selection_experiment.png]     # issue 16
    .venv/bin/python benchmarks/selection_table.py --base b0 --plot docs/selection_b0.png     # issue 27
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
FILES = {"shipped": "selection_experiment.json", "b0": "selection_b0.json"}  # as selection_experiment.BASES
CLASSES = ("insulator", "defect", "flashover")
ORDER = ("random", "coreset", "uncertainty", "hybrid", "crops", "faults", "pseudo", "pseudo-faults", "all")


def teacher(strategy: str) -> str | None:
    """The arm whose photos and model a pseudo-label arm starts from (`pseudo`: random's)."""
    head, _, rest = strategy.partition("-")
    return (rest or "random") if head == "pseudo" else None


def label(strategy: str, pct: int | None = None) -> str:
    share = "" if pct is None else f" {pct} %"
    t = teacher(strategy)
    return f"{strategy}{share}" if t is None else f"{t}{share} + pseudo-labels on the rest"


def fmt(values: list[float]) -> str:
    mean = sum(values) / len(values)
    return f"{mean:.3f}" if len(values) == 1 else f"{mean:.3f} ({min(values):.3f}..{max(values):.3f})"


def plot(arms: dict[tuple[str, int], list[dict]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    shares = sorted({pct for (st, pct) in arms if st != "all"})
    if len(shares) == 1:  # one share: each method's seeds side by side
        names = [st for st in ORDER[:-1] if (st, shares[0]) in arms]
        for x, st in enumerate(names):
            values = [r["map50"] for r in arms[(st, shares[0])]]
            ax.scatter([x] * len(values), values, color="C0" if st == "random" else "C1", zorder=3)
            ax.hlines(sum(values) / len(values), x - 0.25, x + 0.25, color="black")
        ax.set_xticks(range(len(names)), [f"{n}\n({len(arms[(n, shares[0])])} seeds)" for n in names], fontsize=8)
        ax.set_xlabel(f"strategy, {shares[0]} % of IDD's training photos labelled (dots: seeds; bar: mean)")
    for strategy in ORDER[:-1] if len(shares) > 1 else ():
        pts = sorted((pct, [r["map50"] for r in runs]) for (st, pct), runs in arms.items() if st == strategy)
        if not pts:
            continue
        x = [p for p, _ in pts]
        mean = [sum(v) / len(v) for _, v in pts]
        err = [[m - min(v) for m, (_, v) in zip(mean, pts, strict=True)],
               [max(v) - m for m, (_, v) in zip(mean, pts, strict=True)]]
        ax.errorbar(x, mean, yerr=err, marker="o", capsize=3, label=label(strategy),
                    linestyle="-" if len(x) > 1 else "none")
    for (st, _), runs in arms.items():
        if st == "all":
            ax.axhline(sum(r["map50"] for r in runs) / len(runs), color="grey", linestyle="--", label="all labels")
    if len(shares) > 1:
        ax.set_xlabel("IDD training photos labelled (%); bars: min..max over seeds")
    ax.set_ylabel("IDD test mAP50")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def table(doc: dict) -> list[str]:
    """The arms' table, with each arm's gain over random at the same share and seed (the seed drives
    both the choice and the training, so the pairs share everything but the strategy), and its
    share of what all labels reach; then the pseudo-labels' quality."""
    arms: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for run in doc["runs"].values():
        arms[(run["strategy"], run["percent"])].append(run)
    rand = {(r["percent"], r["seed"]): r["map50"] for r in doc["runs"].values() if r["strategy"] == "random"}
    ceiling = [r["map50"] for r in doc["runs"].values() if r["strategy"] == "all"]
    out = ["| arm | photos | seeds | mAP50 | " + " | ".join(CLASSES) + " | minus random, same seed | of all labels "
           "| train s |",
           "| --- | --- | --- | --- | " + " | ".join("---" for _ in CLASSES) + " | --- | --- | --- |"]
    order = {k: i for i, k in enumerate(ORDER)}
    for (strategy, pct), runs in sorted(arms.items(), key=lambda kv: (kv[0][1], order.get(kv[0][0], 9))):
        name = label(strategy, pct)
        cells = [fmt([r["map50"] for r in runs])] + [fmt([r["per_class"].get(c, 0.0) for r in runs]) for c in CLASSES]
        gain = [r["map50"] - rand[(pct, r["seed"])] for r in runs if (pct, r["seed"]) in rand]
        cells.append(fmt(gain) if gain and strategy not in ("random", "all") else "")
        mean = sum(r["map50"] for r in runs) / len(runs)
        cells.append(f"{mean / (sum(ceiling) / len(ceiling)):.0%}" if ceiling and strategy != "all" else "")
        out.append(f"| {name} | {runs[0]['photos']} | {','.join(str(r['seed']) for r in runs)} | "
                   + " | ".join(cells) + f" | {round(sum(r['train_s'] for r in runs) / len(runs))} |")
    pseudo = [r for r in doc["runs"].values() if r.get("pseudo_labels")]
    if pseudo:
        # each pseudo-label arm beside its teacher alone (the same photos, seed and recipe, no weak labels)
        score = {(r["strategy"], r["percent"], r["seed"]): r["map50"] for r in doc["runs"].values()}
        out += ["", "| pseudo-labels | seed | teacher alone mAP50 | with pseudo-labels | photos | boxes | true boxes "
                "| precision | recall | " + " | ".join(f"{c} P / R" for c in CLASSES) + " |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in CLASSES) + " |"]
        for r in pseudo:
            q = r["pseudo_labels"]
            alone = score.get((teacher(r["strategy"]), r["percent"], r["seed"]))
            per = q.get("per_class", {})
            cells = [f"{per[c]['precision']} / {per[c]['recall']}" if c in per else "" for c in CLASSES]
            out.append(f"| {label(r['strategy'], r['percent'])} | {r['seed']} | "
                       f"{'' if alone is None else f'{alone:.3f}'} | {r['map50']:.3f} | {q['pseudo_labelled']} | "
                       f"{q['boxes']} | {q['true_boxes']} | {q['precision']} | {q['recall']} | "
                       + " | ".join(cells) + " |")
    return out


def write_between(doc_path: Path, marker: str, lines: list[str]) -> None:
    """Replace what stands between `<!-- marker -->` and `<!-- /marker -->` in the markdown file."""
    text = doc_path.read_text()
    start, end = f"<!-- {marker} -->\n", f"<!-- /{marker} -->"
    if start not in text or end not in text:
        raise SystemExit(f"{doc_path}: no {start.strip()} ... {end} to write between")
    head, rest = text.split(start, 1)
    doc_path.write_text(head + start + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1])


def render(base: str, write: Path | None = None, plot_path: Path | None = None) -> list[str]:
    """One base's tables, written between its markers in `write`, and its plot."""
    doc = json.loads((RESULTS / FILES[base]).read_text())
    lines = table(doc)
    if write:
        write_between(write, "selection-table" if base == "shipped" else f"selection-{base}-table", lines)
    if plot_path:
        arms: dict[tuple[str, int], list[dict]] = defaultdict(list)
        for run in doc["runs"].values():
            arms[(run["strategy"], run["percent"])].append(run)
        start = "B0" if base == "b0" else "the shipped model"
        plot(arms, plot_path, f"Which photos to label, from {start}")
    return lines


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", choices=FILES, default="shipped", help="which experiment's results")
    ap.add_argument("--plot", type=Path, help="write the plot there")
    ap.add_argument("--write", type=Path, help="put the tables in this markdown file, between "
                    "<!-- selection-table --> (shipped) or <!-- selection-b0-table --> (b0) and its closing marker")
    args = ap.parse_args()
    print("\n".join(render(args.base, args.write, args.plot)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
