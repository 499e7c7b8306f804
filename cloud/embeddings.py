"""Image embeddings for selection: the detector's own pooled features, cached per image and model.

The embedding of a photo is the global average of the detector's deepest feature map (YOLOv8's
SPPF output, 256 channels for the n scale), computed with the PyTorch weights in the cloud, so
the drone's ONNX files stay as they are. Images the model sees alike land close together, which
is what k-center needs. Vectors are cached under `<PLI_CLOUD_DIR>/embeddings/<weights sha256
prefix>/<image sha256>.npy`: a photo is embedded once per model.
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


def embed(weights: Path, images: list[Path], cache: Path | None = None, batch: int = 8, imgsz: int = 640,
          progress: bool = True) -> np.ndarray:
    """(N, C) embeddings of the images, in order, through the cache when given."""
    embedder = Embedder(weights, imgsz)
    folder = Path(cache) / embedder.tag if cache is not None else None
    out: list[np.ndarray | None] = [None] * len(images)
    todo: list[tuple[int, str]] = []
    for i, p in enumerate(images):
        sha = _sha(p)
        f = folder / f"{sha}.npy" if folder is not None else None
        if f is not None and f.exists():
            out[i] = np.load(f)
        else:
            todo.append((i, sha))
    for start in tqdm(range(0, len(todo), batch), desc="embeddings", unit="batch", disable=not progress):
        chunk = todo[start:start + batch]
        ims = []
        for i, _ in chunk:
            im = cv2.imread(str(images[i]))
            if im is None:
                raise ValueError(f"{images[i]}: not a readable image")
            ims.append(im)
        vecs = embedder(ims)
        for (i, sha), v in zip(chunk, vecs, strict=True):
            out[i] = v
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f".{sha}.tmp.npy"
                np.save(tmp, v)
                tmp.replace(folder / f"{sha}.npy")
    return np.stack(out) if out else np.zeros((0, 0), np.float32)
