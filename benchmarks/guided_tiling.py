"""Guided tiling against tiling everything and against SAHI, on 4000x3000 frames, side by side.

    .venv/bin/python benchmarks/guided_tiling.py [--frames 120] [--work DIR] [--threads 2]

Frames: a rendered 4000x3000 synthetic flight (seed 31, cached in --work), its ground-truth fault
boxes (defect on insulators, bird_nest on the towers' arms, away from any insulator) counted by
class. Sides, same ONNX model, same session, same 640 px grid at 0.2 overlap:
  - sahi: SAHI's `get_sliced_prediction` with its full-frame pass;
  - all tiles: `detect_tiled` (every tile and the full frame);
  - guided: `detect_guided` (the full frame at a low threshold, then only the tiles meeting
    what it saw, widened by half a box).
Each frame runs the sides in a rotated order; times are medians over frames. SAHI, the slowest,
runs on the first `--sahi-frames` frames only, and every side's recall is also given there. Recall: a
ground-truth fault with a same-class detection at IoU >= 0.5. The last line is one JSON object;
results also go to benchmarks/results/guided_tiling.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from edge_latency import recall, sahi_detector  # noqa: E402
from multiview_error import cpu_flags  # noqa: E402

from edge.detector import Detector  # noqa: E402
from edge.tiled import ROI_CONF, ROI_MARGIN, detect_guided, detect_tiled  # noqa: E402
from training.dataset import YoloDataset  # noqa: E402
from training.synth.flight import generate_flight  # noqa: E402

FAULTS = ("defect", "bird_nest", "flashover")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=REPO / "models" / "pli-default.onnx")
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sahi-frames", type=int, default=20,
                    help="SAHI runs on the first N frames only (its recall there beside the others'); 0: none, "
                    "-1: all")
    ap.add_argument("--seed", type=int, default=31, help="the flight's seed (default 31)")
    ap.add_argument("--margin", type=float, default=ROI_MARGIN, help=f"guided: widen what the coarse pass saw by this "
                    f"share of its size (default {ROI_MARGIN})")
    ap.add_argument("--roi-conf", type=float, default=ROI_CONF,
                    help=f"guided: the coarse pass's threshold (default {ROI_CONF})")
    ap.add_argument("--limit", type=int, default=0, help="the flight's first N frames only (0: all)")
    ap.add_argument("--work", type=Path, help="folder for the rendered flight (kept between runs)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "guided_tiling.json")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="guided-"))
    flight = work / f"k4-{args.frames}" if args.seed == 31 else work / f"k4-{args.frames}-s{args.seed}"
    if not (flight / "data.yaml").exists():
        generate_flight(flight, args.frames, (4000, 3000), seed=args.seed)
    if args.sahi_frames < 0:
        args.sahi_frames = args.frames
    det = Detector(args.model, threads=args.threads)
    sahi = sahi_detector(det, args.model)

    sides = {"sahi": sahi, "all tiles": lambda im: detect_tiled(det, im, tile=640, overlap=0.2),
             "guided": lambda im: detect_guided(det, im, tile=640, overlap=0.2, roi_conf=args.roi_conf,
                                                margin=args.margin)}
    ds = YoloDataset.open(flight / "data.yaml")
    paths = ds.images("train")[: args.limit or None]
    classes = {c: det.names.index(c) for c in FAULTS if c in det.names}
    times = {s: [] for s in sides}
    by_frame: dict[str, dict[int, float]] = {s: {} for s in sides}  # for ratios frame by frame
    found = {s: {c: [0, 0] for c in classes} for s in sides}
    subset = {s: {c: [0, 0] for c in classes} for s in sides}  # the frames SAHI ran on
    first = ds.read(paths[0])[0]
    for fn in sides.values():  # warm-up
        fn(first)
    for k, path in enumerate(tqdm(paths, desc="frames", unit="frame")):
        loaded = ds.read(path)
        if loaded is None:
            continue
        im, gt_xyxy, gt_cls = loaded
        names = [s for s in sides if s != "sahi" or k < args.sahi_frames]
        for name in names[k % len(names):] + names[: k % len(names)]:  # rotated: no side always runs first
            t0 = time.perf_counter()
            dets = sides[name](im)
            times[name].append(time.perf_counter() - t0)
            by_frame[name][k] = times[name][-1]
            for c, cid in classes.items():
                f, n = recall(dets, gt_xyxy, gt_cls, [cid])
                found[name][c][0] += f
                found[name][c][1] += n
                if k < args.sahi_frames:
                    subset[name][c][0] += f
                    subset[name][c][1] += n
    summary = {}
    for name in [s for s in sides if times[s]]:
        hit = sum(v[0] for v in found[name].values())
        total = sum(v[1] for v in found[name].values())
        sub_hit, sub_total = (sum(v[i] for v in subset[name].values()) for i in (0, 1))
        summary[name] = {"ms": round(statistics.median(times[name]) * 1000, 1), "frames": len(times[name]),
                         "fault_recall": round(hit / max(total, 1), 3), "faults": total,
                         "by_class": {c: f"{v[0]}/{v[1]}" for c, v in found[name].items()},
                         "fault_recall_on_sahi_frames": round(sub_hit / max(sub_total, 1), 3),
                         "faults_on_sahi_frames": sub_total}
    for name, r in summary.items():
        print(f"{name:<10} {r['ms']:>8.0f} ms/frame over {r['frames']} frames  fault recall {r['fault_recall']:.3f} of "
              f"{r['faults']} {r['by_class']}; on SAHI's frames {r['fault_recall_on_sahi_frames']:.3f} of "
              f"{r['faults_on_sahi_frames']}")
    def ratio(a: str, b: str) -> float | None:
        """Median over the frames both ran of a's time over b's: load drift cancels frame by frame."""
        both = [by_frame[a][k] / by_frame[b][k] for k in by_frame[a] if k in by_frame[b]]
        return round(statistics.median(both), 2) if both else None

    for name in summary:
        on = [by_frame[name][k] for k in by_frame["sahi"] if k in by_frame[name]]
        summary[name]["ms_on_sahi_frames"] = round(statistics.median(on) * 1000, 1) if on else None
    doc = {"benchmark": "guided_tiling", "frames": len(times["guided"]), "seed": args.seed, "threads": args.threads,
           "margin": args.margin, "roi_conf": args.roi_conf,
           "model": args.model.name, "cpu_flags": cpu_flags(), "sides": summary,
           "sahi_over_guided": ratio("sahi", "guided"), "all_over_guided": ratio("all tiles", "guided"),
           "sahi_over_all": ratio("sahi", "all tiles")}
    print(f"frame by frame (median of ratios): SAHI / guided {doc['sahi_over_guided']}, every tile / guided "
          f"{doc['all_over_guided']}, SAHI / every tile {doc['sahi_over_all']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
