"""Growing a detector's class list without forgetting the classes it has.

Fine-tuning a 3-class checkpoint on 4-class data makes ultralytics rebuild the model for four
classes and copy only the tensors whose shapes match: the last convolution of each class branch
(one output per class) does not match, so it starts from random and every known class is
relearned from the new data alone. The class list is append-only (comms/class_lists), so the
old classes keep their index: copy their rows of those convolutions, and only the new class
starts from ultralytics' prior.
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
    have, want = old.state_dict(), new.state_dict()
    grown = 0
    for key, value in want.items():
        src = have.get(key)
        if src is None:
            continue
        if src.shape == value.shape:
            want[key] = src.clone()
        elif src.shape[1:] == value.shape[1:] and src.shape[0] == len(old_names) and value.shape[0] == len(names):
            value[:len(old_names)] = src  # a class branch's output: old classes keep their rows
            grown += 1
    new.load_state_dict(want)
    new.names = dict(enumerate(names))
    new.args = getattr(old, "args", {})
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": new.half(), "ema": None, "train_args": ckpt.get("train_args", {}), "epoch": -1,
                "optimizer": None, "grown_from": {"weights": str(weights), "names": old_names},
                INIT_KEY: {**describe_init(weights), "grown_to": list(names)}}, out)
    log.info("%s: class list %s -> %s (%d class outputs kept)", Path(weights).name, old_names, list(names), grown)
    return out
