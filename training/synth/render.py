"""Render one frame of a scene: background, objects far to near, and the visible boxes.

Every object is also painted into an id buffer (its draw order). An object's box is the
bounding box of its pixels that stay visible (inside the frame, not painted over by nearer
objects), and it gets none when less than `min_visible` of it is visible: the frame edge and
occlusion are one rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from training.synth.camera import Camera
from training.synth.noise import fbm, noise_1d
from training.synth.scene import Item, Prim, Scene

SHIFT = 4  # sub-pixel bits for OpenCV drawing
MIN_VISIBLE = 0.4
MIN_BOX_PX = 3.0


@dataclass
class Box:
    label: str
    key: str
    xyxy: tuple[float, float, float, float]
    visible: float  # fraction of the object inside the frame and unoccluded


def _fx(pts: np.ndarray, offset: np.ndarray) -> np.ndarray:
    return np.round((pts - offset) * (1 << SHIFT)).astype(np.int32)


def draw(img: np.ndarray, prims: list[Prim], value: tuple | int | None = None,
         offset: np.ndarray | None = None, aa: bool = True) -> None:
    """Execute primitives on an image (colour) or a mask (`value`), shifted by `offset`."""
    off = np.zeros(2) if offset is None else offset
    line_type = cv2.LINE_AA if aa else cv2.LINE_8
    for p in prims:
        color = p.color if value is None else value
        if p.kind in ("line", "poly"):
            cv2.polylines(img, [_fx(p.pts, off)], False, color, max(1, round(p.width)), line_type, SHIFT)
        elif p.kind == "fill":
            cv2.fillPoly(img, [_fx(p.pts, off)], color, line_type, SHIFT)
        elif p.kind == "ellipse":
            (cx, cy), (ax, ay) = p.pts
            if ax < 0.5 or ay < 0.5 or not (abs(cx) < 1e5 and abs(cy) < 1e5):
                continue
            cv2.ellipse(img, _fx(np.array([cx, cy]), off), tuple(_fx(np.array([ax, ay]), np.zeros(2))),
                        0, 0, 360, color, -1, line_type, SHIFT)


def prim_bounds(prims: list[Prim]) -> np.ndarray | None:
    boxes = []
    for p in prims:
        if p.kind == "ellipse":
            (cx, cy), (ax, ay) = p.pts
            boxes.append([cx - ax, cy - ay, cx + ax, cy + ay])
        else:
            r = p.width / 2 + 1
            boxes.append([*(p.pts.min(0) - r), *(p.pts.max(0) + r)])
    return np.array(boxes).reshape(-1, 4) if boxes else None


BACKGROUND_MAX_WIDTH = 1000


def background(cam: Camera, seed: int) -> np.ndarray:
    """Sky with clouds over three ridges; distant layers move with parallax.

    Rendered at most BACKGROUND_MAX_WIDTH wide and upscaled: it is soft, distant texture, and
    full-resolution noise would cost seconds per 12 MP frame.
    """
    scale = max(1, -(-cam.width // BACKGROUND_MAX_WIDTH))
    if scale > 1:
        small = Camera(cam.width // scale, cam.height // scale, cam.x, cam.z, cam.pitch_deg, cam.hfov_deg)
        return cv2.resize(background(small, seed), (cam.width, cam.height), interpolation=cv2.INTER_LINEAR)
    w, h = cam.width, cam.height
    v = np.arange(h, dtype=np.float32)
    elev = cam.elevation_of_row(v)  # radians per row
    horizon = cam.height / 2 + cam.f * math.tan(math.radians(cam.pitch_deg))  # row of elevation 0
    img = np.empty((h, w, 3), np.float32)
    # Sky: deeper blue upwards, hazy at the horizon, clouds fixed at infinity.
    t = np.clip(elev / 0.6, 0, 1)[:, None]
    zenith, haze = np.array([190, 130, 70], np.float32), np.array([235, 215, 200], np.float32)
    sky = (haze * (1 - t) + zenith * t)[:, None, :] * np.ones((1, w, 1), np.float32)
    cell = max(8, w // 6)
    clouds = fbm(seed, 0, int(-horizon), w, h, cell, 4)
    cover = np.clip((clouds - 0.55) * 3.0, 0, 1)[..., None]
    img[:] = sky * (1 - cover) + 245 * cover
    # Terrain layers: (distance m, ridge height m, colour BGR).
    layers = [(1800.0, 260.0, (150, 140, 120)), (600.0, 90.0, (80, 110, 85)), (220.0, 20.0, (55, 100, 70))]
    for i, (dist, ridge_h, color) in enumerate(layers):
        shift = round(cam.f * cam.x / dist)
        prof = noise_1d(seed + 101 * (i + 1), shift, w, max(8, w // (3 + 2 * i)), 5)
        ridge_elev = np.arctan((ridge_h * (0.35 + prof) - cam.z) / dist)
        ridge_row = cam.height / 2 + cam.f * np.tan(math.radians(cam.pitch_deg) - ridge_elev)
        below = v[:, None] >= ridge_row[None, :]
        tex = fbm(seed + 13 * (i + 1), shift, int(-horizon), w, h, max(4, w // (20 - 4 * i)), 4)
        shade = (0.75 + 0.5 * tex)[..., None] * np.array(color, np.float32)
        img = np.where(below[..., None], shade, img)
    return img


def render(scene: Scene, cam: Camera, seed: int, min_visible: float = MIN_VISIBLE) -> tuple[np.ndarray, list[Box]]:
    img = np.clip(background(cam, seed), 0, 255).astype(np.uint8)
    ids = np.zeros((cam.height, cam.width), np.uint16)
    order = sorted(range(len(scene.items)), key=lambda i: -scene.items[i].depth)
    drawn: list[tuple[int, Item, list[Prim]]] = []
    for n, i in enumerate(order, start=1):
        item = scene.items[i]
        prims = item.prims(cam)
        if prims:
            draw(img, prims)
            draw(ids, prims, value=n, aa=False)
        if item.label:
            drawn.append((n, item, prims))
    boxes = []
    for n, item, prims in drawn:
        box = visible_box(item, prims, n, ids, cam, min_visible)
        if box is not None:
            boxes.append(box)
    return img, boxes


def visible_box(item: Item, prims: list[Prim], n: int, ids: np.ndarray, cam: Camera,
                min_visible: float) -> Box | None:
    region = item.region(cam)
    if region is not None:
        prims = [Prim("fill", region, (0, 0, 0))]
    bounds = prim_bounds(prims)
    if bounds is None:
        return None
    x0, y0 = np.floor(bounds[:, :2].min(0)).astype(int) - 1
    x1, y1 = np.ceil(bounds[:, 2:].max(0)).astype(int) + 1
    if x1 <= 0 or y1 <= 0 or x0 >= cam.width or y0 >= cam.height:
        return None
    if x1 - x0 > 4 * cam.width or y1 - y0 > 4 * cam.height:
        return None  # so near the camera (a turned gimbal past a tower) that it is no object to label
    # The object's whole silhouette, also where it leaves the frame.
    own = np.zeros((y1 - y0, x1 - x0), np.uint8)
    draw(own, prims, value=1, offset=np.array([x0, y0], float), aa=False)
    total = int(own.sum())
    if total == 0:
        return None
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, cam.width), min(y1, cam.height)
    inside = own[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0].astype(bool)
    idw = ids[cy0:cy1, cx0:cx1]
    # Painted objects own their pixels; a region (missing disc) is visible where nothing nearer is.
    seen = inside & ((idw <= n) if region is not None else (idw == n))
    frac = float(seen.sum()) / total
    if frac < min_visible:
        return None
    rows, cols = np.nonzero(seen)
    xyxy = (cx0 + cols.min(), cy0 + rows.min(), cx0 + cols.max() + 1.0, cy0 + rows.max() + 1.0)
    if xyxy[2] - xyxy[0] < MIN_BOX_PX or xyxy[3] - xyxy[1] < MIN_BOX_PX:
        return None
    return Box(item.label or "", item.key, tuple(float(v) for v in xyxy), frac)
