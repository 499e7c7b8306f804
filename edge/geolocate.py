"""Ground position of detections: a pixel's ray from the drone's camera pose, out to the range.

The range comes from the laser range finder when the photo has one (DJI's LRFTargetDistance:
the target is taken at that depth along the optical axis), else from where the ray meets the
ground plane at take-off height. Without a usable pose, or when the ray never reaches the
ground within `MAX_RANGE_M`, the fault is placed at the drone's own position and the result
says so ("drone" instead of "laser" or "ground_plane").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge.geo import offset_latlon
from edge.geotag import Geotag
from edge.multiview import View

DEFAULT_FOCAL_35MM = 24.0
MAX_RANGE_M = 500.0


@dataclass(frozen=True)
class Located:
    lat: np.ndarray
    lon: np.ndarray
    source: str  # "laser", "ground_plane" or "drone" (comms.alert.POSITION_SOURCES)
    views: list[View] | None = None  # per point: its camera and ray, for positions from several views


def _rays(tag: Geotag, width: int, height: int, uv: np.ndarray) -> np.ndarray:
    """(N, 3) east/north/up rays, scaled so that their component along the optical axis is 1."""
    f35 = tag.focal_35mm or DEFAULT_FOCAL_35MM
    f = (width / 2) / (18.0 / f35)  # 36 mm wide 35 mm-equivalent frame
    psi, theta = math.radians(tag.gimbal_yaw), math.radians(tag.gimbal_pitch)
    fwd = np.array([math.sin(psi) * math.cos(theta), math.cos(psi) * math.cos(theta), math.sin(theta)])
    right = np.array([math.cos(psi), -math.sin(psi), 0.0])
    up = np.cross(right, fwd)
    x = (uv[:, 0:1] - width / 2) / f
    y = (uv[:, 1:2] - height / 2) / f
    return fwd[None, :] + x * right[None, :] - y * up[None, :]


def locate(tag: Geotag, width: int, height: int, uv: np.ndarray) -> Located:
    """Positions of image points `uv` (N, 2) seen in a photo with this geotag, and each point's
    view (camera and ray) where the pose is known, for edge/multiview.py."""
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    n = len(uv)
    if not tag.has_position:
        raise ValueError("no position for this frame")
    drone = Located(np.full(n, tag.lat), np.full(n, tag.lon), "drone")
    if not tag.has_pose or n == 0:
        return drone
    rays = _rays(tag, width, height, uv)
    norms = np.linalg.norm(rays, axis=1)
    z = tag.rel_alt if tag.rel_alt is not None else 0.0

    def views(depth: np.ndarray | None, how: str | None) -> list[View]:
        return [View(tag.lat, tag.lon, z, tuple(float(v) for v in rays[i] / norms[i]),
                     float(depth[i]) if depth is not None and np.isfinite(depth[i]) else None, how) for i in range(n)]

    if tag.target_distance is not None and 0 < tag.target_distance <= MAX_RANGE_M:
        scale, how = np.full(n, tag.target_distance), "laser"
    elif tag.rel_alt is not None and tag.rel_alt > 0:
        down = -rays[:, 2]
        with np.errstate(divide="ignore"):
            scale = np.where(down > 1e-6, tag.rel_alt / down, np.inf)
        how = "ground_plane"
    else:
        return Located(drone.lat, drone.lon, "drone", views(None, None))
    ground = rays * scale[:, None]
    if not np.all(np.isfinite(scale)) or np.hypot(ground[:, 0], ground[:, 1]).max() > MAX_RANGE_M:
        return Located(drone.lat, drone.lon, "drone", views(None, None))  # some ray never meets the ground
    lat, lon = offset_latlon(tag.lat, tag.lon, ground[:, 0], ground[:, 1])
    return Located(lat, lon, how, views(scale * norms, how))
