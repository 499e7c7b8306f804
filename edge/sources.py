"""Frame sources: an image folder, a video file, a camera index or an RTSP/HTTP URL.

Each yields `Frame`s with their geotag: from the photo's EXIF/XMP, or for video from a
telemetry sidecar (`<video>.SRT` or `.csv` beside it, or one given). A frame that cannot be
decoded is logged and skipped; a video that ends before its announced length and a camera
that cannot be opened end the stream with a warning. Nothing here raises on bad media.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from edge.geotag import Geotag, read_geotag
from edge.telemetry import Fix, TelemetryError, load_track

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".m4v", ".ts")


@dataclass(frozen=True)
class Frame:
    index: int
    name: str
    image: np.ndarray  # BGR
    geotag: Geotag
    grabbed: float | None = None  # wall time (time.time()) when a video, camera or stream frame was read
    offset_s: float | None = None  # a recording's frame: its position in the file, seconds


def _sort_key(path: Path, tag: Geotag) -> tuple:
    t = tag.time
    if t is not None and t.tzinfo is None:
        t = t.replace(tzinfo=UTC)  # naive times compare among themselves
    return (t is None, t or datetime.min.replace(tzinfo=UTC), path.name)


def image_folder(folder: Path) -> Iterator[Frame]:
    """Photos ordered by EXIF time, then name (cameras reset counters, clocks rarely jump)."""
    paths = [p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    tagged = sorted(((p, read_geotag(p)) for p in paths), key=lambda pt: _sort_key(*pt))
    for index, (path, tag) in enumerate(tagged):
        data = np.fromfile(path, dtype=np.uint8) if path.stat().st_size else np.zeros(0, np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if image is None:
            log.warning("%s: empty or undecodable frame; skipped", path)
            continue
        yield Frame(index, path.name, image, tag)


def find_sidecar(video: Path) -> Path | None:
    for suffix in (".SRT", ".srt", ".csv", ".CSV"):
        candidate = video.with_suffix(suffix)
        if candidate.exists():
            return candidate
    return None


def _tag_of(fix: Fix | None) -> Geotag:
    if fix is None:
        return Geotag()
    return Geotag(time=fix.time, lat=fix.lat, lon=fix.lon, alt=fix.alt, rel_alt=fix.rel_alt)


def capture(spec: str | int, telemetry: Path | None = None, tz: str | None = None) -> Iterator[Frame]:
    """A video file, camera index or stream URL through OpenCV."""
    is_file = isinstance(spec, str) and Path(spec).exists()
    fixes: dict[int, Fix] = {}
    sidecar = telemetry or (find_sidecar(Path(spec)) if is_file else None)
    if sidecar is not None:
        try:
            track = load_track(sidecar, tz)
            # SRT frame counters start at 1; CSV rows at 0: index by position in the track.
            fixes = {i: f for i, f in enumerate(track)}
        except TelemetryError as exc:
            log.warning("%s; frames carry no position", exc)
    cap = cv2.VideoCapture(spec)
    if not cap.isOpened():
        log.warning("%s: cannot open (no such camera, stream or readable video)", spec)
        return
    announced = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if is_file else 0
    name = Path(spec).stem if is_file else f"cam{spec}" if isinstance(spec, int) else "stream"
    index = 0
    try:
        while True:
            ok, image = cap.read()
            grabbed = time.time()
            if not ok or image is None:
                break
            pos = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 if is_file else None
            yield Frame(index, f"{name}_{index:06d}", image, _tag_of(fixes.get(index)), grabbed, pos)
            index += 1
    finally:
        cap.release()
    if announced and index < announced:
        log.warning("%s: ended after %d of %d announced frames", spec, index, announced)


def open_source(spec: str | Path | int, telemetry: Path | None = None, tz: str | None = None) -> Iterator[Frame]:
    """Pick the source from what `spec` is: folder, video file, camera index ("0") or URL."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return capture(int(spec))
    path = Path(spec)
    if path.is_dir():
        frames = image_folder(path)
        if telemetry is not None:
            track = load_track(telemetry, tz)
            return (replace(f, geotag=_tag_of(track[f.index]) if f.index < len(track) else f.geotag)
                    for f in frames)
        return frames
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return (Frame(0, path.name, im, read_geotag(path)) for im in [cv2.imread(str(path))] if im is not None)
    if str(spec).startswith(("rtsp://", "http://", "https://")) or path.is_file():
        return capture(str(spec), telemetry, tz)
    raise FileNotFoundError(f"{spec}: no such folder, file, camera or stream")
