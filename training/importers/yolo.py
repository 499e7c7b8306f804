"""YOLO datasets: a folder with data.yaml (its splits are kept as source splits), or bare
`images/` + `labels/` folders with class names from `classes.txt`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from training.dataset import (
    IMAGE_SUFFIXES,
    Report,
    Sample,
    YoloDataset,
    label_path_for,
    read_label_file,
    unique_names,
)
from training.importers.registry import register


def _sources(src: Path) -> tuple[list[str], list[tuple[Path, str | None]]]:
    if (src / "data.yaml").exists() or src.suffix in (".yaml", ".yml"):
        ds = YoloDataset.open(src)
        items = [(img, split) for split in ds.distinct_splits() for img in ds.images(split)]
        return ds.names, items
    classes = src / "classes.txt"
    if not classes.exists():
        raise FileNotFoundError(f"{src}: neither data.yaml nor classes.txt found")
    names = [line.strip() for line in classes.read_text().splitlines() if line.strip()]
    items = [(p, None) for p in sorted(src.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    return names, items


@register("yolo")
def import_yolo(src: Path, report: Report) -> Iterator[Sample]:
    names, items = _sources(src)
    paths = [p for p, _ in items]
    root = src if src.is_dir() else src.parent
    for (img, split), name in zip(items, unique_names(paths, root), strict=True):
        try:
            with Image.open(img) as im:  # header only: the import pipeline decodes it later
                size = im.size
        except (OSError, ValueError):
            yield Sample(img, name, 0, 0, np.zeros((0, 4)), [], split=split)  # reported there
            continue
        label = label_path_for(img)
        try:
            xyxy, labels = read_label_file(label, size[0], size[1], names)
        except ValueError as exc:
            report.warn(label, f"{exc}; image skipped")
            continue
        yield Sample(img, name, size[0], size[1], np.asarray(xyxy), labels, split=split)
