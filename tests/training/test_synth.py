"""Synthetic flights: determinism, geotags, overlap, ground truth, clipping and occlusion."""

from __future__ import annotations

import csv
import itertools
import json
import math

import numpy as np
import piexif
import pytest

from edge.geo import EARTH_R
from training.synth.camera import Camera
from training.synth.flight import generate_flight, parse_size, pixels_per_metre
from training.synth.render import render
from training.synth.scene import InsulatorString, Member, Scene


def _metres(lat1, lon1, lat2, lon2):
    dy = math.radians(lat2 - lat1) * EARTH_R
    dx = math.radians(lon2 - lon1) * EARTH_R * math.cos(math.radians(lat1))
    return math.hypot(dx, dy)


def _dms_to_deg(dms, ref):
    d = sum(n / den / 60**i for i, (n, den) in enumerate(dms))
    return -d if ref in (b"S", b"W") else d


def test_same_seed_same_flight_other_seed_other_flight(tmp_path):
    a = generate_flight(tmp_path / "a", 3, (320, 240), seed=4, progress=False)
    b = generate_flight(tmp_path / "b", 3, (320, 240), seed=4, progress=False)
    c = generate_flight(tmp_path / "c", 3, (320, 240), seed=5, progress=False)
    for rel in ["images/synth0004_00002.jpg", "labels/synth0004_00002.txt", "faults.csv", "telemetry.csv"]:
        assert (a.out / rel).read_bytes() == (b.out / rel).read_bytes(), rel
    assert (a.out / "images/synth0004_00000.jpg").read_bytes() != (c.out / "images/synth0005_00000.jpg").read_bytes()


def test_frames_carry_exif_gps_time_and_gimbal_pose(flight):
    meta = json.loads((flight.out / "flight.json").read_text())
    for pose in meta["poses"][:3]:
        exif = piexif.load(str(flight.out / pose["image"]))
        gps = exif["GPS"]
        lat = _dms_to_deg(gps[piexif.GPSIFD.GPSLatitude], gps[piexif.GPSIFD.GPSLatitudeRef])
        lon = _dms_to_deg(gps[piexif.GPSIFD.GPSLongitude], gps[piexif.GPSIFD.GPSLongitudeRef])
        assert _metres(lat, lon, pose["lat"], pose["lon"]) < 0.01
        n, d = gps[piexif.GPSIFD.GPSAltitude]
        assert abs(n / d - pose["abs_alt"]) < 0.01
        stamp = exif["Exif"][piexif.ExifIFD.DateTimeOriginal].decode()
        assert stamp.replace(":", "-", 2).replace(" ", "T") == pose["time"][:19]
        assert exif["Exif"][piexif.ExifIFD.OffsetTimeOriginal] == b"+00:00"
        raw = (flight.out / pose["image"]).read_bytes()
        assert f'drone-dji:GimbalPitchDegree="{pose["gimbal_pitch"]:+.2f}"'.encode() in raw
        assert f'drone-dji:GimbalYawDegree="{pose["gimbal_yaw"]:+.2f}"'.encode() in raw
        assert b"drone-dji:LRFTargetDistance=" in raw


def test_consecutive_frames_overlap_and_faults_are_ground_truthed(flight):
    meta = json.loads((flight.out / "flight.json").read_text())
    poses = meta["poses"]
    steps = [_metres(a["lat"], a["lon"], b["lat"], b["lon"]) for a, b in itertools.pairwise(poses)]
    coverage = 960 / pixels_per_metre(960)
    assert all(0 < s < 0.6 * coverage for s in steps)  # >= 40 % overlap at the line
    rows = list(csv.DictReader((flight.out / "faults.csv").open()))
    assert rows, "the flight shows at least one fault"
    assert any(int(r["frames"]) >= 2 for r in rows)  # one fault seen from several frames
    for r in rows:
        assert r["class"] in ("defect", "bird_nest")
        # A fault seen by a camera a few metres from the line lies within metres of the drone track.
        nearest = min(_metres(float(r["lat"]), float(r["lon"]), p["lat"], p["lon"]) for p in poses)
        assert nearest < meta["line_offset_m"] + 5
    ids = [r["fault_id"] for r in rows]
    assert len(ids) == len(set(ids))


def test_labels_are_valid_yolo(flight):
    n = 0
    for path in (flight.out / "labels").glob("*.txt"):
        for line in path.read_text().splitlines():
            c, *box = line.split()
            assert c in ("0", "1", "2")
            cx, cy, w, h = map(float, box)
            assert 0 < w <= 1 and 0 < h <= 1
            assert cx - w / 2 >= -1e-6 and cx + w / 2 <= 1 + 1e-6 and cy - h / 2 >= -1e-6 and cy + h / 2 <= 1 + 1e-6
            n += 1
    assert n == sum(flight.boxes.values()) > 0


# --- frame edge and occlusion, on hand-built scenes ------------------------------------------


def _one_string_scene(x: float, missing: int | None = None, y: float = 8.0) -> tuple[Scene, InsulatorString]:
    s = InsulatorString(depth=y, label="insulator", key="S", top=np.array([x, y, 20.0]), n_discs=12, missing=missing)
    return Scene([], [s], [], y, 20.0), s


def _cam(x=0.0, size=(640, 480)):
    return Camera(size[0], size[1], x=x, z=19.5, pitch_deg=-5)


def test_string_in_view_gets_its_full_box():
    scene, _ = _one_string_scene(0.0)
    _, boxes = render(scene, _cam(), seed=0)
    assert len(boxes) == 1 and boxes[0].label == "insulator" and boxes[0].visible == pytest.approx(1.0)


def test_frame_edge_clips_the_box_and_drops_mostly_hidden_objects():
    cam = _cam()
    scene, s = _one_string_scene(0.0)
    _, (full,) = render(scene, cam, seed=0)
    width = full.xyxy[2] - full.xyxy[0]
    _, depth = cam.project(s.disc_center(s.n_discs // 2)[None])
    metres_per_px = depth[0] / cam.f

    def shifted(u_center: float):
        """Move the drone so that the string's centre lands on image column u_center
        (moving along the flight moves the scene to the right: the camera looks right of it)."""
        x = (u_center - (full.xyxy[0] + full.xyxy[2]) / 2) * metres_per_px
        return render(scene, _cam(x=x), seed=0)[1]

    (b,) = shifted(cam.width)  # centre on the right edge: about half visible
    assert b.xyxy[2] == cam.width  # clipped at the frame edge
    assert b.xyxy[2] - b.xyxy[0] == pytest.approx(width / 2, abs=3)
    assert 0.35 <= b.visible <= 0.65
    (b,) = shifted(0.3 * width)  # left edge, 80 % of it inside: clipped, kept
    assert b.xyxy[0] == 0 and b.visible > 0.6
    assert shifted(cam.width + 0.3 * width) == []  # 20 % left in frame: no box


def test_occluded_objects_get_no_box_partly_occluded_keep_visible_part():
    scene, s = _one_string_scene(0.0)
    cam = _cam()
    top, bottom = s.top[2], s.bottom[2]
    # A thick steel member nearer to the camera covering the whole string: hidden.
    cover = Member(depth=7.5, a=np.array([0.0, 7.5, top + 0.2]), b=np.array([0.0, 7.5, bottom - 0.2]), width_m=0.4)
    _, boxes = render(Scene([], [*scene.items, cover], [], 8.0, 20.0), cam, seed=0)
    assert boxes == []
    # Covering only the lower third: the box keeps the visible upper part.
    third = bottom + (top - bottom) / 3
    part = Member(depth=7.5, a=np.array([0.0, 7.5, third]), b=np.array([0.0, 7.5, bottom - 0.3]), width_m=0.4)
    _, (full,) = render(scene, cam, seed=0)
    _, (b,) = render(Scene([], [*scene.items, part], [], 8.0, 20.0), cam, seed=0)
    assert 0.4 < b.visible < 0.9
    assert b.xyxy[1] == pytest.approx(full.xyxy[1], abs=1) and b.xyxy[3] < full.xyxy[3] - 10


def test_missing_disc_is_labelled_and_small_at_4k():
    """At 4000x3000 survey distance a missing disc is tens of pixels, as on real photos."""
    cam = Camera(4000, 3000, x=0.0, z=20.0, pitch_deg=-3)
    near = cam.f / pixels_per_metre(4000)
    from training.synth.scene import Defect

    s = InsulatorString(depth=near, label="insulator", key="S", top=np.array([0.0, near, 20.5]), n_discs=12,
                        missing=5)
    d = Defect(depth=near - 1e-3, label="defect", key="F1", string=s)
    _, boxes = render(Scene([], [s, d], [], near, 20.0), cam, seed=0)
    defect = [b for b in boxes if b.label == "defect"]
    assert len(defect) == 1
    w, h = defect[0].xyxy[2] - defect[0].xyxy[0], defect[0].xyxy[3] - defect[0].xyxy[1]
    assert 15 <= w <= 60 and 15 <= h <= 60


@pytest.mark.parametrize("bad", ["1920", "axb", "10x10", "20000x100"])
def test_parse_size_rejects_bad_sizes(bad):
    with pytest.raises(ValueError):
        parse_size(bad)
