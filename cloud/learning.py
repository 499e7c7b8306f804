"""The learning loop: operators' labels and pseudo-labels in, a candidate model through the
gates, a canary release out (`pli cloud learn`, the `learn` job).

A run fine-tunes the current release's weights (its class head grown to the newest class list,
training/heads.py) on the campaign's new labels, the accepted pseudo-labels and a replay set
shared evenly over the earlier campaigns, chosen within each by k-center coreset; scores candidate and parent on every
campaign's frozen test set (the mAP matrix); and passes the candidate only if

- the newest campaign improves,
- no earlier campaign drops by more than the margin (1.5 mAP50 points by default),
- every build (FP32, INT8) reproduces its golden frames, as the drone will check on probation.

A passed candidate becomes a registry release signed for the canary group; the fleet-wide step
stays an operator's `pli cloud release promote`. Every run (data, recipe, matrix, curve, decision)
is a `learning_runs` row, shown by the API and the learning page.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from annotation.edits import fewest_edits_threshold
from cloud import campaigns
from cloud.db import session_scope
from cloud.embeddings import embed
from cloud.jobs import enqueue, job, note
from cloud.label_studio import cloud_images
from cloud.models import Annotation, Campaign, Deployment, Image, Job, LearningRun, ModelRelease
from cloud.paths import DEFAULT_WEIGHTS, cloud_dir, weights_dir
from cloud.registry.build import TestSet, build
from cloud.registry.rollout import add_release, check_ready, promote, set_preannotation_model
from cloud.selection import k_center
from cloud.settings import settings
from edge import golden
from edge.detector import Detector
from edge.model_card import ModelCard
from edge.tiled import detect
from training.assemble import assemble
from training.data_import import import_dataset
from training.dataset import YoloDataset
from training.evaluate import evaluate
from training.export import export_model, set_conf
from training.heads import grow_head, run_classes
from training.train import train

log = logging.getLogger(__name__)
MARGIN_POINTS = 1.5
REPLAY_PHOTOS = 200  # photos of earlier campaigns replayed in every full run (see Recipe)


@dataclass(frozen=True)
class Recipe:
    """How a candidate is fine-tuned: stated with every run, equal across the runs compared.

    The defaults are the gentlest recipe of experiment (c) (docs/benchmarks.md), the first whose
    candidate passed the gates on CPLID, synthetic flights and IDD: ultralytics' AdamW at its
    automatic rate for 30 epochs lifted IDD further but forgot the flights' synthetic missing discs
    whatever the replay, as IDD's broken sheds are `defect` too."""

    epochs: int = 10
    imgsz: int = 640
    batch: int = 8
    freeze: int = 10  # the backbone: what two CPU cores can afford
    lr0: float | None = 0.002  # SGD at this rate; None: ultralytics' choice (AdamW at its small-data rate)
    seed: int = 0
    warmup_epochs: float = 1.0
    replay_repeat: int = 2  # a campaign smaller than its replay share is seen up to this many times per epoch
    tune_conf: bool = False  # refresh only: its model's operating threshold the one leaving the fewest edits

    def overrides(self) -> dict:
        """ultralytics' arguments (replay_repeat and tune_conf are the service's, not ultralytics')."""
        out = {"freeze": self.freeze, "warmup_epochs": self.warmup_epochs, "warmup_bias_lr": 0.0, "val": False,
               "seed": self.seed}
        if self.lr0 is not None:
            out |= {"optimizer": "SGD", "lr0": self.lr0}
        return out


# The annotations that are boxes on a photo: an alert's review (its verdict) names its photo too,
# but says nothing of the other boxes on it: never training data, never counted towards a run.
BOXES = (Annotation.image_id.is_not(None), Annotation.alert_id.is_(None))

# The interactive refresh (no replay): 1-2.5 minutes on this CPU after 25-75 annotations.
# Everything trainable for 5 epochs, its threshold tuned to the fewest edits: from B0, the fewest
# edits of the arms of experiment (d) on every seed (-12 to -17 % over batches 2-4 against no
# refresh; 3 epochs with the backbone frozen: -8 to -10 %; untuned, 5 epochs everything trainable
# proposed false boxes by the dozen).
QUICK = Recipe(epochs=5, freeze=0, lr0=None, replay_repeat=1, tune_conf=True)


@dataclass
class Decision:
    passed: bool
    reasons: list[str] = field(default_factory=list)


def gate(candidate: dict[str, float], parent: dict[str, float], newest: str, margin_points: float = MARGIN_POINTS,
         golden_failures: dict[str, list[str]] | None = None) -> Decision:
    """The gates on mAP50 per campaign (0..1), candidate against parent."""
    reasons = []
    if candidate.get(newest, 0.0) <= parent.get(newest, 0.0):
        reasons.append(f"{newest} (newest) does not improve: {parent.get(newest, 0.0):.4f} -> "
                       f"{candidate.get(newest, 0.0):.4f}")
    for name, before in parent.items():
        if name == newest:
            continue
        drop = (before - candidate.get(name, 0.0)) * 100
        if drop > margin_points:
            reasons.append(f"{name} forgets: {before:.4f} -> {candidate.get(name, 0.0):.4f} "
                           f"(-{drop:.2f} points > {margin_points})")
    for name, failures in (golden_failures or {}).items():
        if failures:
            reasons.append(f"{name} misses its golden frames: {'; '.join(failures[:3])}")
    return Decision(not reasons, reasons)


def release_weights(version: str | None) -> Path:
    """The PyTorch weights a release was built from (kept beside the registry, never a TUF target:
    drones get ONNX only); the shipped weights for the release the fleet started with."""
    if version is not None and (weights_dir() / f"{version}.pt").exists():
        return weights_dir() / f"{version}.pt"
    return DEFAULT_WEIGHTS


def shipped_version(weights: Path) -> str | None:
    """The card version of the shipped model when `weights` are its PyTorch weights."""
    card = ModelCard.beside(DEFAULT_WEIGHTS)
    if Path(weights).resolve() != DEFAULT_WEIGHTS.resolve() or card is None:
        return None
    return card.version


def current_release(session, group: str = "fleet") -> str | None:
    """The release the group runs now (its latest deployment); None before the first, when the
    group runs the shipped model. Never a release only the canary has: the next run would build
    on a candidate nobody has approved."""
    from sqlalchemy import select

    dep = session.scalar(select(Deployment).where(Deployment.target == group).order_by(Deployment.id.desc()))
    return session.get(ModelRelease, dep.release_id).version if dep is not None else None


def replay_shares(size: int, available: dict[str, int], repeat: int = 1) -> dict[str, int]:
    """`size` split evenly over the earlier campaigns, what a small one lacks going to the others:
    a campaign of 57 flight tiles next to one of 560 photos must not get replayed in proportion
    (10 of 50), or what only it teaches (bird nests, synthetic missing discs) is forgotten. With
    `repeat` > 1 a small campaign fills its share by showing its photos again (up to `repeat`
    times each): eight synthetic missing discs next to hundreds of IDD's broken sheds, both
    `defect`, fade otherwise (experiment (c))."""
    out, left = {}, max(0, size)
    names = sorted(available, key=lambda n: (available[n], n))
    for i, name in enumerate(names):
        share = -(-left // (len(names) - i))  # the ceiling: rounding's remainder goes to the smaller ones
        out[name] = min(available[name] * max(1, repeat), share)
        left -= out[name]
    return out


def replay_set(earlier: list[tuple[str, Path]], size: int, weights: Path, seed: int = 0,
               repeat: int = 1) -> list[tuple[str, Path]]:
    """`size` photos of earlier campaigns' training splits, an even share of each
    (`replay_shares`), chosen within each by k-center on the detector's embeddings so the replay
    covers what the fleet already knew, not its most common scene; a campaign smaller than its
    share is replayed whole, again and again up to `repeat` times, in the same order."""

    pools = {name: sorted(YoloDataset.open(data).images("train")) for name, data in earlier}
    pools = {name: photos for name, photos in pools.items() if photos}
    if size <= 0 or not pools:
        return []
    out: list[tuple[str, Path]] = []
    for name, k in replay_shares(size, {n: len(p) for n, p in pools.items()}, repeat).items():
        photos = pools[name]
        if k >= len(photos):
            out += [(name, photos[i % len(photos)]) for i in range(k)]
        elif k > 0:
            emb = embed(weights, photos, cloud_dir() / "embeddings", progress=False)
            out += [(name, photos[int(i)]) for i in k_center(emb, k, seed=seed)]
    return out


def matrix_row(weights: Path, campaigns: dict[str, Path], imgsz: int) -> dict[str, dict]:
    """mAP50 of one model on every campaign's frozen test set (per class too), at the recipe's
    input size (parent and candidate alike)."""

    out = {}
    for name, data in campaigns.items():
        r = evaluate(weights, data, "test", imgsz=imgsz, progress=False)
        out[name] = {"map50": round(r.map50, 4), "per_class": {k: round(v["map50"], 4) for k, v in r.per_class.items()}}
    return out


def read_curve(run_dir: Path) -> dict[str, list[float]]:
    """ultralytics' results.csv as columns (epoch, losses, and metrics when validated)."""
    import csv

    path = run_dir / "results.csv"
    if not path.exists():
        return {}
    rows = list(csv.DictReader(path.open()))
    return {k.strip(): [float(r[k]) for r in rows if r[k].strip()] for k in (rows[0] if rows else {})}


def _campaign_rows(session, upto: str) -> list:
    from sqlalchemy import select

    newest = campaigns.get(session, upto)
    campaigns.dataset(newest)
    rows = list(session.scalars(select(Campaign).where(Campaign.id <= newest.id, Campaign.data.is_not(None))
                                .order_by(Campaign.id)))  # unlabelled pools have nothing to score
    for r in rows:
        campaigns.check_frozen(r)
    return rows


def _campaign_of(session, image_id: int) -> str | None:
    """The campaign a cloud photo belongs to (`campaigns/<name>/...` in the object store)."""

    row = session.get(Image, int(image_id))
    parts = row.key.split("/") if row is not None else []
    return parts[1] if len(parts) > 2 and parts[0] == "campaigns" else None


def _plain(name: str) -> str:
    """A photo's own name from the importer's `<cloud id>-<name>` cache name."""
    head, _, rest = name.partition("-")
    return rest if head.isdigit() and rest else name


def _record(run_id: int, **fields) -> None:
    with session_scope() as s:
        row = s.get(LearningRun, run_id)
        for k, v in fields.items():
            setattr(row, k, v)


@job("learn")
def learn(campaign: str, trigger: str = "on demand", recipe: dict | None = None, labelled: list[str] | None = None,
          pseudo: str | None = None, replay: int | None = None, margin_points: float | None = None,
          group: str = "canary", version: str | None = None, weights: str | None = None,
          annotations_at_trigger: int | None = None) -> dict:
    """One full run. `labelled`: the campaign's training photos with operators' labels (default
    all); `pseudo`: a pseudo-label dataset version (pli cloud pseudo-label) to train on instead,
    its true labels included; `replay`: photos from earlier campaigns (default REPLAY_PHOTOS);
    `weights`: start from these instead of the current release's."""

    rec = Recipe(**{**json.loads(settings().learn_recipe), **(recipe or {})})
    if replay is None:
        replay = REPLAY_PHOTOS if settings().learn_replay is None else settings().learn_replay
    check_ready()  # a candidate that passes must be releasable: keys and repository first
    if margin_points is None:
        margin_points = MARGIN_POINTS if settings().learn_margin is None else settings().learn_margin
    with session_scope() as s:
        rows = _campaign_rows(s, campaign)
        tests = {r.name: Path(r.data) for r in rows}
        parent = current_release(s) if weights is None else None  # explicit weights: no registry parent
        ops_tasks = [t for t in annotation_tasks(s) if _campaign_of(s, t["data"]["pli_image_id"]) == campaign]
        run = LearningRun(campaign=campaign, trigger=trigger, status="running", parent=parent,
                          recipe=asdict(rec), started_at=datetime.now(UTC))
        s.add(run)
        s.flush()
        run_id = run.id
    note(learning_run=run_id)  # a worker killed mid-run leaves this for the next one (jobs.recover_stale)
    work = cloud_dir() / "learning" / f"run-{run_id}"
    try:
        data = tests[campaign]
        ds = YoloDataset.open(data)
        start = Path(weights) if weights else release_weights(parent)
        names = run_classes(start, ds.names)
        if parent is None and (parent := shipped_version(start)):  # lineage: the shipped model's version first
            _record(run_id, parent=parent)
        parent_weights = grow_head(start, names, work / "parent.pt")
        train_photos = sorted(ds.images("train"))
        if labelled is not None:
            keep = set(labelled)
            train_photos = [p for p in train_photos if p.name in keep]
        parts: list[tuple[str, Path, list[Path]]] = []
        ops = operator_labels(ops_tasks, work / "operators")
        if ops is not None:  # the operators' boxes replace the campaign's for the photos they annotated
            done = {_plain(p.name) for p in ops[1]}
            train_photos = [p for p in train_photos if p.name not in done]
            parts.append(("operators", *ops))
        if pseudo:
            pseudo_ds = YoloDataset.open(Path(pseudo))
            parts.append(("pseudo", Path(pseudo), sorted(pseudo_ds.images("train"))))
        else:
            parts.append((campaign, data, train_photos))
        earlier = [(r.name, Path(r.data)) for r in rows if r.name != campaign]
        replayed = replay_set(earlier, replay, start, rec.seed, rec.replay_repeat)
        for name, data_e in earlier:
            mine = [p for n, p in replayed if n == name]
            if mine:
                parts.append((f"replay-{name}", data_e, mine))
        data_yaml = assemble(work / "data", names, parts, data)
        snapshot = {"start": str(start), "new": [p.name for p in train_photos] if not pseudo else None,
                    "pseudo": pseudo,
                    "operators": [p.name for p in ops[1]] if ops else [],
                    "annotations_at_trigger": annotations_at_trigger,
                    "replay": {name: [p.name for n, p in replayed if n == name] for name, _ in earlier}}
        _record(run_id, data=snapshot)
        log.info("learning run %d: %d photos (%s), replay %d, recipe %s", run_id, sum(len(p[2]) for p in parts),
                 ", ".join(f"{t} {len(p)}" for t, _, p in parts), len(replayed), asdict(rec))
        result = train(data_yaml, model=str(parent_weights), imgsz=rec.imgsz, epochs=rec.epochs, batch=rec.batch,
                       project=work, name="train", **rec.overrides())
        candidate = result.last
        cand_row = matrix_row(candidate, tests, rec.imgsz)
        parent_row = matrix_row(parent_weights, tests, rec.imgsz)
        matrix = {"candidate": cand_row, "parent": parent_row}
        _record(run_id, matrix=matrix, curve=read_curve(result.run_dir))
        decision = gate({k: v["map50"] for k, v in cand_row.items()}, {k: v["map50"] for k, v in parent_row.items()},
                        campaign, margin_points)
        release = None
        if decision.passed:  # only then the builds: exporting and calibrating costs minutes
            version = version or f"learn-{run_id}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
            files = build(candidate, version, work / "release", [TestSet(n, d, "test") for n, d in tests.items()],
                          training_data=data_yaml, parent=parent, imgsz=rec.imgsz)
            failures = {}
            for card in (f for f in files if f.name.endswith(".json") and f.name.startswith("pli-")):
                doc = ModelCard.load(card)
                gold = json.loads((card.parent / doc.golden).read_text())
                failures[card.name] = golden.check(Detector(card.parent / doc.file), gold)
            decision = gate({k: v["map50"] for k, v in cand_row.items()},
                            {k: v["map50"] for k, v in parent_row.items()}, campaign, margin_points, failures)
            if decision.passed:
                with session_scope() as s:
                    add_release(s, version, files, parent, weights=candidate)
                    promote(s, version, group, f"learning run {run_id}")
                release = version
        _record(run_id, status="released" if release else "refused", decision=asdict(decision), release=release,
                finished_at=datetime.now(UTC))
        log.info("learning run %d: %s%s", run_id, "released to " + group if release else "refused",
                 "" if decision.passed else ": " + "; ".join(decision.reasons))
        return {"run": run_id, "passed": decision.passed, "reasons": decision.reasons, "release": release,
                "matrix": matrix}
    except Exception as exc:
        _record(run_id, status="failed", decision={"passed": False, "reasons": [f"{type(exc).__name__}: {exc}"]},
                finished_at=datetime.now(UTC))
        raise


def backward_transfer(matrix: dict[str, dict], newest: str) -> float:
    """Mean change (points) of the earlier campaigns' mAP50 from parent to candidate (negative: forgetting)."""
    old = [k for k in matrix["parent"] if k != newest]
    if not old:
        return 0.0
    return float(np.mean([(matrix["candidate"][k]["map50"] - matrix["parent"][k]["map50"]) * 100 for k in old]))


def annotation_tasks(session) -> list[dict]:
    """The operators' annotations on the cloud's photos, latest per task, as Label Studio's export
    has them (training/importers/labelstudio.py reads it)."""
    from sqlalchemy import select

    latest: dict[tuple[int, int], Annotation] = {}
    for a in session.scalars(select(Annotation).where(*BOXES).order_by(Annotation.id)):
        key = (a.project, a.task)
        if key not in latest or a.updated_at >= latest[key].updated_at:
            latest[key] = a
    return [{"id": a.task, "data": {"pli_image_id": a.image_id},
             "annotations": [{"id": a.id, "result": a.result, "updated_at": a.updated_at}]} for a in latest.values()]


def operator_labels(tasks: list[dict], work: Path) -> tuple[Path, list[Path]] | None:
    """The operators' annotations as a dataset (the photos fetched from the cloud's store)."""

    if not tasks:
        return None
    export = work / "annotations.json"
    export.parent.mkdir(parents=True, exist_ok=True)
    export.write_text(json.dumps(tasks))
    data = import_dataset(export, "labelstudio", work / "labelled", ratios=[1.0, 0.0, 0.0], progress=False,
                          importer_options={"resolve_id": cloud_images(work / "photos")}).data_yaml
    return data, sorted(YoloDataset.open(data).images("train"))


def fewest_edits_conf(model: Path, data: Path) -> float:
    """The operating threshold at which `model`'s boxes leave the fewest edits on `data`'s training
    photos (the operators' own, so optimistic: the model has trained on them)."""
    det, ds = Detector(model), YoloDataset.open(data)
    found, truth = [], []
    for photo in sorted(ds.images("train")):
        read = ds.read(photo)
        if read is None:  # logged by read
            continue
        image, gt_xyxy, gt_cls = read
        d = detect(det, image, "auto", conf=0.05)
        found.append((d.xyxy, np.asarray(ds.names, dtype=object)[d.class_id] if len(d) else np.zeros(0, object),
                      d.confidence))
        truth.append((gt_xyxy, np.asarray(ds.names, dtype=object)[np.asarray(gt_cls, int)]))
    return fewest_edits_threshold(found, truth)


def _newest_campaign(session) -> str | None:
    from sqlalchemy import select

    return settings().learn_campaign or session.scalar(select(Campaign.name).where(Campaign.data.is_not(None))
                                                        .order_by(Campaign.id.desc()))


@job("refresh")
def refresh(campaign: str | None = None, recipe: dict | None = None) -> dict:
    """The interactive refresh: a quick fine-tune (QUICK: a few epochs) on every operator
    annotation so far, from the previous refresh, that becomes the model pre-annotating Label
    Studio tasks, never the fleet's."""

    rec = Recipe(**{**asdict(QUICK), **json.loads(settings().refresh_recipe), **(recipe or {})})
    with session_scope() as s:
        campaign = campaign or _newest_campaign(s)
        if campaign is None:
            raise ValueError("no campaign to refresh for")
        rows = _campaign_rows(s, campaign)
        tasks = annotation_tasks(s)
        from sqlalchemy import select

        last = s.scalar(select(LearningRun).where(LearningRun.trigger == "refresh", LearningRun.status == "refreshed")
                        .order_by(LearningRun.id.desc()))
        start = Path(last.data["weights"]) if last is not None and Path(last.data["weights"]).exists() else \
            release_weights(current_release(s))
        run = LearningRun(campaign=campaign, trigger="refresh", status="running", parent=current_release(s),
                          recipe=asdict(rec), started_at=datetime.now(UTC))
        s.add(run)
        s.flush()
        run_id = run.id
    if not tasks:
        _record(run_id, status="failed", decision={"passed": False, "reasons": ["no annotations yet"]},
                finished_at=datetime.now(UTC))
        raise ValueError("no operator annotations to learn from yet")
    work = cloud_dir() / "learning" / f"refresh-{run_id}"
    try:
        data = Path(rows[-1].data)
        names = run_classes(start, YoloDataset.open(data).names)
        imported, photos = operator_labels(tasks, work)
        data_yaml = assemble(work / "data", names, [("ops", imported, photos)], data)
        weights = grow_head(start, names, work / "start.pt")
        result = train(data_yaml, model=str(weights), imgsz=rec.imgsz, epochs=rec.epochs, batch=rec.batch,
                       project=work, name="train", **rec.overrides())
        onnx = export_model(result.last, work / f"refresh-{run_id}.onnx", imgsz=rec.imgsz, dynamic_batch=True,
                            version=f"refresh-{run_id}").onnx
        conf = None
        if rec.tune_conf:  # the threshold at which this model's proposals cost the operators least
            conf = fewest_edits_conf(onnx, imported)
            onnx = set_conf(onnx, conf).onnx
        set_preannotation_model(onnx, f"refresh-{run_id}", f"refresh run {run_id}")
        _record(run_id, status="refreshed", data={"annotations": len(tasks), "photos": len(photos),
                                                  "weights": str(result.last), "model": str(onnx), "from": str(start),
                                                  "conf": conf},
                curve=read_curve(result.run_dir), finished_at=datetime.now(UTC))
        log.info("refresh %d: %d annotated photos, pre-annotation now %s", run_id, len(photos), onnx.name)
        return {"run": run_id, "annotations": len(tasks), "model": str(onnx)}
    except Exception as exc:
        _record(run_id, status="failed", decision={"passed": False, "reasons": [f"{type(exc).__name__}: {exc}"]},
                finished_at=datetime.now(UTC))
        raise


def after_annotations(session) -> list[str]:
    """Queue what new annotations call for: a refresh every PLI_REFRESH_EVERY (25) of them, a
    full run after PLI_LEARN_AFTER (100); never a second one while one is queued or running."""
    from sqlalchemy import func, select

    campaign = _newest_campaign(session)
    if campaign is None:
        return []
    total = session.scalar(select(func.count()).select_from(Annotation).where(*BOXES))
    queued = []
    for kind, every, trigger in (("refresh", settings().refresh_every, "refresh"),
                                 ("learn", settings().learn_after, "annotations")):
        if every <= 0:
            continue
        busy = session.scalar(select(Job.id).where(Job.kind == kind, Job.status.in_(("queued", "running"))))
        seen = [r.data.get("annotations_at_trigger", r.data.get("annotations", 0))
                for r in session.scalars(select(LearningRun).where(LearningRun.trigger == trigger))
                if r.data]
        if busy is None and total - max(seen, default=0) >= every:
            args = {"campaign": campaign} if kind == "refresh" else {"campaign": campaign, "trigger": trigger,
                                                                       "annotations_at_trigger": total}
            queued.append(enqueue(kind, **args))
    return queued
