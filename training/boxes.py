"""Box format conversions, vectorised over (N, 4) arrays.

Internally every importer holds boxes as absolute pixel corners (x1, y1, x2, y2), which is
Pascal VOC's form (taken as continuous pixel coordinates, as ultralytics' own converter does).
YOLO is normalised (cx, cy, w, h); COCO is absolute (x, y, w, h).
"""

from __future__ import annotations

import numpy as np


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def xyxy_to_yolo(xyxy: np.ndarray, width: float, height: float) -> np.ndarray:
    b = _as_boxes(xyxy)
    out = np.empty_like(b)
    out[:, 0] = (b[:, 0] + b[:, 2]) / 2 / width
    out[:, 1] = (b[:, 1] + b[:, 3]) / 2 / height
    out[:, 2] = (b[:, 2] - b[:, 0]) / width
    out[:, 3] = (b[:, 3] - b[:, 1]) / height
    return out


def yolo_to_xyxy(cxcywh: np.ndarray, width: float, height: float) -> np.ndarray:
    b = _as_boxes(cxcywh)
    out = np.empty_like(b)
    out[:, 0] = (b[:, 0] - b[:, 2] / 2) * width
    out[:, 1] = (b[:, 1] - b[:, 3] / 2) * height
    out[:, 2] = (b[:, 0] + b[:, 2] / 2) * width
    out[:, 3] = (b[:, 1] + b[:, 3] / 2) * height
    return out


def xyxy_to_coco(xyxy: np.ndarray) -> np.ndarray:
    b = _as_boxes(xyxy)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def coco_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    b = _as_boxes(xywh)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def clip_xyxy(xyxy: np.ndarray, width: float, height: float) -> np.ndarray:
    b = _as_boxes(xyxy).copy()
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, width)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, height)
    return b


def box_area(xyxy: np.ndarray) -> np.ndarray:
    b = _as_boxes(xyxy)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
