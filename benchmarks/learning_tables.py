"""The tables of issue 17's experiments, as markdown for docs/benchmarks.md: (c) the mAP matrix
per arm (benchmarks/results/forgetting_experiment.json, plus the service run of (e), which is the
replay arm with the service's recipe), (d) operator edits per image, batch after batch
(benchmarks/results/interactive_experiment.json), (e) annotation-to-drone time.

    .venv/bin/python benchmarks/learning_tables.py
    .venv/bin/python benchmarks/learning_tables.py --base b0 --write docs/benchmarks.md \
        --plot docs/interactive_b0.png   # issue 27's (d) and (e), from B0
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = Path(__file__).resolve().parents[1] / "models"
ORDER = ("cplid", "flights", "idd")


def optimiser(lr0: float | None) -> str:
    return f"SGD {lr0:g}" if lr0 else "AdamW auto"


def shipped_rows() -> list[str]:
    """The default model's builds, as their cards record them (`pli eval`'s code on the ONNX files,
    each campaign's frozen test set), when it is a release of the learning service."""
    rows = []
    for stem in ("pli-default", "pli-default-int8"):
        card = json.loads((MODELS / f"{stem}.json").read_text())
        if "release" not in card:
            return []
        m = card["metrics"]
        cells = [f"{m[c]['map50']:.3f}" if c in m else "" for c in ORDER]
        idd = m.get("idd", {}).get("per_class", {})
        per = " / ".join(f"{idd.get(k, {}).get('map50', 0.0):.3f}" for k in ("insulator", "defect", "flashover"))
        rows.append(f"| models/{stem}.onnx ({card['precision']}, release {card['release']}) | {' | '.join(cells)} | "
                    f"{per} |")
    return ["| shipped file | CPLID test | flights test | IDD test | IDD insulator / defect / flashover |",
            "| --- | --- | --- | --- | --- |", *rows, ""]


MATRIX_HEAD = ["| arm | CPLID test | flights test | IDD test | IDD insulator / defect / flashover | "
               "change on earlier campaigns (points) | gate (time) |", "| --- | --- | --- | --- | --- | --- | --- |"]


def matrix_rows(label: str, matrix: dict, passed: bool | None, reasons: list[str], seconds: float | None,
                parent: str = "shipped") -> list[str]:
    rows = []
    for who in ("parent", "candidate"):
        row = matrix[who]
        cells = [f"{row[c]['map50']:.3f}" if c in row else "" for c in ORDER]
        idd = row.get("idd", {}).get("per_class", {})
        per = " / ".join(f"{idd.get(k, 0.0):.3f}" for k in ("insulator", "defect", "flashover"))
        if who == "parent":
            rows.append(f"| {label}: parent ({parent}) | {' | '.join(cells)} | {per} | | |")
        else:
            drop = {c: (matrix["parent"][c]["map50"] - row[c]["map50"]) * 100 for c in ORDER[:2] if c in row}
            gate = "passed" if passed else "refused: " + "; ".join(reasons)
            took = f"{seconds / 60:.0f} min" if seconds else ""
            drops = ", ".join(f"{c} {-v:+.1f}" for c, v in drop.items())
            rows.append(f"| {label}: candidate | {' | '.join(cells)} | {per} | {drops} | {gate} ({took}) |")
    return rows


def arm_label(r: dict) -> str:
    """An arm's name, marked where its run also measured (e) (the same arm again, from B0)."""
    return f"{r['arm']} (with (e))" if r.get("learn") and r["arm"] != "refresh" else r["arm"]


def edits_tables(interactive: dict) -> list[str]:
    """(d): edits per image batch by batch, each arm's change from its first batch, and at the last
    batch the refresh arm against no refresh on the same photos (same seed)."""
    out = ["| arm | seed | batch | annotations before | pre-annotating model | true boxes / image | "
           "edits / image | add | delete | move | refresh after (s) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in interactive["runs"].values():
        for b in r["batches"]:
            out.append(f"| {arm_label(r)} | {r['seed']} | {b['batch']} | {b['annotations_before']} | {b['model']} | "
                       f"{b['true_boxes_per_image']:.2f} | {b['edits_per_image']:.2f} | {b['add']} | {b['delete']} | "
                       f"{b['move']} | {b['refresh_s_after'] if b['refresh_s_after'] is not None else ''} |")
    out.append("")
    out += ["| arm | seed | edits / image, batch 1 | after three refreshes (batch 4) | change |",
            "| --- | --- | --- | --- | --- |"]
    for r in interactive["runs"].values():
        first, last = r["batches"][0]["edits_per_image"], r["batches"][-1]["edits_per_image"]
        out.append(f"| {arm_label(r)} | {r['seed']} | {first:.2f} | {last:.2f} | {r['edits_change_pct']:+.1f} % |")
    pairs = []
    for r in interactive["runs"].values():
        other = next((o for o in interactive["runs"].values() if o["arm"] == "none" and o["seed"] == r["seed"]
                      and len(o["batches"]) == len(r["batches"])), None)
        if r["arm"].startswith("refresh") and other is not None:
            a, b = r["batches"][-1]["edits_per_image"], other["batches"][-1]["edits_per_image"]
            later = [(x["edits_per_image"], y["edits_per_image"])
                     for x, y in zip(r["batches"][1:], other["batches"][1:], strict=True)]
            la, lb = (sum(v[0] for v in later) / len(later), sum(v[1] for v in later) / len(later)) if later else (0, 0)
            pairs.append(f"| {arm_label(r)} against none | {r['seed']} | {a:.2f} | {b:.2f} | "
                         f"{(a - b) / b * 100 if b else 0.0:+.1f} % | {la:.2f} | {lb:.2f} | "
                         f"{(la - lb) / lb * 100 if lb else 0.0:+.1f} % |")
    if pairs:
        out += ["", "| same photos | seed | last batch: edits / image, refreshed | no refresh | change | "
                "batches 2 on: refreshed | no refresh | change |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |", *pairs]
    return out


def e_matrix_rows(interactive: dict, parent: str = "shipped") -> list[str]:
    """The mAP matrix rows of each full run that step (e) measured."""
    out = []
    for r in interactive["runs"].values():
        e = r.get("e")
        if e and e.get("matrix"):
            rec = e["recipe"]
            label = (f"service run of (e): replay {sum(e['replay'].values())}, freeze {rec['freeze']}, "
                     f"{rec['epochs']} epochs, {optimiser(rec.get('lr0'))}, seed {rec['seed']}")
            out += matrix_rows(label, e["matrix"], e["status"] == "released", (e["decision"] or {}).get("reasons", []),
                               e["learn_run_s"], parent)
    return out


def e_tables(interactive: dict) -> list[str]:
    """(e): from the last annotation to the new model on the canary drone, step by step."""
    out = []
    for r in interactive["runs"].values():
        e = r.get("e")
        if not e:
            continue
        released = e["status"] == "released"
        what = "train, matrix, gates, FP32 + INT8 builds, golden frames, release" if released else \
            "train, matrix, gates: refused, so nothing built or released"
        rec = e["recipe"]
        head = f"step (e), operator seed {r['seed']}, {rec['epochs']} epochs, {optimiser(rec.get('lr0'))}"
        out += ["", f"| {head} | seconds |", "| --- | --- |",
                f"| last annotation -> the full run starts (the refresh it also queued runs first) | "
                f"{e['queue_wait_s']:.0f} |",
                f"| the full run ({what}) | {e['learn_run_s']:.0f} |"]
        if "drone_after_release_s" in e:
            out += [f"| release -> the canary drone detects with it (update check every {e['drone_check_s']:.0f} s) "
                    f"| {e['drone_after_release_s']:.0f} |",
                    f"| **last annotation -> new model on the drone** | **{e['annotation_to_drone_s']:.0f}** |"]
        elif not released:
            out.append("| the canary drone | keeps its model: no release to take |")
        else:
            out.append(f"| the canary drone | refused the release: {e.get('drone_refused')} |")
    return out


def plot_b0(interactive: dict, out: Path) -> None:
    """(d): edits per image at each batch, per arm (mean over seeds, bars min..max); (e): where
    the time from the hundredth annotation went."""
    from collections import defaultdict

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in interactive["runs"].values() if not r.get("learn") or r["arm"] == "refresh"]
    timed = [r for r in interactive["runs"].values() if r.get("e")]
    fig, axes = plt.subplots(1, 2 if timed else 1, figsize=(11 if timed else 6, 4), squeeze=False)
    ax = axes[0][0]
    by_arm: dict[str, list[list[float]]] = defaultdict(list)
    for r in runs:
        by_arm[r["arm"]].append([b["edits_per_image"] for b in r["batches"]])
    for arm, seeds in sorted(by_arm.items(), key=lambda kv: (kv[0] != "none", kv[0])):
        n = min(len(s) for s in seeds)
        cols = [[s[i] for s in seeds] for i in range(n)]
        mean = [sum(c) / len(c) for c in cols]
        err = [[m - min(c) for m, c in zip(mean, cols, strict=True)],
               [max(c) - m for m, c in zip(mean, cols, strict=True)]]
        ax.errorbar(range(1, n + 1), mean, yerr=err, marker="o", capsize=3, label=f"{arm} ({len(seeds)} seeds)",
                    color="black" if arm == "none" else None, linestyle="--" if arm == "none" else "-")
    ax.set_xlabel("batch of 25 photos (a refresh after each, in the refresh arms)")
    ax.set_ylabel("operator edits per photo")
    ax.set_title("(d) edits per photo, from B0 (bars: min..max over seeds)", fontsize=9)
    ax.set_xticks(range(1, 5))
    ax.legend(fontsize=7)
    if timed:
        ax = axes[0][1]
        minutes = []  # each run's total, for the axis
        for y, r in enumerate(timed):
            e = r["e"]
            steps = [("waits behind the refresh", e["queue_wait_s"]), (f"full run ({e['status']})", e["learn_run_s"])]
            if "drone_after_release_s" in e:
                steps.append(("release to drone", e["drone_after_release_s"]))
            left = 0.0
            for i, (what, sec) in enumerate(steps):
                ax.barh(y, sec / 60, left=left / 60, color=f"C{i}", label=what if y == 0 else None)
                left += sec
            ax.text(left / 60, y, f" {left / 60:.1f} min", va="center", fontsize=8)
            minutes.append(left / 60)
        ax.axvline(10, color="grey", linestyle=":", label="target: 10 min")
        ax.set_xlim(0, max(12.0, 1.25 * max(minutes)))
        ax.set_yticks(range(len(timed)), [f"{r['arm']}, seed {r['seed']}" for r in timed], fontsize=8)
        ax.set_xlabel("minutes from the hundredth annotation")
        ax.set_title("(e) hundredth annotation to the canary drone", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def render_b0(write: Path | None = None, plot: Path | None = None) -> list[str]:
    """Issue 27's (d) and (e) from B0 (interactive_b0.json): the tables, written between
    <!-- interactive-b0-tables --> markers in `write`, and the plot."""
    from selection_table import write_between

    interactive = json.loads((RESULTS / "interactive_b0.json").read_text())
    lines = edits_tables(interactive)
    if any(r.get("e") for r in interactive["runs"].values()):
        lines += ["", *MATRIX_HEAD, *e_matrix_rows(interactive, "B0"), *e_tables(interactive)]
    if write:
        write_between(write, "interactive-b0-tables", lines)
    if plot:
        plot_b0(interactive, plot)
    return lines


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", choices=("shipped", "b0"), default="shipped",
                    help="b0: issue 27's (d) from B0 (interactive_b0.json) alone")
    ap.add_argument("--write", type=Path, help="with --base b0: put the tables in this markdown file, between "
                    "<!-- interactive-b0-tables --> and its closing marker")
    ap.add_argument("--plot", type=Path, help="with --base b0: write the plot of (d) and (e) there")
    args = ap.parse_args()
    if args.base == "b0":
        print("\n".join(render_b0(args.write, args.plot)))
        return 0
    out = []
    forgetting = json.loads((RESULTS / "forgetting_experiment.json").read_text()) \
        if (RESULTS / "forgetting_experiment.json").exists() else {"runs": {}}
    interactive = json.loads((RESULTS / "interactive_experiment.json").read_text()) \
        if (RESULTS / "interactive_experiment.json").exists() else {"runs": {}}
    out += MATRIX_HEAD
    for r in forgetting["runs"].values():
        shown = r.get("replay_repeat", 1) != 1 and r["replay"]
        repeat = f" (small campaigns up to x{r['replay_repeat']})" if shown else ""
        label = (f"replay {r['replay']}{repeat}, freeze {r['freeze']}, {r['epochs']} epochs, "
                 f"{optimiser(r.get('lr0'))}, seed {r['seed']}")
        out += matrix_rows(label, r["matrix"], r["passed"], r["reasons"], r["seconds"])
    out += e_matrix_rows(interactive)
    out.append("")
    out += shipped_rows()
    out += edits_tables(interactive)
    out += e_tables(interactive)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
