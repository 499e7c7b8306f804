"""Counts per split and class, and box sizes by COCO's area thresholds."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.boxes import box_area
from training.dataset import SPLITS, Report, Sample, YoloDataset
from training.importers import get_importer

# COCO: small < 32², medium < 96², large otherwise (pixels of the source image).
SMALL, MEDIUM = 32**2, 96**2
SIZE_BUCKETS = ("small", "medium", "large")


@dataclass
class SplitStats:
    images: int = 0
    unlabelled: int = 0
    images_with: dict[str, int] = field(default_factory=dict)
    boxes: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)  # class -> bucket -> count

    def to_dict(self) -> dict:
        return {"images": self.images, "unlabelled": self.unlabelled, "images_with": self.images_with,
                "boxes": self.boxes, "sizes": self.sizes}


def size_bucket(area: np.ndarray) -> np.ndarray:
    return np.where(area < SMALL, 0, np.where(area < MEDIUM, 1, 2))


def compute_stats(
    samples: Sequence[Sample], assignment: dict[str, str], class_names: Sequence[str]
) -> dict[str, SplitStats]:
    """Per split, plus an `all` entry."""
    out: dict[str, SplitStats] = {}
    for split in [s for s in SPLITS if s in assignment.values()] + ["all"]:
        st = SplitStats(
            images_with=dict.fromkeys(class_names, 0),
            boxes=dict.fromkeys(class_names, 0),
            sizes={c: dict.fromkeys(SIZE_BUCKETS, 0) for c in class_names},
        )
        for s in samples:
            if s.name not in assignment or (split != "all" and assignment[s.name] != split):
                continue
            st.images += 1
            st.unlabelled += not s.labels
            for c in set(s.labels):
                st.images_with[c] += 1
            buckets = size_bucket(box_area(s.xyxy))
            for label, b in zip(s.labels, buckets, strict=True):
                st.boxes[label] += 1
                st.sizes[label][SIZE_BUCKETS[b]] += 1
        out[split] = st
    return out


def render_table(stats: dict[str, SplitStats], class_names: Sequence[str], sizes: bool = False) -> str:
    """A plain-text table (rich renders it; captured so that logs and tests can read it)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="images / boxes per split and class")
    table.add_column("split")
    table.add_column("images", justify="right")
    for c in class_names:
        table.add_column(f"{c}\nimages", justify="right")
        table.add_column(f"{c}\nboxes", justify="right")
        if sizes:
            table.add_column(f"{c}\nS/M/L", justify="right")
    table.add_column("no labels", justify="right")
    for split, st in stats.items():
        row = [split, str(st.images)]
        for c in class_names:
            row += [str(st.images_with[c]), str(st.boxes[c])]
            if sizes:
                row.append("/".join(str(st.sizes[c][b]) for b in SIZE_BUCKETS))
        row.append(str(st.unlabelled))
        table.add_row(*row, end_section=split == "all")
    console = Console(width=200, file=io.StringIO())
    console.print(table)
    return console.file.getvalue()


def dataset_stats(path: Path) -> tuple[dict[str, SplitStats], list[str], Report]:
    """Stats of a YOLO dataset folder, read through the YOLO importer."""
    names = YoloDataset.open(Path(path)).names
    report = Report()
    samples = list(get_importer("yolo")(Path(path), report))
    assignment = {s.name: s.split or "train" for s in samples}
    return compute_stats(samples, assignment, names), names, report
