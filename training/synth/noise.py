"""Value noise defined on absolute coordinates, so that any window of it is the same texture.

Overlapping frames of a flight must show the same clouds and hills: a window is computed from
a hashed integer lattice (no stored texture), upsampled with OpenCV's bicubic resize.
"""

from __future__ import annotations

import cv2
import numpy as np

_M1, _M2, _M3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _hash01(seed: int, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    """splitmix64 of (seed, ix, iy) -> uniform [0, 1)."""
    with np.errstate(over="ignore"):
        h = (np.uint64(seed & 0xFFFFFFFF) * _M1) ^ (ix.astype(np.int64).astype(np.uint64) * _M2)
        h ^= iy.astype(np.int64).astype(np.uint64) * _M3
        h ^= h >> np.uint64(30)
        h *= _M2
        h ^= h >> np.uint64(27)
        h *= _M3
        h ^= h >> np.uint64(31)
    return (h >> np.uint64(40)).astype(np.float32) / np.float32(1 << 24)


def value_noise(seed: int, x0: int, y0: int, width: int, height: int, cell: int) -> np.ndarray:
    """(height, width) float32 in ~[0, 1]: lattice spacing `cell` pixels, window at (x0, y0)."""
    cell = max(2, int(cell))
    ix0, iy0 = x0 // cell - 1, y0 // cell - 1
    nx = (x0 + width) // cell - ix0 + 3
    ny = (y0 + height) // cell - iy0 + 3
    iy, ix = np.meshgrid(np.arange(iy0, iy0 + ny), np.arange(ix0, ix0 + nx), indexing="ij")
    grid = _hash01(seed, ix, iy)
    up = cv2.resize(grid, (nx * cell, ny * cell), interpolation=cv2.INTER_CUBIC)
    ox, oy = x0 - ix0 * cell, y0 - iy0 * cell
    return up[oy : oy + height, ox : ox + width]


def fbm(seed: int, x0: int, y0: int, width: int, height: int, cell: int, octaves: int = 4) -> np.ndarray:
    """Fractal sum of octaves (each half the cell, half the weight), normalised to ~[0, 1]."""
    out = np.zeros((height, width), np.float32)
    weight, total = 1.0, 0.0
    for k in range(octaves):
        c = max(2, cell >> k)
        out += weight * value_noise(seed + 7919 * k, x0, y0, width, height, c)
        total += weight
        weight *= 0.5
    return out / total


def noise_1d(seed: int, x0: int, width: int, cell: int, octaves: int = 4) -> np.ndarray:
    """A 1-D profile (e.g. a ridge line) over absolute x: lattice values, cosine-interpolated."""
    x = np.arange(x0, x0 + width, dtype=np.float64)
    out = np.zeros(width)
    weight, total = 1.0, 0.0
    for k in range(octaves):
        c = max(2, cell >> k)
        i0 = np.floor(x / c).astype(np.int64)
        t = x / c - i0
        t = (1 - np.cos(np.pi * t)) / 2
        zero = np.zeros_like(i0)
        a, b = _hash01(seed + 7919 * k, i0, zero), _hash01(seed + 7919 * k, i0 + 1, zero)
        out += weight * (a * (1 - t) + b * t)
        total += weight
        weight *= 0.5
    return (out / total).astype(np.float32)
