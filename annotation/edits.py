"""What an operator must do to turn proposed boxes into the right ones: boxes to add, to delete,
and to move (a proposal of the right class overlapping a true box, but with IoU < 0.5).

Proposals and truth are matched greedily by IoU within each class, the best pairs first: a pair
at IoU >= 0.5 needs nothing; a pair above `touch` but below 0.5 is one move; true boxes left
over are adds and proposals left over are deletes. From nothing, every true box is an add.
"""

from __future__ import annotations

import numpy as np

from edge.golden import iou_matrix

KEEP_IOU = 0.5
TOUCH_IOU = 0.1


def _pairs(pred_xyxy: np.ndarray, pred_cls: np.ndarray, gt_xyxy: np.ndarray, gt_cls: np.ndarray,
           touch: float) -> list[tuple[int, int, float]]:
    """(proposal, true box, IoU) matched greedily, best pairs first, within each class."""
    used_p: set[int] = set()
    used_g: set[int] = set()
    out = []
    iou = iou_matrix(pred_xyxy, gt_xyxy)
    iou[pred_cls[:, None] != gt_cls[None, :]] = 0.0
    order = np.dstack(np.unravel_index(np.argsort(-iou, axis=None), iou.shape))[0] if iou.size else []
    for p, g in order:
        v = float(iou[p, g])
        if v < touch:
            break
        if p in used_p or g in used_g:
            continue
        used_p.add(int(p))
        used_g.add(int(g))
        out.append((int(p), int(g), v))
    return out


def _arrays(pred_xyxy, pred_cls, gt_xyxy, gt_cls):
    return (np.asarray(pred_xyxy, float).reshape(-1, 4), np.asarray(pred_cls).reshape(-1),
            np.asarray(gt_xyxy, float).reshape(-1, 4), np.asarray(gt_cls).reshape(-1))


def edits(pred_xyxy: np.ndarray, pred_cls: np.ndarray, gt_xyxy: np.ndarray, gt_cls: np.ndarray,
          keep: float = KEEP_IOU, touch: float = TOUCH_IOU) -> dict[str, int]:
    pred_xyxy, pred_cls, gt_xyxy, gt_cls = _arrays(pred_xyxy, pred_cls, gt_xyxy, gt_cls)
    pairs = _pairs(pred_xyxy, pred_cls, gt_xyxy, gt_cls, touch)
    kept = sum(1 for _, _, v in pairs if v >= keep)
    return {"add": len(gt_xyxy) - len(pairs), "delete": len(pred_xyxy) - len(pairs), "move": len(pairs) - kept,
            "kept": kept}


def corrected(pred_xyxy: np.ndarray, pred_cls: np.ndarray, gt_xyxy: np.ndarray, gt_cls: np.ndarray,
              keep: float = KEEP_IOU, touch: float = TOUCH_IOU) -> tuple[np.ndarray, np.ndarray]:
    """The boxes an operator who knows the truth leaves on the photo, as `edits` counts them: a
    proposal kept where it is (IoU >= keep), one moved onto its true box, a missed box drawn,
    a false one deleted. Returns xyxy and classes, in the truth's order."""
    pred_xyxy, pred_cls, gt_xyxy, gt_cls = _arrays(pred_xyxy, pred_cls, gt_xyxy, gt_cls)
    out = gt_xyxy.copy()
    for p, g, v in _pairs(pred_xyxy, pred_cls, gt_xyxy, gt_cls, touch):
        if v >= keep:
            out[g] = pred_xyxy[p]
    return out, gt_cls.copy()


def total(e: dict[str, int]) -> int:
    return e["add"] + e["delete"] + e["move"]


def fewest_edits_threshold(found: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                           truth: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray | None = None) -> float:
    """The confidence threshold (of `grid`) at which proposals leave operators the fewest edits over
    these photos; ties go to the higher threshold (fewer boxes to look at). `found`: per photo
    the proposals' xyxy, classes and confidences, taken at a threshold no higher than the grid's
    lowest (class-wise NMS keeps the same boxes above any higher threshold); `truth`: per photo
    the true xyxy and classes."""
    if len(found) != len(truth):
        raise ValueError(f"{len(found)} photos of proposals but {len(truth)} of truth")
    grid = np.round(np.arange(0.05, 0.95, 0.05), 2) if grid is None else np.asarray(grid, float)
    best, best_t = None, float(grid[0])
    for t in grid:
        n = 0
        for (xyxy, cls, conf), (gt_xyxy, gt_cls) in zip(found, truth, strict=True):
            keep = np.asarray(conf) >= t
            n += total(edits(np.asarray(xyxy).reshape(-1, 4)[keep], np.asarray(cls)[keep], gt_xyxy, gt_cls))
        if best is None or n <= best:
            best, best_t = n, float(t)
    return best_t
