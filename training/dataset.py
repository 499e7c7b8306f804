"""Labelled images in memory, and the YOLO dataset layout every tool here reads and writes.

Layout written (ultralytics' own):

    DIR/data.yaml                 names, and train/val/test image folders (relative to DIR)
    DIR/images/<split>/<name>.jpg
    DIR/labels/<split>/<name>.txt class cx cy w h, normalised
    DIR/split.json                image names per split: commit it to reuse the split
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from training.boxes import clip_xyxy, xyxy_to_yolo, yolo_to_xyxy

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val", "test")
MIN_BOX_SIDE = 1.0  # pixels; anything thinner after clipping is no object


@dataclass
class Sample:
    """One labelled image; boxes as a struct of arrays in absolute pixels."""

    image: Path
    name: str  # output stem, unique within a dataset
    width: int
    height: int
    xyxy: np.ndarray  # (N, 4) float64
    labels: list[str]  # class name per box
    split: str | None = None  # split given by the source, if any
    meta: dict[str, str] = field(default_factory=dict)  # e.g. flight / sequence id

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float64).reshape(-1, 4)
        if len(self.labels) != len(self.xyxy):
            raise ValueError(f"{self.name}: {len(self.xyxy)} boxes but {len(self.labels)} labels")


@dataclass
class Report:
    """What an import skipped or changed, by name, so nothing is dropped silently."""

    warnings: list[tuple[str, str]] = field(default_factory=list)

    def warn(self, name: str | Path, message: str) -> None:
        self.warnings.append((str(name), message))
        log.warning("%s: %s", name, message)


def probe_image(path: Path) -> tuple[int, int]:
    """Decode the image (at reduced scale) to prove it is readable; return (width, height)."""
    with Image.open(path) as im:
        size = im.size
        im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
        im.load()
    return size


def readable_size(path: Path, report: Report) -> tuple[int, int] | None:
    try:
        return probe_image(path)
    except FileNotFoundError:
        report.warn(path, "image file is missing; skipped")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        report.warn(path, f"unreadable image ({exc}); skipped")
    return None


def sanitize_boxes(sample: Sample, report: Report) -> Sample:
    """Clip boxes to the image; drop inverted or degenerate ones with a warning each."""
    keep = []
    b = sample.xyxy
    inverted = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
    clipped = clip_xyxy(b, sample.width, sample.height)
    # Sub-pixel overshoot is rounding in the source's numbers: clip it silently.
    moved = np.any(np.abs(clipped - b) > 0.5, axis=1)
    for i in range(len(b)):
        box = ", ".join(f"{v:g}" for v in b[i])
        if inverted[i]:
            report.warn(sample.image, f"box {i} ({sample.labels[i]}: {box}) has x2 < x1 or y2 < y1; skipped")
            continue
        w, h = clipped[i, 2] - clipped[i, 0], clipped[i, 3] - clipped[i, 1]
        if w < MIN_BOX_SIDE or h < MIN_BOX_SIDE:
            where = "outside the image" if moved[i] else "degenerate"
            report.warn(sample.image, f"box {i} ({sample.labels[i]}: {box}) is {where}; skipped")
            continue
        if moved[i]:
            report.warn(sample.image, f"box {i} ({sample.labels[i]}: {box}) clipped to the image")
        keep.append(i)
    sample.xyxy = clipped[keep]
    sample.labels = [sample.labels[i] for i in keep]
    return sample


def parse_class_map(items: Sequence[str] | None) -> dict[str, str | None]:
    """`SRC=DST` pairs, as `--map` takes them, as {SRC: DST}; DST `-` (None) drops the class."""
    mapping: dict[str, str | None] = {}
    for item in items or []:
        src, sep, dst = item.partition("=")
        src, dst = src.strip(), dst.strip()
        if not sep or not src or not dst:
            raise ValueError(f"--map {item!r}: expected SRC=DST (DST '-' drops the class)")
        if src in mapping:
            raise ValueError(f"--map names class {src!r} twice")
        mapping[src] = None if dst == "-" else dst
    return mapping


def apply_class_map(samples: Sequence[Sample], mapping: dict[str, str | None], report: Report) -> None:
    """Rename the samples' classes in place; boxes of a class mapped to None go (counted, said)."""
    if not mapping:
        return
    found: dict[str, int] = {}
    for s in samples:
        keep = [i for i, label in enumerate(s.labels) if mapping.get(label, label) is not None]
        for label in s.labels:
            if label in mapping:
                found[label] = found.get(label, 0) + 1
        s.xyxy = s.xyxy[keep]
        s.labels = [mapping.get(s.labels[i], s.labels[i]) for i in keep]
    for src, dst in mapping.items():
        if src not in found:
            report.warn(src, "--map names a class the dataset does not have")
        else:
            log.info("class %s -> %s (%d boxes)", src, dst if dst is not None else "dropped", found[src])


def unique_names(paths: Sequence[Path], root: Path) -> list[str]:
    """Output stems: the file stem where unique, else its path below root joined by '__'."""
    stems = [p.stem for p in paths]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    out = []
    for p, s in zip(paths, stems, strict=True):
        if counts[s] == 1:
            out.append(s)
        else:
            rel = p.relative_to(root) if p.is_relative_to(root) else p
            out.append("__".join(rel.with_suffix("").parts))
    return out


# --- YOLO layout -------------------------------------------------------------------------


def yolo_lines(class_ids: Sequence[int], yolo: np.ndarray) -> str:
    """The text of a YOLO label file: `class cx cy w h` per box, normalised, 6 decimals."""
    return "".join(f"{int(c)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n"
                   for c, (cx, cy, w, h) in zip(class_ids, np.asarray(yolo).reshape(-1, 4), strict=True))


def write_label_file(path: Path, sample: Sample, class_names: Sequence[str]) -> None:
    index = {n: i for i, n in enumerate(class_names)}
    yolo = xyxy_to_yolo(sample.xyxy, sample.width, sample.height)
    path.write_text(yolo_lines([index[label] for label in sample.labels], yolo))


def fresh_split_dirs(out: Path, split: str) -> tuple[Path, Path]:
    """Empty `images/<split>` and `labels/<split>` under `out` (a rerun replaces, never mixes)."""
    dirs = out / "images" / split, out / "labels" / split
    for d in dirs:
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    return dirs


def write_data_yaml(out: Path, class_names: Sequence[str], folders: dict[str, str],
                    filename: str = "data.yaml") -> Path:
    """The one writer of ultralytics' dataset file. folders: split -> image folder (or a list
    file) relative to `out`, or absolute.

    No `path:` key: ultralytics then resolves the folders against this file's own folder,
    so the dataset can be moved or mounted elsewhere.
    """
    data: dict[str, object] = dict(folders)
    data["nc"] = len(class_names)
    data["names"] = dict(enumerate(class_names))
    path = out / filename
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_yolo_dataset(
    samples: Sequence[Sample], assignment: dict[str, str], out: Path, class_names: Sequence[str]
) -> Path:
    """Copy images and write labels per split; returns the data.yaml path."""
    out.mkdir(parents=True, exist_ok=True)
    used = [s for s in SPLITS if s in set(assignment.values())]
    for split in used:
        fresh_split_dirs(out, split)
    for sample in samples:
        split = assignment.get(sample.name)
        if split is None:
            continue
        shutil.copyfile(sample.image, out / "images" / split / f"{sample.name}{sample.image.suffix.lower()}")
        write_label_file(out / "labels" / split / f"{sample.name}.txt", sample, class_names)
    return write_data_yaml(out, class_names, {s: f"images/{s}" for s in used})


@dataclass
class YoloDataset:
    """A YOLO dataset as ultralytics reads its data.yaml: each split is a folder, a `.txt` list of
    image paths, or a list of those; one folder may serve several splits (a single flight whose
    `val` is its `train`)."""

    root: Path
    names: list[str]
    splits: dict[str, list[Path]]  # split -> its sources (image folders or .txt lists), as given

    @classmethod
    def open(cls, path: Path) -> YoloDataset:
        """A dataset folder (or its data.yaml); sources resolved against `path:` as ultralytics does."""
        path = Path(path)
        yaml_path = path if path.suffix in (".yaml", ".yml") else path / "data.yaml"
        if not yaml_path.exists():
            raise FileNotFoundError(f"{yaml_path}: no data.yaml")
        data = yaml.safe_load(yaml_path.read_text()) or {}
        names = data.get("names")
        if isinstance(names, dict):
            names = [names[k] for k in sorted(names)]
        if not names:
            raise ValueError(f"{yaml_path}: no class names")
        root = Path(data.get("path") or ".")
        if not root.is_absolute():
            root = (yaml_path.parent / root).resolve()
        splits: dict[str, list[Path]] = {}
        for split in SPLITS:
            value = data.get(split)
            if value is None:
                continue
            entries = value if isinstance(value, list) else [value]
            if not entries or not all(isinstance(e, str) for e in entries):
                raise ValueError(f"{yaml_path}: split {split!r} must be a folder, a .txt file or a list of those")
            splits[split] = [root / e for e in entries]
        return cls(root, [str(n) for n in names], splits)

    def distinct_splits(self) -> list[str]:
        """Splits in train, val, test order, less those whose sources an earlier split already
        named: what tools that copy images (import, augment, tile) write, each image once."""
        seen: list[list[Path]] = []
        out = []
        for split in SPLITS:
            if split in self.splits and self.splits[split] not in seen:
                seen.append(self.splits[split])
                out.append(split)
        return out

    def read(self, image: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(BGR image, boxes in pixels, class ids) of one image; None (logged) when unreadable."""
        import cv2

        pixels = cv2.imread(str(image), cv2.IMREAD_COLOR)
        if pixels is None:
            log.warning("%s: unreadable image; skipped", image)
            return None
        h, w = pixels.shape[:2]
        xyxy, labels = read_label_file(label_path_for(image), w, h, self.names)
        return pixels, xyxy, np.array([self.names.index(n) for n in labels], dtype=np.int64)

    def images(self, split: str) -> list[Path]:
        """The split's images: every image below its folders and every line of its `.txt` lists
        (absolute, `./` relative to the list's folder as ultralytics reads it, else relative to the
        dataset root, else to the list's folder), each once, in order."""
        if split not in self.splits:
            raise ValueError(f"{self.root}: no {split!r} split (has {sorted(self.splits)})")
        out: dict[Path, None] = {}
        for source in self.splits[split]:
            if source.suffix == ".txt" and source.is_file():
                for line in source.read_text().splitlines():
                    line = line.strip()
                    if not line or line.startswith("#"):
                        continue
                    out[self._listed(source, line)] = None
            elif source.is_dir():
                out.update(dict.fromkeys(sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)))
            else:
                raise FileNotFoundError(f"{source}: split {split!r} names no such folder or .txt list")
        return list(out)

    def _listed(self, listing: Path, line: str) -> Path:
        p = Path(line)
        if p.is_absolute():
            return p
        if line.startswith("./"):
            return (listing.parent / line[2:]).resolve()
        under_root = (self.root / p).resolve()
        return under_root if under_root.exists() else (listing.parent / p).resolve()


def label_path_for(image: Path) -> Path:
    """ultralytics' rule: the last `images` path component becomes `labels`, suffix `.txt`."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def read_label_file(path: Path, width: int, height: int, class_names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Boxes (absolute xyxy) and class names of a YOLO label file; missing file = no boxes."""
    if not path.exists():
        return np.zeros((0, 4)), []
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return np.zeros((0, 4)), []
    if any(len(r) != 5 for r in rows):
        raise ValueError(f"{path}: expected 5 numbers per line (class cx cy w h)")
    arr = np.array(rows, dtype=np.float64)
    ids = arr[:, 0].astype(int)
    if ids.min() < 0 or ids.max() >= len(class_names):
        raise ValueError(f"{path}: class id out of range 0..{len(class_names) - 1}")
    return yolo_to_xyxy(arr[:, 1:], width, height), [class_names[i] for i in ids]



def named_split(spec: str) -> tuple[str, Path, str | None]:
    """`NAME=DATA.yaml[:SPLIT]` (a named dataset split on a command line): name, data.yaml, split
    (None when not given: the caller has its default)."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"{spec!r}: expected NAME=DATA.yaml[:SPLIT]")
    head, _, tail = rest.rpartition(":")
    if head and tail in ("train", "val", "test"):
        return name, Path(head), tail
    return name, Path(rest), None
