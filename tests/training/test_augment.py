"""Augmentation keeps boxes right: flips map exactly, out-of-frame boxes drop, weather leaves boxes."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from training.augment import apply, augment_dataset, build_pipeline, uav_transforms
from training.dataset import YoloDataset
from training.stats import dataset_stats

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 255, (240, 320, 3), dtype=np.uint8)
BOXES = np.array([[0.5, 0.5, 0.2, 0.3], [0.15, 0.3, 0.1, 0.2], [0.8, 0.75, 0.3, 0.2]])
IDS = np.array([0, 1, 2])


def test_horizontal_flip_maps_each_box_exactly():
    out, boxes, ids = apply(build_pipeline([A.HorizontalFlip(p=1)], seed=1), IMAGE, BOXES, IDS)
    expected = BOXES.copy()
    expected[:, 0] = 1 - BOXES[:, 0]
    np.testing.assert_allclose(boxes, expected, atol=1e-6)  # albumentations keeps boxes in float32
    np.testing.assert_array_equal(ids, IDS)
    np.testing.assert_array_equal(out, IMAGE[:, ::-1])


def test_boxes_pushed_out_of_frame_are_dropped_by_min_visibility():
    # Shift right by 30 % of the width: the box at cx 0.8 (w 0.3) keeps 1/6 of its area, the others stay.
    shift = A.Affine(translate_percent={"x": (0.3, 0.3), "y": (0, 0)}, p=1)
    _, boxes, ids = apply(build_pipeline([shift], min_visibility=0.3, seed=1), IMAGE, BOXES, IDS)
    assert ids.tolist() == [0, 1]
    np.testing.assert_allclose(boxes[:, 0], BOXES[:2, 0] + 0.3, atol=2e-3)
    # With no visibility floor the sliver stays, clipped to the frame.
    _, boxes, ids = apply(build_pipeline([shift], min_visibility=0.0, seed=1), IMAGE, BOXES, IDS)
    assert ids.tolist() == [0, 1, 2] and boxes[2, 0] + boxes[2, 2] / 2 <= 1 + 1e-9


@pytest.mark.filterwarnings("ignore:Got processor for bboxes")
@pytest.mark.parametrize("transform", [
    A.RandomFog(fog_coef_range=(0.3, 0.5), p=1),
    A.RandomRain(p=1),
    A.RandomSunFlare(src_radius=60, p=1),
    A.RandomShadow(p=1),
    A.RandomBrightnessContrast(p=1),
    A.MotionBlur(blur_limit=(5, 7), p=1),
], ids=lambda t: type(t).__name__)
def test_weather_and_photometric_transforms_leave_boxes_unchanged(transform):
    out, boxes, ids = apply(build_pipeline([transform], seed=3), IMAGE, BOXES, IDS)
    np.testing.assert_allclose(boxes, BOXES, atol=1e-6)
    np.testing.assert_array_equal(ids, IDS)
    assert out.shape == IMAGE.shape and not np.array_equal(out, IMAGE)


def test_uav_preset_is_seeded():
    a = apply(build_pipeline(uav_transforms(), seed=7), IMAGE, BOXES, IDS)
    b = apply(build_pipeline(uav_transforms(), seed=7), IMAGE, BOXES, IDS)
    c = apply(build_pipeline(uav_transforms(), seed=8), IMAGE, BOXES, IDS)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], IMAGE) and not np.array_equal(a[0], c[0])  # it does something, per seed


def test_augment_dataset_writes_copies_of_train_only(flight, tmp_path):
    from training.data_import import import_dataset

    split = import_dataset(flight.out, "yolo", tmp_path / "split", ratios=[0.7, 0.3], progress=False)
    counts = augment_dataset(tmp_path / "split", tmp_path / "aug", copies=2, seed=1, progress=False)
    n_train, n_val = split.stats["train"].images, split.stats["val"].images
    assert counts == {"train": 3 * n_train, "val": n_val}
    stats, names, report = dataset_stats(tmp_path / "aug")
    assert report.warnings == [] and names == YoloDataset.open(tmp_path / "split").names
    assert stats["val"].boxes == split.stats["val"].boxes  # validation is never augmented
    assert stats["train"].boxes["insulator"] >= 2 * split.stats["train"].boxes["insulator"]
