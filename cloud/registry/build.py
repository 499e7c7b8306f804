"""From training weights to a release's files: the builds, their scores, golden frames, snapshot.

`pli cloud release add WEIGHTS.pt` runs this (torch and ultralytics, on the cloud side):
an FP32 and an INT8 ONNX build of the weights, each scored on every campaign's frozen test set,
each with golden frames made by *that build* (an INT8 build finds slightly other boxes than
FP32: one golden file for both would refuse a good INT8 model), the class list and its alert
rules as the links carry them, and a snapshot of which images and labels trained it (sha256 of
each). `rollout.add_release` then records the folder once, immutable.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2

from comms.classes import class_list_for
from edge import golden
from edge.detector import Detector
from edge.tiled import detect
from training.dataset import YoloDataset, label_path_for, named_split
from training.export import export_model
from training.train import INIT_KEY

log = logging.getLogger(__name__)
GOLDEN_FRAMES = 6
GOLDEN_CANDIDATES = 40


@dataclass(frozen=True)
class TestSet:
    """A campaign's frozen test set: the split of its dataset no training ever sees."""

    name: str
    data: Path
    split: str = "test"

    @classmethod
    def parse(cls, text: str) -> TestSet:
        """`NAME=DATA.yaml[:SPLIT]`, the split defaulting to `test`, else `val` when the data has none;
        or the name of a campaign the cloud holds (`pli cloud campaign add`): its frozen test set."""

        if "=" not in text:
            from sqlalchemy.exc import SQLAlchemyError

            from cloud import campaigns
            from cloud.db import session_scope

            try:
                with session_scope() as s:
                    row = campaigns.get(s, text)
                    campaigns.check_frozen(row)
                    return cls(row.name, Path(row.data), "test")
            except (ValueError, SQLAlchemyError) as exc:
                raise ValueError(f"campaign {text!r}: give NAME=DATA.yaml[:SPLIT] or the name of a campaign the "
                                 f"cloud holds ({str(exc).splitlines()[0][:120]})") from None
        name, data, split = named_split(text)
        if not data.exists():
            raise FileNotFoundError(f"campaign {name}: {data} does not exist")
        if not split:
            split = "test" if YoloDataset.open(data).images("test") else "val"
        return cls(name, data, split)


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot(data: Path, splits: tuple[str, ...] = ("train", "val")) -> dict:
    """Which images and labels a dataset holds: each file's name and sha256, per split, and one
    digest over all of it (two snapshots are the same data exactly when digests agree)."""

    ds = YoloDataset.open(data)
    doc: dict = {"data": str(data), "classes": list(ds.names), "splits": {}}
    h = hashlib.sha256()
    for split in splits:
        rows = []
        for img in sorted(ds.images(split)):
            label = label_path_for(img)
            row = {"image": img.name, "sha256": _sha(img),
                   "labels_sha256": _sha(label) if label.exists() else None}
            h.update(json.dumps([split, row], sort_keys=True).encode())
            rows.append(row)
        doc["splits"][split] = rows
    doc["digest"] = h.hexdigest()
    return doc


def _class_list(names: list[str]) -> dict:
    """The versioned class list of these names with each class's alert rule (comms/class_lists)."""
    cl = class_list_for(names)
    return {"version": cl.version, "rules": [{"name": r.name, "fault": r.fault,
                                              "severity": r.severity.name.lower() if r.severity else None}
                                             for r in cl.rules]}


def pick_golden(detector: Detector, images: list[Path], threshold: float, count: int = GOLDEN_FRAMES,
                margin: float = golden.MARGIN) -> dict[str, object]:
    """Frames where the model is confident, the most confident detections first, faults preferred:
    they say most about whether a build still sees what this one saw."""
    scored = []
    fault_ids = {i for i, n in enumerate(detector.names) if n != "insulator"}
    for path in images[:GOLDEN_CANDIDATES]:
        image = cv2.imread(str(path))
        if image is None:
            continue
        dets = detect(detector, image, "auto", conf=threshold)
        sure = dets.confidence >= threshold + margin
        if sure.any():
            faults = sum(int(c) in fault_ids for c in dets.class_id[sure])
            scored.append((faults, int(sure.sum()), path.name, image))
    scored.sort(key=lambda s: (-s[0], -s[1], s[2]))
    if not scored:
        raise ValueError(f"no image among {min(len(images), GOLDEN_CANDIDATES)} has a detection {margin} above "
                         f"the threshold {threshold}: golden frames need confident detections")
    return {name: image for _, _, name, image in scored[:count]}


def build(weights: Path, version: str, out: Path, campaigns: list[TestSet], calib: Path | None = None,
          training_data: Path | None = None, golden_images: list[Path] | None = None,
          parent: str | None = None, imgsz: int = 640) -> list[Path]:
    """The release's files in `out`: returns them, for `rollout.add_release`."""
    import torch

    weights, out = Path(weights), Path(out)
    if not campaigns:
        raise ValueError("a release is scored on every campaign's frozen test set: name at least one campaign")
    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    data = training_data or Path(str((ckpt.get("train_args") or {}).get("data", "")))
    if not data or not Path(data).is_file():
        raise FileNotFoundError(f"{weights.name}: its training data {str(data)!r} is not here; give --data DATA.yaml "
                                "(the release records which images and labels trained it)")
    first = YoloDataset.open(campaigns[0].data)
    if calib is None:  # the training split itself, whatever folders it spans
        calib = Path(data)
    golden_images = golden_images or sorted(first.images(campaigns[0].split))
    out.mkdir(parents=True, exist_ok=True)
    evals = {c.name: (c.data, c.split) for c in campaigns}
    snap = {**snapshot(Path(data)), "init": ckpt.get(INIT_KEY)}  # which weights the training started from
    (out / "dataset.json").write_text(json.dumps(snap, indent=1) + "\n")
    tests = {c.name: {"split": c.split, "digest": snapshot(c.data, (c.split,))["digest"]} for c in campaigns}
    files = [out / "dataset.json"]
    chosen: dict[str, object] | None = None
    for precision in ("fp32", "int8"):
        name = f"pli-{version}" + ("-int8" if precision == "int8" else "")
        r = export_model(weights, out / f"{name}.onnx", imgsz=imgsz, dynamic_batch=True, int8=precision == "int8",
                         calib=calib, version=version, evals=evals)
        det = Detector(r.onnx)
        if chosen is None:  # the same frames for every build, each build's own detections
            chosen = pick_golden(det, golden_images, r.card_data.conf)
        gold = golden.make(det, chosen, r.card_data.conf)
        gold_file = out / f"golden-{precision}.json"
        gold_file.write_text(json.dumps(gold) + "\n")
        cl = _class_list(r.card_data.classes)
        card = r.card_data.with_(golden=gold_file.name, class_list_version=cl["version"], class_list=cl, parent=parent,
                                 dataset={"file": "dataset.json", "digest": snap["digest"]}, test_sets=tests)
        card.save(r.card)
        files += [r.onnx, r.card, gold_file]
        log.info("%s build of %s: %s", precision, version,
                 ", ".join(f"{k} mAP50 {v['map50']:.3f}" for k, v in card.metrics.items() if k in evals))
    return files
