"""Do the synthetic labels teach a detector? Train on one flight, find the faults of another.

Proof by something other than the renderer: ultralytics trains YOLOv8n from scratch (no
pretrained weights exist offline) on flight A and is validated by ultralytics on flight B,
rendered from a different seed (other towers, route, light, fault positions). Labels that
were wrong or inconsistent would not transfer. Prints a table, then one JSON line.

    .venv/bin/python benchmarks/synth_transfer.py --tile 320 --imgsz 320 --frames-train 80 --fault-repeat 2 --epochs 25
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="pli-yolo-cfg-"))

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.synth.flight import generate_flight, parse_size
from training.tiles import tile_dataset


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames-train", type=int, default=40)
    ap.add_argument("--frames-test", type=int, default=20)
    ap.add_argument("--seed-train", type=int, default=1)
    ap.add_argument("--seed-test", type=int, default=2)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--tile", type=int, default=640, help="train and test on tiles of this size (0: whole frames)")
    ap.add_argument("--fault-repeat", type=int, default=1, help="write train tiles holding a fault this many times")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--model", default="yolov8n.yaml")
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = ap.parse_args()

    import torch
    import ultralytics.utils.torch_utils as tu
    from ultralytics import YOLO

    tu.NUM_THREADS = os.cpu_count() or 1  # ultralytics leaves one core idle on CPU training

    work = args.work or Path(tempfile.mkdtemp(prefix="pli-synth-transfer-"))
    size = parse_size(args.size)
    t0 = time.perf_counter()
    a = generate_flight(work / "flight_a", args.frames_train, size, args.seed_train)
    b = generate_flight(work / "flight_b", args.frames_test, size, args.seed_test)
    train_dir, val_dir = a.out / "images", b.out / "images"
    if args.tile:
        # Tiles at native resolution, as the drone cuts its high-resolution frames.
        tile_dataset(a.out, work / "tiles_a", size=args.tile, seed=1, fault_repeat=args.fault_repeat)
        tile_dataset(b.out, work / "tiles_b", size=args.tile, seed=2, keep_empty=1.0)
        train_dir, val_dir = work / "tiles_a/images/train", work / "tiles_b/images/train"
    render_s = time.perf_counter() - t0
    # Train on A, validate on B: a data.yaml whose val is the other flight.
    data = work / "a_to_b.yaml"
    names = list(a.boxes)
    data.write_text(json.dumps({"train": str(train_dir), "val": str(val_dir), "names": dict(enumerate(names))}))

    t1 = time.perf_counter()
    model = YOLO(args.model)
    model.train(data=str(data), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, workers=2, device="cpu",
                plots=False, amp=False, project=str(work / "runs"), name="train", exist_ok=True, seed=0,
                cache="ram", val=False, verbose=False)
    train_s = time.perf_counter() - t1
    best = work / "runs" / "train" / "weights" / "last.pt"
    metrics = YOLO(str(best)).val(data=str(data), imgsz=args.imgsz, batch=args.batch, device="cpu", plots=False,
                                  split="val", verbose=False, project=str(work / "runs"), name="val", exist_ok=True)
    per_class = {}
    for i, ci in enumerate(metrics.box.ap_class_index):
        per_class[names[int(ci)]] = {"map50": round(float(metrics.box.ap50[i]), 4),
                                     "map50_95": round(float(metrics.box.ap[i]), 4),
                                     "recall": round(float(metrics.box.r[i]), 4),
                                     "precision": round(float(metrics.box.p[i]), 4)}

    print(f"\nflight A (train): seed {args.seed_train}, {a.frames} frames {size[0]}x{size[1]}, boxes {a.boxes}")
    print(f"flight B (test):  seed {args.seed_test}, {b.frames} frames, boxes {b.boxes}, faults {b.faults}")
    tiles = f"{args.tile} px tiles" if args.tile else "whole frames"
    print(f"{args.model} from scratch on {tiles}, {args.epochs} epochs at {args.imgsz} px on CPU "
          f"({torch.get_num_threads()} threads): {train_s / 60:.1f} min (rendering {render_s:.0f} s)\n")
    print(f"{'class':<10} {'mAP50':>7} {'mAP50-95':>9} {'P':>6} {'R':>6}")
    for name, m in per_class.items():
        print(f"{name:<10} {m['map50']:>7.3f} {m['map50_95']:>9.3f} {m['precision']:>6.3f} {m['recall']:>6.3f}")
    print(f"{'all':<10} {metrics.box.map50:>7.3f} {metrics.box.map:>9.3f}")
    print(json.dumps({"benchmark": "synth_transfer", "model": args.model, "epochs": args.epochs, "imgsz": args.imgsz,
                      "size": args.size, "tile": args.tile,
                      "fault_repeat": args.fault_repeat, "frames_train": a.frames, "frames_test": b.frames,
                      "seed_train": args.seed_train, "seed_test": args.seed_test,
                      "train_minutes": round(train_s / 60, 2),
                      "map50": round(float(metrics.box.map50), 4), "map50_95": round(float(metrics.box.map), 4),
                      "per_class": per_class}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
