"""Label conversion round trips (VOC <-> YOLO <-> COCO), property-based."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from training.boxes import clip_xyxy, coco_to_xyxy, xyxy_to_coco, xyxy_to_yolo, yolo_to_xyxy

sizes = st.tuples(st.integers(1, 10000), st.integers(1, 10000))


@st.composite
def image_and_boxes(draw):
    w, h = draw(sizes)
    n = draw(st.integers(0, 20))
    u = draw(arrays(np.float64, (n, 4), elements=st.floats(0, 1, allow_nan=False)))
    x = np.sort(u[:, [0, 2]], axis=1) * w
    y = np.sort(u[:, [1, 3]], axis=1) * h
    return w, h, np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)


@given(image_and_boxes())
def test_voc_yolo_round_trip(case):
    w, h, xyxy = case
    yolo = xyxy_to_yolo(xyxy, w, h)
    assert np.all((yolo >= -1e-9) & (yolo <= 1 + 1e-9))
    np.testing.assert_allclose(yolo_to_xyxy(yolo, w, h), xyxy, atol=1e-6 * max(w, h))


@given(image_and_boxes())
def test_voc_coco_round_trip(case):
    _, _, xyxy = case
    coco = xyxy_to_coco(xyxy)
    assert np.all(coco[:, 2:] >= 0)
    np.testing.assert_allclose(coco_to_xyxy(coco), xyxy, atol=1e-6)


@given(image_and_boxes())
def test_yolo_coco_yolo_round_trip(case):
    w, h, xyxy = case
    yolo = xyxy_to_yolo(xyxy, w, h)
    back = xyxy_to_yolo(coco_to_xyxy(xyxy_to_coco(yolo_to_xyxy(yolo, w, h))), w, h)
    np.testing.assert_allclose(back, yolo, atol=1e-9)


@given(image_and_boxes(), st.floats(-500, 500), st.floats(-500, 500))
def test_clip_keeps_boxes_inside_and_is_idempotent(case, dx, dy):
    w, h, xyxy = case
    moved = xyxy + np.array([dx, dy, dx, dy])
    c = clip_xyxy(moved, w, h)
    assert np.all(c[:, [0, 2]] >= 0) and np.all(c[:, [0, 2]] <= w)
    assert np.all(c[:, [1, 3]] >= 0) and np.all(c[:, [1, 3]] <= h)
    np.testing.assert_array_equal(clip_xyxy(c, w, h), c)
    inside = (moved[:, :2] >= 0).all(1) & (moved[:, 2] <= w) & (moved[:, 3] <= h)
    np.testing.assert_array_equal(c[inside], moved[inside])


@given(image_and_boxes(), st.data())
def test_label_file_round_trip(tmp_path_factory, case, data):
    """Boxes survive the YOLO label file the importer writes (6 decimals: < 1e-6 of a side)."""
    from pathlib import Path

    from training.dataset import Sample, read_label_file, write_label_file

    w, h, xyxy = case
    names = ["insulator", "defect", "bird_nest"]
    labels = [data.draw(st.sampled_from(names)) for _ in range(len(xyxy))]
    path = tmp_path_factory.mktemp("labels") / "x.txt"
    write_label_file(path, Sample(Path("x.jpg"), "x", w, h, xyxy, labels), names)
    back, back_labels = read_label_file(path, w, h, names)
    assert back_labels == labels
    np.testing.assert_allclose(back, xyxy.reshape(-1, 4), atol=1e-6 * max(w, h) + 1e-9)
