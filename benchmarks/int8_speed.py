"""INT8 vs FP32: session time on the same CPU and images, and the mAP each reaches.

Both ONNX files come from the same weights (`pli export`, with and without --int8). Session
time is the bare `session.run` on ready tensors (the same letterboxed images for both),
interleaved A B A B after a warm-up, with the same thread count; accuracy is `pli eval` on a
labelled split. Prints a table, then one JSON line.

    .venv/bin/python benchmarks/int8_speed.py --fp32 M.onnx --int8 M_int8.onnx --data data.yaml [--split val]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.detector import Detector
from training.dataset import YoloDataset
from training.evaluate import evaluate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fp32", type=Path, required=True)
    ap.add_argument("--int8", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=20, help="images timed per repetition")
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()

    models = {"fp32": Detector(args.fp32, threads=args.threads), "int8": Detector(args.int8, threads=args.threads)}
    paths = YoloDataset.open(args.data).images(args.split)[: args.images]
    frames = [cv2.imread(str(p)) for p in paths]
    tensors = [models["fp32"].preprocess([f])[0] for f in frames]  # same input tensors for both
    for det in models.values():  # warm-up
        for t in tensors[:3]:
            det.run(t)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.reps):
        for name, det in models.items():  # interleaved
            t0 = time.perf_counter()
            for t in tensors:
                det.run(t)
            times[name].append((time.perf_counter() - t0) / len(tensors) * 1000)
    acc = {name: evaluate(path, args.data, args.split, progress=False)
           for name, path in (("fp32", args.fp32), ("int8", args.int8))}

    print(f"{'model':<6} {'min ms':>8} {'median ms':>10} {'max ms':>8} {'mAP50':>7} {'mAP50-95':>9}")
    for name in models:
        t = times[name]
        print(f"{name:<6} {min(t):>8.2f} {statistics.median(t):>10.2f} {max(t):>8.2f} {acc[name].map50:>7.3f} "
              f"{acc[name].map50_95:>9.3f}")
    speedup = statistics.median(times["fp32"]) / statistics.median(times["int8"])
    drop = acc["fp32"].map50 - acc["int8"].map50
    print(f"INT8 speed-up {speedup:.2f}x, mAP50 drop {drop * 100:+.2f} points "
          f"({args.threads} threads, {len(tensors)} images x {args.reps} reps)")
    print(json.dumps({"benchmark": "int8_speed", "threads": args.threads, "imgsz": list(models["fp32"].info.imgsz),
                      "fp32_ms": round(statistics.median(times["fp32"]), 3),
                      "int8_ms": round(statistics.median(times["int8"]), 3), "speedup": round(speedup, 3),
                      "fp32": acc["fp32"].to_json(), "int8": acc["int8"].to_json(),
                      "map50_drop": round(drop, 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
