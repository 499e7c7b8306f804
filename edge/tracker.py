"""Fault tracker: confirm a fault over frames, and report each physical fault once.

A detection of a fault class (per the class rules in comms/classes.toml) joins the track of
the same class that it overlaps in the previous frame (image IoU), or whose ground position
lies within `radius_m` (photos overlap too little for IoU, and a fault seen again later in
the flight is the same fault). A track is confirmed when it was seen in at least `k` of the
last `n` frames; it then yields one `ConfirmedFault`, and stays for the rest of the flight so
that the same place never alerts twice. Unconfirmed tracks that can no longer reach `k`
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


@dataclass(frozen=True)
class TrackerConfig:
    k: int = 2
    n: int = 3
    radius_m: float = 15.0
    iou: float = 0.3

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
    last_frame: int = -1
    last_box: np.ndarray = field(default_factory=lambda: np.zeros(4))
    best_confidence: float = 0.0
    best_frame: int = -1
    best_box: np.ndarray = field(default_factory=lambda: np.zeros(4))
    confirmed: bool = False
    source: str = "drone"  # the best way any observation was located: laser, then ground_plane, then drone


_RANK = {"drone": 0, "other": 1, "ground_plane": 2, "laser": 3}


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
        """Feed one frame's detections and their ground positions; returns newly confirmed faults."""
        cfg = self.config
        touched: set[int] = set()
        for i in np.argsort(-dets.confidence):
            name = dets.class_names[dets.class_id[i]]
            if self.classes.severity_of(name) is None:
                continue  # assets raise no alert
            box, lat, lon = dets.xyxy[i], float(located.lat[i]), float(located.lon[i])
            best, best_key = None, None
            for t in self.tracks:
                if t.cls != name or t.id in touched:
                    continue
                overlap = _iou(t.last_box, box) if t.last_frame == frame - 1 else 0.0
                dist = float(distance_m(t.lat, t.lon, lat, lon))
                if overlap >= cfg.iou or dist <= cfg.radius_m:
                    key = (overlap, -dist)
                    if best_key is None or key > best_key:
                        best, best_key = t, key
            if best is None:
                best = Track(next(self._ids), name, lat, lon, deque(maxlen=cfg.n))
                self.tracks.append(best)
            touched.add(best.id)
            if _RANK[located.source] > _RANK[best.source]:
                best.source = located.source
            best.observations += 1
            best.lat += (lat - best.lat) / best.observations  # running mean of the positions
            best.lon += (lon - best.lon) / best.observations
            best.frames.append(frame)
            best.last_frame, best.last_box = frame, box.copy()
            if dets.confidence[i] > best.best_confidence:
                best.best_confidence, best.best_frame, best.best_box = float(dets.confidence[i]), frame, box.copy()

        confirmed = []
        for t in self.tracks:
            recent = sum(1 for f in t.frames if f > frame - cfg.n)
            if not t.confirmed and recent >= cfg.k:
                t.confirmed = True
                confirmed.append(self._event(t))
        # Unconfirmed tracks that cannot reach k within the window any more are dropped.
        self.tracks = [t for t in self.tracks if t.confirmed or frame - t.last_frame < cfg.n]
        return confirmed

    def _event(self, t: Track) -> ConfirmedFault:
        return ConfirmedFault(t.id, t.cls, self.classes.severity_of(t.cls), t.lat, t.lon, t.source,
                              t.best_confidence, t.best_frame, tuple(float(v) for v in t.best_box), t.observations)
