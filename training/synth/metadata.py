"""EXIF GPS/time and DJI-style XMP camera pose, as a DJI drone writes them into its JPEGs.

The edge reads position and gimbal pose from the same tags on real photos, so the synthetic
flight exercises the real parsing path.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

import piexif

XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"


@dataclass(frozen=True)
class Pose:
    time: datetime  # UTC
    lat: float
    lon: float
    abs_alt: float  # metres above sea level
    rel_alt: float  # metres above take-off / ground
    flight_yaw: float  # degrees from true north, -180..180
    gimbal_yaw: float
    gimbal_pitch: float  # negative looks down
    gimbal_roll: float = 0.0
    target_distance: float | None = None  # laser range finder, metres


def _rational(x: float, den: int = 10000) -> tuple[int, int]:
    f = Fraction(x).limit_denominator(den)
    return f.numerator, f.denominator


def _dms(deg: float) -> tuple[tuple[int, int], ...]:
    deg = abs(deg)
    d = int(deg)
    m = int((deg - d) * 60)
    s = (deg - d - m / 60) * 3600
    return (d, 1), (m, 1), (round(s * 10000), 10000)


def exif_bytes(pose: Pose, width: int, height: int, focal_mm: float, focal_35mm: float) -> bytes:
    t = pose.time
    stamp = t.strftime("%Y:%m:%d %H:%M:%S")
    zeroth = {
        piexif.ImageIFD.Make: b"PLI",
        piexif.ImageIFD.Model: b"PLI-Synth",
        piexif.ImageIFD.DateTime: stamp.encode(),
    }
    exif = {
        piexif.ExifIFD.DateTimeOriginal: stamp.encode(),
        piexif.ExifIFD.OffsetTimeOriginal: b"+00:00",
        piexif.ExifIFD.SubSecTimeOriginal: f"{t.microsecond // 1000:03d}".encode(),
        piexif.ExifIFD.FocalLength: _rational(focal_mm, 1000),
        piexif.ExifIFD.FocalLengthIn35mmFilm: round(focal_35mm),
        piexif.ExifIFD.PixelXDimension: width,
        piexif.ExifIFD.PixelYDimension: height,
    }
    gps = {
        piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
        piexif.GPSIFD.GPSLatitudeRef: b"N" if pose.lat >= 0 else b"S",
        piexif.GPSIFD.GPSLatitude: _dms(pose.lat),
        piexif.GPSIFD.GPSLongitudeRef: b"E" if pose.lon >= 0 else b"W",
        piexif.GPSIFD.GPSLongitude: _dms(pose.lon),
        piexif.GPSIFD.GPSAltitudeRef: 0 if pose.abs_alt >= 0 else 1,
        piexif.GPSIFD.GPSAltitude: _rational(abs(pose.abs_alt), 1000),
        piexif.GPSIFD.GPSTimeStamp: ((t.hour, 1), (t.minute, 1), _rational(t.second + t.microsecond / 1e6, 1000)),
        piexif.GPSIFD.GPSDateStamp: t.strftime("%Y:%m:%d").encode(),
        piexif.GPSIFD.GPSImgDirectionRef: b"T",
        piexif.GPSIFD.GPSImgDirection: _rational(pose.gimbal_yaw % 360, 100),
    }
    return piexif.dump({"0th": zeroth, "Exif": exif, "GPS": gps})


def xmp_packet(pose: Pose) -> bytes:
    fields = {
        "GpsLatitude": f"{pose.lat:.8f}",
        "GpsLongitude": f"{pose.lon:.8f}",
        "AbsoluteAltitude": f"{pose.abs_alt:+.2f}",
        "RelativeAltitude": f"{pose.rel_alt:+.2f}",
        "GimbalRollDegree": f"{pose.gimbal_roll:+.2f}",
        "GimbalYawDegree": f"{pose.gimbal_yaw:+.2f}",
        "GimbalPitchDegree": f"{pose.gimbal_pitch:+.2f}",
        "FlightRollDegree": "+0.00",
        "FlightYawDegree": f"{pose.flight_yaw:+.2f}",
        "FlightPitchDegree": "+0.00",
    }
    if pose.target_distance is not None:
        fields["LRFTargetDistance"] = f"{pose.target_distance:.2f}"
    attrs = "\n   ".join(f'drone-dji:{k}="{v}"' for k, v in fields.items())
    xml = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about="" xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/"\n'
        f"   {attrs}/>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )
    return XMP_HEADER + xml.encode("utf-8")


def insert_app1(jpeg: bytes, payload: bytes) -> bytes:
    """Insert an APP1 segment after the JPEG's existing APPn segments."""
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    if len(payload) + 2 > 0xFFFF:
        raise ValueError("APP1 payload too large")
    pos = 2
    while pos + 4 <= len(jpeg) and jpeg[pos] == 0xFF and 0xE0 <= jpeg[pos + 1] <= 0xEF:
        pos += 2 + struct.unpack(">H", jpeg[pos + 2 : pos + 4])[0]
    return jpeg[:pos] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[pos:]


def tag_jpeg(jpeg: bytes, pose: Pose, width: int, height: int, focal_mm: float, focal_35mm: float) -> bytes:
    """JPEG bytes with EXIF (GPS, UTC time, focal length) and DJI XMP (gimbal pose)."""
    out = io.BytesIO()
    piexif.insert(exif_bytes(pose, width, height, focal_mm, focal_35mm), jpeg, out)
    return insert_app1(out.getvalue(), xmp_packet(pose))
