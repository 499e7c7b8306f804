"""COCO detection JSON (one file, or a folder of them, e.g. instances_train.json + _val.json).

Image files are looked up by `file_name` beside the JSON, in an `images/` folder beside it or
its parent. A split named in the JSON's file name (train/val/test) is kept as the source
split. Scalar image fields (video_id, sequence_id, flight ...) go to `meta` for --group-by.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from training.boxes import coco_to_xyxy
from training.dataset import Report, Sample, unique_names
from training.importers.registry import register

_SPLIT_IN_NAME = re.compile(r"(train|val|test)", re.IGNORECASE)


def _coco_files(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    return sorted(p for p in src.rglob("*.json") if p.is_file())


def _resolve(json_path: Path, file_name: str) -> Path:
    base = json_path.parent
    candidates = [base / file_name, base / "images" / file_name, base.parent / "images" / file_name,
                  base.parent / file_name]
    for c in candidates:
        if c.exists():
            return c
    return candidates[0]


@register("coco")
def import_coco(src: Path, report: Report) -> Iterator[Sample]:
    entries: list[tuple[Path, dict, list[str], np.ndarray, str | None]] = []
    for jp in _coco_files(src):
        try:
            doc = json.loads(jp.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            report.warn(jp, f"malformed JSON ({exc}); skipped")
            continue
        if not isinstance(doc, dict) or not {"images", "annotations", "categories"} <= doc.keys():
            report.warn(jp, "not a COCO detection file (needs images, annotations, categories); skipped")
            continue
        cats = {c["id"]: str(c["name"]) for c in doc["categories"]}
        anns = defaultdict(list)
        for a in doc["annotations"]:
            if a.get("iscrowd"):
                continue
            anns[a.get("image_id")].append(a)
        m = _SPLIT_IN_NAME.search(jp.stem)
        split = m.group(1).lower() if m else None
        for im in doc["images"]:
            labels, boxes, bad = [], [], False
            for a in anns.get(im.get("id"), []):
                if a.get("category_id") not in cats or len(a.get("bbox", [])) != 4:
                    report.warn(jp, f"annotation {a.get('id')} of image {im.get('file_name')} has an unknown "
                                f"category or a bad bbox; image skipped")
                    bad = True
                    break
                labels.append(cats[a["category_id"]])
                boxes.append(a["bbox"])
            if bad:
                continue
            entries.append((jp, im, labels, coco_to_xyxy(np.array(boxes, dtype=np.float64)), split))

    paths = [_resolve(jp, str(im.get("file_name", ""))) for jp, im, *_ in entries]
    root = src if src.is_dir() else src.parent
    for path, name, (_jp, im, labels, xyxy, split) in zip(paths, unique_names(paths, root), entries, strict=True):
        meta = {k: str(v) for k, v in im.items()
                if k not in ("id", "file_name", "width", "height") and isinstance(v, str | int)}
        yield Sample(path, name, int(im.get("width") or 0), int(im.get("height") or 0), xyxy, labels,
                     split=split, meta=meta)
