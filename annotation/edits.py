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


def edits(pred_xyxy: np.ndarray, pred_cls: np.ndarray, gt_xyxy: np.ndarray, gt_cls: np.ndarray,
          keep: float = KEEP_IOU, touch: float = TOUCH_IOU) -> dict[str, int]:
    pred_xyxy, gt_xyxy = np.asarray(pred_xyxy, float).reshape(-1, 4), np.asarray(gt_xyxy, float).reshape(-1, 4)
    pred_cls, gt_cls = np.asarray(pred_cls).reshape(-1), np.asarray(gt_cls).reshape(-1)
    kept = moved = 0
    used_p: set[int] = set()
    used_g: set[int] = set()
    iou = iou_matrix(pred_xyxy, gt_xyxy)
    iou[pred_cls[:, None] != gt_cls[None, :]] = 0.0
    order = np.dstack(np.unravel_index(np.argsort(-iou, axis=None), iou.shape))[0] if iou.size else []
    for p, g in order:
        v = iou[p, g]
        if v < touch:
            break
        if p in used_p or g in used_g:
            continue
        used_p.add(int(p))
        used_g.add(int(g))
        if v >= keep:
            kept += 1
        else:
            moved += 1
    return {"add": len(gt_xyxy) - len(used_g), "delete": len(pred_xyxy) - len(used_p), "move": moved, "kept": kept}


def total(e: dict[str, int]) -> int:
    return e["add"] + e["delete"] + e["move"]
