"""Fault tracker: confirm a fault over frames, and report each physical fault once.

A detection of a fault class (per the class rules in comms/classes.toml) joins a track of
the same class that it overlaps in the previous frame (image IoU), or whose ground position
lies within `radius_m` (photos overlap too little for IoU, and a fault seen again later in
the flight is the same fault); detections and tracks are paired by assignment, not greedily.
A track is confirmed when it was seen in at least `k` of the last `n` frames; it then yields
one `ConfirmedFault`, and stays for the rest of the flight so that the same place never alerts
twice. Unconfirmed tracks that can no longer reach `k`
are dropped.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from comms.classes import ClassList, Severity
from edge.detections import Detections
from edge.geo import distance_m
from edge.geolocate import Located
from edge.multiview import Fix, View, point_gap, ray_gap, triangulate


@dataclass(frozen=True)
class TrackerConfig:
    k: int = 2
    n: int = 3
    radius_m: float = 15.0
    iou: float = 0.3
    ray_gap_m: float = 2.5  # a view whose ray passes this close to a track's point (or rays) may join it
    multi_view: bool = True  # a confirmed fault's position from all its views (edge/multiview.py)
    # A confirmed fault whose views still place it loosely (stated error above settle_error_m: two
    # views close together, as on an orbit's arc) waits for more views while it stays in sight, at
    # most settle_frames frames: a BeiDou alert is one short message, better sent once and right.
    settle_error_m: float = 3.0
    settle_frames: int = 6

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n:
            raise ValueError(f"need 1 <= k <= n, got k={self.k}, n={self.n}")


@dataclass
class Track:
    id: int
    cls: str
    lat: float
    lon: float
    frames: deque = field(default_factory=deque)  # frame indices where seen, the last n
    observations: int = 0
    located: int = 0  # observations with a ground position (their mean is the track's position)
    last_frame: int = -1
    last_box: np.ndarray = field(default_factory=lambda: np.zeros(4))
    best_confidence: float = 0.0
    best_frame: int = -1
    best_box: np.ndarray = field(default_factory=lambda: np.zeros(4))
    confirmed: bool = False
    source: str = "drone"  # the best way any observation was located: laser, then ground_plane, then drone
    views: list[View] = field(default_factory=list)  # cameras and rays of the views with a pose
    fix: Fix | None = None  # the position from several views, once there are two
    confirmed_at: int = -1
    reported: bool = False


_RANK = {"drone": 0, "other": 1, "ground_plane": 2, "laser": 3, "multi_view": 4}
BLOCKED = 1e9  # the cost of a pair that may not match
MAX_RAY_M = 200.0  # rays meeting farther than this from the camera are not one fault


@dataclass(frozen=True)
class ConfirmedFault:
    track_id: int
    cls: str
    severity: Severity
    lat: float
    lon: float
    position_source: str
    confidence: float
    frame: int  # frame of the most confident view (for the crop)
    box: tuple[float, float, float, float]
    observations: int
    error_m: float | None = None  # the multi-view estimate's 1-sigma horizontal error


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaultTracker:
    def __init__(self, classes: ClassList, config: TrackerConfig | None = None):
        self.classes, self.config = classes, config or TrackerConfig()
        self.tracks: list[Track] = []
        self._ids = itertools.count(1)

    def use_classes(self, classes: ClassList) -> None:
        """The running model's list after a swap: a grown one adds classes; a rollback to a shorter
        one drops the tracks of classes it no longer knows (they could never be packed)."""
        if classes is self.classes:
            return
        self.classes = classes
        self.tracks = [t for t in self.tracks if t.cls in classes.fault_names]

    def update(self, frame: int, dets: Detections, located: Located) -> list[ConfirmedFault]:
        """Feed one frame's detections and their ground positions; returns newly confirmed faults.

        Detections are matched to tracks of their class by assignment (scipy's
        `linear_sum_assignment`): a pair may match when the boxes overlap (IoU with the track's
        box in the previous frame) or the ground positions lie within `radius_m`; among those,
        the matching with the least total cost (1 - IoU + distance / radius) wins, so two faults
        whose boxes cross are not swapped the way a greedy, most-confident-first match would."""
        cfg = self.config
        names = [dets.class_names[c] for c in dets.class_id]
        for name in dict.fromkeys(names):
            if self.classes.severity_of(name) is None:
                continue  # assets raise no alert
            idx = [i for i, n in enumerate(names) if n == name]
            idx.sort(key=lambda i: -float(dets.confidence[i]))
            tracks = [t for t in self.tracks if t.cls == name]
            pairs = self._assign(frame, dets, located, idx, tracks)
            for i in idx:
                t = pairs.get(i)
                if t is None:
                    t = Track(next(self._ids), name, float("nan"), float("nan"), deque(maxlen=cfg.n))
                    self.tracks.append(t)
                self._observe(t, frame, dets.xyxy[i], float(dets.confidence[i]), float(located.lat[i]),
                              float(located.lon[i]), located.source, located.views[i] if located.views else None)

        confirmed = []
        for t in self.tracks:
            recent = sum(1 for f in t.frames if f > frame - cfg.n)
            if not t.confirmed and recent >= cfg.k:
                t.confirmed, t.confirmed_at = True, frame
            if t.confirmed and not t.reported and self._settled(t, frame):
                t.reported = True
                confirmed.append(self._event(t))
        # Unconfirmed tracks that cannot reach k within the window any more are dropped.
        self.tracks = [t for t in self.tracks if t.confirmed or frame - t.last_frame < cfg.n]
        return confirmed

    @property
    def holding(self) -> bool:
        """A confirmed fault waits for more views (not yet reported)."""
        return any(t.confirmed and not t.reported for t in self.tracks)

    def flush(self) -> list[ConfirmedFault]:
        """The confirmed faults still waiting for views (the flight ended): reported now."""
        out = []
        for t in self.tracks:
            if t.confirmed and not t.reported:
                t.reported = True
                out.append(self._event(t))
        return out

    def _settled(self, t: Track, frame: int) -> bool:
        """Report now: the fault out of sight, waited enough, no rays to wait on, or a tight fix
        (views still too close together for any fix wait too, as a hovering drone's would)."""
        cfg = self.config
        if not cfg.multi_view or frame - t.last_frame >= cfg.n or frame - t.confirmed_at >= cfg.settle_frames:
            return True
        if t.fix is None:
            return not t.views
        return t.fix.error_m <= cfg.settle_error_m

    def _assign(self, frame: int, dets: Detections, located: Located, idx: list[int],
                tracks: list[Track]) -> dict[int, Track]:
        if not idx or not tracks:
            return {}
        from scipy.optimize import linear_sum_assignment

        cfg = self.config
        cost = np.full((len(idx), len(tracks)), BLOCKED)
        for r, i in enumerate(idx):
            box, lat, lon = dets.xyxy[i], float(located.lat[i]), float(located.lon[i])
            view = located.views[i] if located.views else None
            for c, t in enumerate(tracks):
                overlap = _iou(t.last_box, box) if t.last_frame == frame - 1 else 0.0
                dist = float(distance_m(t.lat, t.lon, lat, lon)) if np.isfinite([t.lat, lat]).all() else np.inf
                gap = self._ray_gap(t, view) if cfg.multi_view else None
                if gap is not None and gap <= cfg.ray_gap_m:  # the rays meet: the single-view places may not
                    cost[r, c] = (1.0 - overlap) + gap / cfg.ray_gap_m
                elif overlap >= cfg.iou or dist <= cfg.radius_m:
                    cost[r, c] = (1.0 - overlap) + min(dist, cfg.radius_m) / cfg.radius_m
        rows, cols = linear_sum_assignment(cost)
        return {idx[r]: tracks[c] for r, c in zip(rows, cols, strict=True) if cost[r, c] < BLOCKED}

    @staticmethod
    def _ray_gap(t: Track, view: View | None) -> float | None:
        """How close the view's ray passes to the track: to its multi-view point, else to its
        last view's ray (None: no rays to compare, or they meet behind a camera or too far)."""
        if view is None or not view.usable or not t.views:
            return None
        if t.fix is not None:
            return point_gap(view, t.fix.lat, t.fix.lon, t.fix.z)
        met = ray_gap(t.views[-1], view)
        if met is None or max(met[1], met[2]) > MAX_RAY_M:
            return None
        return met[0]

    def _observe(self, t: Track, frame: int, box: np.ndarray, confidence: float, lat: float, lon: float,
                 source: str, view: View | None = None) -> None:
        if view is not None and view.usable and self.config.multi_view:
            t.views.append(view)
            if len(t.views) >= 2:
                t.fix = triangulate(t.views) or t.fix
        if _RANK[source] > _RANK[t.source]:
            t.source = source
        t.observations += 1
        if np.isfinite(lat) and np.isfinite(lon):  # a view without a position never enters the mean
            t.located += 1
            if t.located == 1:
                t.lat, t.lon = lat, lon
            else:
                t.lat += (lat - t.lat) / t.located
                t.lon += (lon - t.lon) / t.located
        t.frames.append(frame)
        t.last_frame, t.last_box = frame, box.copy()
        if confidence > t.best_confidence:
            t.best_confidence, t.best_frame, t.best_box = confidence, frame, box.copy()

    def _event(self, t: Track) -> ConfirmedFault:
        lat, lon, source, error = t.lat, t.lon, t.source, None
        if t.fix is not None:  # several views: their rays' meeting point, with its error estimate
            lat, lon, source, error = t.fix.lat, t.fix.lon, "multi_view", round(t.fix.error_m, 2)
        return ConfirmedFault(t.id, t.cls, self.classes.severity_of(t.cls), lat, lon, source,
                              t.best_confidence, t.best_frame, tuple(float(v) for v in t.best_box), t.observations,
                              error)
