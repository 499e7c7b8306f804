"""`pli train`: ultralytics training that works offline and leaves a complete run folder.

Run folder: weights/best.pt and last.pt, results.csv (per-epoch losses and metrics),
learning_curve.png (drawn here: ultralytics' own plots fetch a font over the network),
args.yaml.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from training.yolo import ultralytics

log = logging.getLogger(__name__)


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
    so an interrupted run (a session that ends) leaves a checkpoint small enough to commit.
    callbacks: extra ultralytics callbacks, event name -> function(trainer).
    """
    YOLO = ultralytics().YOLO
    if resume is not None:
        resume = _resumable(Path(resume))
    yolo = YOLO(str(resume) if resume is not None else model)
    if keep_last is not None:
        yolo.add_callback("on_model_save", lambda trainer: slim_checkpoint(trainer.last, Path(keep_last)))
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


def _resumable(path: Path) -> Path:
    """The checkpoint to resume, refusing one that ultralytics would silently train anew."""
    import torch

    if path.is_dir():
        path = path / "weights" / "last.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint to resume")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if ckpt.get("epoch", -1) < 0 or ckpt.get("optimizer") is None:
        raise ValueError(f"{path}: not a resumable checkpoint (a finished run, or weights only)")
    return path


def slim_checkpoint(src: Path, dst: Path) -> Path:
    """Copy a training checkpoint without the optimizer's moment buffers (a third of the size).

    ultralytics resumes only from a checkpoint that has an optimizer state: the parameter
    groups (learning rates, decay) stay, the moments restart empty on resume (AdamW builds
    them again in its first step). Written atomically: a session cut mid-write keeps the
    previous file.
    """
    import torch

    ckpt = torch.load(src, map_location="cpu", weights_only=False)
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
