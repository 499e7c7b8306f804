"""The tracker turns per-frame detections into one confirmed alert per physical fault."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from comms.classes import Severity, load_class_list
from edge.detections import Detections
from edge.geo import distance_m
from edge.geolocate import Located, locate
from edge.geotag import read_geotag
from edge.tracker import FaultTracker, TrackerConfig
from training.dataset import YoloDataset, label_path_for, read_label_file

NAMES = load_class_list().names


@pytest.fixture(scope="module")
def long_flight(tmp_path_factory):
    from training.synth.flight import generate_flight

    return generate_flight(tmp_path_factory.mktemp("long"), 30, (960, 540), seed=8, progress=False)


def _run_flight(flight, config=None):
    """Feed the flight's ground-truth boxes as perfect detections."""
    ds = YoloDataset.open(flight.out)
    w, h = flight.size
    tracker = FaultTracker(load_class_list(), config)
    events = []
    for frame, img in enumerate(ds.images("train")):
        xyxy, labels = read_label_file(label_path_for(img), w, h, ds.names)
        dets = Detections(xyxy, np.full(len(labels), 0.9), [NAMES.index(n) for n in labels], NAMES)
        centres = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2], axis=1)
        events += tracker.update(frame, dets, locate(read_geotag(img), w, h, centres))
    return events


def test_one_alert_per_ground_truth_fault_within_15_m(long_flight):
    events = _run_flight(long_flight)
    faults = [f for f in csv.DictReader((long_flight.out / "faults.csv").open()) if int(f["frames"]) >= 2]
    assert len(faults) >= 3
    matched = set()
    for e in events:
        assert e.position_source in ("laser", "ground_plane", "multi_view") and e.observations >= 2
        d = {f["fault_id"]: float(distance_m(e.lat, e.lon, float(f["lat"]), float(f["lon"])))
             for f in faults if f["class"] == e.cls}
        fid = min(d, key=d.get)
        assert d[fid] < 15.0
        assert fid not in matched, f"{fid} alerted twice"
        matched.add(fid)
    assert matched == {f["fault_id"] for f in faults}  # every fault seen twice is alerted, once
    assert all(e.severity in (Severity.HIGH, Severity.MEDIUM) for e in events)


def test_k_of_n_and_no_realert_when_seen_again():
    tracker = FaultTracker(load_class_list(), TrackerConfig(k=2, n=3))
    box = np.array([[100, 100, 140, 140]])
    here = Located(np.array([25.0]), np.array([102.0]), "ground_plane")
    det = Detections(box, [0.8], [NAMES.index("defect")], NAMES)
    assert tracker.update(0, det, here) == []
    assert tracker.update(5, det, here) == []  # too far apart in frames: a new try
    (event,) = tracker.update(6, det, here)  # second sighting within 3 frames: confirmed
    assert event.cls == "defect" and event.severity is Severity.HIGH
    assert tracker.update(7, det, here) == [] and tracker.update(50, det, here) == []  # same place: no new alert
    insulator = Detections(box, [0.99], [NAMES.index("insulator")], NAMES)
    for f in range(60, 70):
        assert tracker.update(f, insulator, here) == []  # assets never alert


def test_distinct_places_and_classes_are_distinct_faults():
    tracker = FaultTracker(load_class_list(), TrackerConfig(k=1, n=1))
    box = np.array([[10, 10, 50, 50]] * 3)
    det = Detections(box, [0.9, 0.9, 0.9], [NAMES.index("defect"), NAMES.index("defect"), NAMES.index("bird_nest")],
                     NAMES)
    far = Located(np.array([25.0, 25.001, 25.0]), np.array([102.0, 102.0, 102.0]), "ground_plane")  # 111 m apart
    assert sorted(e.cls for e in tracker.update(0, det, far)) == ["bird_nest", "defect", "defect"]


@pytest.mark.parametrize("k,n", [(0, 3), (4, 3)])
def test_bad_config(k, n):
    with pytest.raises(ValueError):
        TrackerConfig(k=k, n=n)


def _nowhere(n: int) -> Located:
    return Located(np.full(n, np.nan), np.full(n, np.nan), "drone")


def test_crossing_faults_keep_their_tracks_where_a_greedy_match_would_swap_them():
    """Two defects side by side, boxes only (no position). In the next frame the more confident
    detection overlaps the left track most, but the other overlaps only the left one: a greedy,
    most-confident-first match gives the left track to the first and starts a new track for the
    second; the assignment pairs both with the track each can be."""
    tracker = FaultTracker(load_class_list(), TrackerConfig(k=3, n=3))
    defect = NAMES.index("defect")
    first = Detections(np.array([[0, 0, 10, 10], [6, 0, 16, 10]], float), [0.9, 0.9], [defect] * 2, NAMES)
    tracker.update(0, first, _nowhere(2))
    left, right = tracker.tracks
    nxt = Detections(np.array([[2.5, 0, 12.5, 10], [-2, 0, 8, 10]], float), [0.9, 0.8], [defect] * 2, NAMES)
    tracker.update(1, nxt, _nowhere(2))
    assert len(tracker.tracks) == 2  # no third track
    assert left.last_box.tolist() == [-2, 0, 8, 10] and right.last_box.tolist() == [2.5, 0, 12.5, 10]
    events = tracker.update(2, nxt, _nowhere(2))
    assert sorted(e.track_id for e in events) == [left.id, right.id]  # both confirmed, on their own tracks


@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=6))
def test_views_without_a_position_never_enter_the_mean(offsets):
    """A track's place is the mean of its located views only: NaN views change nothing."""
    tracker = FaultTracker(load_class_list(), TrackerConfig(k=10, n=10, radius_m=1e9))
    defect = NAMES.index("defect")
    box = np.array([[10, 10, 20, 20]], float)
    lats = [25.0 + o * 1e-6 for o in offsets]
    for f, lat in enumerate(lats):
        tracker.update(2 * f, Detections(box, [0.9], [defect], NAMES), Located(np.array([lat]), np.array([102.0]),
                                                                              "laser"))
        tracker.update(2 * f + 1, Detections(box, [0.9], [defect], NAMES), _nowhere(1))
    (track,) = tracker.tracks
    assert track.observations == 2 * len(lats) and track.located == len(lats)
    assert abs(track.lat - sum(lats) / len(lats)) < 1e-9 and track.lon == 102.0
