"""Issue 24, item 4: IDD's small faults at a larger input. The same run from COCO at 640 and at
larger inputs (IDD's 640x360 photos upsampled), scored on IDD's frozen test fifth by the edge
detector (FP32 and INT8), and what each costs the drone per 1080p frame.

    .venv/bin/python benchmarks/small_faults.py [--sizes 640,960] [--epochs 10]

IDD's broken sheds are about 31 px and its flashover marks about 17 px on a 640x360 photo: at
640 a YOLOv8n sees them through a stride-8 grid of 80x45 cells, a few cells each. Upsampled to
960 they cover 2.25x the cells, at 2.25x the pixels to run.

Every arm is otherwise equal: Ultralytics' COCO YOLOv8n (`--init`), every layer trainable,
AdamW at ultralytics' automatic rate, batch 8, seed 0, IDD's 195 training photos (class list 2;
`broken` -> defect, `pollution-flashover` -> flashover), validation on its 45 val photos each
epoch (the curve), the split exactly the `idd` campaign's (`cloud/campaigns.py`: ratios 0.65 /
0.15 / 0.2, seed 0), so the 60 test photos are the ones every other IDD figure uses.

Speed: a rendered 1920x1080 flight frame (seed 41), 2 onnxruntime threads, each model's own
session alone, warm-up 3 frames, the median over the frames of `Detector.__call__` (one pass,
letterboxed to the model's input) and of `edge.tiled.detect(..., "auto")` (what `pli edge run`
does with the frame at that input size).

Resumable: each arm's run folder is kept under --work; an arm stopped mid-run resumes from its
last.pt, a finished arm's line in benchmarks/results/small_faults.jsonl is not run again.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("YOLO_OFFLINE", "1")

from forgetting_experiment import IDD_MAP  # noqa: E402
from multiview_error import cpu_flags  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "small_faults.jsonl"
COCO = REPO.parent / "shared" / "pretrained" / "yolov8n-coco" / "yolov8n-coco.pt"
FAULTS = ("defect", "flashover")


def idd_data(idd: Path, work: Path) -> Path:
    """IDD split as the `idd` campaign splits it, in class list 2's order."""
    from cloud.campaigns import RATIOS
    from comms.classes import using_class_list
    from training.data_import import import_dataset

    out = work / "idd"
    if (out / "data.yaml").exists():
        return out / "data.yaml"
    with using_class_list(2):
        result = import_dataset(idd / "annotations.json", "coco", out, ratios=list(RATIOS), seed=0,
                                class_map=dict(IDD_MAP), progress=False)
    return result.data_yaml


def curve(results_csv: Path) -> list[dict]:
    """Per epoch: validation mAP50 and mAP50-95, as ultralytics wrote them."""
    if not results_csv.exists():
        return []
    with results_csv.open() as fh:
        rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(fh)]
    return [{"epoch": int(float(r["epoch"])), "map50": round(float(r["metrics/mAP50(B)"]), 4),
             "map50_95": round(float(r["metrics/mAP50-95(B)"]), 4)} for r in rows]


def train_arm(data: Path, init: Path, imgsz: int, epochs: int, work: Path) -> tuple[Path, list[dict]]:
    """The arm's best.pt, trained or resumed to `epochs`."""
    from training.train import train

    run = work / "runs" / f"idd-{imgsz}"
    done = curve(run / "results.csv")
    last = run / "weights" / "last.pt"
    if len(done) >= epochs and (run / "weights" / "best.pt").exists():
        return run / "weights" / "best.pt", done
    common = dict(project=work / "runs", name=f"idd-{imgsz}")
    if last.exists() and done:
        print(f"  resuming {run.name} after epoch {len(done)} of {epochs}", flush=True)
        result = train(data, resume=last, **common)
    else:
        result = train(data, str(init), imgsz=imgsz, epochs=epochs, batch=8, seed=0, deterministic=False,
                       patience=1000, workers=0, **common)
    return result.best, curve(result.run_dir / "results.csv")


def frame_ms(model: Path, frames: list, mode: str) -> float:
    from edge.detector import Detector
    from edge.tiled import detect

    det = Detector(model, threads=2)
    for f in frames[:3]:
        detect(det, f, mode)
    times = []
    for f in frames * 2:
        t0 = time.perf_counter()
        detect(det, f, mode)
        times.append(time.perf_counter() - t0)
    del det
    return round(statistics.median(times) * 1000, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idd", type=Path, default=REPO.parent / "shared" / "datasets" / "idd")
    ap.add_argument("--init", type=Path, default=COCO)
    ap.add_argument("--sizes", default="640,960", help="input sizes, one arm each, run in this order")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "small_faults")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    if not args.init.exists():
        ap.error(f"{args.init}: no such checkpoint (the COCO YOLOv8n of ../shared/pretrained)")
    import cv2

    from training.evaluate import evaluate
    from training.export import export_model
    from training.synth.flight import generate_flight

    args.work.mkdir(parents=True, exist_ok=True)
    data = idd_data(args.idd, args.work)
    kept = [json.loads(x) for x in args.results.read_text().splitlines()] if args.results.exists() else []
    flight = generate_flight(args.work / "hd", 10, (1920, 1080), seed=41, progress=False)
    frames = [cv2.imread(str(p)) for p in sorted((flight.out / "images").glob("*.jpg"))]
    calib = data.parent / "images" / "train"
    for imgsz in (int(s) for s in args.sizes.split(",")):
        key = f"coco-idd-{imgsz}-e{args.epochs}"
        if any(r["arm"] == key for r in kept):
            print(f"{key}: kept, skipped")
            continue
        t0 = time.perf_counter()
        best, epochs = train_arm(data, args.init, imgsz, args.epochs, args.work)
        minutes = round((time.perf_counter() - t0) / 60, 1)
        row: dict = {"arm": key, "imgsz": imgsz, "epochs": args.epochs, "train_minutes_this_run": minutes,
                     "curve": epochs, "cpu_flags": cpu_flags()}
        for precision in ("fp32", "int8"):
            onnx = args.work / "onnx" / f"idd-{imgsz}-{precision}.onnx"
            if not onnx.exists():
                export_model(best, onnx, imgsz=imgsz, dynamic_batch=True, int8=precision == "int8",
                             calib=calib if precision == "int8" else None, version=key)
            res = evaluate(onnx, data, "test", progress=False)
            row[precision] = {"test_map50": round(res.map50, 4), "test_map50_95": round(res.map50_95, 4),
                              "per_class": {k: round(v["map50"], 4) for k, v in res.per_class.items()},
                              "ms_1080p_one_pass": frame_ms(onnx, frames, "off"),
                              "ms_1080p_auto": frame_ms(onnx, frames, "auto")}
        kept.append(row)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with args.results.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    print(f"{'arm':<22} {'prec':<5} {'IDD test mAP50':>14} {'insulator':>9} {'defect':>7} {'flashover':>9} "
          f"{'ms 1080p one pass':>17} {'ms auto':>8}")
    for r in kept:
        for p in ("fp32", "int8"):
            c = r[p]["per_class"]
            print(f"{r['arm']:<22} {p:<5} {r[p]['test_map50']:>14.3f} {c.get('insulator', 0):>9.3f} "
                  f"{c.get('defect', 0):>7.3f} {c.get('flashover', 0):>9.3f} {r[p]['ms_1080p_one_pass']:>17.1f} "
                  f"{r[p]['ms_1080p_auto']:>8.1f}")
    print(json.dumps({"benchmark": "small_faults", "arms": [r["arm"] for r in kept], "cpu_flags": cpu_flags()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
