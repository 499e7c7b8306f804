"""Positions from several views (edge/multiview.py): rays that meet give the fault back to the
centimetre whatever the weak single-view guesses say; unusable views, too short a baseline and
points behind a camera give no fix; and on a synthetic flight without a laser the tracker's
multi-view positions land within 3 m of every fault, where the ground plane is tens of metres off."""

from __future__ import annotations

import csv
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comms.classes import load_class_list
from edge.detections import Detections
from edge.geo import distance_m, enu_offset, offset_latlon
from edge.geolocate import locate
from edge.geotag import read_geotag
from edge.multiview import View, point_gap, ray_gap, triangulate
from edge.tracker import FaultTracker, TrackerConfig
from training.dataset import YoloDataset, label_path_for, read_label_file

LAT0, LON0 = 25.0, 102.0
NAMES = load_class_list().names


def _view(cam_enu: np.ndarray, target_enu: np.ndarray, depth_error: float | None = None, prior: str | None = None):
    lat, lon = offset_latlon(LAT0, LON0, cam_enu[0], cam_enu[1])
    d = target_enu - cam_enu
    rng = float(np.linalg.norm(d))
    return View(float(lat), float(lon), float(cam_enu[2]), tuple(float(v) for v in d / rng),
                None if depth_error is None else rng + depth_error, prior)


@settings(max_examples=80, deadline=None)
@given(st.tuples(st.floats(-30, 30), st.floats(8, 40), st.floats(5, 35)), st.integers(2, 5),
       st.floats(-60, 60))
def test_rays_that_meet_give_the_point_back_whatever_the_priors_say(target, n, guess_error):
    """Cameras along a flight line 5 m apart, looking at one point: the fix is that point within
    a quarter metre (the weak priors pull a little along the rays), though every ground-plane
    guess along them is up to 60 m off."""
    target = np.array(target)
    cams = [np.array([5.0 * i, 0.0, 30.0]) for i in range(n)]
    fix = triangulate([_view(c, target, guess_error, "ground_plane") for c in cams])
    assert fix is not None and fix.views == n
    e, nth = enu_offset(fix.lat, fix.lon, LAT0, LON0)
    assert math.dist((float(e), float(nth), fix.z), tuple(target)) < min(0.5, max(0.05, abs(guess_error)))
    assert fix.error_m >= 0 and fix.baseline_m == pytest.approx(5.0 * (n - 1))


def test_no_fix_without_two_usable_views_a_baseline_or_a_point_in_front():
    target = np.array([0.0, 20.0, 25.0])
    a, b = _view(np.array([0.0, 0.0, 30.0]), target), _view(np.array([5.0, 0.0, 30.0]), target)
    nan = replace(b, lat=float("nan"))
    assert triangulate([a]) is None and triangulate([a, nan]) is None  # NaN never enters
    assert triangulate([a, replace(a, lon=a.lon + 1e-7)]) is None  # 1 cm apart: no baseline
    away = replace(b, ray=tuple(-v for v in b.ray))
    assert triangulate([a, away]) is None  # they would meet behind a camera
    gap, s, t = ray_gap(a, b)
    assert gap < 1e-6 and s == pytest.approx(math.dist((0, 0, 30), target)) and t > 0
    assert point_gap(a, *offset_latlon(LAT0, LON0, 0.0, 20.0), 25.0) < 1e-6
    assert ray_gap(a, away) is None


@pytest.fixture(scope="module", params=[(0.0, 0.0), (20.0, 0.0), (0.0, 30.0)], ids=["square", "yawed", "orbit"])
def flight(request, tmp_path_factory):
    """The camera square to the line, turned up to 20 degrees off it anew each frame, and an
    orbit of 30 degrees either side of each tower (at 1920x1080: the scene scales with the frame,
    and an orbit of a 960-pixel flight's 4 m radius moves the camera half a metre a frame)."""
    from training.synth.flight import generate_flight

    yaw, orbit = request.param
    return generate_flight(tmp_path_factory.mktemp("mv"), 30, (1920, 1080) if orbit else (960, 540), seed=8,
                           progress=False, yaw_jitter=yaw, orbit=orbit)


def _confirmed(flight, multi_view: bool):
    ds = YoloDataset.open(flight.out)
    w, h = flight.size
    tracker = FaultTracker(load_class_list(), TrackerConfig(multi_view=multi_view))
    events = []
    for frame, img in enumerate(ds.images("train")):
        xyxy, labels = read_label_file(label_path_for(img), w, h, ds.names)
        tag = replace(read_geotag(img), target_distance=None)  # no laser
        dets = Detections(xyxy, np.full(len(labels), 0.9), [NAMES.index(n) for n in labels], NAMES)
        centres = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2], axis=1)
        events += tracker.update(frame, dets, locate(tag, w, h, centres))
    events += tracker.flush()
    faults = [f for f in csv.DictReader((flight.out / "faults.csv").open()) if int(f["frames"]) >= 2]
    out = []
    for e in events:
        d, fid = min((float(distance_m(e.lat, e.lon, float(f["lat"]), float(f["lon"]))), f["fault_id"])
                     for f in faults if f["class"] == e.cls)
        out.append((fid, d, e))
    return faults, out


def test_without_a_laser_several_views_place_every_fault_within_3_m(flight):
    faults, found = _confirmed(flight, multi_view=True)
    ids = [fid for fid, _, _ in found]
    assert len(faults) >= 3 and sorted(ids) == sorted(f["fault_id"] for f in faults)  # each once
    for _, d, e in found:
        assert d <= 3.0 and e.position_source == "multi_view" and e.error_m is not None
    single = [d for _, d, _ in _confirmed(flight, multi_view=False)[1]]
    assert not single or float(np.median(single)) > 10.0  # the ground plane alone: tens of metres off


def _arc_frame(deg: float, target: np.ndarray, radius: float = 20.0, noise_deg: float = 0.0):
    """One detection of the fault at `target`, seen from `deg` along an arc around it."""
    from edge.geolocate import Located

    a = math.radians(deg)
    cam = target + np.array([-radius * math.sin(a), -radius * math.cos(a), 8.0])
    view = _view(cam, target + np.array([0.0, 0.0, 0.0]), None, "ground_plane")
    if noise_deg:  # a gimbal yaw error of its own
        r = np.asarray(view.ray)
        c, s = math.cos(math.radians(noise_deg)), math.sin(math.radians(noise_deg))
        view = replace(view, ray=(float(c * r[0] - s * r[1]), float(s * r[0] + c * r[1]), float(r[2])))
    lat, lon = offset_latlon(LAT0, LON0, target[0] + 30.0, target[1])  # the single-view guess: 30 m off
    dets = Detections(np.array([[100.0, 100.0, 140.0, 150.0]]), np.array([0.9]), [NAMES.index("defect")], NAMES)
    return dets, Located(np.array([float(lat)]), np.array([float(np.asarray(lon))]), "ground_plane", [view])


def test_a_fault_confirmed_on_two_close_views_waits_for_wider_ones_and_is_reported_once():
    """Two views 6 degrees apart on an orbit's arc place the fault loosely: its alert waits while
    it stays in sight, and goes once the arc is wide enough, tighter than it would have been; a
    fault still waiting when the frames end is reported by flush(), and nothing twice."""
    target = np.array([0.0, 20.0, 25.0])
    tracker = FaultTracker(load_class_list(), TrackerConfig(k=2, n=3, settle_error_m=3.0, settle_frames=6))
    noise = [0.8, -0.8, 0.5, -0.4, 0.3, -0.2]
    events = []
    for i, deg in enumerate([-3.0, 3.0, 8.0, 15.0, 22.0, 29.0]):
        got = tracker.update(i, *_arc_frame(deg, target, noise_deg=noise[i]))
        if i == 1:
            assert got == [] and tracker.holding  # confirmed, but the two rays barely diverge
        events += got
    assert len(events) == 1 and not tracker.holding and tracker.flush() == []
    (e,) = events
    e_, n_ = enu_offset(e.lat, e.lon, LAT0, LON0)
    assert e.error_m <= 3.0 and math.dist((float(e_), float(n_)), tuple(target[:2])) < 2.0
    held = FaultTracker(load_class_list(), TrackerConfig(k=2, n=3))
    assert held.update(0, *_arc_frame(-3.0, target, noise_deg=0.8)) == []
    assert held.update(1, *_arc_frame(3.0, target, noise_deg=-0.8)) == []  # held
    (late,) = held.flush()  # the flight ended while it waited: reported, never lost
    assert late.position_source == "multi_view" and held.flush() == []
