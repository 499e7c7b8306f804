"""Golden frames (edge/golden.py): the IoU they are judged by, and what they refuse to be."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge import golden

box = st.tuples(st.floats(0, 500), st.floats(0, 500), st.floats(1, 200), st.floats(1, 200)).map(
    lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])


@given(st.lists(box, min_size=1, max_size=6), st.lists(box, min_size=1, max_size=6))
def test_iou_is_symmetric_bounded_and_one_with_itself(a, b):
    m = golden.iou_matrix(a, b)
    assert m.shape == (len(a), len(b)) and np.all((m >= 0) & (m <= 1 + 1e-9))
    np.testing.assert_allclose(m, golden.iou_matrix(b, a).T)
    np.testing.assert_allclose(np.diag(golden.iou_matrix(a, a)), 1.0)


def test_known_overlaps():
    assert golden.iou_matrix([[0, 0, 10, 10]], [[5, 0, 15, 10]])[0, 0] == pytest.approx(50 / 150)
    assert golden.iou_matrix([[0, 0, 10, 10]], [[20, 20, 30, 30]])[0, 0] == 0
    assert golden.iou_matrix([[0, 0, 10, 10]], np.zeros((0, 4))).shape == (1, 0)


class _Blind:
    """A detector that sees nothing (what a broken build does)."""

    names = ("insulator", "defect", "bird_nest")

    class info:  # mimics Detector.info
        imgsz = (640, 640)

    def __call__(self, image, conf=None):
        from edge.detections import Detections

        return Detections.empty(self.names)


def test_golden_frames_without_a_detection_are_refused_and_a_blind_model_fails_them():
    with pytest.raises(ValueError, match="choose frames that show faults"):
        golden.make(_Blind(), {"a.jpg": np.zeros((64, 64, 3), np.uint8)}, threshold=0.25)
    import base64

    import cv2

    jpeg = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1]

    doc = {"schema": golden.SCHEMA, "threshold": 0.25, "margin": 0.1, "iou": 0.8, "tile": "off", "frames": [
        {"image": "a.jpg", "jpeg_b64": base64.b64encode(jpeg.tobytes()).decode(),
         "detections": [{"class": "defect", "box": [10, 10, 30, 30], "confidence": 0.9}]}]}
    problems = golden.check(_Blind(), doc)
    assert len(problems) == 1 and "defect" in problems[0] and "not found again" in problems[0]
    assert golden.check(_Blind(), {**doc, "frames": []}) == ["the golden frames hold no detection: they prove nothing"]
    assert "schema" in golden.check(_Blind(), {**doc, "schema": "other"})[0]


class _Shifted:
    """Finds the golden box moved to IoU 0.75 (as a lower precision might), on a given provider."""

    names = ("insulator", "defect", "bird_nest")

    class info:
        imgsz = (640, 640)

    def __init__(self, provider: str):
        self.session = type("S", (), {"get_providers": lambda _self: [provider]})()

    def __call__(self, image, conf=None):
        from edge.detections import Detections

        box = np.array([[10, 10, 30, 30]], np.float64)
        box[0, 2] += 20 * (1 / 0.75 - 1)  # IoU with [10, 10, 30, 30] is 0.75
        return Detections(box, np.array([0.9]), np.array([1]), self.names)


def test_tensorrt_fp16_gets_its_own_stated_tolerance():
    import base64

    import cv2

    jpeg = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1]
    doc = {"schema": golden.SCHEMA, "threshold": 0.25, "margin": 0.1, "iou": 0.8, "tile": "off",
           "tolerance": golden.TOLERANCE, "frames": [
               {"image": "a.jpg", "jpeg_b64": base64.b64encode(jpeg.tobytes()).decode(),
                "detections": [{"class": "defect", "box": [10, 10, 30, 30], "confidence": 0.9}]}]}
    assert golden.check(_Shifted("TensorrtExecutionProvider"), doc) == []  # FP16 engine: IoU >= 0.7
    cpu = golden.check(_Shifted("CPUExecutionProvider"), doc)
    assert len(cpu) == 1 and "best IoU 0.75 < 0.8" in cpu[0]
