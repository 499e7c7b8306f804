"""`pli export`: ONNX through ultralytics, optional INT8 (static QDQ, per channel), model card.

Every exported file carries in its ONNX metadata what the drone needs to run it without the
training side (class names, input size, stride, operating threshold) and the sha256 of the
weights it came from; the model card JSON beside it adds the ONNX file's own sha256, metrics
and the training data, so the edge can verify a file before swapping it in.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from edge.detector import Detector, file_sha256, letterbox, to_tensor
from edge.model_card import ModelCard
from training.dataset import IMAGE_SUFFIXES
from training.evaluate import evaluate
from training.train import INIT_KEY
from training.yolo import ultralytics

log = logging.getLogger(__name__)
DEFAULT_CONF = 0.25


@dataclass
class ExportResult:
    onnx: Path
    card: Path
    card_data: ModelCard


def _checkpoint_info(weights: Path) -> dict:
    import torch

    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    args = ckpt.get("train_args") or {}
    metrics = {k: round(float(v), 4) for k, v in (ckpt.get("train_metrics") or {}).items()
               if isinstance(v, int | float)}
    return {"epochs": args.get("epochs"), "data": str(args.get("data", "")), "model": str(args.get("model", "")),
            "imgsz": args.get("imgsz"), "init": ckpt.get(INIT_KEY), "metrics": metrics}


def _score(model: Path, evals: dict[str, tuple[Path, str]]) -> dict[str, dict]:
    scores = {}
    for name, (data, split) in evals.items():
        r = evaluate(model, data, split).to_json()
        scores[name] = {"data": str(data), "split": split, **r}
        log.info("%s on %s: mAP50 %.4f, mAP50-95 %.4f", model.name, name, r["map50"], r["map50_95"])
    return scores


def dfl_on_last_axis(path: Path) -> bool:
    """Rewrite the head's DFL so its softmax runs over the last axis; same outputs, faster.

    ultralytics exports DFL as Reshape(b,4,16,a) -> Transpose(0,2,1,3) -> Softmax(axis=1) ->
    1x1 Conv with weights 0..15. onnxruntime's CPU softmax over a middle axis is slow (16 % of
    an INT8 model's time here); Transpose(0,1,3,2) -> Softmax(-1) -> MatMul by the same
    weights gives identical numbers. Returns False (file untouched) when the pattern is absent.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    softmax = next((n for n in g.node if n.op_type == "Softmax" and n.name.endswith("/dfl/Softmax")), None)
    if softmax is None:
        return False
    transpose = next((n for n in g.node if softmax.input[0] in n.output), None)
    conv = next((n for n in g.node if softmax.output[0] in n.input), None)
    perm = [a for a in transpose.attribute if a.name == "perm"] if transpose is not None else []
    if conv is None or conv.op_type != "Conv" or not perm or list(perm[0].ints) != [0, 2, 1, 3]:
        return False
    weights = next(i for i in g.initializer if i.name == conv.input[1])
    bins = numpy_helper.to_array(weights).reshape(-1, 1).astype(np.float32)
    perm[0].CopyFrom(helper.make_attribute("perm", [0, 1, 3, 2]))
    for a in softmax.attribute:
        if a.name == "axis":
            a.CopyFrom(helper.make_attribute("axis", -1))
    g.initializer.remove(weights)
    g.initializer.append(numpy_helper.from_array(bins, weights.name))
    matmul = helper.make_node("MatMul", [softmax.output[0], weights.name], list(conv.output),
                              name=conv.name.replace("conv/Conv", "MatMul"))
    at = list(g.node).index(conv)
    g.node.remove(conv)
    g.node.insert(at, matmul)
    stale = {transpose.output[0], softmax.output[0], conv.output[0]}  # shapes changed: let them be inferred
    kept = [v for v in g.value_info if v.name not in stale]
    del g.value_info[:]
    g.value_info.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return True


def set_metadata(path: Path, extra: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props.update(extra)
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=str(v))
    onnx.save(model, str(path))


class ImageCalibrationReader:
    """Real images from a folder, or from a data.yaml's train split (every source of a multi-folder
    set, so calibration sees each part of the training data), letterboxed as the detector will."""

    def __init__(self, folder: Path, input_name: str, imgsz: tuple[int, int], limit: int = 64):
        if Path(folder).suffix in (".yaml", ".yml"):
            from training.dataset import YoloDataset

            paths = sorted(YoloDataset.open(Path(folder)).images("train"))
        else:
            paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise ValueError(f"{folder}: no calibration images found")
        step = max(1, len(paths) // limit)
        self.paths = paths[::step][:limit]
        self.input_name, self.imgsz = input_name, imgsz
        self._it: Iterator[Path] | None = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = iter(self.paths)
        for path in self._it:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("%s: unreadable calibration image; skipped", path)
                continue
            return {self.input_name: to_tensor([letterbox(image, self.imgsz)[0]])}
        return None

    def rewind(self) -> None:
        self._it = None


def head_nodes(onnx_path: Path, convs: bool) -> list[str]:
    """Nodes of the detection head (the last `/model.N/` block) to keep in FP32.

    Always its decode (DFL, box arithmetic, sigmoid and the final Concat): that Concat joins
    pixel coordinates (0..imgsz) with class probabilities (0..1), and one 8-bit scale over
    both rounds every probability to zero. With `convs`, also the head's conv branches.
    """
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    index = [int(m.group(1)) for n in graph.node if (m := re.match(r"^/model\.(\d+)/", n.name))]
    if not index:
        return []
    head = f"/model.{max(index)}/"
    branch = (f"{head}cv2.", f"{head}cv3.", f"{head}one2one_cv2.", f"{head}one2one_cv3.")
    return [n.name for n in graph.node
            if (n.name.startswith(head) and (convs or not n.name.startswith(branch)))
            or not n.name.startswith("/model.")]


def quantize_int8(fp32: Path, out: Path, calib: Path, keep_head_fp32: bool = False, limit: int = 64) -> dict:
    """Static INT8, QDQ format, per-channel weights, calibrated on real images (MinMax)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    det = Detector(fp32)
    reader = ImageCalibrationReader(calib, det.input_name, det.info.imgsz, limit)
    prepped = out.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32), str(prepped), skip_symbolic_shape=True)
    exclude = head_nodes(prepped, convs=keep_head_fp32)
    try:
        quantize_static(str(prepped), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude)
    finally:
        prepped.unlink(missing_ok=True)
    return {"format": "QDQ", "per_channel": True, "activations": "uint8", "weights": "int8",
            "calibration_images": len(reader.paths), "calibration_dir": str(calib),
            "fp32_nodes": len(exclude)}


def export_model(weights: Path, out: Path, imgsz: int = 640, dynamic_batch: bool = False, conf: float = DEFAULT_CONF,
                 int8: bool = False, calib: Path | None = None, keep_head_fp32: bool = False,
                 version: str | None = None, evals: dict[str, tuple[Path, str]] | None = None,
                 training_data: str | None = None) -> ExportResult:
    """evals: name -> (data.yaml, split) scored on the exported file itself (`pli eval`), for the
    card's metrics: a checkpoint's own figures come from whatever val set training watched.
    training_data: a human summary of what it was trained on, for the card."""
    weights, out = Path(weights), Path(out)
    if not weights.exists():
        raise FileNotFoundError(f"{weights}: no such weights file")
    if int8 and calib is None:
        raise ValueError("--int8 needs --calib DIR (real images to calibrate on)")
    out.parent.mkdir(parents=True, exist_ok=True)
    YOLO = ultralytics().YOLO
    # ultralytics writes its ONNX beside the weights: export from a scratch copy instead.
    scratch = Path(tempfile.mkdtemp(prefix="pli-export-"))
    copy = scratch / weights.name
    shutil.copyfile(weights, copy)
    exported = Path(YOLO(str(copy)).export(format="onnx", imgsz=imgsz, dynamic=dynamic_batch, simplify=True,
                                           batch=1, verbose=False))
    if dfl_on_last_axis(exported):
        log.info("DFL softmax moved to the last axis (identical outputs, faster on CPU)")
    source_sha = file_sha256(weights)
    meta = {"conf": f"{conf}", "source_sha256": source_sha, "exporter": "pli"}
    quant = None
    if int8:
        set_metadata(exported, meta)
        quant = quantize_int8(exported, out, calib, keep_head_fp32)
        meta["precision"] = "int8"
    else:
        shutil.move(exported, out)
        meta["precision"] = "fp32"
    shutil.rmtree(scratch, ignore_errors=True)
    set_metadata(out, meta)  # quantization drops metadata: (re)write it on the final file

    info = Detector(out).info  # proves the file loads and has the expected shape
    ckpt = _checkpoint_info(weights)
    card = ModelCard(
        version=version or datetime.now(UTC).strftime("%Y.%m.%d-%H%M"), file=out.name, sha256=file_sha256(out),
        precision=meta["precision"], classes=info.names, imgsz=list(info.imgsz), conf=conf,
        metrics={"training_val": ckpt["metrics"], **_score(out, evals or {})},
        extra={"stride": info.stride, "layout": info.layout, "dynamic_batch": info.dynamic_batch,
               "source_weights": {"file": weights.name, "sha256": source_sha},
               "training": {**{k: ckpt[k] for k in ("model", "data", "epochs", "imgsz", "init")},
                            **({"summary": training_data} if training_data else {})},
               "quantization": quant, "created": datetime.now(UTC).isoformat().replace("+00:00", "Z")})
    card_path = card.save(ModelCard.path_for(out))
    log.info("exported %s (%s) with model card %s", out, meta["precision"], card_path)
    return ExportResult(out, card_path, card)


def set_conf(onnx: Path, conf: float) -> ExportResult:
    """Give an exported model a new default threshold, in its metadata and its card (and the
    card's sha256 of the changed file), without exporting the weights again."""
    onnx = Path(onnx)
    card_path = ModelCard.path_for(onnx)
    card = ModelCard.load(card_path)
    set_metadata(onnx, {"conf": f"{conf}"})
    card = card.with_(conf=conf, sha256=file_sha256(onnx))
    card.save(card_path)
    return ExportResult(onnx, card_path, card)
