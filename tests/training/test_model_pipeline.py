"""Train, export (FP32, INT8) and evaluate on a tiny synthetic dataset; the ONNX path agrees
with ultralytics; broken models and mismatched data fail with one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.detector import Detector, ModelError, file_sha256
from training.dataset import YoloDataset
from training.evaluate import _iou, evaluate
from training.export import export_model, set_conf

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    result, data = tiny_model
    out = tmp_path_factory.mktemp("export")
    fp32 = export_model(result.last, out / "tiny.onnx", imgsz=160, conf=0.2, version="t1")
    calib = YoloDataset.open(data).splits["train"][0]
    int8 = export_model(result.last, out / "tiny_int8.onnx", imgsz=160, int8=True, calib=calib, version="t1")
    return result, data, fp32, int8


def test_train_leaves_a_complete_run_folder(tiny_model):
    result, _ = tiny_model
    for name in ("weights/last.pt", "weights/best.pt", "results.csv", "learning_curve.png", "args.yaml"):
        assert (result.run_dir / name).exists(), name
    rows = (result.run_dir / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 20  # header + one row per epoch


def test_exported_models_carry_metadata_and_a_matching_card(exported):
    result, _, fp32, int8 = exported
    for r, precision in ((fp32, "fp32"), (int8, "int8")):
        det = Detector(r.onnx)
        meta = det.info.metadata
        assert det.names == ["insulator", "defect", "bird_nest"] and det.info.imgsz == (160, 160)
        assert meta["precision"] == precision and meta["source_sha256"] == file_sha256(result.last)
        assert int(meta["stride"]) == 32 and float(meta["conf"]) == r.card_data.conf
        card = json.loads(r.card.read_text())
        assert card["sha256"] == file_sha256(r.onnx) and card["classes"] == det.names and card["version"] == "t1"
    assert fp32.card_data.conf == 0.2
    assert int8.card_data.extra["quantization"]["per_channel"] is True
    assert int8.onnx.stat().st_size < fp32.onnx.stat().st_size / 2


def test_a_new_threshold_reaches_metadata_and_card_without_another_export(exported, tmp_path):
    import shutil

    _, _, fp32, _ = exported
    onnx = tmp_path / fp32.onnx.name
    shutil.copyfile(fp32.onnx, onnx)
    shutil.copyfile(fp32.card, tmp_path / fp32.card.name)
    out = set_conf(onnx, 0.37)
    det = Detector(onnx)
    assert float(det.info.metadata["conf"]) == 0.37 and det.names == fp32.card_data.classes
    card = json.loads(out.card.read_text())
    assert card["conf"] == 0.37 and card["sha256"] == file_sha256(onnx) != fp32.card_data.sha256
    before = json.loads(fp32.card.read_text())
    assert {k: v for k, v in card.items() if k not in ("conf", "sha256")} == \
        {k: v for k, v in before.items() if k not in ("conf", "sha256")}


def test_onnx_detections_match_the_pt_model(exported):
    from training.yolo import ultralytics

    result, data, fp32, _ = exported
    yolo = ultralytics().YOLO(str(result.last))
    det = Detector(fp32.onnx, conf=0.002)
    total = matched = 0
    for path in YoloDataset.open(data).images("train")[:40]:
        image = cv2.imread(str(path))
        r = yolo.predict(image, imgsz=160, conf=0.002, iou=0.7, verbose=False)[0]
        ref_xyxy, ref_cls = r.boxes.xyxy.numpy(), r.boxes.cls.numpy().astype(int)
        ours = det(image)
        total += len(ref_xyxy)
        if len(ref_xyxy) and len(ours):
            ok = (_iou(ref_xyxy, ours.xyxy) >= 0.9) & (ref_cls[:, None] == ours.class_id[None, :])
            matched += int(ok.any(axis=1).sum())
    assert total >= 50
    assert matched / total >= 0.95, (matched, total)


def test_eval_of_pt_and_onnx_agree(exported):
    result, data, fp32, _ = exported
    pt = evaluate(result.last, data, "train", imgsz=160, progress=False)
    onnx = evaluate(fp32.onnx, data, "train", progress=False)
    # A model that detects something (insulators, its most frequent class), or the comparison says nothing.
    assert onnx.per_class["insulator"]["map50"] > 0.02
    assert abs(pt.map50 - onnx.map50) <= 0.01 and abs(pt.map50_95 - onnx.map50_95) <= 0.01


DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "pli-default.onnx"


@pytest.mark.cplid
def test_eval_agrees_with_ultralytics_val_on_the_default_model(cplid, tmp_path):
    """Same model, same data, conf 0.001, NMS IoU 0.7, same input size: within 0.010."""
    from training.data_import import import_dataset
    from training.yolo import ultralytics

    if not DEFAULT_MODEL.exists():
        pytest.skip("the default model has not shipped yet")
    split = Path(__file__).resolve().parents[2] / "recipes" / "cplid_split.json"
    data = import_dataset(cplid, "voc", tmp_path / "cplid", split_file=split, progress=False).data_yaml
    ours = evaluate(DEFAULT_MODEL, data, "val", progress=False)
    imgsz = Detector(DEFAULT_MODEL).info.imgsz[0]
    ref = ultralytics().YOLO(str(DEFAULT_MODEL), task="detect").val(
        data=str(data), split="val", imgsz=imgsz, conf=0.001, iou=0.7, batch=1, rect=False, plots=False,
        verbose=False, device="cpu")
    assert abs(ours.map50 - ref.box.map50) <= 0.010, (ours.map50, ref.box.map50)
    assert abs(ours.map50_95 - ref.box.map) <= 0.010, (ours.map50_95, ref.box.map)


def test_eval_cli_json_is_the_last_line(exported, tmp_path):
    _, data, _, int8 = exported
    out = subprocess.run([sys.executable, "-m", "pli", "eval", str(int8.onnx), "--data", str(data), "--split",
                          "train", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"map50", "map50_95", "per_class"} <= doc.keys()
    # Classes with no ground truth in the split are absent.
    labels = "".join(p.read_text() for p in (data.parent / "labels" / "train").glob("*.txt"))
    present = {["insulator", "defect", "bird_nest"][int(line.split()[0])] for line in labels.splitlines()
               if line.strip()}
    assert set(doc["per_class"]) == present


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pli", *args], capture_output=True, text=True)


def _one_error_line(out: subprocess.CompletedProcess) -> str:
    """Exactly one error line and no traceback (informational log lines may precede it)."""
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith(("pli: error", "ERROR"))]
    assert len(errors) == 1 and "Traceback" not in out.stderr, out.stderr
    return errors[0]


def test_corrupt_and_truncated_models_fail_clearly(exported, tmp_path):
    _, data, fp32, _ = exported
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(fp32.onnx.read_bytes()[: fp32.onnx.stat().st_size // 3])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    for bad in (truncated, garbage):
        with pytest.raises(ModelError):
            Detector(bad)
        line = _one_error_line(_cli("eval", str(bad), "--data", str(data), "--split", "train"))
        assert "cannot load ONNX model" in line


def test_model_with_unexpected_outputs_fails_clearly(tmp_path, exported):
    import onnx
    from onnx import TensorProto, helper

    _, data, _, _ = exported
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 64, 64])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.metadata_props.add(key="names", value="{0: 'insulator', 1: 'defect', 2: 'bird_nest'}")
    model.metadata_props.add(key="imgsz", value="[64, 64]")
    path = tmp_path / "identity.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="expected one"):
        Detector(path)
    assert "expected one" in _one_error_line(_cli("eval", str(path), "--data", str(data), "--split", "train"))


def _labelled_copy(data: Path, out: Path, names: list[str], keep: set[int], splits: dict) -> Path:
    """A dataset over copies of `data`'s train images, with only the boxes of classes `keep` and
    the class list `names`; `splits` as data.yaml gives them (folders, lists, .txt files)."""
    import shutil

    import yaml

    src = YoloDataset.open(data)
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    for img in src.images("train"):
        shutil.copyfile(img, out / "images" / img.name)
        lines = (data.parent / "labels" / "train" / f"{img.stem}.txt").read_text().splitlines()
        (out / "labels" / f"{img.stem}.txt").write_text(
            "".join(f"{line}\n" for line in lines if line.strip() and int(line.split()[0]) in keep))
    (out / "data.yaml").write_text(yaml.safe_dump({**splits, "names": dict(enumerate(names))}))
    return out / "data.yaml"


def test_a_two_class_set_against_the_three_class_model_is_scored_by_name(exported, tmp_path):
    _, data, fp32, _ = exported
    three = _labelled_copy(data, tmp_path / "three", ["insulator", "defect", "bird_nest"], {0, 1}, {"val": "images"})
    two = _labelled_copy(data, tmp_path / "two", ["insulator", "defect"], {0, 1}, {"val": "images"})
    a, b = evaluate(fp32.onnx, three, "val", progress=False), evaluate(fp32.onnx, two, "val", progress=False)
    assert a.per_class == b.per_class and a.pr_per_class == b.pr_per_class and a.map50 == b.map50
    assert set(b.per_class) <= {"insulator", "defect"} and "bird_nest" in b.not_in_data and not b.not_in_model
    result, *_ = exported
    pt = evaluate(result.last, two, "val", imgsz=160, progress=False)  # the same matching for .pt weights
    assert set(pt.per_class) == set(b.per_class) and pt.not_in_data == b.not_in_data


def test_a_data_class_the_model_lacks_is_reported_and_left_out_of_the_mean(exported, tmp_path):
    _, data, fp32, _ = exported
    other = _labelled_copy(data, tmp_path / "other", ["insulator", "defect", "damper"], {0, 1, 2},
                           {"train": "images"})
    out = _cli("eval", str(fp32.onnx), "--data", str(other), "--split", "train", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    damper_boxes = sum(1 for p in (tmp_path / "other" / "labels").glob("*.txt")
                       for line in p.read_text().splitlines() if line.startswith("2 "))
    assert damper_boxes and doc["not_in_model"] == {"damper": damper_boxes}
    assert "damper" not in doc["per_class"] and doc["scored_classes"] == list(doc["per_class"])
    assert doc["map50"] == pytest.approx(np.mean([v["map50"] for v in doc["per_class"].values()]), abs=1e-4)
    assert "damper" in out.stdout and "not a class of the model" in out.stdout
    mapped = _cli("eval", str(fp32.onnx), "--data", str(other), "--split", "train", "--json", "--map",
                  "damper=bird_nest")
    assert "bird_nest" in json.loads(mapped.stdout.strip().splitlines()[-1])["scored_classes"] + \
        json.loads(mapped.stdout.strip().splitlines()[-1])["not_in_data"]
    none = _labelled_copy(data, tmp_path / "none", ["a", "b", "c"], {0}, {"train": "images"})
    assert "no class of the data" in _one_error_line(_cli("eval", str(fp32.onnx), "--data", str(none), "--split",
                                                          "train"))


def test_list_and_txt_splits_are_read_as_ultralytics_reads_them(exported, tmp_path):
    _, data, fp32, _ = exported
    folder = _labelled_copy(data, tmp_path / "f", ["insulator", "defect", "bird_nest"], {0, 1, 2},
                            {"val": "images"})
    images = sorted((tmp_path / "f" / "images").glob("*.jpg"))
    half = len(images) // 2
    (tmp_path / "f" / "a.txt").write_text("".join(f"./images/{p.name}\n" for p in images[:half]))
    (tmp_path / "f" / "b.txt").write_text("# the rest, relative to the dataset root and absolute\n" + "".join(
        f"images/{p.name}\n" if i % 2 else f"{p}\n" for i, p in enumerate(images[half:])))
    text = folder.read_text()
    (tmp_path / "f" / "lists.yaml").write_text(text.replace("val: images", "val: [a.txt, b.txt]"))
    (tmp_path / "f" / "nested.yaml").write_text(text.replace("val: images", "val: [images]\ntrain: images"))
    ref = evaluate(fp32.onnx, folder, "val", progress=False)
    for variant in ("lists.yaml", "nested.yaml"):
        ds = YoloDataset.open(tmp_path / "f" / variant)
        assert sorted(ds.images("val")) == images
        got = evaluate(fp32.onnx, tmp_path / "f" / variant, "val", progress=False)
        assert got.per_class == ref.per_class and got.images == ref.images == len(images)
    assert YoloDataset.open(tmp_path / "f" / "nested.yaml").distinct_splits() == ["train"]  # one folder, once


def test_pli_eval_split_val_on_a_synthetic_flight_folder(exported, flight):
    _, _, fp32, _ = exported
    out = _cli("eval", str(fp32.onnx), "--data", str(flight.out / "data.yaml"), "--split", "val", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["images"] == flight.frames and doc["scored_classes"]
    missing = _cli("eval", str(fp32.onnx), "--data", str(flight.out / "data.yaml"), "--split", "test")
    assert "no 'test' split" in _one_error_line(missing)


def test_an_interrupted_run_resumes_from_its_kept_checkpoint(tiny_model, tmp_path):
    """A session that ends mid-training leaves a slim checkpoint; the next one continues it."""
    import torch

    from training.train import train

    _, data = tiny_model
    kept = tmp_path / "kept-last.pt"

    def cut(trainer):
        if trainer.epoch == 0:
            raise KeyboardInterrupt  # the session ends after the first epoch was saved

    with pytest.raises(KeyboardInterrupt):
        train(data, "yolov8n.yaml", imgsz=96, epochs=3, batch=8, project=tmp_path / "runs", name="r", val=False,
              keep_last=kept, callbacks={"on_model_save": cut})
    ckpt = torch.load(kept, map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 0 and ckpt["optimizer"]["state"] == {}
    assert kept.stat().st_size < 0.5 * (tmp_path / "runs/r/weights/last.pt").stat().st_size
    result = train(data, resume=kept, keep_last=kept)
    assert result.run_dir == tmp_path / "runs/r"  # the same run folder, continued
    rows = (result.run_dir / "results.csv").read_text().strip().splitlines()
    assert [int(float(r.split(",")[0])) for r in rows[1:]] == [1, 2, 3]
    # A finished run cannot be resumed: refused, not silently retrained from scratch.
    with pytest.raises(ValueError, match="not a resumable checkpoint"):
        train(data, resume=result.last)


def test_dfl_rewrite_keeps_the_outputs_and_drops_the_middle_axis_softmax(tiny_model, tmp_path):
    """The export's DFL rewrite (softmax on the last axis, for CPU speed) changes no number."""
    import shutil

    import onnx
    import onnxruntime as ort

    from training.export import dfl_on_last_axis
    from training.yolo import ultralytics

    result, _ = tiny_model
    shutil.copyfile(result.last, tmp_path / "w.pt")
    raw = Path(ultralytics().YOLO(str(tmp_path / "w.pt")).export(format="onnx", imgsz=160, verbose=False))
    fast = tmp_path / "fast.onnx"
    shutil.copyfile(raw, fast)
    assert dfl_on_last_axis(fast) is True
    assert dfl_on_last_axis(fast) is False  # the pattern is gone: a second pass leaves the file alone
    softmax_axes = [a.i for n in onnx.load(str(fast)).graph.node if n.op_type == "Softmax" for a in n.attribute]
    assert softmax_axes == [-1]
    x = np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32)
    before, after = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
                     for p in (raw, fast))
    assert before.shape == after.shape
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-4)


def test_a_run_from_a_checkpoint_records_its_init_in_the_weights_and_the_card(tiny_model, tmp_path):
    """Training from weights (here the tiny model, standing in for the COCO checkpoint) writes the
    start's sha256 into every checkpoint, a resume keeps it, and the exported card carries it."""
    import hashlib

    import torch

    from training.train import INIT_KEY, train

    start, data = tiny_model
    start_sha = hashlib.sha256(start.last.read_bytes()).hexdigest()
    kept = tmp_path / "kept.pt"

    def cut(trainer):
        if trainer.epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(data, str(start.last), imgsz=96, epochs=2, batch=8, project=tmp_path / "runs", name="r", val=False,
              keep_last=kept, callbacks={"on_model_save": cut})
    init = torch.load(kept, map_location="cpu", weights_only=False)[INIT_KEY]
    assert init["kind"] == "weights" and init["sha256"] == start_sha and init["path"] == str(start.last)
    assert init["classes"] == 3 and init["trained_from"] == {"kind": "scratch", "model": "yolov8n.yaml"}
    (tmp_path / "runs/r/results.csv").unlink()  # as in a fresh checkout: the curve comes back from beside `kept`
    result = train(data, resume=kept, keep_last=kept)
    assert len((result.run_dir / "results.csv").read_text().strip().splitlines()) == 1 + 2
    for weights in (result.best, result.last):
        assert torch.load(weights, map_location="cpu", weights_only=False)[INIT_KEY] == init
    card = export_model(result.last, tmp_path / "m.onnx", imgsz=96, version="t2").card_data.to_dict()
    assert card["training"]["init"] == init
    # A model trained from that one names it, and through it the first start.
    grand = train(data, str(result.last), imgsz=96, epochs=1, batch=8, project=tmp_path / "runs", name="g",
                  val=False)
    chain = torch.load(grand.last, map_location="cpu", weights_only=False)[INIT_KEY]
    assert chain["sha256"] == hashlib.sha256(result.last.read_bytes()).hexdigest()
    assert chain["trained_from"] == init


def test_a_foreign_checkpoint_is_described_by_what_it_says_of_itself(tiny_model, tmp_path):
    """A checkpoint the project did not train (as the shared COCO one): its ultralytics version, the
    data it names, and the first line of a README beside it."""
    import torch

    from training.train import INIT_KEY, describe_init

    start, data = tiny_model
    ckpt = torch.load(start.last, map_location="cpu", weights_only=False)
    del ckpt[INIT_KEY]
    (tmp_path / "coco").mkdir()
    torch.save(ckpt, tmp_path / "coco" / "foreign.pt")
    (tmp_path / "coco" / "README.md").write_text("# Someone's COCO weights\n\nmore\n")
    init = describe_init(tmp_path / "coco" / "foreign.pt")
    assert init["data"] == data.name and init["ultralytics"] == ckpt["version"] and init["classes"] == 3
    assert init["origin"] == "Someone's COCO weights" and "trained_from" not in init
    with pytest.raises(ValueError, match="not an ultralytics checkpoint"):
        torch.save({"weights": [1, 2]}, tmp_path / "odd.pt")
        describe_init(tmp_path / "odd.pt")


def test_pli_train_refuses_a_missing_checkpoint_in_one_line(tiny_model, tmp_path):
    _, data = tiny_model
    missing = tmp_path / "nowhere" / "yolov8n-coco.pt"
    r = subprocess.run([sys.executable, "-m", "pli", "train", "--data", str(data), "--model", str(missing),
                        "--project", str(tmp_path / "runs")], capture_output=True, text=True)
    assert r.returncode == 2 and not (tmp_path / "runs").exists()
    assert r.stderr.strip().splitlines()[-1] == f"pli: error: {missing}: no such checkpoint (give a .pt file that " \
        "exists, e.g. ../shared/pretrained/yolov8n-coco/yolov8n-coco.pt, or a model yaml to train from scratch)"


def test_int8_calibration_reads_every_folder_of_a_multi_folder_training_set(tmp_path):
    """B0 trains on CPLID and tile folders listed in one data.yaml: calibration (the release's
    default, its training data) must draw from both, not from a folder the yaml does not have."""
    from training.export import ImageCalibrationReader

    for part in ("cplid", "tiles"):
        (tmp_path / part / "images" / "train").mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(tmp_path / part / "images" / "train" / f"{part}{i}.jpg"),
                        np.full((40, 60, 3), 50 * i, np.uint8))
    data = tmp_path / "set.yaml"
    data.write_text("train: [cplid/images/train, tiles/images/train]\nval: cplid/images/train\nnames: {0: a}\n")
    reader = ImageCalibrationReader(data, "images", (64, 64), limit=64)
    assert sorted(p.parent.parent.parent.name for p in reader.paths) == ["cplid"] * 3 + ["tiles"] * 3
    batch = reader.get_next()
    assert batch["images"].shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="no calibration images"):
        ImageCalibrationReader(tmp_path / "cplid" / "labels", "images", (64, 64))
