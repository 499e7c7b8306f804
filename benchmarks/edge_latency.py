"""Edge detector speed and agreement, side by side in one run, on the same ONNX model and frames.

    .venv/bin/python benchmarks/edge_latency.py [--model models/pli-default.onnx] [--threads 2]

1. HD frames (1920x1080, a synthetic flight; decode excluded): per-frame time of
   - bare: `session.run` on the identical input tensor our pre-processing makes;
   - ours: `Detector.__call__` (letterbox, the same session call, decode and NMS);
   - ultralytics: `YOLO(model.onnx).predict` (its own pre/post-processing, same ONNX file).
   Blocks of all frames per side, rotated each repetition; medians over frames x reps; same
   session options and thread count.
2. Agreement: ultralytics' boxes matched by ours (same class, IoU >= 0.9) on the HD frames plus
   CPLID photos (where the dataset is present), at the model's operating threshold.
3. Tiled 4000x3000 synthetic flight: our tiled inference against SAHI's sliced prediction with the
   same ONNX model, on an identical tile grid (640 px tiles, 0.2 overlap, plus a full-frame pass
   each), and our tiling without the full-frame pass; recall of the ground-truth fault boxes
   (defect, bird_nest; IoU >= 0.5) for each, and the small-defect recall of one full-frame pass.

The last line is one JSON object with e2e_over_bare, ultralytics_over_ours, sahi_over_ours_tiled
and agreement (plus the figures behind them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.detections import Detections  # noqa: E402
from edge.detector import Detector  # noqa: E402
from edge.tiled import detect_tiled  # noqa: E402
from training.dataset import YoloDataset  # noqa: E402
from training.evaluate import _iou  # noqa: E402
from training.synth.flight import generate_flight  # noqa: E402
from training.yolo import ultralytics  # noqa: E402

FAULTS = ("defect", "bird_nest")


def _ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def _ul_dets(result, names: list[str]) -> Detections:
    b = result.boxes
    return Detections(b.xyxy.numpy().astype(np.float32), b.conf.numpy().astype(np.float32),
                      b.cls.numpy().astype(np.int64), names)


def matched(ref: Detections, ours: Detections, iou: float) -> int:
    """How many of `ref`'s boxes have a box of ours of the same class at IoU >= iou (one-to-one)."""
    if len(ref) == 0 or len(ours) == 0:
        return 0
    ious = _iou(ref.xyxy, ours.xyxy)
    ious[ref.class_id[:, None] != ours.class_id[None, :]] = 0
    taken = np.zeros(len(ours), bool)
    hits = 0
    for i in np.argsort(-ref.confidence):
        j = int(np.argmax(np.where(taken, 0, ious[i])))
        if ious[i, j] >= iou and not taken[j]:
            taken[j] = True
            hits += 1
    return hits


def recall(dets: Detections, gt_xyxy: np.ndarray, gt_cls: np.ndarray, classes: list[int]) -> tuple[int, int]:
    """(found, total) ground-truth boxes of `classes` with a same-class detection at IoU >= 0.5."""
    keep = np.isin(gt_cls, classes)
    gt = Detections(gt_xyxy[keep].astype(np.float32), np.ones(int(keep.sum()), np.float32),
                    gt_cls[keep].astype(np.int64), dets.names)
    return matched(gt, dets, 0.5), len(gt)


def hd_speed(det: Detector, yolo, frames: list[np.ndarray], reps: int) -> dict:
    conf, imgsz = det.info.conf, max(det.info.imgsz)
    tensors = [det.preprocess([f])[0] for f in frames]
    for f, t in zip(frames[:3], tensors[:3], strict=True):  # warm-up: sessions, caches, ultralytics' setup
        det.run(t), det(f), yolo.predict(f, imgsz=imgsz, conf=conf, iou=det.iou, verbose=False)
    calls = {
        "bare": lambda f, t: det.run(t),
        "ours": lambda f, t: det(f),
        "ultralytics": lambda f, t: yolo.predict(f, imgsz=imgsz, conf=conf, iou=det.iou, verbose=False),
    }
    order = list(calls)
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(reps):
        order = order[1:] + order[:1]  # rotate: no side always runs after the same other
        for name in order:
            for f, t in zip(frames, tensors, strict=True):
                t0 = time.perf_counter()
                calls[name](f, t)
                times[name].append(time.perf_counter() - t0)
    return {k: _ms(v) for k, v in times.items()} | {"input": list(tensors[0].shape)}


def agreement(det: Detector, yolo, images: list[np.ndarray]) -> dict:
    conf, imgsz = det.info.conf, max(det.info.imgsz)
    total = hits = 0
    for im in images:
        ref = _ul_dets(yolo.predict(im, imgsz=imgsz, conf=conf, iou=det.iou, verbose=False)[0], det.names)
        total += len(ref)
        hits += matched(ref, det(im), 0.9)
    return {"boxes": total, "matched": hits, "agreement": round(hits / total, 4) if total else None}


def sahi_detector(det: Detector, model: Path):
    """SAHI's sliced prediction with the same ONNX model, 640 px slices at 0.2 overlap and its
    full-frame pass, as a function of a BGR frame to our `Detections`."""
    from sahi import AutoDetectionModel
    from sahi.predict import get_sliced_prediction

    sahi_model = AutoDetectionModel.from_pretrained(model_type="ultralytics", model_path=str(model),
                                                    confidence_threshold=det.info.conf, device="cpu",
                                                    image_size=max(det.info.imgsz))

    def sahi(im: np.ndarray) -> Detections:
        preds = get_sliced_prediction(im[:, :, ::-1].copy(), sahi_model, slice_height=640, slice_width=640,
                                      overlap_height_ratio=0.2, overlap_width_ratio=0.2,
                                      perform_standard_pred=True, verbose=0).object_prediction_list
        xyxy = np.array([[p.bbox.minx, p.bbox.miny, p.bbox.maxx, p.bbox.maxy] for p in preds], np.float32)
        return Detections(xyxy.reshape(-1, 4), np.array([p.score.value for p in preds], np.float32),
                          np.array([p.category.id for p in preds], np.int64), det.names)

    return sahi


def tiled(det: Detector, model: Path, flight: Path, reps: int) -> dict:
    sahi = sahi_detector(det, model)
    ds = YoloDataset.open(flight / "data.yaml")
    loaded = [ds.read(p) for p in ds.images("train")]
    loaded = [x for x in loaded if x is not None]
    fault_ids = [det.names.index(c) for c in FAULTS]
    defect = [det.names.index("defect")]

    ways = {
        "sahi": sahi,
        "ours_same_grid": lambda im: detect_tiled(det, im, tile=640, overlap=0.2, full_frame=True),
        "ours_no_full_frame": lambda im: detect_tiled(det, im, tile=640, overlap=0.2, full_frame=False),
        "full_frame_only": lambda im: det(im),
    }
    for fn in ways.values():  # warm-up
        fn(loaded[0][0])
    times: dict[str, list[float]] = {k: [] for k in ways}
    found = {k: [0, 0] for k in ways}
    small = {k: [0, 0] for k in ways}
    for rep in range(reps):
        for im, gt_xyxy, gt_cls in loaded:
            for name, fn in ways.items():
                t0 = time.perf_counter()
                dets = fn(im)
                times[name].append(time.perf_counter() - t0)
                if rep == 0:
                    for acc, cls in ((found, fault_ids), (small, defect)):
                        f, n = recall(dets, gt_xyxy, gt_cls, cls)
                        acc[name][0] += f
                        acc[name][1] += n
    return {name: {"ms": _ms(times[name]), "fault_recall": round(found[name][0] / max(found[name][1], 1), 3),
                   "faults": found[name][1], "defect_recall": round(small[name][0] / max(small[name][1], 1), 3),
                   "defects": small[name][1]} for name in ways}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "models" / "pli-default.onnx")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime threads, ours and ultralytics' alike")
    ap.add_argument("--hd-frames", type=int, default=30)
    ap.add_argument("--k4-frames", type=int, default=6)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cplid", type=Path, default=REPO.parent / "shared" / "datasets" / "cplid")
    ap.add_argument("--cplid-images", type=int, default=120, help="CPLID photos added to the agreement set")
    ap.add_argument("--work", type=Path, help="folder for the rendered flights (default: a temporary one)")
    args = ap.parse_args()

    import onnxruntime as ort

    work = args.work or Path(tempfile.mkdtemp(prefix="edge-latency-"))
    hd_dir, k4_dir = work / "hd", work / "k4"
    if not (hd_dir / "data.yaml").exists():
        generate_flight(hd_dir, args.hd_frames, (1920, 1080), seed=41)
    if not (k4_dir / "data.yaml").exists():
        generate_flight(k4_dir, args.k4_frames, (4000, 3000), seed=31)
    hd = [cv2.imread(str(p)) for p in sorted((hd_dir / "images").glob("*.jpg"))]

    det = Detector(args.model, threads=args.threads)
    yolo = ultralytics().YOLO(str(args.model), task="detect")
    yolo.predict(hd[0], imgsz=max(det.info.imgsz), verbose=False)  # builds its predictor and session
    # Both sides get sessions with the same options (ultralytics would take onnxruntime's default
    # thread count). Timing runs in blocks of all frames per side, so each side's thread pool
    # spins between its own calls as in a flight loop, not while the other side runs.
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    det.session = ort.InferenceSession(str(args.model), opts, providers=["CPUExecutionProvider"])
    yolo.predictor.model.backend.session = ort.InferenceSession(str(args.model), opts,
                                                                providers=["CPUExecutionProvider"])

    speed = hd_speed(det, yolo, hd, args.reps)
    photos = sorted(args.cplid.rglob("*.jpg"))[: args.cplid_images] if args.cplid.is_dir() else []
    agree = agreement(det, yolo, hd + [cv2.imread(str(p)) for p in photos])
    tiles = tiled(det, args.model, k4_dir, max(1, args.reps - 1))

    print(f"HD 1920x1080, {len(hd)} frames x {args.reps}, {args.threads} threads, input {speed['input']}")
    print(f"  bare session.run {speed['bare']:.1f} ms | ours end-to-end {speed['ours']:.1f} ms | "
          f"ultralytics predict {speed['ultralytics']:.1f} ms")
    print(f"agreement: {agree['matched']}/{agree['boxes']} of ultralytics' boxes matched (same class, IoU >= 0.9) "
          f"on {len(hd)} HD frames + {len(photos)} CPLID photos")
    print(f"4000x3000, {args.k4_frames} frames: {'way':<20}{'ms/frame':>10}{'fault recall':>14}{'defect recall':>15}")
    for name, r in tiles.items():
        print(f"{'':<30}{name:<20}{r['ms']:>10.0f}{r['fault_recall']:>14.3f}{r['defect_recall']:>15.3f}")
    full = tiles["full_frame_only"]["defect_recall"]
    doc = {
        "benchmark": "edge_latency", "threads": args.threads, "model": args.model.name, "hd_ms": speed,
        "e2e_over_bare": round(speed["ours"] / speed["bare"], 3),
        "ultralytics_over_ours": round(speed["ultralytics"] / speed["ours"], 3),
        "sahi_over_ours_tiled": round(tiles["sahi"]["ms"] / tiles["ours_same_grid"]["ms"], 3),
        "sahi_over_ours_no_full_frame": round(tiles["sahi"]["ms"] / tiles["ours_no_full_frame"]["ms"], 3),
        "agreement": agree["agreement"], "agreement_boxes": agree["boxes"], "tiled": tiles,
        "tiled_over_full_frame_defect_recall": round(tiles["ours_same_grid"]["defect_recall"] / full, 3)
        if full else None,
    }
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
