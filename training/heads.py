"""Growing a detector's class list without forgetting the classes it has.

Fine-tuning a 3-class checkpoint on 4-class data makes ultralytics rebuild the model for four
classes. The class list is append-only (comms/class_lists), so the old classes keep their
index: the grown model must score them exactly as before and only the new class starts from
ultralytics' prior. ultralytics' own `BaseModel.load` does the transfer: it rebuilds each class
branch at the source's width (a head fine-tuned from COCO keeps COCO's 80 hidden channels, where
a head built for 4 classes has 64) and copies the class rows by name. Copying tensors by shape
alone, as this module once did, left those branches random on a COCO-based model.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

from training.train import INIT_KEY, describe_init

log = logging.getLogger(__name__)


def names_of(weights: Path) -> list[str]:
    import torch

    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    names = (ckpt.get("ema") or ckpt["model"]).names
    return [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)


def run_classes(weights: Path, names: list[str]) -> list[str]:
    """The class list a fine-tune of `weights` on data labelled with `names` trains: the data's,
    or the model's own where it already extends them (new photos of a campaign with an older
    class-list version must not take `flashover` away from the fleet's model)."""
    known = names_of(weights)
    return known if len(known) > len(names) and known[:len(names)] == list(names) else list(names)


def grow_head(weights: Path, names: list[str], out: Path) -> Path:
    """`weights` with its class list grown to `names` (which must start with its own), saved to
    `out`; `weights` itself when the names are already the same."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    old = (ckpt.get("ema") or ckpt["model"]).float()
    old_names = [old.names[i] for i in sorted(old.names)] if isinstance(old.names, dict) else list(old.names)
    if old_names == list(names):
        return Path(weights)
    if list(names[:len(old_names)]) != old_names:
        raise ValueError(f"{Path(weights).name}: classes {old_names} are not the start of {list(names)} "
                         "(class lists only grow at the end)")
    cfg = copy.deepcopy(old.yaml)
    cfg["nc"] = len(names)
    new = DetectionModel(cfg, nc=len(names), verbose=False)
    new.names = dict(enumerate(names))  # before load: the class rows are matched by name
    new.load(old, verbose=False)
    _quiet_new_classes(new, len(old_names))
    kept = _same_outputs(old, new, len(old_names))
    new.args = getattr(old, "args", {})
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": new.half(), "ema": None, "train_args": ckpt.get("train_args", {}), "epoch": -1,
                "optimizer": None, "grown_from": {"weights": str(weights), "names": old_names},
                INIT_KEY: {**describe_init(weights), "grown_to": list(names)}}, out)
    log.info("%s: class list %s -> %s (largest change of a known output %.2g)", Path(weights).name, old_names,
             list(names), kept)
    return out


def _quiet_new_classes(model, known: int) -> None:
    """The new classes' logits start at ultralytics' prior bias alone (zero weights): a randomly
    drawn row fires on some images, and its boxes then crowd the known classes out of the 300
    a frame keeps, so the parent's scores would depend on the random state (CPLID defect 1.0 or
    0.11 from the same B0). Training moves the zero rows from the first step."""
    import torch

    head = model.model[-1]
    with torch.no_grad():
        for attr in ("cv3", "one2one_cv3"):
            for branch in getattr(head, attr, None) or ():
                branch[-1].weight[known:] = 0


def _same_outputs(old, new, known: int) -> float:
    """The largest difference between the old and the grown model's outputs (boxes and the known
    classes' scores) on one probe image; a transfer that changed them is a bug, never a model."""
    import torch

    probe = torch.linspace(0, 1, 3 * 128 * 128).reshape(1, 3, 128, 128)
    with torch.no_grad():
        a, b = old.eval()(probe)[0], new.eval()(probe)[0]
    n = a.shape[1]  # 4 box coordinates, then the known classes' scores
    boxes = float((a[:, :4] - b[:, :4]).abs().max() / (a[:, :4].abs().max() + 1e-9))
    scores = float((torch.logit(a[:, 4:n], 1e-6) - torch.logit(b[:, 4:n], 1e-6)).abs().max())
    worst = max(boxes, scores)
    if worst > 1e-3:
        raise RuntimeError(f"growing the class head changed the known outputs by {worst:.3g}: "
                           f"{known} classes not transferred (ultralytics' load changed?)")
    return worst
