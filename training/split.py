"""Seeded, stratified, group-aware train/val/test splits, and the split file that fixes them.

Frames of one flight are near-duplicates: if they land on both sides, validation measures
memory, not generalisation. So whole groups are assigned, by iterative stratification
(Sechidis et al., 2011) lifted from images to groups: the class with the fewest unassigned
images goes first, and each group holding it goes to the split that still lacks most of it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.dataset import SPLITS, Report, Sample


def parse_ratios(text: str) -> list[float]:
    try:
        ratios = [float(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--split {text!r}: expected comma-separated fractions such as 0.8,0.2") from None
    if not 2 <= len(ratios) <= 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise ValueError(f"--split {text!r}: 2 or 3 non-negative fractions (train,val[,test]) summing to 1")
    return ratios


def group_keys(samples: Sequence[Sample], group_by: str | None) -> list[str]:
    """Group of each sample.

    None: every image alone. `parent`: the image's folder (one folder per flight).
    `field:NAME`: a metadata field from the source (e.g. COCO `video_id`).
    Anything else: a regular expression searched in the image file name; its first capture
    group (or the whole match) is the group. Non-matching images stay alone.
    """
    if group_by is None:
        return [s.name for s in samples]
    if group_by == "parent":
        return [str(s.image.parent) for s in samples]
    if group_by.startswith("field:"):
        key = group_by.removeprefix("field:")
        return [s.meta.get(key, f"\0{s.name}") for s in samples]
    try:
        rx = re.compile(group_by)
    except re.error as exc:
        raise ValueError(f"--group-by {group_by!r} is not a valid regular expression: {exc}") from None
    keys = []
    for s in samples:
        m = rx.search(s.image.name)
        keys.append((m.group(1) if m.groups() else m.group(0)) if m else f"\0{s.name}")
    return keys


def stratified_group_split(
    samples: Sequence[Sample],
    ratios: Sequence[float],
    class_names: Sequence[str],
    groups: Sequence[str],
    seed: int = 0,
) -> dict[str, str]:
    """Map sample name -> split name."""
    split_names = SPLITS[: len(ratios)]
    index = {n: i for i, n in enumerate(class_names)}
    group_ids: dict[str, int] = {}
    member = np.array([group_ids.setdefault(g, len(group_ids)) for g in groups])
    # Per-group vector: image count, then images containing each class.
    vec = np.zeros((len(group_ids), 1 + len(class_names)))
    for s, g in zip(samples, member, strict=True):
        vec[g, 0] += 1
        for c in {index[label] for label in s.labels}:
            vec[g, 1 + c] += 1
    total = vec.sum(axis=0)
    present = total > 0
    vec, total = vec[:, present], total[present]

    rng = np.random.default_rng(seed)
    want = np.asarray(ratios, dtype=np.float64)[:, None] * total[None, :]  # still wanted per split
    want[np.asarray(ratios) == 0] = -np.inf  # a 0 fraction gets nothing
    where = np.full(len(vec), -1)
    remaining = vec.copy()
    while (where < 0).any():
        counts = remaining[:, 1:].sum(axis=0)
        labelled = np.flatnonzero(counts > 0)
        if labelled.size:
            d = 1 + labelled[np.argmin(counts[labelled])]  # rarest class left
            todo = np.flatnonzero((where < 0) & (vec[:, d] > 0))
        else:
            d = 0  # only unlabelled groups left: balance image counts
            todo = np.flatnonzero(where < 0)
        todo = rng.permutation(todo)
        for g in todo[np.argsort(-vec[todo, d], kind="stable")]:  # big groups first
            # Most wanted for this class; ties: most wanted overall, then the seeded coin.
            key = np.lexsort((rng.random(len(ratios)), want[:, 0], want[:, d]))
            k = int(key[-1])
            where[g] = k
            want[k] -= vec[g]
            remaining[g] = 0
    return {s.name: split_names[where[g]] for s, g in zip(samples, member, strict=True)}


def write_split_file(path: Path, assignment: dict[str, str], **settings: object) -> None:
    doc = {
        "settings": settings,
        "splits": {s: sorted(n for n, v in assignment.items() if v == s) for s in SPLITS
                   if s in assignment.values()},
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")


def read_split_file(path: Path) -> dict[str, str]:
    doc = json.loads(Path(path).read_text())
    splits = doc.get("splits") if isinstance(doc, dict) else None
    if not isinstance(splits, dict) or not set(splits) <= set(SPLITS):
        raise ValueError(f"{path}: expected {{'splits': {{'train': [...], 'val': [...]}}}}")
    out: dict[str, str] = {}
    for split, names in splits.items():
        for n in names:
            if n in out:
                raise ValueError(f"{path}: image {n!r} is in both {out[n]} and {split}")
            out[n] = split
    return out


def apply_split_file(samples: Sequence[Sample], path: Path, report: Report) -> dict[str, str]:
    fixed = read_split_file(path)
    out = {}
    for s in samples:
        if s.name in fixed:
            out[s.name] = fixed[s.name]
        else:
            report.warn(s.image, f"not in split file {path}; left out")
    return out
