"""`pli data import EXPORT.json --format labelstudio`: Label Studio's percent boxes back to pixels
within a pixel, photos found by name with the upload prefix stripped, classes by name,
unannotated or cancelled tasks reported and left out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.dataset import YoloDataset
from training.importers.labelstudio import percent_to_xyxy, upload_name, xyxy_to_percent

ROOT = Path(__file__).resolve().parents[2]
sizes = st.tuples(st.integers(16, 8000), st.integers(16, 8000))


@given(sizes, st.lists(st.tuples(st.floats(0, 0.9), st.floats(0, 0.9), st.floats(0.01, 0.1), st.floats(0.01, 0.1)),
                       min_size=1, max_size=8))
def test_percent_and_pixels_round_trip(size, rel):
    w, h = size
    r = np.array(rel)
    xyxy = np.stack([r[:, 0] * w, r[:, 1] * h, (r[:, 0] + r[:, 2]) * w, (r[:, 1] + r[:, 3]) * h], 1)
    p = xyxy_to_percent(xyxy, w, h)
    back = percent_to_xyxy(p[:, 0], p[:, 1], p[:, 2], p[:, 3], np.zeros(len(p)), w, h)
    np.testing.assert_allclose(back, xyxy, atol=1e-6)


def test_a_rotated_rectangle_becomes_the_box_around_it():
    # 40x20 px at (100, 50), turned 90 degrees clockwise about its top-left corner (y down)
    b = percent_to_xyxy([10], [10], [4], [4], [90], 1000, 500)
    np.testing.assert_allclose(b, [[80, 50, 100, 90]], atol=1e-9)


@given(st.text(alphabet="abcdefghij_0123456789", min_size=1, max_size=12))
def test_the_upload_prefix_is_stripped_and_only_it(stem):
    assert upload_name(f"/data/upload/3/8f3a2b1c-{stem}.jpg") == f"{stem}.jpg"
    assert upload_name(f"/data/local-files/?d=photos%2F{stem}.jpg") == f"{stem}.jpg"
    assert upload_name(f"/data/upload/3/{stem}.jpg") == f"{stem}.jpg"


def _result(label: str, box, size, rid: str) -> dict:
    (x, y, w, h), (W, H) = xyxy_to_percent(np.array([box], float), *size)[0], size
    return {"id": rid, "type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": W,
            "original_height": H, "image_rotation": 0,
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]}}


def test_an_export_becomes_a_yolo_dataset_with_boxes_within_a_pixel(flight, tmp_path):
    images = sorted((flight.out / "images").glob("*.jpg"))
    truth = {}
    tasks = []
    for i, img in enumerate(images):
        size = (960, 540)
        boxes = [("defect", (10.3 + i, 20.7, 60.2 + i, 90.9)), ("insulator", (300.5, 100.25, 420.75, 380.0))]
        truth[img.stem] = boxes
        anns = [{"id": 10 * i + 1, "was_cancelled": False, "updated_at": "2026-12-01T10:00:00Z",
                 "result": [_result(n, b, size, f"r{k}") for k, (n, b) in enumerate(boxes)]}]
        if i == 0:  # an older annotation and a cancelled one: the latest kept one counts
            anns.append({"id": 2, "was_cancelled": False, "updated_at": "2026-11-30T10:00:00Z",
                         "result": [_result("bird_nest", (1, 1, 5, 5), size, "old")]})
            anns.append({"id": 3, "was_cancelled": True, "updated_at": "2026-12-02T10:00:00Z", "result": []})
        tasks.append({"id": i + 1, "data": {"image": f"/data/upload/7/{i:04x}beef-{img.name}"}, "annotations": anns})
    tasks.append({"id": 99, "data": {"image": "/data/upload/7/0000beef-nobody.jpg"}, "annotations": []})
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    out = subprocess.run([sys.executable, "-m", "pli", "data", "import", str(export), "--format", "labelstudio",
                          "--images", str(flight.out / "images"), "--out", str(tmp_path / "ds")],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "task 99" in out.stderr and "no annotation" in out.stderr
    ds = YoloDataset.open(tmp_path / "ds" / "data.yaml")
    seen = 0
    for split in ("train", "val"):
        for img in ds.images(split):
            _, xyxy, cls = ds.read(img)
            want = truth[img.stem]
            got = sorted(zip([ds.names[c] for c in cls], xyxy.tolist(), strict=True))
            for (gn, gb), (wn, wb) in zip(got, sorted(want), strict=True):
                assert gn == wn and np.abs(np.array(gb) - np.array(wb)).max() < 1.0
            seen += 1
    assert seen == len(images)


def test_a_photo_found_nowhere_is_reported(tmp_path):
    from training.dataset import Report
    from training.importers.labelstudio import read_labelstudio

    export = tmp_path / "e.json"
    export.write_text(json.dumps([{"id": 5, "data": {"image": "/data/upload/1/abcdef12-x.jpg"},
                                   "annotations": [{"id": 1, "result": []}]}]))
    report = Report()
    assert list(read_labelstudio(export, report, images=tmp_path)) == []
    assert "not found" in report.warnings[0][1]
    export.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(ValueError, match="not a Label Studio JSON export"):
        list(read_labelstudio(export, report))


boxes = st.lists(st.tuples(st.floats(0, 500), st.floats(0, 500), st.floats(5, 100), st.floats(5, 100),
                           st.integers(0, 2)), max_size=8)


@given(boxes)
def test_edits_from_nothing_are_adds_and_from_the_truth_are_none(gt):
    from annotation.edits import edits, total

    g = np.array([[x, y, x + w, y + h] for x, y, w, h, _ in gt]).reshape(-1, 4)
    c = np.array([k for *_, k in gt], int)
    assert edits(np.zeros((0, 4)), np.zeros(0, int), g, c) == {"add": len(gt), "delete": 0, "move": 0, "kept": 0}
    e = edits(g, c, g, c)
    assert total(e) == 0 and e["kept"] == len(gt)


def test_a_shifted_box_is_a_move_a_wrong_class_is_a_delete_and_an_add():
    from annotation.edits import edits

    gt = np.array([[0, 0, 100, 100], [200, 200, 300, 300]])
    pred = np.array([[60, 0, 160, 100], [200, 200, 300, 300]])  # IoU 0.25: moved; the other: wrong class
    assert edits(pred, np.array([0, 1]), gt, np.array([0, 2])) == {"add": 1, "delete": 1, "move": 1, "kept": 0}


def test_the_corrected_boxes_keep_good_proposals_and_take_the_truth_elsewhere():
    from annotation.edits import corrected

    gt = np.array([[0, 0, 100, 100], [200, 200, 300, 300], [400, 400, 450, 450]])
    pred = np.array([[5, 0, 105, 100],  # IoU 0.9: kept where the model put it
                     [260, 200, 360, 300],  # IoU 0.25: moved onto the truth
                     [600, 600, 700, 700]])  # nothing there: deleted; the third true box is drawn
    xyxy, cls = corrected(pred, np.array([0, 0, 1]), gt, np.array([0, 0, 1]))
    np.testing.assert_array_equal(xyxy, [[5, 0, 105, 100], [200, 200, 300, 300], [400, 400, 450, 450]])
    assert cls.tolist() == [0, 0, 1]
    xyxy, _ = corrected(pred[:1], np.array([1]), gt[:1], np.array([0]))  # the wrong class is never kept
    np.testing.assert_array_equal(xyxy, gt[:1])


@given(boxes)
def test_a_prediction_read_back_gives_its_boxes_and_classes(gt):
    from annotation.backend import newest_prediction, prediction, rectangles
    from edge.detections import Detections

    names = ["insulator", "defect", "bird_nest"]
    g = np.array([[x, y, x + w, y + h] for x, y, w, h, _ in gt]).reshape(-1, 4)
    c = np.array([k for *_, k in gt], int)
    pred = prediction(Detections(g, np.ones(len(c)), c, names), 640, 640, "m")
    xyxy, cls = rectangles(newest_prediction([{"id": 1, "result": []}, {"id": 2, **pred}]))
    np.testing.assert_allclose(xyxy, np.clip(g, 0, 640), atol=1e-6)
    assert list(cls) == [names[k] for k in c]


@given(st.lists(st.tuples(boxes, st.lists(st.floats(0.05, 1.0), min_size=8, max_size=8), st.integers(0, 3)),
                min_size=1, max_size=5))
@settings(max_examples=40, deadline=None)
def test_the_fewest_edits_threshold_leaves_no_more_edits_than_any_other(photos):
    """Proposals are the truth, jittered photo by photo, plus false boxes, each with a confidence:
    whatever they are, no threshold of the grid leaves fewer edits than the one chosen."""
    from annotation.edits import edits, fewest_edits_threshold, total

    found, truth = [], []
    for gt, confs, shift in photos:
        g = np.array([[x, y, x + w, y + h] for x, y, w, h, _ in gt]).reshape(-1, 4)
        c = np.array([k for *_, k in gt], int)
        fake = g[::-1] + 40.0 * shift
        xyxy = np.concatenate([g + shift, fake])
        cls = np.concatenate([c, c[::-1]])
        found.append((xyxy, cls, np.array((confs * 3)[:len(xyxy)])))
        truth.append((g, c))
    grid = np.round(np.arange(0.05, 0.95, 0.05), 2)
    chosen = fewest_edits_threshold(found, truth, grid)

    def cost(t):
        return sum(total(edits(x[k >= t], c[k >= t], g, gc)) for (x, c, k), (g, gc) in zip(found, truth, strict=True))

    assert chosen in grid and all(cost(chosen) <= cost(t) for t in grid)
    assert all(cost(chosen) < cost(t) for t in grid if t > chosen)  # ties went to the higher threshold
    with pytest.raises(ValueError):
        fewest_edits_threshold(found, truth + truth[:1], grid)
