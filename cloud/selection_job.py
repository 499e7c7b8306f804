"""`pli cloud select` and its job: a campaign's unlabelled photos -> the ones operators label.

Embeddings (cloud/embeddings.py) and the detector's uncertainty feed a strategy of
cloud/selection.py; the choice is written as a dataset version (`<PLI_CLOUD_DIR>/selections/
<campaign>/<stamp>-<strategy>-<budget>.json`: which photos, how they were chosen) and, when a
Label Studio project is named, becomes its tasks (the photos served by the cloud behind signed
links, pre-annotated by the registry's model), plus "missed fault" review tasks: photos left out
where the detector is unsure yet raised nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from cloud import campaigns, pool
from cloud.db import session_scope
from cloud.jobs import job
from cloud.label_studio import check_tasks_deliverable, photo_tasks, put_tasks
from cloud.models import Image
from cloud.paths import DEFAULT_MODEL, DEFAULT_WEIGHTS, cloud_dir
from cloud.selection import EMBEDDED, UNSURE, Frames, image_uncertainty, missed_fault_candidates, select
from cloud.storage import store
from edge.detections import Detections
from edge.detector import Detector
from edge.tiled import detect
from training.dataset import YoloDataset

UNCERTAINTY_CONF = 0.05  # boxes the model barely believes are where it is unsure
_FRAME = re.compile(r"^(?P<flight>.+)_(?P<index>\d+)$")


def frames_of(paths: list[Path]) -> Frames:
    """Flight and frame index from `<flight>_<frame>` names (as flights are stored); any other
    photo is a flight of its own."""
    flights, index = [], []
    for i, p in enumerate(paths):
        m = _FRAME.match(p.stem)
        flights.append(m["flight"] if m else f"#{i}")
        index.append(int(m["index"]) if m else 0)
    return Frames(np.array(flights), np.array(index))


@dataclass
class Scan:
    """The detector over a pool, once: what uncertainty, missed-fault review and crops use."""

    detections: list[Detections]
    names: list[str]
    operating_conf: float

    def uncertainty(self, faults_only: bool = False) -> np.ndarray:
        only = [i for i, n in enumerate(self.names) if n != "insulator"] if faults_only else None
        return image_uncertainty([d.confidence for d in self.detections], [d.class_id for d in self.detections],
                                 len(self.names), only)

    def top(self) -> np.ndarray:
        return np.array([d.confidence.max() if len(d.confidence) else 0.0 for d in self.detections])

    def insulators(self, conf: float | None = None) -> list[np.ndarray]:
        """Per photo, its insulator boxes at or above `conf` (default the operating threshold),
        most confident first."""
        conf = self.operating_conf if conf is None else conf
        ins = self.names.index("insulator") if "insulator" in self.names else -1
        out = []
        for d in self.detections:
            keep = np.flatnonzero((d.class_id == ins) & (d.confidence >= conf))
            out.append(d.xyxy[keep[np.argsort(-d.confidence[keep], kind="stable")]])
        return out


def scan_pool(model: Path, paths: list[Path]) -> Scan:
    """The detector over every photo at UNCERTAINTY_CONF, tiled as `pli edge run` tiles them."""
    import cv2

    det = Detector(model)
    found = []
    for p in paths:
        im = cv2.imread(str(p))
        if im is None:
            raise ValueError(f"{p}: not a readable image")
        found.append(detect(det, im, "auto", conf=UNCERTAINTY_CONF))
    return Scan(found, list(det.names), det.info.conf)


def features(strategy: str, photos: list[Path], weights: Path, model: Path, need_scan: bool = False,
             progress: bool = False) -> tuple[np.ndarray | None, np.ndarray | None, Scan | None]:
    """What `strategy` chooses by: embeddings (whole photos, or the crops around the insulators
    the detector finds), the detector's uncertainty, and the scan they came from."""
    from cloud.embeddings import embed, embed_crops

    found = scan_pool(model, photos) if strategy in UNSURE or strategy == "crops" or need_scan else None
    emb = unc = None
    if strategy == "crops":
        emb = embed_crops(weights, photos, found.insulators(), cloud_dir() / "embeddings", progress=progress)
    elif strategy in EMBEDDED or strategy == "random":  # random: for its near-duplicate pruning
        emb = embed(weights, photos, cloud_dir() / "embeddings", progress=progress)
    if strategy in UNSURE:
        unc = found.uncertainty(faults_only=strategy == "faults")
    return emb, unc, found


def register_photos(campaign: str, paths: list[Path]) -> list[int]:
    """The photos as the cloud's images (object store and `images` rows), for signed task links."""
    from sqlalchemy import select as sql_select

    ids = []
    with session_scope() as s:
        for p in paths:
            key = f"campaigns/{campaign}/{p.name}"
            row = s.scalar(sql_select(Image).where(Image.key == key))
            if row is None:
                store().put_file(key, p)
                row = Image(name=p.name, key=key)
                s.add(row)
                s.flush()
            ids.append(row.id)
    return ids


def candidates(campaign: str) -> list[Path]:
    """What selection chooses from: the campaign's training photos (its dataset, if it has one)
    and its crawled pool (cloud/pool.py), less the photos the crawl's model kept aside."""
    with session_scope() as s:
        data = campaigns.get(s, campaign).data
        crawled = [path for _, path in pool.photos(s, campaign)]
    return (sorted(YoloDataset.open(Path(data)).images("train")) if data else []) + crawled


@job("select")
def run_selection(campaign: str, budget: int, strategy: str, seed: int = 0, weights: str | None = None,
                  model: str | None = None, project: int | None = None, cloud_url: str | None = None,
                  missed: int | None = None) -> dict:
    """`missed`: how many "missed fault" review tasks to add (default a fifth of the budget, with
    a project; 0 for none)."""

    if project is not None:
        check_tasks_deliverable(cloud_url)
    photos = candidates(campaign)
    if not photos:
        raise ValueError(f"campaign {campaign} has no training photos to choose from")
    missed = (max(1, budget // 5) if project is not None else 0) if missed is None else missed
    emb, unc, found = features(strategy, photos, Path(weights or DEFAULT_WEIGHTS), Path(model or DEFAULT_MODEL),
                               need_scan=bool(missed))
    picks = select(strategy, budget, emb=emb, uncertainty=unc, frames=frames_of(photos), seed=seed)
    unsure = ([photos[i] for i in missed_fault_candidates(found.uncertainty(), found.top(), missed,
                                                           found.operating_conf, picks)] if missed else [])
    chosen = [photos[i] for i in picks]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = cloud_dir() / "selections" / campaign / f"{stamp}-{strategy}-{budget}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"campaign": campaign, "strategy": strategy, "budget": budget, "seed": seed, "pool": len(photos),
           "weights": str(weights or DEFAULT_WEIGHTS), "images": [p.name for p in chosen], "created": stamp}
    tasks = 0
    if unsure:
        doc["missed_fault"] = [p.name for p in unsure]
    if project is not None:
        ids = register_photos(campaign, chosen)
        review = register_photos(campaign, unsure)
        todo = (photo_tasks(ids, cloud_url, predictions=True)
                + photo_tasks(review, cloud_url, predictions=True, missed_fault=True))
        with session_scope() as s:  # a crawled photo's task says where it came from, under which licence
            origin = pool.attribution(s, ids + review)
        for t in todo:
            t["data"].update(origin.get(t["data"]["pli_image_id"], {}))
        tasks = put_tasks(project, cloud_url, todo)
        doc["label_studio"] = {"project": project, "tasks": tasks, "image_ids": ids, "missed_fault_ids": review}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return {"selected": len(chosen), "missed_fault": len(unsure), "version": str(out), "tasks": tasks}
