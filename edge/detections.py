"""Detections as a struct of numpy arrays (one row per box), as supervision.Detections does.

Per-box Python objects cost more than the detector itself at hundreds of boxes per tiled
frame; arrays keep filtering, merging and NMS vectorised.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Detections:
    xyxy: np.ndarray  # (N, 4) float32, source-image pixels
    confidence: np.ndarray  # (N,) float32
    class_id: np.ndarray  # (N,) int32
    class_names: Sequence[str] = ()

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, dtype=np.int32).reshape(-1)
        n = len(self.xyxy)
        if len(self.confidence) != n or len(self.class_id) != n:
            raise ValueError(
                f"length mismatch: {n} boxes, {len(self.confidence)} confidences, "
                f"{len(self.class_id)} class ids"
            )
        if n and self.class_names and (self.class_id.min() < 0 or self.class_id.max() >= len(self.class_names)):
            raise ValueError(f"class id out of range for {len(self.class_names)} class names")

    @classmethod
    def empty(cls, class_names: Sequence[str] = ()) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0), class_names)

    @classmethod
    def merge(cls, parts: Iterable[Detections]) -> Detections:
        parts = list(parts)
        if not parts:
            return cls.empty()
        names = parts[0].class_names
        if any(list(p.class_names) != list(names) for p in parts):
            raise ValueError("cannot merge detections with different class lists")
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.confidence for p in parts]),
            np.concatenate([p.class_id for p in parts]),
            names,
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice | int) -> Detections:
        if isinstance(index, int | np.integer):
            index = slice(int(index), int(index) + 1 if index != -1 else None)
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index], self.class_names)

    @property
    def area(self) -> np.ndarray:
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]

    @property
    def names(self) -> list[str]:
        """Class name of each box."""
        return [self.class_names[i] for i in self.class_id]
