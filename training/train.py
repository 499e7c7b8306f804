"""`pli train`: ultralytics training that works offline and leaves a complete run folder.

Run folder: weights/best.pt and last.pt, results.csv (per-epoch losses and metrics),
learning_curve.png (drawn here: ultralytics' own plots fetch a font over the network),
args.yaml.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from training.yolo import ultralytics

log = logging.getLogger(__name__)
INIT_KEY = "pli_init"  # the checkpoint key that records where training started (see `describe_init`)


@dataclass
class TrainResult:
    run_dir: Path
    best: Path
    last: Path
    metrics: dict[str, float]


def train(data: Path, model: str = "yolov8n.yaml", imgsz: int = 640, epochs: int = 100, batch: int = 16,
          device: str = "cpu", resume: Path | None = None, project: Path = Path("runs/train"),
          name: str = "run", keep_last: Path | None = None, callbacks: dict | None = None,
          **overrides: object) -> TrainResult:
    """Train (or resume a run folder / last.pt) and return where everything landed.

    keep_last: after every epoch, save a slim copy of last.pt there (see `slim_checkpoint`),
    so an interrupted run (a session that ends) leaves a checkpoint small enough to commit, and
    its results.csv beside it (`kept_results`): a resume in a new checkout puts the curve back.
    callbacks: extra ultralytics callbacks, event name -> function(trainer).
    """
    YOLO = ultralytics().YOLO
    if resume is not None:
        resume = _resumable(Path(resume))
        ckpt = _checkpoint(resume)
        init = ckpt.get(INIT_KEY)
        if keep_last is not None:
            _restore_results(kept_results(Path(keep_last)), Path((ckpt.get("train_args") or {}).get("save_dir", "")))
    else:
        init = describe_init(model)
    yolo = YOLO(str(resume) if resume is not None else model)
    yolo.add_callback("on_model_save", lambda trainer: record_init(trainer, init))
    if keep_last is not None:
        yolo.add_callback("on_model_save", lambda trainer: keep(trainer, Path(keep_last)))
    for event, fn in (callbacks or {}).items():
        yolo.add_callback(event, fn)
    if resume is not None:
        # The checkpoint's settings and schedule stand; only the data location may change.
        yolo.train(resume=True, data=str(data), device=device)
    else:
        args = dict(data=str(data), imgsz=imgsz, epochs=epochs, batch=batch, device=device, project=str(project),
                    name=name, exist_ok=True, plots=False, amp=False, workers=0, verbose=False)
        args.update(overrides)
        yolo.train(**args)
    run_dir = Path(yolo.trainer.save_dir)
    curve = draw_learning_curve(run_dir / "results.csv", run_dir / "learning_curve.png")
    log.info("run folder %s (learning curve %s)", run_dir, curve)
    metrics = {k: float(v) for k, v in (yolo.trainer.metrics or {}).items() if isinstance(v, int | float)}
    return TrainResult(run_dir, run_dir / "weights" / "best.pt", run_dir / "weights" / "last.pt", metrics)


def _checkpoint(path: Path) -> dict:
    import torch

    ultralytics()  # unpickling a checkpoint imports ultralytics: offline settings first
    return torch.load(path, map_location="cpu", weights_only=False)


def describe_init(model: str | Path) -> dict:
    """Where a run starts, for its card: a model yaml (random weights) or a checkpoint, named by
    the path it was given, its sha256 and what it says of itself (a project model's own start,
    or an Ultralytics checkpoint's version, data and classes). A missing checkpoint is refused
    here, before ultralytics would look for it on the network."""
    text = str(model)
    if Path(text).suffix not in (".pt", ".pth"):
        return {"kind": "scratch", "model": text}
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"{text}: no such checkpoint (give a .pt file that exists, e.g. ../shared/"
                                "pretrained/yolov8n-coco/yolov8n-coco.pt, or a model yaml to train from scratch)")
    ckpt = _checkpoint(path)
    if not isinstance(ckpt, dict) or (ckpt.get("model") is None and ckpt.get("ema") is None):
        raise ValueError(f"{text}: not an ultralytics checkpoint (no model in it)")
    net = ckpt.get("ema") or ckpt.get("model")
    names = getattr(net, "names", None) or {}
    args = ckpt.get("train_args") or {}
    source = {"trained_from": ckpt[INIT_KEY]} if ckpt.get(INIT_KEY) else {
        "ultralytics": ckpt.get("version"), "date": ckpt.get("date"),
        "data": Path(str(args["data"])).name if args.get("data") else None}
    readme = path.parent / "README.md"  # a shared checkpoint says where it came from in its README
    if readme.is_file():
        source["origin"] = readme.read_text(errors="replace").strip().splitlines()[0].lstrip("# ")[:200]
    return {"kind": "weights", "path": text, "file": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "classes": len(names), **source}


def record_init(trainer: object, init: dict | None) -> None:
    """Write the run's start into the checkpoints just saved, so every later step (export, the
    model card, a release's dataset snapshot, a resumed run) can say what it was trained from."""
    import torch

    if not init:
        return
    for path in (trainer.last, trainer.best):
        path = Path(path)
        if not path.exists():
            continue
        ckpt = _checkpoint(path)
        if ckpt.get(INIT_KEY) == init:
            continue
        ckpt[INIT_KEY] = init
        tmp = path.with_suffix(".init.tmp")
        torch.save(ckpt, tmp)
        tmp.replace(path)


def _resumable(path: Path) -> Path:
    """The checkpoint to resume, refusing one that ultralytics would silently train anew."""
    if path.is_dir():
        path = path / "weights" / "last.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint to resume")
    ckpt = _checkpoint(path)
    if ckpt.get("epoch", -1) < 0 or ckpt.get("optimizer") is None:
        raise ValueError(f"{path}: not a resumable checkpoint (a finished run, or weights only)")
    return path


def kept_results(keep_last: Path) -> Path:
    """Where the results.csv of a run kept at `keep_last` is kept."""
    return keep_last.with_name(f"{keep_last.stem}-results.csv")


def keep(trainer: object, keep_last: Path) -> None:
    """After an epoch: the slim checkpoint and the curve so far, beside each other."""
    slim_checkpoint(Path(trainer.last), keep_last)
    csv_file = Path(trainer.save_dir) / "results.csv"
    if csv_file.exists():
        tmp = kept_results(keep_last).with_suffix(".tmp")
        tmp.write_bytes(csv_file.read_bytes())
        tmp.replace(kept_results(keep_last))


def _restore_results(kept: Path, run_dir: Path) -> None:
    """A resume in a fresh checkout: the run folder is new, so the kept curve goes back into it
    (ultralytics appends the next epochs' rows to the file it finds)."""
    if not kept.exists() or not str(run_dir) or (run_dir / "results.csv").exists():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.csv").write_bytes(kept.read_bytes())
    log.info("restored the curve of %d epochs from %s", len(kept.read_text().splitlines()) - 1, kept)


def slim_checkpoint(src: Path, dst: Path) -> Path:
    """Copy a training checkpoint without the optimizer's moment buffers (a third of the size).

    ultralytics resumes only from a checkpoint that has an optimizer state: the parameter
    groups (learning rates, decay) stay, the moments restart empty on resume (AdamW builds
    them again in its first step). Written atomically: a session cut mid-write keeps the
    previous file.
    """
    import torch

    ckpt = _checkpoint(src)
    if ckpt.get("optimizer") is not None:
        ckpt["optimizer"] = {"state": {}, "param_groups": ckpt["optimizer"]["param_groups"]}
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(dst)
    return dst


def draw_learning_curve(results_csv: Path, out: Path) -> Path | None:
    """Losses and mAP per epoch from ultralytics' results.csv, as one PNG."""
    if not results_csv.exists():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with results_csv.open() as fh:
        rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(fh)]
    if not rows:
        return None
    epochs = [int(float(r["epoch"])) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("train/box_loss", "train/cls_loss", "train/dfl_loss", "val/box_loss", "val/cls_loss"):
        if key in rows[0] and all(r[key] for r in rows):
            ax1.plot(epochs, [float(r[key]) for r in rows], label=key)
    ax1.set_xlabel("epoch")
    ax1.set_title("losses")
    ax1.legend(fontsize=8)
    for key in ("metrics/mAP50(B)", "metrics/mAP50-95(B)", "metrics/precision(B)", "metrics/recall(B)"):
        if key in rows[0] and all(r[key] for r in rows):
            ax2.plot(epochs, [float(r[key]) for r in rows], label=key)
    ax2.set_xlabel("epoch")
    ax2.set_title("validation")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
