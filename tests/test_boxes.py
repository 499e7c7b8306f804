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
