"""Tile geometry for high-resolution frames, shared by training (tile datasets) and inference.

Training on the same windows the drone will cut keeps object sizes identical between the two.
"""

from __future__ import annotations

import numpy as np


def tile_origins(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets covering [0, length) with tiles of `tile` px overlapping by `overlap` (0..1).

    The last tile is aligned to the far edge instead of running past it, so every tile is
    full-size and no padding is needed.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap {overlap} must be in [0, 1)")
    if tile <= 0 or length <= 0:
        raise ValueError("tile and length must be positive")
    if length <= tile:
        return [0]
    stride = max(1, round(tile * (1 - overlap)))
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def tile_windows(width: int, height: int, tile: int, overlap: float) -> np.ndarray:
    """(N, 4) windows x1, y1, x2, y2 in pixels, row-major."""
    xs = tile_origins(width, tile, overlap)
    ys = tile_origins(height, tile, overlap)
    return np.array([[x, y, min(x + tile, width), min(y + tile, height)] for y in ys for x in xs], dtype=np.int64)
