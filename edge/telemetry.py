"""Flight telemetry sidecars: DJI `.SRT` subtitles and CSV logs -> one fix per frame.

DJI's SRT layout varies with drone generation and firmware; the parser reads fields by name
from a table of aliases instead of by position, which covers what is seen in the wild:

    [latitude: 22.543210] [longitude: 113.943210] [rel_alt: 50.200 abs_alt: 120.300]  (Mini 3, Air 2S, Mavic 3)
    [latitude : 22.5432] [longtitude : 113.9432] [altitude: 56.0]    (Mavic 2: spaced colons, typo)
    GPS(113.9433,22.5433,16) ... 2017.08.05 14:11:51                  (Phantom 4, Mavic Pro: lon first)

fields may span several lines of a cue and sit inside <font> tags. DJI writes local time
without an offset: times become UTC (with `Z`) only when the offset is known, from the file
or from `tz`. A position of exactly 0, 0 is DJI's "no GPS fix yet" and is skipped.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class TelemetryError(ValueError):
    pass


@dataclass(frozen=True)
class Fix:
    frame: int
    time: datetime | None  # aware when the offset is known, else naive local time
    lat: float
    lon: float
    alt: float | None  # metres; absolute when the source says so
    rel_alt: float | None = None

    def to_json(self) -> dict:
        if self.time is None:
            t = None
        elif self.time.tzinfo is None:
            t = self.time.isoformat()
        else:
            t = self.time.astimezone(UTC).isoformat().replace("+00:00", "Z")
        out = {"frame": self.frame, "time": t, "lat": self.lat, "lon": self.lon, "alt": self.alt}
        if self.rel_alt is not None:
            out["rel_alt"] = self.rel_alt
        return out


# Field name (lower case, no spaces) -> our name. One table for SRT keys and CSV headers.
ALIASES = {
    "latitude": "lat", "lat": "lat", "gpslatitude": "lat",
    "longitude": "lon", "longtitude": "lon", "lon": "lon", "lng": "lon", "long": "lon", "gpslongitude": "lon",
    "abs_alt": "alt", "absolutealtitude": "alt", "altitude": "alt", "alt": "alt", "height_msl": "alt",
    "rel_alt": "rel_alt", "relativealtitude": "rel_alt", "rel_altitude": "rel_alt", "height": "rel_alt",
    "barometer": "rel_alt",
    "framecnt": "frame", "srtcnt": "frame", "frame": "frame", "framecount": "frame",
    "time": "time", "timestamp": "time", "datetime": "time", "date_time": "time", "utc": "time", "gps_time": "time",
}
_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_KEY_VALUE = re.compile(rf"([A-Za-z_]+)\s*:\s*({_NUMBER})")
_GPS = re.compile(rf"GPS\s*\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*(?:,\s*({_NUMBER})\s*)?\)", re.IGNORECASE)
_DATETIME = re.compile(r"(\d{4})[-./](\d{1,2})[-./](\d{1,2})[ T]+(\d{1,2}):(\d{2}):(\d{2})"
                       r"(?:[.,](\d{1,3}))?(?:[.,](\d{1,3}))?(Z|[+-]\d{2}:?\d{2})?")
_TIMING = re.compile(r"\d+:\d{2}:\d{2}[,.]\d+\s*-->\s*\d+:\d{2}:\d{2}[,.]\d+")
_TAG = re.compile(r"<[^>]*>")


def parse_tz(text: str | None) -> tzinfo | None:
    """`+08:00`, `-0530`, `UTC`/`Z`, or an IANA name such as `Asia/Shanghai`."""
    if text is None:
        return None
    t = text.strip()
    if t.upper() in ("UTC", "Z", "GMT"):
        return UTC
    m = re.fullmatch(r"([+-])(\d{1,2}):?(\d{2})?", t)
    if m:
        sign = 1 if m.group(1) == "+" else -1
        return timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3) or 0)))
    try:
        return ZoneInfo(t)
    except (ZoneInfoNotFoundError, ValueError):
        raise TelemetryError(f"unknown time zone {text!r}: use +08:00, UTC or a name like Asia/Shanghai") from None


def _offset(text: str | None) -> tzinfo | None:
    if not text:
        return None
    return UTC if text == "Z" else parse_tz(text if ":" in text else f"{text[:3]}:{text[3:]}")


def parse_time(text: str, tz: tzinfo | None = None) -> datetime | None:
    """First date-time in the text; an offset in the text wins over `tz`."""
    m = _DATETIME.search(text)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    micro = int(((m.group(7) or "0").ljust(3, "0") + (m.group(8) or "0").ljust(3, "0"))[:6])
    try:
        t = datetime(y, mo, d, h, mi, s, micro)
    except ValueError:
        return None
    zone = _offset(m.group(9)) or tz
    return t.replace(tzinfo=zone) if zone is not None else t


def _fields(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in _KEY_VALUE.findall(text):
        name = ALIASES.get(key.lower().replace(" ", ""))
        if name and name != "time" and name not in out:
            out[name] = float(value)
    gps = _GPS.search(text)
    if gps and "lat" not in out:  # GPS(lon, lat[, alt])
        out["lon"], out["lat"] = float(gps.group(1)), float(gps.group(2))
        if gps.group(3) is not None and "alt" not in out:
            out["alt"] = float(gps.group(3))
    return out


def _fix(frame: int, fields: dict[str, float], time: datetime | None) -> Fix | None:
    lat, lon = fields.get("lat"), fields.get("lon")
    if lat is None or lon is None or (lat == 0 and lon == 0):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return Fix(int(fields.get("frame", frame)), time, lat, lon, fields.get("alt"), fields.get("rel_alt"))


def parse_srt(text: str, tz: tzinfo | None = None) -> list[Fix]:
    fixes = []
    for n, cue in enumerate(re.split(r"\r?\n\s*\r?\n", text.replace("\ufeff", "")), start=1):
        lines = [line.strip() for line in cue.strip().splitlines() if line.strip()]
        if not lines:
            continue
        index = int(lines[0]) if lines[0].isdigit() else n
        body = " ".join(_TAG.sub(" ", line) for line in lines if not line.isdigit() and not _TIMING.search(line))
        fix = _fix(index, _fields(body), parse_time(body, tz))
        if fix is not None:
            fixes.append(fix)
    return fixes


def parse_csv(text: str, tz: tzinfo | None = None) -> list[Fix]:
    try:
        rows = list(csv.reader(io.StringIO(text.replace("\ufeff", ""), newline="")))
    except csv.Error as exc:
        raise TelemetryError(f"unreadable CSV ({exc})") from None
    if not rows:
        return []
    columns = [ALIASES.get(h.strip().lower().replace(" ", "")) for h in rows[0]]
    fixes = []
    for n, row in enumerate(rows[1:]):
        fields: dict[str, float] = {}
        time = None
        for name, value in zip(columns, row, strict=False):
            if name == "time":
                time = parse_time(value, tz)
            elif name and name not in fields:
                try:
                    fields[name] = float(value)
                except ValueError:
                    continue
        fix = _fix(n, fields, time)
        if fix is not None:
            fixes.append(fix)
    return fixes


def load_track(path: str | Path, tz: str | tzinfo | None = None) -> list[Fix]:
    """Fixes of a telemetry file (.srt or .csv); raises TelemetryError when it holds no position."""
    path = Path(path)
    zone = parse_tz(tz) if isinstance(tz, str) else tz
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TelemetryError(f"{path}: {exc.strerror or exc}") from None
    text = raw.decode("utf-8", errors="replace")
    is_srt = path.suffix.lower() == ".srt" or (path.suffix.lower() != ".csv" and _TIMING.search(text) is not None)
    fixes = parse_srt(text, zone) if is_srt else parse_csv(text, zone)
    if not fixes:
        raise TelemetryError(f"{path}: no position found (no latitude/longitude with a GPS fix)")
    return fixes
