"""Reading a photo's geotag back: what the synthetic flight wrote, DJI XMP variants, damage."""

from __future__ import annotations

import json
from datetime import datetime

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.geotag import read_geotag


def test_reads_back_the_synthetic_flight(flight):
    poses = json.loads((flight.out / "flight.json").read_text())["poses"]
    for pose in poses[:4]:
        tag = read_geotag(flight.out / pose["image"])
        assert abs(tag.lat - pose["lat"]) < 1e-7 and abs(tag.lon - pose["lon"]) < 1e-7
        assert abs(tag.alt - pose["abs_alt"]) < 0.01 and abs(tag.rel_alt - pose["rel_alt"]) < 0.01
        assert abs(tag.gimbal_pitch - pose["gimbal_pitch"]) < 0.01 and abs(tag.gimbal_yaw - pose["gimbal_yaw"]) < 0.01
        assert abs(tag.target_distance - pose["target_distance"]) < 0.01
        assert tag.time == datetime.fromisoformat(pose["time"].replace("Z", "+00:00")).replace(
            microsecond=tag.time.microsecond)
        assert tag.time.utcoffset().total_seconds() == 0 and tag.focal_35mm == 24
        assert tag.has_position and tag.has_pose


def _jpeg(extra: bytes = b"") -> bytes:
    _, buf = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    data = buf.tobytes()
    return data[:2] + extra + data[2:]


def test_xmp_as_elements_and_no_exif():
    xmp = (b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><rdf:Description>"
           b"<drone-dji:GpsLatitude>22.5</drone-dji:GpsLatitude><drone-dji:GpsLongitude>113.9</drone-dji:GpsLongitude>"
           b"<drone-dji:GimbalPitchDegree>-90.0</drone-dji:GimbalPitchDegree>"
           b"<drone-dji:GimbalYawDegree>+12.5</drone-dji:GimbalYawDegree></rdf:Description></x:xmpmeta>")
    app1 = b"\xff\xe1" + (len(xmp) + 2).to_bytes(2, "big") + xmp
    tag = read_geotag(_jpeg(app1))
    assert (tag.lat, tag.lon, tag.gimbal_pitch, tag.gimbal_yaw) == (22.5, 113.9, -90.0, 12.5)
    assert tag.time is None and tag.alt is None


def test_plain_jpeg_and_missing_file_have_no_tag(tmp_path):
    assert not read_geotag(_jpeg()).has_position
    assert read_geotag(tmp_path / "missing.jpg").lat is None


@settings(max_examples=300)
@given(st.sampled_from([b"", b"Exif\x00\x00II*\x00", b"Exif\x00\x00MM\x00*", b"http://ns.adobe.com/xap/1.0/\x00"]),
       st.binary(max_size=2000), st.booleans())
def test_damaged_metadata_never_raises(prefix, noise, as_segment):
    payload = prefix + noise
    data = _jpeg(b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload) if as_segment else payload
    tag = read_geotag(data)
    assert tag.lat is None or -90 <= tag.lat <= 90
