"""`pli data augment`: albumentations pipelines for UAV conditions, boxes kept consistent.

Only the train split is augmented; val/test are copied unchanged so that metrics stay
comparable with the source dataset.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
from tqdm import tqdm

from training.dataset import YoloDataset, fresh_split_dirs, label_path_for, write_data_yaml, yolo_lines

log = logging.getLogger(__name__)
PRESETS = ("uav",)


def uav_transforms() -> list[A.BasicTransform]:
    """What a drone camera meets: weather and glare, shadows, motion, exposure, small pose changes."""
    return [
        A.HorizontalFlip(p=0.5),
        A.Affine(scale=(0.85, 1.15), rotate=(-8, 8), translate_percent=(-0.05, 0.05), p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.5),
        A.OneOf(
            [
                A.RandomFog(fog_coef_range=(0.1, 0.35), alpha_coef=0.08),
                A.RandomRain(slant_range=(-10, 10), drop_width=1, blur_value=3, brightness_coefficient=0.85),
                A.RandomSunFlare(flare_roi=(0, 0, 1, 0.5), src_radius=160, num_flare_circles_range=(3, 6)),
                A.RandomShadow(shadow_roi=(0, 0.3, 1, 1), num_shadows_limit=(1, 2)),
            ],
            p=0.4,
        ),
        A.MotionBlur(blur_limit=(3, 7), p=0.2),
    ]


def build_pipeline(transforms: list[A.BasicTransform], min_visibility: float = 0.3,
                   seed: int | None = None) -> A.Compose:
    """Boxes in YOLO form, clipped to the image; a box with less than `min_visibility` of its
    area left in the frame after a geometric transform is dropped with its label."""
    return A.Compose(
        transforms,
        bbox_params=A.BboxParams(format="yolo", label_fields=["class_labels"], min_visibility=min_visibility,
                                 clip=True),
        seed=seed,
    )


def apply(pipeline: A.Compose, image_bgr: np.ndarray, yolo_boxes: np.ndarray,
          class_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image BGR, boxes (N, 4) YOLO, class ids (N,)); albumentations' colour effects want RGB."""
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    out = pipeline(image=rgb, bboxes=np.asarray(yolo_boxes, np.float64).reshape(-1, 4),
                   class_labels=np.asarray(class_ids).tolist())
    boxes = np.asarray(out["bboxes"], np.float64).reshape(-1, 4)
    ids = np.asarray(out["class_labels"], dtype=np.int64).reshape(-1)  # labels come back as floats
    return cv2.cvtColor(out["image"], cv2.COLOR_RGB2BGR), boxes, ids


def _read_yolo_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.exists() or not path.read_text().strip():
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    arr = np.loadtxt(path, ndmin=2)
    return arr[:, 1:5], arr[:, 0].astype(np.int64)


def augment_dataset(src: Path, out: Path, preset: str = "uav", copies: int = 2, seed: int = 0,
                    min_visibility: float = 0.3, progress: bool = True) -> dict[str, int]:
    """Write a YOLO dataset at `out`: originals of every split plus `copies` augmented variants
    of each train image. Returns counts of images written per split."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {PRESETS}")
    if copies < 0:
        raise ValueError("--copies must be >= 0")
    ds = YoloDataset.open(src)
    pipeline = build_pipeline(uav_transforms(), min_visibility, seed)
    counts: dict[str, int] = {}
    for split in ds.distinct_splits():
        img_dir, lab_dir = fresh_split_dirs(out, split)
        n = 0
        images = ds.images(split)
        for img_path in tqdm(images, desc=f"augmenting {split}", unit="img", disable=not progress):
            labels = label_path_for(img_path)
            shutil.copyfile(img_path, img_dir / img_path.name)
            if labels.exists():
                shutil.copyfile(labels, lab_dir / f"{img_path.stem}.txt")
            else:
                (lab_dir / f"{img_path.stem}.txt").write_text("")
            n += 1
            if split != "train" or copies == 0:
                continue
            image = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("%s: unreadable image; not augmented", img_path)
                continue
            boxes, ids = _read_yolo_labels(labels)
            for k in range(copies):
                aug, aboxes, aids = apply(pipeline, image, boxes, ids)
                stem = f"{img_path.stem}_aug{k}"
                cv2.imwrite(str(img_dir / f"{stem}.jpg"), aug, [cv2.IMWRITE_JPEG_QUALITY, 92])
                (lab_dir / f"{stem}.txt").write_text(yolo_lines(aids, aboxes))
                n += 1
        counts[split] = n
    write_data_yaml(out, ds.names, {s: f"images/{s}" for s in counts})
    log.info("augmented %s -> %s: %s", src, out, counts)
    return counts
