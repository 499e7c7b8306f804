"""Image embeddings for selection: the detector's own pooled features, cached per image and model.

The embedding of a photo is the global average of the detector's deepest feature map (YOLOv8's
SPPF output, 256 channels for the n scale), computed with the PyTorch weights in the cloud, so
the drone's ONNX files stay as they are. Images the model sees alike land close together, which
is what k-center needs. Vectors are cached under `<PLI_CLOUD_DIR>/embeddings/<weights sha256
prefix>/<image sha256>.npy`: a photo is embedded once per model.

`embed_crops` embeds the regions around given boxes instead (the `crops` strategy): each box
widened by a margin to a square, letterboxed alone, its vector the same pooled features; a
photo's vector is the mean of its crops' (unit length first, so a large crop does not outweigh
the rest), or its whole-photo vector when it has no box. Cached too, under `crops/`, keyed by the
photo and its boxes, so a campaign's second `crops` selection pays only the scan (no photo is
even decoded).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge.detector import file_sha256, letterbox, to_tensor
from training.yolo import ultralytics


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Embedder:
    def __init__(self, weights: Path, imgsz: int = 640, layer: int | None = None):
        import torch

        self.torch = torch
        yolo = ultralytics().YOLO(str(weights))
        self.model = yolo.model.float().eval()
        self.imgsz = imgsz
        blocks = self.model.model
        # The deepest feature map before the neck: SPPF in YOLOv8 / YOLO11 (index 9), else the last
        # block before the first upsample.
        if layer is None:
            layer = next((i for i, m in enumerate(blocks) if type(m).__name__ == "SPPF"), 9)
        self.layer = layer
        self.tag = file_sha256(Path(weights))[:16]
        self._out = None
        blocks[layer].register_forward_hook(lambda _m, _i, out: setattr(self, "_out", out))

    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        batch = to_tensor([letterbox(im, (self.imgsz, self.imgsz))[0] for im in images])
        with self.torch.no_grad():
            self.model(self.torch.from_numpy(batch))
        return self._out.mean(dim=(2, 3)).cpu().numpy().astype(np.float32)


def _cached(folder: Path | None, key: str) -> np.ndarray | None:
    f = folder / f"{key}.npy" if folder is not None else None
    return np.load(f) if f is not None and f.exists() else None


def _keep(folder: Path | None, key: str, v: np.ndarray) -> None:
    if folder is not None:  # written whole, then renamed: a killed run leaves no half vector
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.tmp.npy"
        np.save(tmp, v)
        tmp.replace(folder / f"{key}.npy")


def _read(path: Path) -> np.ndarray:
    im = cv2.imread(str(path))
    if im is None:
        raise ValueError(f"{path}: not a readable image")
    return im


def embed(weights: Path, images: list[Path], cache: Path | None = None, batch: int = 8, imgsz: int = 640,
          progress: bool = True) -> np.ndarray:
    """(N, C) embeddings of the images, in order, through the cache when given."""
    embedder = Embedder(weights, imgsz)
    folder = Path(cache) / embedder.tag if cache is not None else None
    out: list[np.ndarray | None] = [None] * len(images)
    todo: list[tuple[int, str]] = []
    for i, p in enumerate(images):
        sha = _sha(p)
        out[i] = _cached(folder, sha)
        if out[i] is None:
            todo.append((i, sha))
    for start in tqdm(range(0, len(todo), batch), desc="embeddings", unit="batch", disable=not progress):
        chunk = todo[start:start + batch]
        vecs = embedder([_read(images[i]) for i, _ in chunk])
        for (i, sha), v in zip(chunk, vecs, strict=True):
            out[i] = v
            _keep(folder, sha, v)
    return np.stack(out) if out else np.zeros((0, 0), np.float32)


def crop_regions(xyxy: np.ndarray, shape: tuple[int, int], margin: float = 0.25, min_side: int = 32) -> np.ndarray:
    """(K, 4) int pixel squares around the boxes, each side the box's longer side widened by
    `margin` on both ends (at least `min_side`), moved inside the photo where it can be."""
    h, w = shape
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    side = np.maximum(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * (1 + 2 * margin), min_side)
    side = np.minimum(side, min(h, w))
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    x0 = np.clip(cx - side / 2, 0, w - side)
    y0 = np.clip(cy - side / 2, 0, h - side)
    return np.stack([x0, y0, x0 + side, y0 + side], 1).round().astype(np.int64)


def embed_crops(weights: Path, images: list[Path], boxes: list[np.ndarray], cache: Path | None = None,
                imgsz: int = 320, max_crops: int = 8, margin: float = 0.25, batch: int = 16,
                progress: bool = True) -> np.ndarray:
    """(N, C) per photo: the mean unit embedding of the crops around its `boxes` (the first
    `max_crops`, callers pass them most confident first); the whole photo's when it has none.
    Through the cache when given, keyed by the photo, its boxes, the margin and the input size."""
    if len(boxes) != len(images):
        raise ValueError(f"{len(images)} images but {len(boxes)} box lists")
    embedder = Embedder(weights, imgsz)
    folder = Path(cache) / embedder.tag / "crops" if cache is not None else None
    out: list[np.ndarray] = []
    for path, xyxy in tqdm(list(zip(images, boxes, strict=True)), desc="crop embeddings", unit="photo",
                           disable=not progress):
        data = Path(path).read_bytes()  # read once: hashed for the key, decoded only on a miss
        boxes_used = np.asarray(xyxy, "<f8").reshape(-1, 4)[:max_crops]
        key = hashlib.sha256(f"{hashlib.sha256(data).hexdigest()} {imgsz} {margin} ".encode()
                             + boxes_used.tobytes()).hexdigest()
        v = _cached(folder, key)
        if v is None:
            im = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if im is None:
                raise ValueError(f"{path}: not a readable image")
            regions = crop_regions(boxes_used, im.shape[:2], margin)
            crops = [im[y0:y1, x0:x1] for x0, y0, x1, y1 in regions] or [im]
            vecs = np.concatenate([embedder(crops[i:i + batch]) for i in range(0, len(crops), batch)])
            vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
            v = vecs.mean(0)
            _keep(folder, key, v)
        out.append(v)
    return np.stack(out) if out else np.zeros((0, 0), np.float32)
