"""The ONNX detector the drone runs: onnxruntime session, letterbox, decode, NMS.

Evaluation of ONNX models goes through this same class, so the figures are the drone's.
Pre- and post-processing follow ultralytics' own (centred letterbox padded with 114, per-axis
gain when mapping back, max-class score per anchor, class-aware NMS) so that both agree box
for box on the same model.
"""

from __future__ import annotations

import ast
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.detections import Detections

log = logging.getLogger(__name__)
PAD_VALUE = 114
MAX_WH = 7680  # class offset for class-aware NMS in one pass (larger than any image side)


DEFAULT_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def resolve_providers(wanted: Sequence[str] | None = None, trt_cache: str | Path | None = None) -> list:
    """The wanted providers that this onnxruntime build has, in order, with TensorRT in FP16
    and an engine cache (building engines takes minutes on a Jetson: do it once). One log
    line names those that are missing; CPU is always the last resort."""
    import onnxruntime as ort

    wanted = list(wanted or DEFAULT_PROVIDERS)
    available = set(ort.get_available_providers())
    missing = [p for p in wanted if p not in available]
    chosen: list = [p for p in wanted if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    if missing:
        log.info("execution providers not available here: %s; using %s", ", ".join(missing), ", ".join(chosen))
    out: list = []
    for p in chosen:
        if p == "TensorrtExecutionProvider":
            cache = Path(trt_cache or Path.home() / ".cache" / "pli" / "trt")
            cache.mkdir(parents=True, exist_ok=True)
            out.append((p, {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                            "trt_engine_cache_path": str(cache)}))
        else:
            out.append(p)
    return out


class ModelError(ValueError):
    """The file is not a usable detector (corrupt, truncated, or unexpected inputs/outputs)."""


@dataclass(frozen=True)
class ModelInfo:
    names: list[str]
    imgsz: tuple[int, int]  # (height, width)
    stride: int
    conf: float  # operating confidence threshold
    layout: str  # "raw": (B, 4+nc, N); "nms": (B, N, 6) = x1, y1, x2, y2, score, class
    dynamic_batch: bool
    metadata: dict[str, str]


@dataclass(frozen=True)
class Letterbox:
    gain: tuple[float, float]  # (x, y)
    pad: tuple[int, int]  # (x, y)


def _fit(shape: tuple[int, ...], size: tuple[int, int]) -> tuple[int, int, int, int, int, int]:
    """(new_w, new_h, top, bottom, left, right) of a centred letterbox of `shape` into `size` (h, w)."""
    h, w = shape[:2]
    r = min(size[0] / h, size[1] / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (size[1] - new_w) / 2, (size[0] - new_h) / 2
    return new_w, new_h, round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1)


def resize(image: np.ndarray, new_w: int, new_h: int) -> np.ndarray:
    """ultralytics' bilinear resize (cv2.INTER_LINEAR), pixel for pixel. At an exact odd factor on
    both axes (1080p to 640x360: 3) every bilinear sample falls on a source pixel's centre, so
    the nearest pixel centre is the same value, read from a third of the rows: about 0.6 ms less a
    1080p frame fresh from the camera (tests/edge/test_detector.py holds the two equal)."""
    h, w = image.shape[:2]
    if (new_w, new_h) == (w, h):
        return image
    f = w // new_w
    exact_odd = f > 1 and f % 2 == 1 and w == f * new_w and h == f * new_h
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_NEAREST_EXACT if exact_odd else cv2.INTER_LINEAR)


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and pad to `size` (h, w), centred, as ultralytics does."""
    h, w = image.shape[:2]
    new_w, new_h, top, bottom, left, right = _fit(image.shape, size)
    image = resize(image, new_w, new_h)
    out = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return out, Letterbox((new_w / w, new_h / h), (left, top))


SCALE = np.float32(1 / 255)


def to_tensor(images: Sequence[np.ndarray]) -> np.ndarray:
    """BGR HWC uint8 images of one size -> RGB NCHW float32 in [0, 1]."""
    out = np.empty((len(images), 3, *images[0].shape[:2]), np.float32)
    for i, im in enumerate(images):  # one pass per image into the tensor: no stacked or float copies
        np.multiply(im.transpose(2, 0, 1)[::-1], SCALE, out=out[i], dtype=np.float32)
    return out


def letterbox_tensor(images: Sequence[np.ndarray], size: tuple[int, int]) -> tuple[np.ndarray, list[Letterbox]]:
    """`to_tensor` of each image's `letterbox`, the same values, written straight into the tensor:
    no padded copy, and each channel scaled from a contiguous plane (the strided transpose of
    `to_tensor` cost half a millisecond more on a 1080p frame fresh from the camera)."""
    out = np.empty((len(images), 3, *size), np.float32)
    pad = np.float32(PAD_VALUE) * SCALE
    boxes = []
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a BGR image (h, w, 3), got shape {image.shape}")
        h, w = image.shape[:2]
        new_w, new_h, top, _, left, _ = _fit(image.shape, size)
        image = resize(image, new_w, new_h)
        o = out[i]
        o[:, :top], o[:, top + new_h:] = pad, pad
        o[:, top:top + new_h, :left], o[:, top:top + new_h, left + new_w:] = pad, pad
        for c, plane in enumerate(reversed(cv2.split(image))):  # BGR -> RGB
            np.multiply(plane, SCALE, out=o[c, top:top + new_h, left:left + new_w], dtype=np.float32)
        boxes.append(Letterbox((new_w / w, new_h / h), (left, top)))
    return out, boxes


def nms(xyxy: np.ndarray, scores: np.ndarray, class_id: np.ndarray, iou: float, max_det: int = 300) -> np.ndarray:
    """Class-aware NMS in one pass (boxes offset per class); indices kept, best first."""
    if len(xyxy) == 0:
        return np.zeros(0, dtype=np.int64)
    off = xyxy + (class_id.astype(np.float32) * MAX_WH)[:, None]
    # No top_k: OpenCV applies it to the candidates before suppression, ultralytics after.
    keep = cv2.dnn.NMSBoxes(np.concatenate([off[:, :2], off[:, 2:] - off[:, :2]], axis=1).tolist(),
                            scores.tolist(), 0.0, iou)
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")][:max_det]


def _parse_meta(meta: dict[str, str], path: Path) -> tuple[list[str], tuple[int, int], int, float]:
    try:
        names_raw = ast.literal_eval(meta["names"])
        names = [names_raw[k] for k in sorted(names_raw)] if isinstance(names_raw, dict) else list(names_raw)
        imgsz = ast.literal_eval(meta.get("imgsz", "[640, 640]"))
        imgsz = (int(imgsz[0]), int(imgsz[1])) if isinstance(imgsz, list | tuple) else (int(imgsz), int(imgsz))
        stride = int(float(meta.get("stride", 32)))
        conf = float(meta.get("conf", 0.25))
    except (KeyError, ValueError, SyntaxError, TypeError) as exc:
        raise ModelError(f"{path}: model metadata lacks class names or input size ({exc})") from None
    return names, imgsz, stride, conf


class Detector:
    """One loaded model. Not thread-safe; create one per worker."""

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None, threads: int | None = None,
                 conf: float | None = None, iou: float = 0.7, max_det: int = 300, trt_cache: str | Path | None = None,
                 rect: bool | None = None, max_batch: int | None = None):
        """rect: letterbox to the smallest stride multiple instead of the full square (a 16:9 frame
        becomes 640x384, 40 % fewer pixels), as ultralytics' predict does; needs a model with
        dynamic height and width, and is the default for one.
        max_batch: images per session call in `detect_batch`. On the CPU provider one at a time is
        fastest (a batch of 48 tiles ran 1.4x slower than 48 single calls here: the activations
        fall out of cache); GPUs gain from batches (default 16 there)."""
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such model file")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts,
                                                providers=resolve_providers(providers, trt_cache))
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
            raise ModelError(f"{self.path}: cannot load ONNX model ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200]})") from None
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        names, imgsz, stride, default_conf = _parse_meta(meta, self.path)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelError(f"{self.path}: expected one NCHW image input, got {[i.shape for i in inputs]}")
        if len(outputs) != 1 or len(outputs[0].shape) != 3:
            raise ModelError(f"{self.path}: expected one (batch, ., .) output, got {[o.shape for o in outputs]}")
        shape = outputs[0].shape
        nc = len(names)
        if shape[1] == 4 + nc:
            layout = "raw"
        elif shape[2] == 6:
            layout = "nms"
        else:
            raise ModelError(f"{self.path}: output shape {shape} is neither (B, 4+{nc}, N) nor (B, N, 6)")
        self.input_name = inputs[0].name
        self.info = ModelInfo(names, imgsz, stride, default_conf if conf is None else conf, layout,
                              not isinstance(inputs[0].shape[0], int), meta)
        self.iou, self.max_det = iou, max_det
        dynamic_hw = not all(isinstance(d, int) for d in inputs[0].shape[2:])
        if rect and not dynamic_hw:
            raise ModelError(f"{self.path}: rectangular input needs a model with dynamic height and width")
        self.rect = dynamic_hw if rect is None else rect
        on_cpu = self.session.get_providers()[0] == "CPUExecutionProvider"
        self.max_batch = max(1, max_batch or (1 if on_cpu else 16)) if self.info.dynamic_batch else 1

    @property
    def names(self) -> list[str]:
        return self.info.names

    def input_size(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(h, w) the image of this shape is letterboxed to."""
        if not self.rect:
            return self.info.imgsz
        (h, w), (th, tw), s = shape[:2], self.info.imgsz, self.info.stride
        r = min(th / h, tw / w)
        nh, nw = max(round(h * r), 1), max(round(w * r), 1)
        return nh + (th - nh) % s, nw + (tw - nw) % s

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[Letterbox]]:
        sizes = {self.input_size(im.shape) for im in images}
        size = sizes.pop() if len(sizes) == 1 else self.info.imgsz  # one batch, one size
        return letterbox_tensor(images, size)

    def run(self, tensor: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: tensor})[0]

    def postprocess(self, output: np.ndarray, boxes: Sequence[Letterbox], shapes: Sequence[tuple[int, int]],
                    conf: float | None = None) -> list[Detections]:
        conf = self.info.conf if conf is None else conf
        return [self._decode(output[i], boxes[i], shapes[i], conf) for i in range(len(boxes))]

    def _decode(self, pred: np.ndarray, lb: Letterbox, shape: tuple[int, int], conf: float) -> Detections:
        if self.info.layout == "raw":
            scores = pred[4:]  # (nc, N): the best class of the anchors past the threshold only
            score = scores.max(axis=0)
            keep = np.flatnonzero(score > conf)
            cxcywh, score, cls = pred[:4, keep].T, score[keep], scores[:, keep].argmax(axis=0)
            xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
            idx = nms(xyxy, score, cls, self.iou, self.max_det)
            xyxy, score, cls = xyxy[idx], score[idx], cls[idx]
        else:
            keep = pred[:, 4] > conf
            xyxy, score, cls = pred[keep, :4], pred[keep, 4], pred[keep, 5].astype(np.int64)
        xyxy = (xyxy - np.array([*lb.pad, *lb.pad], np.float32)) / np.array([*lb.gain, *lb.gain], np.float32)
        h, w = shape
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
        return Detections(xyxy, score, cls, self.names)

    def __call__(self, image: np.ndarray, conf: float | None = None) -> Detections:
        tensor, boxes = self.preprocess([image])
        return self.postprocess(self.run(tensor), boxes, [image.shape[:2]], conf)[0]

    def detect_batch(self, images: Sequence[np.ndarray], conf: float | None = None) -> list[Detections]:
        """Session calls of up to `max_batch` images (1 for a model without a dynamic batch)."""
        out: list[Detections] = []
        for i in range(0, len(images), self.max_batch):
            chunk = images[i:i + self.max_batch]
            tensor, boxes = self.preprocess(chunk)
            out += self.postprocess(self.run(tensor), boxes, [im.shape[:2] for im in chunk], conf)
        return out


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (model files are tens of MB)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
