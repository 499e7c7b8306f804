"""Golden frames across precisions: does a build of the shipped model find the golden frames of
another build? (Why the registry keeps golden frames per precision.)

    .venv/bin/python benchmarks/golden_precision.py [--frames 24] [--seed 21] [--margin 0.1]

Renders a synthetic flight, makes golden frames with the FP32 and with the INT8 model (the
shipped pair, `models/`), and checks each model against each set: how many golden detections
(same class, IoU >= 0.8) are not found again. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2

from edge import golden
from edge.detector import Detector
from training.synth.flight import generate_flight

MODELS = Path(__file__).resolve().parents[1] / "models"


def cpu_flags() -> str:
    flags = Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0]
    return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni") if f" {f}" in flags)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--margin", type=float, default=0.1)
    args = ap.parse_args()
    flight = generate_flight(Path(tempfile.mkdtemp(prefix="pli-golden-")), frames=args.frames, size=(1920, 1080),
                             seed=args.seed, progress=False)
    images = {p.name: cv2.imread(str(p)) for p in sorted((flight.out / "images").glob("*.jpg"))}
    models = {"fp32": Detector(MODELS / "pli-default.onnx"), "int8": Detector(MODELS / "pli-default-int8.onnx")}
    sets = {name: golden.make(det, images, 0.25, args.margin) for name, det in models.items()}
    result = {}
    print(f"{args.frames} frames (seed {args.seed}), threshold 0.25, margin {args.margin}, IoU >= 0.8; "
          f"CPU flags: {cpu_flags()}, {os.cpu_count()} cores")
    for made_by, doc in sets.items():
        total = sum(len(f["detections"]) for f in doc["frames"])
        for checked, det in models.items():
            missed = len(golden.check(det, doc))
            result[f"{made_by}->{checked}"] = {"golden": total, "missed": missed}
            print(f"golden by {made_by:<5} checked with {checked:<5}: {missed:>3} of {total} not found again")
    print(json.dumps({"benchmark": "golden_precision", "frames": args.frames, "seed": args.seed,
                      "margin": args.margin, "results": result, "cpu_flags": cpu_flags()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
