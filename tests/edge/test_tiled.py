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
    auto = detect(det, big, "auto", tile=320, overlap=0.25)
    np.testing.assert_allclose(auto.xyxy, tiled.xyxy)
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
