"""Which images operators label: k-center coreset, detector uncertainty, a hybrid, or random
(the baseline every method is measured against). numpy, vectorised: one pass over the
embeddings per pick.

- **coreset**: k-center greedy (farthest-first): each pick is the image farthest from everything
  chosen (or already labelled), so the picks cover the embedding space; its radius is within a
  factor two of the best possible.
- **uncertainty**: per box, the binary entropy of its confidence; per image, the largest, with
  each box weighted by the inverse frequency of its class among the predictions (rare classes
  count more, so a flood of insulators does not hide the few defects).
- **hybrid**: the most uncertain `shortlist` x budget images, then k-center among them.
- **crops**: k-center over embeddings of the crops around the insulators the detector finds
  (cloud/embeddings.py:embed_crops), not of whole photos: IDD's faults are 17-31 px on 640x360
  photos, and a whole photo's pooled features mostly see sky and background.
- **faults**: uncertainty over the fault classes' boxes only (every class but `insulator`), for
  a campaign whose faults are what operators look for.
- Near-duplicates: consecutive frames of one flight whose embeddings are nearly the same
  (cosine >= `dup_cos`) are never both chosen; the second is skipped and the next best taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRATEGIES = ("coreset", "uncertainty", "hybrid", "random", "crops", "faults")
# The default of `pli cloud select` and the API: what issue 27's experiment (a) found, as
# docs/benchmarks.md reports it (from B0, uncertainty is the one method that beat random beyond
# the seeds' spread, at 20 %, over 5 seeds each).
DEFAULT_STRATEGY = "uncertainty"
EMBEDDED = ("coreset", "hybrid", "crops")  # the strategies that need embeddings
UNSURE = ("uncertainty", "hybrid", "faults")  # ... and those that need the detector's uncertainty
DUP_COS = 0.98


@dataclass
class Frames:
    """Where each image comes from, for near-duplicate pruning: flight id and frame index
    (images not from a flight get their own flight each)."""

    flight: np.ndarray  # (N,) str or int
    index: np.ndarray  # (N,) int


def _normalise(emb: np.ndarray) -> np.ndarray:
    e = np.asarray(emb, np.float32)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def near_duplicates(emb: np.ndarray, frames: Frames | None, dup_cos: float = DUP_COS) -> dict[int, list[int]]:
    """For each image, its near-duplicate neighbours: the previous and next frame of the same
    flight when their embeddings' cosine is at least `dup_cos`."""
    if frames is None:
        return {}
    e = _normalise(emb)
    order = np.lexsort((np.asarray(frames.index), np.asarray(frames.flight).astype(str)))
    fl = np.asarray(frames.flight).astype(str)[order]
    ix = np.asarray(frames.index)[order]
    a, b = order[:-1], order[1:]
    same = (fl[:-1] == fl[1:]) & (np.abs(ix[1:] - ix[:-1]) <= 1)
    cos = np.einsum("ij,ij->i", e[a], e[b])
    pairs: dict[int, list[int]] = {}
    for i, j in zip(a[same & (cos >= dup_cos)], b[same & (cos >= dup_cos)], strict=True):
        pairs.setdefault(int(i), []).append(int(j))
        pairs.setdefault(int(j), []).append(int(i))
    return pairs


def k_center(emb: np.ndarray, budget: int, labelled: np.ndarray | None = None, frames: Frames | None = None,
             seed: int = 0, dup_cos: float = DUP_COS) -> np.ndarray:
    """k-center greedy picks (indices, in pick order)."""
    x = np.ascontiguousarray(emb, np.float32)
    n = len(x)
    budget = min(budget, n)
    sq = np.einsum("ij,ij->i", x, x)
    dist = np.full(n, np.inf, np.float32)
    dups = near_duplicates(x, frames, dup_cos)

    def take(c: int) -> None:
        d = sq - 2.0 * (x @ x[c]) + sq[c]  # squared distances to the new centre
        np.minimum(dist, np.maximum(d, 0.0), out=dist)
        dist[c] = -1.0  # chosen (or labelled)
        for j in dups.get(c, ()):
            dist[j] = -1.0  # its near-duplicate is never chosen too

    for c in (labelled if labelled is not None else []):
        take(int(c))
    picks = []
    if not picks and (labelled is None or len(labelled) == 0):
        first = int(np.random.default_rng(seed).integers(n))
        picks.append(first)
        take(first)
    while len(picks) < budget:
        c = int(np.argmax(dist))
        if dist[c] < 0:
            break  # everything is chosen or a near-duplicate of a choice
        picks.append(c)
        take(c)
    return np.array(picks, np.int64)


def image_uncertainty(confidence: list[np.ndarray], class_id: list[np.ndarray], n_classes: int,
                      only: list[int] | None = None) -> np.ndarray:
    """Per image, the largest class-weighted binary entropy of its boxes (0 for no box); `only`:
    count the boxes of these classes alone (the `faults` strategy)."""
    if only is not None:
        keep = [np.isin(np.asarray(c, np.int64), only) for c in class_id]
        confidence = [np.asarray(p)[k] for p, k in zip(confidence, keep, strict=True)]
        class_id = [np.asarray(c)[k] for c, k in zip(class_id, keep, strict=True)]
    all_cls = np.concatenate([np.asarray(c, np.int64) for c in class_id]) if class_id else np.zeros(0, np.int64)
    freq = np.bincount(all_cls, minlength=n_classes).astype(np.float64)
    weight = np.where(freq > 0, freq.sum() / np.maximum(freq, 1) / max(1, np.count_nonzero(freq)), 0.0)
    out = np.zeros(len(confidence))
    for i, (p, c) in enumerate(zip(confidence, class_id, strict=True)):
        p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
        if len(p):
            h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
            out[i] = float((h * weight[np.asarray(c, np.int64)]).max())
    return out


def _prune(order: np.ndarray, budget: int, dups: dict[int, list[int]]) -> np.ndarray:
    chosen, blocked = [], set()
    for i in order:
        i = int(i)
        if i in blocked:
            continue
        chosen.append(i)
        blocked.update(dups.get(i, ()))
        if len(chosen) == budget:
            break
    return np.array(chosen, np.int64)


def select(strategy: str, budget: int, emb: np.ndarray | None = None, uncertainty: np.ndarray | None = None,
           frames: Frames | None = None, labelled: np.ndarray | None = None, seed: int = 0,
           shortlist: int = 4, dup_cos: float = DUP_COS, n: int | None = None) -> np.ndarray:
    """`budget` image indices by `strategy` (one of STRATEGIES). `n`: the pool's size, for random
    without embeddings or uncertainty."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
    if n is None:
        n = len(emb) if emb is not None else len(uncertainty) if uncertainty is not None else 0
    if strategy in EMBEDDED and emb is None:
        raise ValueError(f"{strategy} needs embeddings")
    if strategy in UNSURE and uncertainty is None:
        raise ValueError(f"{strategy} needs the detector's uncertainty per image")
    done = set() if labelled is None else {int(i) for i in labelled}
    dups = near_duplicates(emb, frames, dup_cos) if emb is not None else {}
    if strategy in ("coreset", "crops"):
        return k_center(emb, budget, labelled, frames, seed, dup_cos)
    if strategy == "random":
        order = np.random.default_rng(seed).permutation(n)
    else:
        order = np.argsort(-np.asarray(uncertainty), kind="stable")
    order = np.array([i for i in order if int(i) not in done], np.int64)
    if strategy == "hybrid":
        short = order[:budget * shortlist]
        picked = k_center(emb[short], budget, None, None if frames is None else
                          Frames(np.asarray(frames.flight)[short], np.asarray(frames.index)[short]), seed, dup_cos)
        return short[picked]
    return _prune(order, budget, dups)


def coverage_radius(emb: np.ndarray, picks: np.ndarray) -> float:
    """The largest distance from any image to its nearest pick (smaller: better covered)."""
    x = np.asarray(emb, np.float32)
    c = x[np.asarray(picks)]
    d = (x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]
    return float(np.sqrt(np.maximum(d.min(1), 0)).max())


def missed_fault_candidates(uncertainty: np.ndarray, top_confidence: np.ndarray, k: int, operating_conf: float,
                            exclude: np.ndarray | None = None) -> np.ndarray:
    """Up to `k` photos where the detector is unsure but raised nothing (no box at or above its
    operating threshold), most uncertain first: the faults it may be missing, for a "missed fault"
    review. `exclude`: photos already going to operators."""
    unc = np.asarray(uncertainty, np.float64)
    silent = (np.asarray(top_confidence, np.float64) < operating_conf) & (unc > 0)
    if exclude is not None:
        silent[np.asarray(exclude, np.int64)] = False
    idx = np.flatnonzero(silent)
    return idx[np.argsort(-unc[idx], kind="stable")][:max(0, k)]
