"""`pli data tile`: cut a YOLO dataset into overlapping tiles at native resolution.

A detector run on tiles of a 4000x3000 photo sees objects at their full pixel size; training
it on whole frames shrunk to the model input would teach it objects several times smaller.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from comms.classes import load_class_list
from edge.tiling import tile_windows
from training.boxes import box_area, xyxy_to_yolo
from training.dataset import (
    YoloDataset,
    fresh_split_dirs,
    write_data_yaml,
    yolo_lines,
)

log = logging.getLogger(__name__)


def tile_boxes(xyxy: np.ndarray, window: np.ndarray, min_visibility: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of one window, in window pixels, and the index of each kept source box.

    A box is kept when at least `min_visibility` of its area lies inside the window.
    """
    x1, y1, x2, y2 = window
    inter = np.stack([np.maximum(xyxy[:, 0], x1), np.maximum(xyxy[:, 1], y1),
                      np.minimum(xyxy[:, 2], x2), np.minimum(xyxy[:, 3], y2)], axis=1)
    area = box_area(xyxy)
    keep = np.flatnonzero((box_area(inter) >= min_visibility * np.maximum(area, 1e-9)) & (area > 0))
    return inter[keep] - np.array([x1, y1, x1, y1]), keep


def tile_dataset(src: Path, out: Path, size: int = 640, overlap: float = 0.2, min_visibility: float = 0.4,
                 keep_empty: float = 0.1, seed: int = 0, fault_repeat: int = 1,
                 progress: bool = True) -> dict[str, int]:
    """Write tiles of every split; keeps a seeded `keep_empty` share of tiles without boxes
    (background the detector must learn to leave alone). Train tiles holding a fault-class box
    are written `fault_repeat` times (rare classes oversampled). Returns tiles per split."""
    ds = YoloDataset.open(src)
    faults = {ds.names.index(n) for n in load_class_list().fault_names if n in ds.names}
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for split in ds.distinct_splits():
        img_dir, lab_dir = fresh_split_dirs(out, split)
        n = 0
        for path in tqdm(ds.images(split), desc=f"tiling {split}", unit="img", disable=not progress):
            loaded = ds.read(path)
            if loaded is None:
                continue
            image, xyxy, ids = loaded
            h, w = image.shape[:2]
            for win in tile_windows(w, h, size, overlap):
                boxes, keep = tile_boxes(xyxy, win, min_visibility)
                if len(keep) == 0 and rng.random() >= keep_empty:
                    continue
                x1, y1, x2, y2 = (int(v) for v in win)
                yolo = xyxy_to_yolo(boxes, x2 - x1, y2 - y1)
                labels = yolo_lines(ids[keep], yolo)
                copies = fault_repeat if split == "train" and faults & set(ids[keep].tolist()) else 1
                for r in range(copies):
                    stem = f"{path.stem}_x{x1}_y{y1}" + (f"_r{r}" if r else "")
                    cv2.imwrite(str(img_dir / f"{stem}.jpg"), image[y1:y2, x1:x2], [cv2.IMWRITE_JPEG_QUALITY, 95])
                    (lab_dir / f"{stem}.txt").write_text(labels)
                    n += 1
        counts[split] = n
    write_data_yaml(out, ds.names, {s: f"images/{s}" for s in counts})
    log.info("tiled %s -> %s: %s", src, out, counts)
    return counts
