"""A fault's position from several views: the least-squares point nearest to the rays of its
observations, with each single-view estimate (laser range or ground plane) as a prior.

One view places a fault along its camera ray at a range: the laser's (good to about a metre) or
where the ray meets the ground at take-off height (tens of metres off for an insulator high on a
tower seen from level: the ray is nearly flat). Two or more views from camera positions some
metres apart meet at the fault: the point X minimising

    sum_i w_i |(I - d_i d_i^T)(X - C_i)|^2  +  sum_i p_i |X - P_i|^2

over the rays (camera C_i, unit direction d_i, weight 1/sigma^2 with sigma the angular error times
the range) and the priors P_i (weight 1/sigma_prior^2: 3 m for a laser, the range itself for the
ground plane, and only where the rays meet at less than 3 degrees: it is biased, every fault
hanging above the ground) is one 3x3 linear solve. Its error estimate is the horizontal spread of the
solution's covariance, scaled up by the residuals when they exceed what the sigmas say, with the
drone's GNSS error added (a bias all views share, which no number of views removes). Views
without a ray (no pose) and NaN values never enter it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge.geo import enu_offset, offset_latlon

ANGLE_SIGMA_RAD = math.radians(1.0)  # gimbal and attitude error of one view
LASER_SIGMA_M = 3.0  # the laser ranges the frame's centre: a fault elsewhere may stand nearer or farther
GNSS_SIGMA_M = 1.5  # the drone's own position error, common to all its views (not averaged away)
GROUND_SIGMA_FRACTION = 1.0  # of the range: the ground plane is a weak prior (a flat ray misses by tens of m)
MIN_BASELINE_M = 1.0  # views closer together than this add no triangulation
MIN_CONVERGENCE_DEG = 3.0  # rays meeting at a wider angle need no ground-plane prior (it is biased:
# every fault hangs above the ground, so the flat ray meets the ground beyond it)


@dataclass(frozen=True)
class View:
    """One observation: the camera (lat, lon, height in metres) and the unit ray (east, north,
    up) to the fault; the single-view point on that ray at `depth` metres (None: no range) and
    how it was found ("laser" or "ground_plane")."""

    lat: float
    lon: float
    z: float
    ray: tuple[float, float, float]
    depth: float | None = None
    prior: str | None = None

    @property
    def usable(self) -> bool:
        values = (self.lat, self.lon, self.z, *self.ray)
        return all(math.isfinite(v) for v in values) and abs(math.hypot(*self.ray) - 1.0) < 1e-3


@dataclass(frozen=True)
class Fix:
    lat: float
    lon: float
    z: float
    error_m: float  # 1-sigma horizontal error estimate
    views: int
    baseline_m: float  # the widest distance between the cameras used


def _prior(view: View, origin: tuple[float, float]) -> tuple[np.ndarray, float] | None:
    if view.depth is None or not math.isfinite(view.depth) or view.depth <= 0:
        return None
    c = _camera(view, origin)
    sigma = LASER_SIGMA_M if view.prior == "laser" else max(10.0, GROUND_SIGMA_FRACTION * view.depth)
    return c + view.depth * np.asarray(view.ray), sigma


def _camera(view: View, origin: tuple[float, float]) -> np.ndarray:
    e, n = enu_offset(view.lat, view.lon, *origin)
    return np.array([float(e), float(n), view.z])


def triangulate(views: list[View], default_range_m: float = 20.0) -> Fix | None:
    """The fault's position from its views, or None when fewer than two usable views stand at
    least `MIN_BASELINE_M` apart (then a single view's estimate is all there is)."""
    views = [v for v in views if v.usable]
    if len(views) < 2:
        return None
    origin = (views[0].lat, views[0].lon)
    cams = np.stack([_camera(v, origin) for v in views])
    baseline = float(np.linalg.norm(cams[:, None] - cams[None], axis=2).max())  # every pair at once: a
    # track seen in hundreds of video frames is triangulated again at each of them
    if baseline < MIN_BASELINE_M:
        return None
    dirs = np.array([v.ray for v in views])
    widest = math.degrees(math.acos(float(np.clip((dirs @ dirs.T).min(), -1.0, 1.0))))
    a, b = np.zeros((3, 3)), np.zeros(3)
    rows = []
    for v, c in zip(views, cams, strict=True):
        d = np.asarray(v.ray)
        proj = np.eye(3) - np.outer(d, d)
        rng = v.depth if v.depth and math.isfinite(v.depth) and v.prior == "laser" else default_range_m
        w = 1.0 / (ANGLE_SIGMA_RAD * max(rng, 1.0)) ** 2
        a += w * proj
        b += w * proj @ c
        rows.append((w, proj, c))
        prior = _prior(v, origin) if v.prior == "laser" or widest < MIN_CONVERGENCE_DEG else None
        if prior is not None:
            p, sigma = prior
            a += np.eye(3) / sigma**2
            b += p / sigma**2
            rows.append((1.0 / sigma**2, np.eye(3), p))
    if np.linalg.cond(a) > 1e12:
        return None
    x = np.linalg.solve(a, b)
    # residuals against what the sigmas expect: chi^2 per degree of freedom, at least 1
    chi2 = sum(w * float((proj @ (x - c)) @ (proj @ (x - c))) for w, proj, c in rows)
    dof = max(1, 2 * len(views) + 3 * (len(rows) - len(views)) - 3)
    cov = np.linalg.inv(a) * max(1.0, chi2 / dof)
    if any(float(np.dot(x - c, v.ray)) <= 0 for v, c in zip(views, cams, strict=True)):
        return None  # the point lies behind a camera: rays that do not meet in front
    lat, lon = offset_latlon(origin[0], origin[1], x[0], x[1])
    error = math.sqrt(cov[0, 0] + cov[1, 1] + GNSS_SIGMA_M**2)
    return Fix(float(lat), float(lon), float(x[2]), error, len(views), baseline)


def ray_gap(view: View, other: View) -> tuple[float, float, float] | None:
    """Closest approach of two views' rays: (gap in metres, depth along each ray); None when the
    rays are parallel or meet behind a camera."""
    origin = (view.lat, view.lon)
    c1, c2 = _camera(view, origin), _camera(other, origin)
    d1, d2 = np.asarray(view.ray), np.asarray(other.ray)
    w = c1 - c2
    a, b, c = 1.0, float(d1 @ d2), 1.0
    d, e = float(d1 @ w), float(d2 @ w)
    den = a * c - b * b
    if den < 1e-9:
        return None
    s, t = (b * e - c * d) / den, (a * e - b * d) / den
    if s <= 0 or t <= 0:
        return None
    return float(np.linalg.norm((c1 + s * d1) - (c2 + t * d2))), s, t


def point_gap(view: View, lat: float, lon: float, z: float) -> float | None:
    """Distance from a point to a view's ray (None when the point lies behind the camera)."""
    origin = (view.lat, view.lon)
    e, n = enu_offset(lat, lon, *origin)
    p = np.array([float(e), float(n), z]) - _camera(view, origin)
    along = float(p @ np.asarray(view.ray))
    if along <= 0:
        return None
    return float(np.linalg.norm(p - along * np.asarray(view.ray)))
