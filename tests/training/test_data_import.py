"""Dataset import: CPLID-style VOC, COCO, YOLO; bad input is reported by name and skipped."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
import yaml

from training.data_import import import_dataset
from training.dataset import YoloDataset, read_label_file

W, H = 200, 150


def voc_xml(stem: str, objects: list[tuple[str, tuple[float, float, float, float]]], size=(W, H)) -> str:
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax>"
        f"</bndbox></object>" for n, (a, b, c, d) in objects)
    return (f"<annotation><folder>images</folder><filename>{stem}</filename><path>/stale/{stem}.jpg</path>"
            f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>{objs}</annotation>")


def write_image(path, value=120):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((H, W, 3), value, np.uint8)
    cv2.rectangle(img, (20, 20), (80, 60), (0, 0, 255), -1)
    cv2.imwrite(str(path), img)


@pytest.fixture
def cplid_like(tmp_path):
    """CPLID's layout: normal images with one XML; defective images with two XMLs (same stem)."""
    src = tmp_path / "src"
    for i in range(10):
        stem = f"{i:04d}"
        write_image(src / "Normal_Insulators/images" / f"{stem}.jpg")
        (src / "Normal_Insulators/labels" / f"{stem}.xml").parent.mkdir(parents=True, exist_ok=True)
        (src / "Normal_Insulators/labels" / f"{stem}.xml").write_text(
            voc_xml(stem, [("insulator", (10, 10, 100, 120)), ("insulator", (120, 5, 190, 140))]))
    for i in range(5):
        stem = f"{i:03d}"
        write_image(src / "Defective_Insulators/images" / f"{stem}.jpg")
        for kind, box in (("insulator", (30, 20, 150, 140)), ("defect", (60, 50, 90, 80))):
            p = src / "Defective_Insulators/labels" / kind / f"{stem}.xml"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(voc_xml(stem, [(kind, box)]))
    return src


def test_cplid_layout_merges_xml_pairs(cplid_like, tmp_path):
    r = import_dataset(cplid_like, "voc", tmp_path / "out", progress=False)
    total = r.stats["all"]
    assert total.images == 15
    assert total.boxes["insulator"] == 25 and total.boxes["defect"] == 5
    assert r.report.warnings == []
    # A defective image carries both of its files' boxes.
    ds = YoloDataset.open(tmp_path / "out")
    split = r.assignment["000"]
    xyxy, labels = read_label_file(tmp_path / "out/labels" / split / "000.txt", W, H, ds.names)
    assert sorted(labels) == ["defect", "insulator"]
    np.testing.assert_allclose(xyxy[labels.index("defect")], [60, 50, 90, 80], atol=1e-3)
    assert ds.names[:3] == ["insulator", "defect", "bird_nest"]
    data = yaml.safe_load((tmp_path / "out/data.yaml").read_text())
    assert data["train"] == "images/train" and data["val"] == "images/val" and "path" not in data


def test_bad_inputs_are_named_and_the_rest_converts(cplid_like, tmp_path, caplog):
    labels = cplid_like / "Normal_Insulators/labels"
    (labels / "0001.xml").write_text("<annotation><object><name>insulator</name>")  # malformed
    (labels / "9999.xml").write_text(voc_xml("9999", [("insulator", (1, 1, 50, 50))]))  # no image
    (labels / "0002.xml").write_text(voc_xml("0002", [("insulator", (100, 10, 40, 120)),  # x2 < x1
                                                      ("insulator", (10, 10, 60, 60))]))
    (labels / "0003.xml").write_text(voc_xml("0003", [("insulator", (-20, 10, 60, 400))]))  # needs clipping
    (labels / "0004.xml").write_text(voc_xml("0004", [("insulator", (300, 10, 400, 60))]))  # fully outside
    (cplid_like / "Normal_Insulators/images/0005.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")  # unreadable
    with caplog.at_level(logging.WARNING):
        r = import_dataset(cplid_like, "voc", tmp_path / "out", progress=False)
    text = "\n".join(f"{n}: {m}" for n, m in r.report.warnings)
    assert "0001.xml: malformed XML" in text
    assert "9999.xml: no image named 9999" in text
    assert "0002.jpg: box 0 (insulator: 100, 10, 40, 120) has x2 < x1" in text
    assert "0003.jpg: box 0" in text and "clipped" in text
    assert "0004.jpg: box 0" in text and "outside the image" in text
    assert "0005.jpg: unreadable image" in text
    assert "0001.xml" in caplog.text and "0005.jpg" in caplog.text  # logged, not only collected
    # Skipped: 0001 (malformed), 0005 (unreadable). Kept: 0002 with its good box, 0003 clipped, 0004 empty.
    names = set(r.assignment)
    assert "0001" not in names and "0005" not in names and {"0002", "0003", "0004"} <= names
    assert r.stats["all"].images == 13
    by_name = {s.name: s for s in r.samples}
    assert len(by_name["0002"].labels) == 1
    np.testing.assert_allclose(by_name["0003"].xyxy, [[0, 10, 60, H]])
    assert by_name["0004"].labels == []


def test_split_is_seeded_stratified_and_reusable(cplid_like, tmp_path):
    a = import_dataset(cplid_like, "voc", tmp_path / "a", ratios=[0.6, 0.4], seed=5, progress=False)
    b = import_dataset(cplid_like, "voc", tmp_path / "b", ratios=[0.6, 0.4], seed=5, progress=False)
    assert a.assignment == b.assignment
    assert a.stats["train"].images_with["defect"] == 3 and a.stats["val"].images_with["defect"] == 2
    assert a.stats["train"].images == 9 and a.stats["val"].images == 6
    c = import_dataset(cplid_like, "voc", tmp_path / "c", split_file=a.split_file, progress=False)
    assert c.assignment == a.assignment
    doc = json.loads(a.split_file.read_text())
    assert set(doc["splits"]) == {"train", "val"} and doc["settings"]["seed"] == 5


def test_group_by_keeps_flights_on_one_side(tmp_path):
    src = tmp_path / "src"
    for flight in range(8):
        for frame in range(5):
            stem = f"flight{flight}_{frame:03d}"
            write_image(src / "images" / f"{stem}.jpg")
            objs = [("insulator", (10, 10, 100, 100))] + ([("defect", (20, 20, 40, 40))] if flight % 2 else [])
            (src / "ann" / f"{stem}.xml").parent.mkdir(parents=True, exist_ok=True)
            (src / "ann" / f"{stem}.xml").write_text(voc_xml(stem, objs))
    for seed in range(4):
        r = import_dataset(src, "voc", tmp_path / f"o{seed}", ratios=[0.75, 0.25], group_by=r"^(flight\d+)_",
                           seed=seed, progress=False)
        sides: dict[str, set[str]] = {}
        for name, split in r.assignment.items():
            sides.setdefault(name.split("_")[0], set()).add(split)
        assert all(len(s) == 1 for s in sides.values()), sides
        assert r.stats["val"].images == 10  # 2 of 8 flights
        assert r.stats["val"].images_with["defect"] == 5  # one of the 4 defective flights


def test_coco_import(tmp_path):
    src = tmp_path / "coco"
    for i in range(4):
        write_image(src / "images" / f"im{i}.jpg")
    doc = {
        "images": [{"id": i, "file_name": f"im{i}.jpg", "width": W, "height": H, "video_id": i // 2}
                   for i in range(4)],
        "annotations": [{"id": 1, "image_id": 0, "category_id": 7, "bbox": [10, 20, 30, 40], "iscrowd": 0},
                        {"id": 2, "image_id": 1, "category_id": 9, "bbox": [5, 5, 10, 10], "iscrowd": 0},
                        {"id": 3, "image_id": 2, "category_id": 7, "bbox": [190, 140, 50, 50], "iscrowd": 0}],
        "categories": [{"id": 7, "name": "insulator"}, {"id": 9, "name": "bird_nest"}],
    }
    (src / "instances_train.json").write_text(json.dumps(doc))
    r = import_dataset(src, "coco", tmp_path / "out", progress=False)
    assert set(r.assignment.values()) == {"train"}  # the file name says train: the source split is kept
    by_name = {s.name: s for s in r.samples}
    np.testing.assert_allclose(by_name["im0"].xyxy, [[10, 20, 40, 60]])
    assert by_name["im1"].labels == ["bird_nest"]
    np.testing.assert_allclose(by_name["im2"].xyxy, [[190, 140, W, H]])  # clipped
    r2 = import_dataset(src, "coco", tmp_path / "out2", ratios=[0.5, 0.5], group_by="field:video_id", progress=False)
    assert r2.assignment["im0"] == r2.assignment["im1"] and r2.assignment["im2"] == r2.assignment["im3"]


def test_coco_import_maps_a_published_sets_class_names(tmp_path):
    """IDD names its classes its own way: --map puts them on the project's list (and `-` drops one)."""
    import subprocess
    import sys

    src = tmp_path / "idd"
    for i in range(4):
        write_image(src / "images" / f"im{i}.jpg")
    doc = {
        "images": [{"id": i, "file_name": f"im{i}.jpg", "width": W, "height": H} for i in range(4)],
        "annotations": [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [10, 20, 30, 40], "iscrowd": 0},
                        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [5, 5, 10, 10], "iscrowd": 0},
                        {"id": 3, "image_id": 2, "category_id": 3, "bbox": [50, 40, 50, 50], "iscrowd": 0},
                        {"id": 4, "image_id": 3, "category_id": 4, "bbox": [60, 40, 20, 20], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "insulator"}, {"id": 2, "name": "broken"},
                       {"id": 3, "name": "pollution-flashover"}, {"id": 4, "name": "notbroken-notflashed"}],
    }
    (src / "annotations.json").write_text(json.dumps(doc))
    out = subprocess.run([sys.executable, "-m", "pli", "data", "import", str(src), "--format", "coco", "--out",
                          str(tmp_path / "out"), "--map", "broken=defect", "--map", "pollution-flashover=flashover",
                          "--map", "notbroken-notflashed=-", "--split", "0.5,0.5"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    ds = YoloDataset.open(tmp_path / "out")
    assert ds.names == ["insulator", "defect", "bird_nest", "flashover"]  # the configured list, then flashover
    assert "flashover" in out.stderr and "appended" in out.stderr  # not in the configured list (version 1): said
    labels = {}
    for split in ds.splits:
        for img in ds.images(split):
            _, _, ids = ds.read(img)
            labels[img.stem] = [ds.names[i] for i in ids]
    assert labels == {"im0": ["insulator"], "im1": ["defect"], "im2": ["flashover"], "im3": []}
    bad = subprocess.run([sys.executable, "-m", "pli", "data", "import", str(src), "--format", "coco", "--out",
                          str(tmp_path / "x"), "--map", "broken"], capture_output=True, text=True)
    assert bad.returncode == 2 and "expected SRC=DST" in bad.stderr


def test_yolo_round_trip_through_import(cplid_like, tmp_path):
    first = import_dataset(cplid_like, "voc", tmp_path / "y1", progress=False)
    again = import_dataset(tmp_path / "y1", "yolo", tmp_path / "y2", progress=False)
    assert again.assignment == first.assignment  # the source's splits are kept
    a = {s.name: s for s in first.samples}
    for s in again.samples:
        order_a = np.lexsort(a[s.name].xyxy.T)
        order_b = np.lexsort(s.xyxy.T)
        np.testing.assert_allclose(s.xyxy[order_b], a[s.name].xyxy[order_a], atol=1e-3)


def test_unknown_format_and_missing_source(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        import_dataset(tmp_path, "kitti", tmp_path / "o", progress=False)
    with pytest.raises(FileNotFoundError):
        import_dataset(tmp_path / "nope", "voc", tmp_path / "o", progress=False)


@pytest.mark.cplid
def test_cplid_counts(cplid, tmp_path):
    r = import_dataset(cplid, "voc", tmp_path / "cplid", progress=False)
    total = r.stats["all"]
    assert (total.images, total.boxes["insulator"], total.boxes["defect"]) == (700, 1089, 200)
    assert r.report.warnings == []
    assert r.stats["train"].images_with["defect"] == 160 and r.stats["val"].images_with["defect"] == 40
