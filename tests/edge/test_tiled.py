"""Tiled inference: one box per object across tiles, auto rule, and `pli detect --json`."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge.detections import Detections
from edge.detector import Detector
from edge.tiled import detect, detect_tiled, merge, should_tile

NAMES = ["insulator", "defect", "bird_nest"]


def test_merge_removes_copies_cut_at_tile_edges_but_keeps_neighbours():
    d = Detections([[100, 100, 200, 300],  # whole object from one tile
                    [150, 100, 200, 300],  # its copy cut by the next tile's edge
                    [100, 100, 200, 300],  # same place, other class: kept
                    [205, 100, 300, 300]],  # the neighbouring object: kept
                   [0.9, 0.6, 0.5, 0.8], [0, 0, 1, 0], NAMES)
    m = merge(d)
    assert len(m) == 3
    assert sorted(map(tuple, m.xyxy.tolist())) == [(100, 100, 200, 300), (100, 100, 200, 300), (205, 100, 300, 300)]


def test_auto_rule():
    assert should_tile((3000, 4000, 3), (640, 640)) and should_tile((1080, 1920, 3), (640, 640))
    assert not should_tile((864, 1152, 3), (640, 640))
    from edge.tiled import auto_mode

    assert [auto_mode(s, (640, 640)) for s in ((3000, 4000, 3), (1080, 1920, 3), (864, 1152, 3))] == \
        ["guided", "on", "off"]  # guided where measured equal (4000x3000), every tile for 1080p, one pass below


@pytest.mark.slow
def test_tiled_detection_on_a_big_frame(exported_fp32, flight):
    det = Detector(exported_fp32, conf=0.001)
    busiest = max(sorted((flight.out / "labels").glob("*.txt")), key=lambda p: len(p.read_text().splitlines()))
    big = cv2.imread(str(flight.out / "images" / f"{busiest.stem}.jpg"))  # 960 px > 2 x 160 px input
    # The tiny model learnt 320 px tiles shrunk to its 160 px input: cut the same tiles.
    tiled = detect_tiled(det, big, tile=320, overlap=0.25)
    assert len(tiled) > 0
    assert (tiled.xyxy[:, [0, 2]] <= big.shape[1]).all() and (tiled.xyxy[:, [1, 3]] <= big.shape[0]).all()
    assert len(merge(tiled)) == len(tiled)  # already merged
    np.testing.assert_allclose(detect(det, big, "on", tile=320, overlap=0.25).xyxy, tiled.xyxy)
    auto = detect(det, big, "auto", tile=320, overlap=0.25)  # 960 px > 4 x 160 px: guided
    np.testing.assert_allclose(auto.xyxy, detect(det, big, "guided", tile=320, overlap=0.25).xyxy)
    with pytest.raises(ValueError):
        detect(det, big, "sometimes")


@pytest.mark.slow
def test_pli_detect_json(exported_fp32, flight, tmp_path):
    images = sorted((flight.out / "images").glob("*.jpg"))[:2]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    out = subprocess.run([sys.executable, "-m", "pli", "detect", str(exported_fp32), *map(str, images), str(bad),
                          "--json", "--conf", "0.01", "--tile", "on"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    docs = [json.loads(line) for line in out.stdout.splitlines()]
    assert [d["image"] for d in docs] == [str(p) for p in images]
    for d in docs:
        for box in d["detections"]:
            assert box["class"] in NAMES and 0 < box["confidence"] <= 1 and len(box["xyxy"]) == 4
    assert "bad.jpg" in out.stderr and "Traceback" not in out.stderr


def test_guided_windows_are_the_grids_tiles_that_meet_a_widened_box():
    from edge.tiled import guide_windows
    from edge.tiling import tile_windows

    grid = tile_windows(4000, 3000, 640, 0.2)
    assert len(guide_windows(grid, np.zeros((0, 4)))) == 0  # nothing seen: no tile
    one = guide_windows(grid, np.array([[1000.0, 1000.0, 1100.0, 1040.0]]), margin=0.5, min_pad=32)
    grown = (950, 968, 1150, 1072)  # 50 px (half the width) and 32 px (the floor) on every side
    assert len(one) and all(w[0] < grown[2] and w[2] > grown[0] and w[1] < grown[3] and w[3] > grown[1] for w in one)
    rest = [w for w in grid.tolist() if w not in one.tolist()]
    assert all(not (w[0] < grown[2] and w[2] > grown[0] and w[1] < grown[3] and w[3] > grown[1]) for w in rest)


@pytest.mark.slow
def test_guided_tiling_finds_the_faults_every_tile_finds_on_a_4000x3000_frame(tmp_path):
    """The shipped model on a rendered 4000x3000 frame with faults: guided tiling keeps every
    fault box that tiling everything finds, from fewer tiles."""
    from pathlib import Path

    from edge.tiled import detect_guided
    from training.synth.flight import generate_flight

    model = Path(__file__).resolve().parents[2] / "models" / "pli-default.onnx"
    flight = generate_flight(tmp_path / "k4", 3, (4000, 3000), seed=31, progress=False)
    det = Detector(model)
    calls = {"n": 0}
    batch = det.detect_batch

    def counted(crops, conf=None):
        calls["n"] += len(crops)
        return batch(crops, conf)

    det.detect_batch = counted
    faults = [det.names.index(c) for c in ("defect", "bird_nest")]
    seen_everywhere, seen_guided = 0, 0
    for img in sorted((flight.out / "images").glob("*.jpg")):
        frame = cv2.imread(str(img))
        calls["n"] = 0
        every = detect_tiled(det, frame, tile=640, overlap=0.2)
        all_tiles = calls["n"]
        calls["n"] = 0
        guided = detect_guided(det, frame, tile=640, overlap=0.2)
        assert calls["n"] < all_tiles  # fewer full-resolution tiles
        for box, cls in zip(every.xyxy, every.class_id, strict=True):
            if cls not in faults:
                continue
            seen_everywhere += 1
            same = guided.xyxy[guided.class_id == cls]
            if len(same):
                lt, rb = np.maximum(same[:, :2], box[:2]), np.minimum(same[:, 2:], box[2:])
                inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
                union = np.prod(same[:, 2:] - same[:, :2], axis=1) + np.prod(box[2:] - box[:2]) - inter
                seen_guided += int((inter / union).max() >= 0.5)
    assert seen_everywhere >= 3 and seen_guided == seen_everywhere
