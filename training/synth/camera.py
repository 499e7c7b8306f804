"""Pinhole camera of the synthetic drone.

World frame (metres), aligned with the route: x along the flight, y to the right of it
(towards the line), z up from the ground at the line. The gimbal looks at +y, pitched down by
`-pitch_deg`, and turned `yaw_deg` towards the direction of flight (+x; 0: square to the line).
Looking to the right of the flight, the direction of flight is on the camera's left: image u
grows towards -x (this frame is left-handed), v grows downwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# DJI wide cameras: 24 mm equivalent on a 36 mm wide frame.
FOCAL_35MM = 24.0
HFOV_DEG = math.degrees(2 * math.atan(18.0 / FOCAL_35MM))


@dataclass(frozen=True)
class Camera:
    width: int
    height: int
    x: float  # along-route position of the drone
    z: float  # height above the ground at the line
    pitch_deg: float  # negative looks down
    hfov_deg: float = HFOV_DEG
    yaw_deg: float = 0.0  # turned towards the direction of flight
    y: float = 0.0  # off the route towards the line (an orbit's arc around a tower)

    @property
    def f(self) -> float:
        return (self.width / 2) / math.tan(math.radians(self.hfov_deg) / 2)

    @property
    def center(self) -> tuple[float, float]:
        return self.width / 2, self.height / 2

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixel (N, 2) and depth along the optical axis (N,)."""
        p = np.asarray(pts, dtype=np.float64).reshape(-1, 3)
        a, psi = math.radians(self.pitch_deg), math.radians(self.yaw_deg)
        dx, dy = p[:, 0] - self.x, p[:, 1] - self.y
        rx = dx * math.cos(psi) - dy * math.sin(psi)  # along the image's left, as at yaw 0
        ry = dx * math.sin(psi) + dy * math.cos(psi)  # along the look direction on the ground
        rz = p[:, 2] - self.z
        depth = ry * math.cos(a) + rz * math.sin(a)
        down = ry * math.sin(a) - rz * math.cos(a)
        d = np.maximum(depth, 1e-3)
        cx, cy = self.center
        uv = np.stack([cx - self.f * rx / d, cy + self.f * down / d], axis=1)
        return uv, depth

    def scale_at(self, depth: float | np.ndarray) -> float | np.ndarray:
        """Pixels per metre at a depth."""
        return self.f / np.maximum(depth, 1e-3)

    def elevation_of_row(self, v: np.ndarray) -> np.ndarray:
        """Elevation angle (radians, up positive) of the ray through image row v at u = cx."""
        return math.radians(self.pitch_deg) - np.arctan((v - self.height / 2) / self.f)
