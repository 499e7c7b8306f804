"""An alert's box drawn on its photo: a crop around it (the crew's report, review tasks) and the
whole photo (review tasks), so that whoever judges the alert sees what the drone saw, not a
thumbnail blown up. Yellow inside black: seen on sky and on steel."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CROP_PX = 360  # the longer side of a crop cut from the photo
YELLOW, BLACK = (21, 204, 250), (0, 0, 0)


def _decode(photo: bytes):
    import cv2

    return cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)


def _draw(img, p1: tuple[int, int], p2: tuple[int, int], width: int) -> None:
    import cv2

    cv2.rectangle(img, p1, p2, BLACK, width * 2)
    cv2.rectangle(img, p1, p2, YELLOW, width)


def _jpeg(img) -> bytes | None:
    import cv2

    ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 88])
    return jpeg.tobytes() if ok else None


def boxed_crop(photo: bytes, box: Sequence[float], side: int = CROP_PX) -> bytes | None:
    """The photo around `box` (three times its size, at least 160 px), the box drawn, as JPEG;
    None when the photo cannot be decoded."""
    import cv2

    img = _decode(photo)
    if img is None:
        return None
    h, w = img.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = max(80.0, 1.5 * max(x2 - x1, y2 - y1))
    left, top = int(max(0, cx - half)), int(max(0, cy - half))
    right, bottom = int(min(w, cx + half)), int(min(h, cy + half))
    if right - left < 2 or bottom - top < 2:
        return None
    crop = img[top:bottom, left:right].copy()
    k = side / max(crop.shape[:2])
    crop = cv2.resize(crop, None, fx=k, fy=k, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    p1 = (int((x1 - left) * k), int((y1 - top) * k))
    p2 = (int((x2 - left) * k), int((y2 - top) * k))
    _draw(crop, p1, p2, 2)
    return _jpeg(crop)


def boxed_photo(photo: bytes, box: Sequence[float]) -> bytes | None:
    """The whole photo with the box drawn (line width following the photo's size)."""
    img = _decode(photo)
    if img is None:
        return None
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    _draw(img, (x1, y1), (x2, y2), max(2, max(img.shape[:2]) // 500))
    return _jpeg(img)
