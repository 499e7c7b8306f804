"""PyTorch weights back from a fused ONNX export, with batch norm that trains.

An ultralytics export folds each batch norm into its convolution: the file keeps W′ and b′ with
BN(W′x) already applied. Loading W′ into the model with an *identity* batch norm (mean 0,
variance 1, γ = 1, β = b′) reproduces the outputs in eval mode, but training normalises each
channel by its batch statistics instead, so the first step feeds every layer inputs it has
never seen and the model collapses. Here each channel's mean m and variance v of W′x are
measured on real images, and the norm is set to running stats (m, v), γ = √(v + ε), β = m + b′:
eval mode gives W′x + b′ exactly, as before, and a training batch, normalised by statistics
close to (m, v), gives nearly the same: fine-tuning starts where the shipped model stands.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from edge.detector import letterbox, to_tensor

log = logging.getLogger(__name__)
MODES = ("measured", "identity")


def _initializers(onnx_path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return inits, {p.key: p.value for p in model.metadata_props}


def _images(paths: Iterable[Path], imgsz: int, batch: int = 8):
    chunk = []
    for p in paths:
        img = cv2.imread(str(p))
        if img is None:
            raise ValueError(f"{p}: not a readable image")
        chunk.append(letterbox(img, (imgsz, imgsz))[0])
        if len(chunk) == batch:
            yield to_tensor(chunk)
            chunk = []
    if chunk:
        yield to_tensor(chunk)


def rebuild(onnx_path: Path, images: list[Path], cfg: str = "yolov8n.yaml", mode: str = "measured",
            imgsz: int = 640):
    """The ultralytics DetectionModel of a fused export; `mode` "identity" is the naive rebuild
    (kept to show why it fails). Raises ValueError when a tensor of the file has no place in the
    model or shapes differ (another architecture)."""
    import torch
    from torch import nn
    from ultralytics.nn.modules import Conv
    from ultralytics.nn.tasks import DetectionModel

    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: one of {MODES}")
    inits, meta = _initializers(onnx_path)
    names = ast.literal_eval(meta.get("names", "{}"))
    model = DetectionModel(cfg, nc=len(names), verbose=False)
    model.names = names
    used: set[str] = set()

    def take(key: str, like: torch.Tensor) -> torch.Tensor:
        if key not in inits:
            raise ValueError(f"{onnx_path.name} has no {key}: not an export of {cfg}")
        t = torch.from_numpy(inits[key].copy()).float()
        if t.shape != like.shape:
            raise ValueError(f"{key}: {tuple(t.shape)} in the file, {tuple(like.shape)} in {cfg}")
        used.add(key)
        return t

    convs: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, Conv) and isinstance(mod.bn, nn.BatchNorm2d):
                mod.conv.weight.copy_(take(f"{name}.conv.weight", mod.conv.weight))
                bias = take(f"{name}.conv.bias", mod.bn.bias)
                bn = mod.bn  # identity first: eval output is W′x + b′ whatever the stats become
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
                bn.weight.fill_(1.0)
                bn.bias.copy_(bias)
                convs[name] = (mod, bias)
            elif isinstance(mod, nn.Conv2d) and mod.bias is not None and not name.endswith("dfl.conv"):
                mod.weight.copy_(take(f"{name}.weight", mod.weight))
                mod.bias.copy_(take(f"{name}.bias", mod.bias))
    left = [k for k, v in inits.items()
            if k.startswith("model.") and k not in used and not k.endswith("dfl.conv.weight") and v.ndim >= 1]
    if left:
        raise ValueError(f"{len(left)} tensors of {onnx_path.name} have no place in {cfg}: {left[:3]}")
    model.eval()
    if mode == "measured":
        if not images:
            raise ValueError("measuring batch-norm statistics needs images")
        _measure(model, convs, images, imgsz)
    model.args = {"imgsz": imgsz, "recovered_from": onnx_path.name, "bn": mode}
    return model


def _measure(model, convs: dict, images: list[Path], imgsz: int) -> None:
    """Per channel mean and variance of W′x (the conv output before its norm) over the images."""
    import torch

    sums = {n: [0.0, None, None] for n in convs}

    def hook(name):
        def f(_mod, _inp, out):
            x = out.detach().double()
            s = sums[name]
            s[0] += x.shape[0] * x.shape[2] * x.shape[3]
            s[1] = x.sum((0, 2, 3)) if s[1] is None else s[1] + x.sum((0, 2, 3))
            s[2] = (x * x).sum((0, 2, 3)) if s[2] is None else s[2] + (x * x).sum((0, 2, 3))
        return f

    handles = [mod.conv.register_forward_hook(hook(n)) for n, (mod, _) in convs.items()]
    try:
        with torch.no_grad():
            for batch in _images(images, imgsz):
                model(torch.from_numpy(batch))
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        for name, (mod, bias) in convs.items():
            n, s1, s2 = sums[name]
            m = s1 / n
            v = (s2 / n - m * m).clamp_min(0)
            bn = mod.bn
            bn.running_mean.copy_(m.float())
            bn.running_var.copy_(v.float())
            bn.weight.copy_(torch.sqrt(bn.running_var + bn.eps))
            bn.bias.copy_((m + bias.double()).float())
            _exact_fold(bn, bias)
    log.info("batch-norm statistics of %d convolutions measured on %d images", len(convs), len(images))


def _exact_fold(bn, bias) -> None:
    """Nudge γ and β by a few float32 steps so that folding them back (torch's
    `fuse_conv_bn_weights`, which ultralytics' export calls) gives W′ and b′ bit for bit: γ·√(v+ε)⁻¹
    rounds to exactly 1 and the folded bias to exactly b′. Without it a re-export drifts by
    rounding errors that 60 layers grow to ~1e-3 px."""
    import torch

    v = bn.running_var.detach().clone()
    g = bn.weight.detach().clone()
    for _ in range(16):  # a channel where no γ rounds to 1 gets its variance moved by one step
        r = torch.rsqrt(v + bn.eps)
        for _ in range(4):
            off = (g * r) != 1  # the fold multiplies W′ by γ·r
            g[off] = torch.nextafter(g[off], torch.where((g * r)[off] > 1, 0.0, 2.0 * g[off].abs() + 1))
        off = (g * r) != 1
        if not off.any():
            break
        v[off] = torch.nextafter(v[off], 2.0 * v[off] + 1)
        g[off] = torch.sqrt(v[off] + bn.eps)
    bn.running_var.copy_(v)
    r = torch.rsqrt(v + bn.eps)
    neg_m = (torch.zeros_like(bn.running_mean) - bn.running_mean) * r
    b = bn.bias.detach().clone()
    t = neg_m * g
    for _ in range(4):
        folded = t + b
        off = folded != bias
        b[off] = b[off] + (bias[off] - folded[off])
    bn.weight.copy_(g)
    bn.bias.copy_(b)


def save(model, out: Path, source: Path) -> Path:
    """An ultralytics checkpoint (float32: half precision would break the 1e-4 match) that
    `YOLO(out)` loads and `pli train --model out` fine-tunes."""
    import torch
    import ultralytics

    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {"model": model.float(), "ema": None, "optimizer": None, "epoch": -1, "best_fitness": None,
            "train_args": {"model": "yolov8n.yaml", "imgsz": model.args.get("imgsz", 640),
                           "data": f"recovered from {source.name}"},
            "date": datetime.now(UTC).isoformat(), "version": ultralytics.__version__,
            "recovered": {"from": source.name, "bn": model.args.get("bn")}}
    tmp = out.with_suffix(".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(out)
    return out


def max_difference(onnx_a: Path, onnx_b: Path, images: list[Path], imgsz: int = 640) -> dict[str, float]:
    """Largest absolute differences of two ONNX detectors' raw outputs on the images: class
    scores, and box coordinates in pixels (also as a fraction of the input size: float32 keeps
    about 7 digits, so a box edge near 600 px moves in steps of 6e-5 px)."""
    import onnxruntime as ort

    sa = ort.InferenceSession(str(onnx_a), providers=["CPUExecutionProvider"])
    sb = ort.InferenceSession(str(onnx_b), providers=["CPUExecutionProvider"])
    boxes = scores = 0.0
    for batch in _images(images, imgsz, batch=1):
        a = sa.run(None, {sa.get_inputs()[0].name: batch})[0]
        b = sb.run(None, {sb.get_inputs()[0].name: batch})[0]
        boxes = max(boxes, float(np.abs(a[:, :4] - b[:, :4]).max()))
        scores = max(scores, float(np.abs(a[:, 4:] - b[:, 4:]).max()))
    return {"scores": scores, "boxes_px": boxes, "boxes_rel": boxes / imgsz}


def train_mode_drift(model, images: list[Path], imgsz: int = 640) -> float:
    """How far a training-mode forward (batch statistics) lands from the eval output, relative to
    the eval output's scale: near 0 when the stats are right, large for an identity rebuild."""
    import copy

    import torch

    m = copy.deepcopy(model)
    batch = torch.from_numpy(np.concatenate(list(_images(images, imgsz, batch=len(images)))))
    with torch.no_grad():
        m.eval()
        ref = m(batch)[0]
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.train()
        got = m(batch)[0]
    return float((got - ref).abs().mean() / ref.abs().mean())


def bn_mismatch(model, images: list[Path], imgsz: int = 640) -> float:
    """How far each batch norm's running statistics sit from the statistics training would
    normalise with on these images: per channel |μ_B − μ| / σ + |ln(σ_B / σ)|, averaged over
    channels and layers. Small when measured on images like these; large for an identity
    rebuild, whose running (0, 1) are nowhere near the real mean and variance of W′x."""
    import torch
    from torch import nn
    from ultralytics.nn.modules import Conv

    convs = {n: m for n, m in model.named_modules() if isinstance(m, Conv) and isinstance(m.bn, nn.BatchNorm2d)}
    seen: dict[str, torch.Tensor] = {}

    def hook(name):
        def f(_mod, _inp, out):
            seen[name] = out.detach().double()
        return f

    handles = [m.conv.register_forward_hook(hook(n)) for n, m in convs.items()]
    batch = torch.from_numpy(np.concatenate(list(_images(images, imgsz, batch=len(images)))))
    try:
        with torch.no_grad():
            model.eval()
            model(batch)
    finally:
        for h in handles:
            h.remove()
    per_layer = []
    for name, m in convs.items():
        x = seen[name]
        mu_b, var_b = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
        sd = torch.sqrt(m.bn.running_var.double() + m.bn.eps)
        sd_b = torch.sqrt(var_b + m.bn.eps)
        per_layer.append(float(((mu_b - m.bn.running_mean.double()).abs() / sd + torch.log(sd_b / sd).abs()).mean()))
    return float(np.mean(per_layer))
