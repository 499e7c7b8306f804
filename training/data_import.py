"""`pli data import`: any supported format -> a checked, split YOLO dataset."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from comms.classes import load_class_list
from training.dataset import Report, Sample, apply_class_map, readable_size, sanitize_boxes, write_yolo_dataset
from training.importers import get_importer
from training.split import apply_split_file, group_keys, stratified_group_split, write_split_file
from training.stats import SplitStats, compute_stats

log = logging.getLogger(__name__)
DEFAULT_RATIOS = (0.8, 0.2)


@dataclass
class ImportResult:
    samples: list[Sample]
    assignment: dict[str, str]
    class_names: list[str]
    data_yaml: Path
    split_file: Path
    stats: dict[str, SplitStats]
    report: Report


def class_names_for(samples: list[Sample], report: Report) -> list[str]:
    """The configured class list first (so ids match the model's), then any others found."""
    names = load_class_list().names
    extra = sorted({label for s in samples for label in s.labels} - set(names))
    for e in extra:
        report.warn(e, "class is not in the configured class list; appended after it")
    return names + extra


def import_dataset(
    src: Path,
    fmt: str,
    out: Path,
    ratios: list[float] | None = None,
    group_by: str | None = None,
    seed: int = 0,
    split_file: Path | None = None,
    progress: bool = True,
    class_map: dict[str, str | None] | None = None,
    importer_options: dict | None = None,
) -> ImportResult:
    """`class_map` renames the source's classes (None drops one) before they are checked against
    the configured class list: a published set's own names (IDD's `broken`) become the project's."""
    src, out = Path(src), Path(out)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or folder")
    report = Report()
    raw = list(get_importer(fmt)(src, report, **(importer_options or {})))  # e.g. labelstudio's images
    samples = []
    for s in tqdm(raw, desc="checking images", unit="img", disable=not progress):
        size = readable_size(s.image, report)
        if size is None:
            continue
        if s.width and s.height and (s.width, s.height) != size:
            report.warn(s.image, f"annotation says {s.width}x{s.height}, image is {size[0]}x{size[1]}; "
                        "using the image's size")
        s.width, s.height = size
        samples.append(sanitize_boxes(s, report))
    if not samples:
        raise ValueError(f"{src}: no usable {fmt} samples found")
    apply_class_map(samples, class_map or {}, report)
    class_names = class_names_for(samples, report)

    if split_file is not None:
        assignment = apply_split_file(samples, split_file, report)
        how: dict[str, object] = {"from": str(split_file)}
    elif ratios is None and all(s.split for s in samples):
        assignment = {s.name: s.split for s in samples if s.split}
        how = {"from": "source"}
    else:
        ratios = list(ratios or DEFAULT_RATIOS)
        groups = group_keys(samples, group_by)
        assignment = stratified_group_split(samples, ratios, class_names, groups, seed)
        how = {"ratios": ratios, "group_by": group_by, "seed": seed}

    data_yaml = write_yolo_dataset(samples, assignment, out, class_names)
    split_path = out / "split.json"
    write_split_file(split_path, assignment, source=str(src), format=fmt, **how)
    stats = compute_stats(samples, assignment, class_names)
    log.info("wrote %d images to %s (%d warnings)", len(assignment), out, len(report.warnings))
    return ImportResult(samples, assignment, class_names, data_yaml, split_path, stats, report)
