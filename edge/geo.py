"""WGS-84 helpers for the short distances of one inspection flight (equirectangular, < 0.1 %
error over a few km), vectorised over numpy arrays."""

from __future__ import annotations

import numpy as np

EARTH_R = 6_371_008.8  # mean radius, metres


def offset_latlon(lat: float | np.ndarray, lon: float | np.ndarray, east: float | np.ndarray,
                  north: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position `east`/`north` metres away from (lat, lon)."""
    lat = np.asarray(lat, dtype=np.float64)
    return (lat + np.degrees(np.asarray(north) / EARTH_R),
            np.asarray(lon, dtype=np.float64) + np.degrees(np.asarray(east) / (EARTH_R * np.cos(np.radians(lat)))))


def distance_m(lat1: float | np.ndarray, lon1: float | np.ndarray, lat2: float | np.ndarray,
               lon2: float | np.ndarray) -> np.ndarray:
    dn = np.radians(np.asarray(lat2) - np.asarray(lat1)) * EARTH_R
    de = np.radians(np.asarray(lon2) - np.asarray(lon1)) * EARTH_R * np.cos(np.radians(np.asarray(lat1)))
    return np.hypot(de, dn)


def enu_offset(lat: float | np.ndarray, lon: float | np.ndarray, lat0: float,
               lon0: float) -> tuple[np.ndarray, np.ndarray]:
    """East/north metres of (lat, lon) from (lat0, lon0): the inverse of `offset_latlon`."""
    north = np.radians(np.asarray(lat, dtype=np.float64) - lat0) * EARTH_R
    east = np.radians(np.asarray(lon, dtype=np.float64) - lon0) * EARTH_R * np.cos(np.radians(lat0))
    return east, north
