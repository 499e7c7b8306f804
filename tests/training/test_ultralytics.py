"""The datasets we write are what ultralytics trains on; OpenCV serves both libraries."""

from __future__ import annotations

import importlib.metadata as md

import numpy as np
import pytest

from training.data_import import import_dataset


def test_one_cv2_for_ultralytics_and_albumentations():
    import albumentations as A
    import cv2
    from ultralytics.data.augment import LetterBox

    assert md.version("opencv-python") == md.version("opencv-python-headless")
    img = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    boxed = LetterBox(new_shape=(320, 320))(image=img)
    assert boxed.shape == (320, 320, 3)
    resized = A.Compose([A.Resize(100, 120)])(image=img)["image"]
    assert resized.shape == (100, 120, 3)
    np.testing.assert_array_equal(resized, cv2.resize(img, (120, 100), interpolation=cv2.INTER_LINEAR))


def _train_one_epoch(data_yaml, project, fraction: float = 1.0):
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")
    model.train(data=str(data_yaml), epochs=1, imgsz=160, batch=8, fraction=fraction, workers=0, device="cpu",
                plots=False, amp=False, project=str(project), name="run", exist_ok=True, verbose=False, seed=0)
    run = project / "run"
    assert (run / "weights" / "last.pt").exists()
    assert (run / "results.csv").exists()
    return model


@pytest.mark.slow
def test_ultralytics_trains_one_epoch_on_a_synthetic_import(flight, tmp_path):
    r = import_dataset(flight.out, "yolo", tmp_path / "d", ratios=[0.7, 0.3], progress=False)
    model = _train_one_epoch(r.data_yaml, tmp_path / "runs")
    assert list(model.names.values()) == r.class_names


@pytest.mark.slow
@pytest.mark.cplid
def test_ultralytics_trains_one_epoch_on_imported_cplid(cplid, tmp_path):
    r = import_dataset(cplid, "voc", tmp_path / "D", progress=False)
    model = _train_one_epoch(r.data_yaml, tmp_path / "runs", fraction=0.05)  # 28 train images, full val
    assert list(model.names.values())[:2] == ["insulator", "defect"]
