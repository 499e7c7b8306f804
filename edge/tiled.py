"""Tiled inference for high-resolution photos, and the merge that makes one box per object.

A 4000x3000 photo shrunk to a 640 px input turns a missing disc into a few pixels; cut into
model-sized tiles it keeps its native size. Tiles overlap, so an object near a tile edge is
seen whole in one tile and cut in the next: boxes of the same class are merged when one
covers most of the other (intersection over the smaller box), the more confident one kept,
which removes cut copies that plain IoU-NMS would keep. An optional full-frame pass adds the
large objects that no tile contains whole.

Guided tiling (`detect_guided`) skips the tiles that cannot hold a fault: a coarse pass (the
frame in four overlapping quarters, each at the model's input size: about a third of the full
resolution; one full-frame pass at a sixth sees too little) run at a low threshold finds where
insulators, nests and faults may be, and only the tiles of the same grid that meet those places,
widened by a margin, are run at full resolution; "on" keeps tiling everything. "auto" guides a
photo past four times the model input and tiles every tile of a smaller large frame (`auto_mode`).
"""

from __future__ import annotations

import numpy as np

from edge.detections import Detections
from edge.detector import Detector
from edge.tiling import tile_windows

MERGE_IOS = 0.6


def merge(dets: Detections, ios: float = MERGE_IOS) -> Detections:
    """Greedy, class-aware: drop a box when a more confident box of its class covers `ios` of it."""
    if len(dets) < 2:
        return dets
    order = np.argsort(-dets.confidence, kind="stable")
    xyxy, cls = dets.xyxy[order], dets.class_id[order]
    area = np.prod(np.clip(xyxy[:, 2:] - xyxy[:, :2], 0, None), axis=1)
    keep = np.ones(len(order), bool)
    for i in range(len(order)):
        if not keep[i]:
            continue
        rest = np.flatnonzero(keep[i + 1 :]) + i + 1
        rest = rest[cls[rest] == cls[i]]
        if rest.size == 0:
            continue
        lt = np.maximum(xyxy[i, :2], xyxy[rest, :2])
        rb = np.minimum(xyxy[i, 2:], xyxy[rest, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
        smaller = np.maximum(np.minimum(area[i], area[rest]), 1e-9)
        keep[rest[inter / smaller > ios]] = False
    return dets[order[keep]]


def should_tile(image_shape: tuple[int, ...], model_size: tuple[int, int]) -> bool:
    """Automatic rule: tile when the long side exceeds twice the model input."""
    return max(image_shape[:2]) > 2 * max(model_size)


def auto_mode(image_shape: tuple[int, ...], model_size: tuple[int, int]) -> str:
    """What "auto" does with a frame: guided tiles past four times the model input (a 4000x3000
    photo: the same fault recall as every tile and as SAHI on 262 fault boxes, at a quarter of
    the time; docs/benchmarks.md), every tile past twice it (1080p video), else one pass."""
    long = max(image_shape[:2])
    return "guided" if long > 4 * max(model_size) else "on" if long > 2 * max(model_size) else "off"


def detect_tiled(det: Detector, image: np.ndarray, tile: int | None = None, overlap: float = 0.2,
                 full_frame: bool = True, conf: float | None = None) -> Detections:
    h, w = image.shape[:2]
    size = tile or max(det.info.imgsz)
    windows = tile_windows(w, h, size, overlap)
    crops = [image[y1:y2, x1:x2] for x1, y1, x2, y2 in windows]
    parts = []
    for (x1, y1, _, _), d in zip(windows, det.detect_batch(crops, conf), strict=True):
        parts.append(Detections(d.xyxy + np.array([x1, y1, x1, y1], np.float32), d.confidence, d.class_id,
                                det.names))
    if full_frame:
        parts.append(det(image, conf))
    return merge(Detections.merge(parts))


ROI_CONF = 0.02  # the guiding pass: low, to miss nothing a tile could confirm (0.05 missed 3 small defects)
ROI_MARGIN = 1.0  # of a guiding box's size, on every side (0.5 missed them too)


def guide_windows(windows: np.ndarray, boxes: np.ndarray, margin: float = ROI_MARGIN,
                  min_pad: float = 32.0) -> np.ndarray:
    """The windows that meet any box widened by `margin` of its size (at least `min_pad` px)."""
    if len(boxes) == 0:
        return windows[:0]
    wh = boxes[:, 2:] - boxes[:, :2]
    pad = np.maximum(wh * margin, min_pad)
    grown = np.concatenate([boxes[:, :2] - pad, boxes[:, 2:] + pad], axis=1)
    meets = ((windows[:, None, 0] < grown[None, :, 2]) & (windows[:, None, 2] > grown[None, :, 0])
             & (windows[:, None, 1] < grown[None, :, 3]) & (windows[:, None, 3] > grown[None, :, 1]))
    return windows[meets.any(axis=1)]


def coarse_windows(width: int, height: int) -> np.ndarray:
    """Four windows, each half the long side square (2x2, overlapping where the frame is not square):
    a 4000x3000 frame seen at about a third of its resolution, twice the detail of one pass."""
    side = (max(width, height) + 1) // 2
    return tile_windows(width, height, min(side, max(width, height)), 0.0)


def detect_guided(det: Detector, image: np.ndarray, tile: int | None = None, overlap: float = 0.2,
                  conf: float | None = None, roi_conf: float = ROI_CONF, margin: float = ROI_MARGIN) -> Detections:
    """Tiles only where a coarse pass saw something of any class (see the module's doc)."""
    h, w = image.shape[:2]
    size = tile or max(det.info.imgsz)
    coarse = coarse_windows(w, h)
    guide = Detections.merge(
        Detections(d.xyxy + np.array([x1, y1, x1, y1], np.float32), d.confidence, d.class_id, det.names)
        for (x1, y1, _, _), d in zip(coarse, (det(image[y1:y2, x1:x2], roi_conf) for x1, y1, x2, y2 in coarse),
                                     strict=True))
    threshold = det.info.conf if conf is None else conf
    windows = guide_windows(tile_windows(w, h, size, overlap), guide.xyxy, margin)
    parts = [guide[guide.confidence >= threshold]]
    if len(windows):
        crops = [image[y1:y2, x1:x2] for x1, y1, x2, y2 in windows]
        for (x1, y1, _, _), d in zip(windows, det.detect_batch(crops, conf), strict=True):
            parts.append(Detections(d.xyxy + np.array([x1, y1, x1, y1], np.float32), d.confidence, d.class_id,
                                    det.names))
    return merge(Detections.merge(parts))


def detect(det: Detector, image: np.ndarray, mode: str = "auto", **kwargs: object) -> Detections:
    """`mode`: "auto" (`auto_mode`), "on" (every tile), "guided" (tiles where the coarse pass saw
    something) or "off"; kwargs go to the tiling function."""
    if mode not in ("auto", "on", "guided", "off"):
        raise ValueError(f"tiling must be auto, on, guided or off, not {mode!r}")
    if mode == "auto":
        mode = auto_mode(image.shape, det.info.imgsz)
    if mode == "guided" and should_tile(image.shape, det.info.imgsz):
        return detect_guided(det, image, **kwargs)
    if mode == "on":
        return detect_tiled(det, image, **kwargs)
    return det(image, kwargs.get("conf"))
