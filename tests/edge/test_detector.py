"""The detector's pre- and post-processing: the fast paths give the plain formulas' values exactly."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edge.detector import Detector, Letterbox, letterbox, letterbox_tensor, nms, resize, to_tensor

MODEL = Path(__file__).resolve().parents[2] / "models" / "pli-default.onnx"


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 300), w=st.integers(1, 300), size=st.tuples(st.integers(8, 96), st.integers(8, 96)),
       seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3))
def test_letterbox_tensor_is_to_tensor_of_letterbox(h, w, size, seed, n):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]
    tensor, boxes = letterbox_tensor(images, size)
    plain = [letterbox(im, size) for im in images]
    assert tensor.shape == (n, 3, *size) and tensor.dtype == np.float32
    np.testing.assert_array_equal(tensor, to_tensor([p[0] for p in plain]))  # bit for bit
    assert boxes == [p[1] for p in plain]


@settings(max_examples=60, deadline=None)
@given(new_h=st.integers(1, 60), new_w=st.integers(1, 60), f=st.integers(1, 9), dh=st.integers(0, 2),
       dw=st.integers(0, 2), seed=st.integers(0, 2**32 - 1))
def test_resize_is_opencvs_bilinear_pixel_for_pixel(new_h, new_w, f, dh, dw, seed):
    """Exact odd factors take the nearest-centre shortcut; near misses (dh, dw) the plain path."""
    image = np.random.default_rng(seed).integers(0, 256, (f * new_h + dh, f * new_w + dw, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize(image, new_w, new_h),
                                  cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR))


def test_a_1080p_frame_letterboxes_as_with_a_bilinear_resize():
    frame = np.random.default_rng(5).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    tensor, (lb,) = letterbox_tensor([frame], (384, 640))
    plain = cv2.copyMakeBorder(cv2.resize(frame, (640, 360), interpolation=cv2.INTER_LINEAR), 12, 12, 0, 0,
                               cv2.BORDER_CONSTANT, value=(114, 114, 114))
    np.testing.assert_array_equal(tensor, to_tensor([plain]))
    assert lb == Letterbox((1 / 3, 1 / 3), (0, 12))


def test_letterbox_tensor_refuses_an_image_without_three_channels():
    with pytest.raises(ValueError, match="BGR image"):
        letterbox_tensor([np.zeros((20, 30), np.uint8)], (32, 32))
    with pytest.raises(ValueError, match="BGR image"):
        letterbox_tensor([np.zeros((20, 30, 4), np.uint8)], (32, 32))


def plain_decode(det: Detector, pred: np.ndarray, lb: Letterbox, shape: tuple[int, int], conf: float):
    """The textbook decode (every anchor's best class, then the threshold) to hold the fast one to."""
    pred = pred.T
    scores = pred[:, 4:]
    cls = scores.argmax(axis=1)
    score = scores[np.arange(len(cls)), cls]
    keep = score > conf
    cxcywh, score, cls = pred[keep, :4], score[keep], cls[keep]
    xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
    idx = nms(xyxy, score, cls, det.iou, det.max_det)
    xyxy = (xyxy[idx] - np.array([*lb.pad, *lb.pad], np.float32)) / np.array([*lb.gain, *lb.gain], np.float32)
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, shape[1])
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, shape[0])
    return xyxy, score[idx], cls[idx]


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(MODEL, threads=1)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), conf=st.floats(0.05, 0.9))
def test_decode_keeps_what_the_plain_formula_keeps(detector, data, conf):
    nc, n = len(detector.names), data.draw(st.integers(0, 400))
    xy = data.draw(arrays(np.float32, (2, n), elements=st.floats(0, 640, width=32)))
    wh = data.draw(arrays(np.float32, (2, n), elements=st.floats(1, 200, width=32)))
    # scores on a coarse grid, so ties between classes (argmax takes the first) come up
    scores = data.draw(arrays(np.float32, (nc, n), elements=st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 0.95])))
    pred = np.concatenate([xy, wh, scores])
    lb, shape = Letterbox((1 / 3, 1 / 3), (0, 12)), (1080, 1920)
    got = detector._decode(pred, lb, shape, conf)
    xyxy, score, cls = plain_decode(detector, pred, lb, shape, conf)
    np.testing.assert_array_equal(got.xyxy, xyxy)
    np.testing.assert_array_equal(got.confidence, score)
    np.testing.assert_array_equal(got.class_id, cls)


def test_a_frame_through_the_detector_matches_the_plain_path(detector):
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    size = detector.input_size(frame.shape)
    boxed, lb = letterbox(frame, size)
    out = detector.run(to_tensor([boxed]))
    xyxy, score, cls = plain_decode(detector, out[0], lb, frame.shape[:2], 0.01)
    got = detector(frame, conf=0.01)
    np.testing.assert_array_equal(got.xyxy, xyxy)
    np.testing.assert_array_equal(got.confidence, score)
    np.testing.assert_array_equal(got.class_id, cls)
