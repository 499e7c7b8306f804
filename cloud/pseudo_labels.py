"""Weak labels for the photos nobody labels: the model's boxes, kept only where they can be
trusted, and the operators' alert reviews as evidence about whole photos.

A box is kept when
- its confidence clears its class's threshold, chosen on the campaign's validation split as
  the one that maximises F1 (IoU 0.5) there;
- it is stable under test-time augmentation: the mirrored photo and the photo scaled by
  `SCALES` each give a box of the same class at IoU >= `TTA_IOU` (mapped back);
- for flight frames, when a neighbour frame is given, it is seen there too (same class,
  IoU >= `TTA_IOU`: consecutive frames overlap; a box only one frame shows is noise).
Operators' reviews: a box an operator marked a false alarm is removed; a confirmed alert means
its fault is in the photo, so its box is added when the model's boxes lack it.
Every batch reports its precision and recall against ground truth where there is some.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from cloud import campaigns
from cloud.db import session_scope
from cloud.jobs import job
from cloud.label_studio import check_tasks_deliverable, put_tasks
from cloud.paths import DEFAULT_MODEL, cloud_dir
from cloud.selection_job import frames_of
from edge.detections import Detections
from edge.detector import Detector
from edge.golden import iou_matrix
from edge.tiled import detect
from training.boxes import xyxy_to_yolo
from training.dataset import YoloDataset, label_path_for, write_data_yaml, yolo_lines

TTA_IOU = 0.6
SCALES = (0.8,)
MATCH_IOU = 0.5

Predict = Callable[[np.ndarray], Detections]


def _matches(a_xyxy: np.ndarray, a_cls: np.ndarray, b_xyxy: np.ndarray, b_cls: np.ndarray, iou: float) -> np.ndarray:
    """For each box of a: is there a box of b of the same class at IoU >= iou."""
    if len(a_xyxy) == 0:
        return np.zeros(0, bool)
    if len(b_xyxy) == 0:
        return np.zeros(len(a_xyxy), bool)
    m = iou_matrix(a_xyxy, b_xyxy)
    m[np.asarray(a_cls)[:, None] != np.asarray(b_cls)[None, :]] = 0
    return m.max(1) >= iou


def tta_stable(predict: Predict, image: np.ndarray, dets: Detections, iou: float = TTA_IOU,
               scales: tuple[float, ...] = SCALES) -> np.ndarray:
    """Which of `dets` (the model's boxes on `image`) the mirrored and rescaled views find again."""
    h, w = image.shape[:2]
    keep = np.ones(len(dets), bool)
    flipped = predict(cv2.flip(image, 1))
    back = flipped.xyxy.copy()
    back[:, [0, 2]] = w - flipped.xyxy[:, [2, 0]]
    keep &= _matches(dets.xyxy, dets.class_id, back, flipped.class_id, iou)
    for s in scales:
        small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        d = predict(small)
        keep &= _matches(dets.xyxy, dets.class_id, d.xyxy / s, d.class_id, iou)
    return keep


def f1_thresholds(scores: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                  n_classes: int) -> dict[int, float]:
    """Per class, the confidence threshold that maximises F1 on validation. `scores`: per image
    (pred xyxy, pred confidence, pred class, true xyxy, true class)."""
    out = {}
    for c in range(n_classes):
        confs, hits, n_true = [], [], 0
        for p_xyxy, p_conf, p_cls, t_xyxy, t_cls in scores:
            pm, tm = np.asarray(p_cls) == c, np.asarray(t_cls) == c
            n_true += int(tm.sum())
            if pm.any():
                order = np.argsort(-np.asarray(p_conf)[pm])
                px, pc = np.asarray(p_xyxy)[pm][order], np.asarray(p_conf)[pm][order]
                tx = np.asarray(t_xyxy)[tm]
                used = np.zeros(len(tx), bool)
                for box, conf in zip(px, pc, strict=True):
                    hit = False
                    if len(tx):
                        ious = iou_matrix([box], tx)[0]
                        ious[used] = 0
                        j = int(ious.argmax())
                        if ious[j] >= MATCH_IOU:
                            used[j], hit = True, True
                    confs.append(float(conf))
                    hits.append(hit)
        if not confs or n_true == 0:
            continue
        order = np.argsort(-np.array(confs))
        c_sorted, h_sorted = np.array(confs)[order], np.array(hits)[order]
        tp = np.cumsum(h_sorted)
        precision, recall = tp / np.arange(1, len(tp) + 1), tp / n_true
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-9)
        out[c] = float(c_sorted[int(f1.argmax())])
    return out


@dataclass
class Review:
    """An operator's verdict on an alert in this photo: its box, class and status."""

    box: tuple[float, float, float, float]
    class_id: int
    status: str  # confirmed | false_alarm | reclassified ...


def pseudo_label(predict: Predict, image: np.ndarray, thresholds: dict[int, float], default: float = 0.5,
                 neighbour: np.ndarray | None = None, reviews: list[Review] = (), tta: bool = True) -> Detections:
    """The boxes to train on for one unlabelled photo."""
    d = predict(image)
    thr = np.array([thresholds.get(int(c), default) for c in d.class_id])
    keep = d.confidence >= thr
    if tta and keep.any():
        keep &= tta_stable(predict, image, d)
    if neighbour is not None and keep.any():
        n = predict(neighbour)
        keep &= _matches(d.xyxy, d.class_id, n.xyxy, n.class_id, TTA_IOU)
    xyxy, conf, cls = d.xyxy[keep], d.confidence[keep], d.class_id[keep]
    for r in reviews:
        box = np.array([r.box], float)
        if r.status == "false_alarm":
            drop = _matches(xyxy, cls, box, np.array([r.class_id]), MATCH_IOU)
            xyxy, conf, cls = xyxy[~drop], conf[~drop], cls[~drop]
        elif r.status == "confirmed" and not _matches(box, np.array([r.class_id]), xyxy, cls, MATCH_IOU).any():
            xyxy, conf, cls = np.vstack([xyxy, box]), np.append(conf, 1.0), np.append(cls, r.class_id)
    return Detections(xyxy, conf, cls, d.class_names)


def quality(pseudo: list[Detections], truth: list[tuple[np.ndarray, np.ndarray]],
            names: list[str] | None = None) -> dict:
    """Precision and recall (IoU 0.5, same class) of a batch of pseudo-labels against ground truth;
    with the model's class `names`, per class too (the rare fault classes are what weak labels
    must not get wrong, and a total over insulator boxes hides them)."""

    def score(keep) -> dict:  # keep: the class ids counted
        right = found = n_pseudo = n_true = 0
        for d, (t_xyxy, t_cls) in zip(pseudo, truth, strict=True):
            p, t = keep(d.class_id), keep(t_cls)
            n_pseudo += int(p.sum())
            n_true += int(t.sum())
            # pseudo boxes that are true, and true boxes they cover (a class's own boxes against all)
            right += int((_matches(d.xyxy, d.class_id, t_xyxy, t_cls, MATCH_IOU) & p).sum())
            found += int((_matches(t_xyxy, t_cls, d.xyxy, d.class_id, MATCH_IOU) & t).sum())
        return {"boxes": n_pseudo, "true_boxes": n_true,
                "precision": round(right / n_pseudo, 4) if n_pseudo else None,
                "recall": round(found / n_true, 4) if n_true else None}

    every = lambda c: np.ones(len(c), bool)  # noqa: E731
    out = score(every)
    if names is not None:
        out["per_class"] = {name: score(lambda c, i=i: np.asarray(c) == i)
                            for i, name in enumerate(names)}
    return out


def _flight_neighbours(paths: list) -> dict[int, int]:
    """Index of the next frame of the same flight, for each photo that has one."""

    f = frames_of(paths)
    where = {(str(fl), int(ix)): i for i, (fl, ix) in enumerate(zip(f.flight, f.index, strict=True))}
    return {i: where[(str(fl), int(ix) + 1)] for i, (fl, ix) in enumerate(zip(f.flight, f.index, strict=True))
            if (str(fl), int(ix) + 1) in where and not str(fl).startswith("#")}


def run(campaign: str, labelled: list[str] | None = None, model=None, conf: float = 0.05,
        project: int | None = None, cloud_url: str | None = None) -> dict:
    """A dataset version of the campaign's training photos: true labels for `labelled` (photo
    names), pseudo-labels for the rest; with its batch's precision and recall against the
    campaign's ground truth. With a Label Studio `project`, the pseudo-labelled photos become its
    tasks, their weak boxes as the predictions operators accept, fix or reject."""
    import json
    import os
    from datetime import UTC, datetime
    from pathlib import Path

    if project is not None:
        check_tasks_deliverable(cloud_url)
    with session_scope() as s:
        data = campaigns.dataset(campaigns.get(s, campaign))
    ds = YoloDataset.open(data)
    det = Detector(Path(model or DEFAULT_MODEL))
    names = list(det.names)
    to_model = {i: names.index(n) for i, n in enumerate(ds.names) if n in names}

    def predict(im):
        return detect(det, im, "auto", conf=conf)

    def truth(path):
        _, xyxy, cls = ds.read(path)
        keep = np.array([int(c) in to_model for c in cls], bool)
        return xyxy[keep], np.array([to_model[int(c)] for c in cls[keep]], int)

    val = []
    for p in ds.images("val"):
        d = predict(cv2.imread(str(p)))
        val.append((d.xyxy, d.confidence, d.class_id, *truth(p)))
    thresholds = f1_thresholds(val, len(names))
    pool = sorted(ds.images("train"))
    done = set(labelled or [])
    nxt = _flight_neighbours(pool)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = cloud_dir() / "pseudo" / campaign / stamp
    (out / "images" / "train").mkdir(parents=True)
    (out / "labels" / "train").mkdir(parents=True)
    made, truths, photos, sizes = [], [], [], []
    for i, p in enumerate(pool):
        os.symlink(p.resolve(), out / "images" / "train" / p.name)
        label = out / "labels" / "train" / f"{p.stem}.txt"
        if p.name in done:
            label.write_text(label_path_for(p).read_text() if label_path_for(p).exists() else "")
            continue
        image = cv2.imread(str(p))
        neighbour = cv2.imread(str(pool[nxt[i]])) if i in nxt else None
        d = pseudo_label(predict, image, thresholds, neighbour=neighbour)
        h, w = image.shape[:2]
        ids = [ds.names.index(names[int(c)]) for c in d.class_id]  # the dataset's class ids
        label.write_text(yolo_lines(ids, xyxy_to_yolo(d.xyxy, w, h)) if len(d) else "")
        made.append(d)
        truths.append(truth(p))
        photos.append(p)
        sizes.append((w, h))
    write_data_yaml(out, ds.names, {"train": "images/train", "val": str(ds.root / "images" / "val")})
    report = {"campaign": campaign, "model": str(model or DEFAULT_MODEL),
              "labelled": len(done & {p.name for p in pool}),
              "pseudo_labelled": len(made), "thresholds": {names[c]: t for c, t in thresholds.items()},
              **quality(made, truths, names), "data": str(out / "data.yaml")}
    if project is not None:
        from annotation import backend
        from cloud.selection_job import register_photos

        version = f"pseudo-label {campaign} {stamp}"
        ids = register_photos(campaign, photos)
        tasks = [{**backend.image_task(cloud_url, i, kind="pseudo_label"),
                  "predictions": [backend.prediction(d, w, h, version)]}
                 for i, d, (w, h) in zip(ids, made, sizes, strict=True)]
        report["label_studio"] = {"project": project, "tasks": put_tasks(project, cloud_url, tasks),
                                  "model_version": version}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


@job("pseudo_label")
def pseudo_label_job(campaign: str, labelled: list[str] | None = None, model: str | None = None,
                     project: int | None = None, cloud_url: str | None = None) -> dict:
    return run(campaign, labelled, model, project=project, cloud_url=cloud_url)
