"""Position and camera pose of a photo, from its EXIF (GPS, time) and DJI XMP (gimbal, laser).

DJI writes the gimbal pose only in XMP (`drone-dji:GimbalPitchDegree` ...), as attributes on
most firmware and as elements on some; both are read. Time: DateTimeOriginal with its
OffsetTimeOriginal when present (then UTC is known), else the GPS date and time stamps (UTC).
Nothing here raises on a damaged file: missing or unreadable fields are None.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import piexif

from edge.telemetry import parse_time, parse_tz

log = logging.getLogger(__name__)
_XMP_FIELD = re.compile(rb'drone-dji:(\w+)(?:\s*=\s*"([^"]*)"|>([^<]*)</drone-dji:\1>)')


@dataclass(frozen=True)
class Geotag:
    time: datetime | None = None
    lat: float | None = None
    lon: float | None = None
    alt: float | None = None  # metres above sea level
    rel_alt: float | None = None  # metres above take-off
    gimbal_pitch: float | None = None  # degrees, negative looks down
    gimbal_yaw: float | None = None  # degrees from true north
    gimbal_roll: float | None = None
    flight_yaw: float | None = None
    target_distance: float | None = None  # laser range finder, metres
    focal_35mm: float | None = None
    gnss_time: datetime | None = None  # the GPS date and time stamps (UTC), apart from the camera's clock
    telemetry: str | None = None  # a pose from live telemetry: "live" or "stale" (edge/mavlink.py)

    @property
    def has_position(self) -> bool:
        return self.lat is not None and self.lon is not None

    @property
    def has_pose(self) -> bool:
        return self.gimbal_pitch is not None and self.gimbal_yaw is not None


def _ratio(v: object) -> float | None:
    if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, int) for x in v) and v[1]:
        return v[0] / v[1]
    if isinstance(v, int | float):
        return float(v)
    return None


def _dms(v: object, ref: object) -> float | None:
    if not isinstance(v, tuple) or len(v) != 3:
        return None
    parts = [_ratio(x) for x in v]
    if any(p is None for p in parts):
        return None
    deg = parts[0] + parts[1] / 60 + parts[2] / 3600
    return -deg if ref in (b"S", b"W", "S", "W") else deg


def _text(v: object) -> str | None:
    if isinstance(v, bytes):
        return v.decode("ascii", errors="replace").strip("\x00 ")
    return v if isinstance(v, str) else None


def _xmp_fields(data: bytes) -> dict[str, float]:
    out = {}
    for key, attr, elem in _XMP_FIELD.findall(data):
        try:
            out[key.decode()] = float((attr or elem).decode("ascii", errors="replace").strip())
        except ValueError:
            continue
    return out


def _exif_time(exif: dict, gps: dict) -> datetime | None:
    stamp = _text(exif.get(piexif.ExifIFD.DateTimeOriginal))
    if stamp:
        text = stamp.replace(":", "-", 2)
        sub = _text(exif.get(piexif.ExifIFD.SubSecTimeOriginal))
        if sub and sub.isdigit():
            text += "." + sub[:3]
        offset = _text(exif.get(piexif.ExifIFD.OffsetTimeOriginal))
        try:
            zone = parse_tz(offset) if offset else None
        except ValueError:
            zone = None
        t = parse_time(text, zone)
        if t is not None:
            return t
    return _gnss_time(gps)


def _gnss_time(gps: dict) -> datetime | None:
    date, hms = _text(gps.get(piexif.GPSIFD.GPSDateStamp)), gps.get(piexif.GPSIFD.GPSTimeStamp)
    if date and isinstance(hms, tuple) and len(hms) == 3:
        parts = [_ratio(x) for x in hms]
        try:
            day = datetime.strptime(date, "%Y:%m:%d").replace(tzinfo=UTC)
        except ValueError:
            return None
        if all(p is not None for p in parts):
            return day + timedelta(hours=parts[0], minutes=parts[1], seconds=parts[2])
    return None


def read_geotag(source: str | Path | bytes) -> Geotag:
    """Geotag of a JPEG (path or bytes); fields the file lacks or garbles are None."""
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as exc:
        log.warning("%s: cannot read (%s)", source, exc)
        return Geotag()
    try:
        exif = piexif.load(data)
    except Exception as exc:  # piexif raises assorted errors on damaged EXIF blocks
        log.debug("no readable EXIF: %s", exc)
        exif = {}
    gps, ex = exif.get("GPS") or {}, exif.get("Exif") or {}
    xmp = _xmp_fields(data)
    lat = _dms(gps.get(piexif.GPSIFD.GPSLatitude), gps.get(piexif.GPSIFD.GPSLatitudeRef))
    lon = _dms(gps.get(piexif.GPSIFD.GPSLongitude), gps.get(piexif.GPSIFD.GPSLongitudeRef))
    if lat is None or lon is None:
        lat, lon = xmp.get("GpsLatitude", xmp.get("Latitude")), xmp.get("GpsLongitude", xmp.get("Longitude"))
    alt = _ratio(gps.get(piexif.GPSIFD.GPSAltitude))
    if alt is not None and gps.get(piexif.GPSIFD.GPSAltitudeRef) == 1:
        alt = -alt
    if lat is not None and lon is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180):
        lat = lon = None
    return Geotag(
        time=_exif_time(ex, gps),
        gnss_time=_gnss_time(gps),
        lat=lat,
        lon=lon,
        alt=xmp.get("AbsoluteAltitude", alt),
        rel_alt=xmp.get("RelativeAltitude"),
        gimbal_pitch=xmp.get("GimbalPitchDegree"),
        gimbal_yaw=xmp.get("GimbalYawDegree"),
        gimbal_roll=xmp.get("GimbalRollDegree"),
        flight_yaw=xmp.get("FlightYawDegree"),
        target_distance=xmp.get("LRFTargetDistance"),
        focal_35mm=_ratio(ex.get(piexif.ExifIFD.FocalLengthIn35mmFilm)),
    )
