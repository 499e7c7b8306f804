"""Pascal VOC XML, including CPLID's layout.

CPLID quirks handled here: `<filename>` has no extension and `<path>` is stale, so XML files
are matched to images by stem; a defective image's insulator and defect boxes live in two
XML files with the same stem (labels/insulator/*.xml, labels/defect/*.xml), which are merged.
When several images share a stem, the one nearest to the XML in the folder tree wins.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from training.dataset import IMAGE_SUFFIXES, Report, Sample, unique_names
from training.importers.registry import register


class VocError(ValueError):
    pass


def parse_voc_xml(path: Path) -> tuple[tuple[int, int] | None, list[str], np.ndarray]:
    """(declared width/height or None, class names, xyxy boxes) of one annotation file."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise VocError(f"malformed XML ({exc})") from None
    if root.tag != "annotation":
        raise VocError(f"root element is <{root.tag}>, not <annotation>")
    size = None
    w, h = root.findtext("size/width"), root.findtext("size/height")
    if w and h and w.strip().isdigit() and h.strip().isdigit() and int(w) > 0 and int(h) > 0:
        size = (int(w), int(h))
    names, boxes = [], []
    for i, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if not name or bb is None:
            raise VocError(f"object {i} has no name or no <bndbox>")
        try:
            box = [float(bb.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError:
            raise VocError(f"object {i} ({name}) has a non-numeric coordinate") from None
        if not np.all(np.isfinite(box)):
            raise VocError(f"object {i} ({name}) lacks a coordinate")
        names.append(name)
        boxes.append(box)
    return size, names, np.array(boxes, dtype=np.float64).reshape(-1, 4)


def _common_depth(a: Path, b: Path) -> int:
    return len(os.path.commonpath([a, b]).split(os.sep))


@register("voc")
def import_voc(src: Path, report: Report) -> Iterator[Sample]:
    images_by_stem: dict[str, list[Path]] = defaultdict(list)
    xml_by_stem: dict[str, list[Path]] = defaultdict(list)
    for p in sorted(src.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            images_by_stem[p.stem].append(p)
        elif p.suffix.lower() == ".xml" and p.is_file():
            xml_by_stem[p.stem].append(p)

    # Pair every XML file with its image; XMLs of one image (CPLID's defect + insulator) merge.
    per_image: dict[Path, list[Path]] = defaultdict(list)
    for stem, xmls in xml_by_stem.items():
        candidates = images_by_stem.get(stem, [])
        for xml in xmls:
            if not candidates:
                report.warn(xml, f"no image named {stem}.* found under {src}; skipped")
                continue
            best = max(candidates, key=lambda img, x=xml: _common_depth(img.parent, x.parent))
            per_image[best].append(xml)

    for imgs in images_by_stem.values():
        for img in imgs:
            if img not in per_image:
                report.warn(img, "no annotation file; skipped")

    images = sorted(per_image)
    for img, name in zip(images, unique_names(images, src), strict=True):
        labels: list[str] = []
        boxes = []
        declared = None
        try:
            for xml in sorted(per_image[img]):
                size, names, xyxy = parse_voc_xml(xml)
                declared = declared or size
                labels += names
                boxes.append(xyxy)
        except VocError as exc:
            # Part of this image's labels is unreadable: training on the rest would teach the
            # model that the missing objects are background, so the whole image is skipped.
            report.warn(xml, f"{exc}; image {img.name} skipped")
            continue
        w, h = declared or (0, 0)
        yield Sample(img, name, w, h, np.concatenate(boxes) if boxes else np.zeros((0, 4)), labels)
