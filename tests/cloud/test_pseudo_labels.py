"""Weak labels (cloud/pseudo_labels.py): a box unstable under test-time augmentation is dropped,
thresholds maximise F1 on validation, reviews remove false alarms and add confirmed faults."""

from __future__ import annotations

import numpy as np

from cloud.pseudo_labels import Review, f1_thresholds, pseudo_label, quality, tta_stable
from edge.detections import Detections

NAMES = ("insulator", "defect", "bird_nest")


def bright_boxes(image: np.ndarray, phantom: bool = True) -> Detections:
    """A stand-in detector: each bright rectangle is a `defect` (found wherever it is), plus a
    phantom box always at the same pixels (what an unstable detection looks like)."""
    import cv2

    mask = (image[..., 0] > 200).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    boxes = [[x, y, x + w, y + h] for x, y, w, h, _ in stats[1:n]]
    conf = [0.9] * len(boxes)
    if phantom:
        boxes.append([5, 5, 25, 25])
        conf.append(0.95)
    return Detections(np.array(boxes, float).reshape(-1, 4), np.array(conf), np.ones(len(boxes), int), NAMES)


def scene() -> np.ndarray:
    image = np.zeros((200, 300, 3), np.uint8)
    image[60:120, 150:230] = 255
    return image


def test_a_box_unstable_under_test_time_augmentation_is_dropped():
    image = scene()
    d = bright_boxes(image)
    stable = tta_stable(bright_boxes, image, d)
    assert stable.tolist() == [True, False]  # the real rectangle moves with the flip; the phantom does not
    kept = pseudo_label(bright_boxes, image, {1: 0.5})
    assert kept.xyxy.tolist() == [[150, 60, 230, 120]]
    assert len(pseudo_label(bright_boxes, image, {1: 0.5}, tta=False)) == 2  # without TTA it would stay


def test_a_box_no_neighbour_frame_shows_is_dropped():
    image, other = scene(), np.zeros((200, 300, 3), np.uint8)
    other[62:122, 152:232] = 255  # the next frame: the same fault, moved by two pixels
    assert len(pseudo_label(lambda im: bright_boxes(im, False), image, {1: 0.5}, neighbour=other)) == 1
    assert len(pseudo_label(lambda im: bright_boxes(im, False), image, {1: 0.5},
                            neighbour=np.zeros_like(image))) == 0


def test_thresholds_maximise_f1_on_validation():
    truth = np.array([[0, 0, 10, 10]], float)
    val = [(np.array([[0, 0, 10, 10], [50, 50, 60, 60]], float), np.array([0.9, 0.6]), np.array([1, 1]),
            truth, np.array([1])),
           (np.array([[20, 20, 30, 30]], float), np.array([0.7]), np.array([1]), np.zeros((0, 4)),
            np.zeros(0, int))]
    assert f1_thresholds(val, 3) == {1: 0.9}  # lower thresholds only add false boxes


def test_reviews_remove_false_alarms_and_add_confirmed_faults():
    image = scene()
    pred = lambda im: bright_boxes(im, False)  # noqa: E731
    gone = pseudo_label(pred, image, {1: 0.5}, reviews=[Review((150, 60, 230, 120), 1, "false_alarm")])
    assert len(gone) == 0
    added = pseudo_label(pred, image, {1: 0.5}, reviews=[Review((10, 150, 40, 190), 1, "confirmed")])
    assert sorted(added.xyxy.tolist()) == [[10, 150, 40, 190], [150, 60, 230, 120]]
    q = quality([added], [(np.array([[150, 60, 230, 120]], float), np.array([1]))])
    assert q == {"boxes": 2, "true_boxes": 1, "precision": 0.5, "recall": 1.0}


def test_quality_per_class_keeps_each_class_to_its_own_boxes():
    pseudo = [Detections(xyxy=np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], float),
                         confidence=np.array([0.9, 0.9, 0.9]), class_id=np.array([0, 1, 1]))]
    truth = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30], [60, 60, 70, 70], [80, 80, 90, 90]], float),
              np.array([0, 0, 1, 2]))]
    q = quality(pseudo, truth, ["insulator", "defect", "flashover"])
    assert (q["boxes"], q["true_boxes"], q["precision"], q["recall"]) == (3, 4, round(1 / 3, 4), 0.25)
    assert q["per_class"]["insulator"] == {"boxes": 1, "true_boxes": 2, "precision": 1.0, "recall": 0.5}
    # the defect box on a true insulator is wrong by class; the other defect box is on nothing
    assert q["per_class"]["defect"] == {"boxes": 2, "true_boxes": 1, "precision": 0.0, "recall": 0.0}
    assert q["per_class"]["flashover"] == {"boxes": 0, "true_boxes": 1, "precision": None, "recall": 0.0}
