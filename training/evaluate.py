"""`pli eval`: mAP50 and mAP50-95 per class (pycocotools), precision/recall at the operating
threshold, for `.pt` (ultralytics) and `.onnx` models (the edge detector, exactly as flown).

Protocol, as ultralytics' val: confidence 0.001, NMS IoU 0.7, up to 300 detections per image,
the model's own input size. Classes are matched by name, not by id, so a model and a dataset
whose class lists differ (an older model on a newer campaign, a 2-class public set against the
3-class model) are compared on what they share: model classes with no ground truth in the split
are left out of `per_class` and of the mean; data classes the model lacks are reported, with
their box counts, and left out too. `class_map` renames data classes first (`-` drops one).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.detections import Detections
from edge.detector import Detector, ModelError
from training.dataset import YoloDataset

log = logging.getLogger(__name__)
EVAL_CONF, EVAL_IOU, MAX_DET = 0.001, 0.7, 300


@dataclass
class EvalResult:
    map50: float
    map50_95: float
    per_class: dict[str, dict[str, float]]
    precision: float
    recall: float
    conf: float
    images: int
    pr_per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    not_in_model: dict[str, int] = field(default_factory=dict)  # data class -> boxes the model cannot score
    not_in_data: list[str] = field(default_factory=list)  # model classes with no ground truth here

    @property
    def scored(self) -> list[str]:
        return list(self.per_class)

    def to_json(self) -> dict:
        return {"map50": round(self.map50, 4), "map50_95": round(self.map50_95, 4),
                "per_class": {k: {m: round(v, 4) for m, v in d.items()} for k, d in self.per_class.items()},
                "precision": round(self.precision, 4), "recall": round(self.recall, 4), "conf": self.conf,
                "images": self.images, "scored_classes": self.scored, "not_in_model": self.not_in_model,
                "not_in_data": self.not_in_data}


class Predictor:
    """Predictions for one image as Detections, whatever the model format."""

    def __init__(self, model: Path, imgsz: int | None = None):
        self.model = Path(model)
        if self.model.suffix == ".onnx":
            self.detector = Detector(self.model, conf=EVAL_CONF, iou=EVAL_IOU, max_det=MAX_DET)
            self.names = self.detector.names
            self.conf = float(self.detector.info.metadata.get("conf", 0.25))
            self.imgsz = self.detector.info.imgsz[0]
        elif self.model.suffix == ".pt":
            from training.yolo import ultralytics

            if not self.model.exists():
                raise ModelError(f"{self.model}: no such weights file")
            self.yolo = ultralytics().YOLO(str(self.model))
            self.names = [self.yolo.names[k] for k in sorted(self.yolo.names)]
            self.conf = 0.25
            self.imgsz = imgsz or int(self.yolo.overrides.get("imgsz") or 640)
        else:
            raise ModelError(f"{self.model}: expected a .pt or .onnx model")

    def __call__(self, image: np.ndarray) -> Detections:
        if self.model.suffix == ".onnx":
            return self.detector(image)
        r = self.yolo.predict(image, imgsz=self.imgsz, conf=EVAL_CONF, iou=EVAL_IOU, max_det=MAX_DET, verbose=False)[0]
        b = r.boxes
        return Detections(b.xyxy.cpu().numpy(), b.conf.cpu().numpy(), b.cls.cpu().numpy().astype(int), self.names)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _match_counts(dets: Detections, gt_xyxy: np.ndarray, gt_cls: np.ndarray, nc: int) -> np.ndarray:
    """(nc, 3) true positives, predictions, ground truths at IoU 0.5, greedy by score."""
    out = np.zeros((nc, 3), dtype=np.int64)
    for c in range(nc):
        d = dets[dets.class_id == c]
        g = gt_xyxy[gt_cls == c]
        out[c, 1:] = len(d), len(g)
        if len(d) == 0 or len(g) == 0:
            continue
        iou = _iou(d.xyxy[np.argsort(-d.confidence)], g)
        taken = np.zeros(len(g), bool)
        for row in iou:
            row = np.where(taken, -1, row)
            j = int(row.argmax())
            if row[j] >= 0.5:
                taken[j] = True
                out[c, 0] += 1
    return out


def evaluate(model: Path, data: Path, split: str = "val", imgsz: int | None = None,
             progress: bool = True, class_map: Mapping[str, str | None] | None = None) -> EvalResult:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    predictor = Predictor(model, imgsz)  # a broken model is the first thing to report
    ds = YoloDataset.open(data)
    paths = ds.images(split)
    names = list(predictor.names)  # scored in the model's own class ids
    mapped = [(class_map or {}).get(n, n) for n in ds.names]
    to_model = np.array([names.index(m) if m in names else -1 for m in mapped], dtype=np.int64)
    if not (to_model >= 0).any():
        raise ValueError(f"no class of the data {ds.names} is a class of the model {names}: nothing to score "
                         "(rename data classes with --map SRC=DST)")
    nc = len(names)
    not_in_model: dict[str, int] = {}
    images, annotations, results = [], [], []
    counts = np.zeros((nc, 3), dtype=np.int64)
    for img_id, path in enumerate(tqdm(paths, desc=f"evaluating {split}", unit="img",
                                       disable=not progress), start=1):
        loaded = ds.read(path)
        if loaded is None:
            continue
        image, gt_xyxy, data_cls = loaded
        gt_cls = to_model[data_cls]
        for c in data_cls[gt_cls < 0]:
            if mapped[c] is not None:  # a class mapped to "-" is dropped on purpose, not reported
                not_in_model[mapped[c]] = not_in_model.get(mapped[c], 0) + 1
        gt_xyxy, gt_cls = gt_xyxy[gt_cls >= 0], gt_cls[gt_cls >= 0]
        h, w = image.shape[:2]
        images.append({"id": img_id, "width": w, "height": h, "file_name": path.name})
        for box, c in zip(gt_xyxy, gt_cls, strict=True):
            bw, bh = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": img_id, "category_id": int(c),
                                "bbox": [float(box[0]), float(box[1]), float(bw), float(bh)],
                                "area": float(bw * bh), "iscrowd": 0})
        dets = predictor(image)
        for box, s, c in zip(dets.xyxy, dets.confidence, dets.class_id, strict=True):
            results.append({"image_id": img_id, "category_id": int(c), "score": float(s),
                            "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]})
        counts += _match_counts(dets[dets.confidence >= predictor.conf], gt_xyxy, gt_cls, nc)
    if not images:
        raise ValueError(f"{data}: no readable images in the {split} split")

    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations,
                  "categories": [{"id": i, "name": n} for i, n in enumerate(names)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(results) if results else None
    per_class: dict[str, dict[str, float]] = {}
    if dt is not None:
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = [1, 10, MAX_DET]
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
            ev.accumulate()
        prec = ev.eval["precision"]  # (iou thresholds, recall points, classes, areas, max dets)
        for k, cat in enumerate(ev.params.catIds):
            if not any(a["category_id"] == cat for a in annotations):
                continue  # no ground truth: left out
            p = prec[:, :, k, 0, -1]
            ap = [float(np.mean(p[t][p[t] > -1])) if (p[t] > -1).any() else 0.0 for t in range(p.shape[0])]
            per_class[names[cat]] = {"map50": ap[0], "map50_95": float(np.mean(ap))}
    else:
        per_class = {names[c]: {"map50": 0.0, "map50_95": 0.0} for c in range(nc) if counts[c, 2]}
    tp, npred, ngt = counts[:, 0], counts[:, 1], counts[:, 2]
    present = ngt > 0
    pr = {names[c]: {"precision": float(tp[c] / max(npred[c], 1)), "recall": float(tp[c] / ngt[c])}
          for c in range(nc) if present[c]}
    if not_in_model:
        log.warning("data classes the model lacks, left out of the mean: %s", not_in_model)
    return EvalResult(
        map50=float(np.mean([v["map50"] for v in per_class.values()])) if per_class else 0.0,
        map50_95=float(np.mean([v["map50_95"] for v in per_class.values()])) if per_class else 0.0,
        per_class=per_class,
        precision=float(np.mean([v["precision"] for v in pr.values()])) if pr else 0.0,
        recall=float(np.mean([v["recall"] for v in pr.values()])) if pr else 0.0,
        conf=predictor.conf, images=len(images), pr_per_class=pr, not_in_model=not_in_model,
        not_in_data=[names[c] for c in range(nc) if not present[c]],
    )
