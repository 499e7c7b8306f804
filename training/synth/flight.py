"""`pli data synth`: a synthetic inspection flight along a power line.

The drone flies parallel to the line, camera turned to the line, photos overlapping by about
60 %. Output folder:

    images/<flight>_<frame>.jpg   EXIF GPS + UTC time, DJI XMP gimbal pose and laser range
    labels/<flight>_<frame>.txt   YOLO boxes (insulator, defect, bird_nest)
    data.yaml                     trainable/evaluable as is
    faults.csv                    physical faults seen in at least one frame: id, class, lat, lon, ...
    telemetry.csv                 per-frame time, lat, lon, alt (a flight log sidecar)
    flight.json                   settings, camera and the per-frame pose
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from comms.classes import load_class_list
from edge.geo import offset_latlon
from training.boxes import xyxy_to_yolo
from training.dataset import write_data_yaml, yolo_lines
from training.synth.camera import FOCAL_35MM, Camera
from training.synth.metadata import Pose, tag_jpeg
from training.synth.render import Box, render
from training.synth.scene import build_scene

log = logging.getLogger(__name__)
SIZES = {"1920x1080": (1920, 1080), "4000x3000": (4000, 3000)}
OVERLAP = 0.6
SPEED = 2.5  # m/s along the line
LIGHTS = ("day", "dusk")


def apply_light(img: np.ndarray, light: str) -> np.ndarray:
    """The scene under another light, after rendering (the geometry and labels are the same):
    `dusk` is a low warm sun behind haze: darker, deeper shadows, less contrast, a red cast. A
    model that has only seen day flights loses most of what it finds there (docs/benchmarks.md,
    the loop demo), which is what a new line flown late makes the learning loop learn."""
    if light == "day":
        return img
    if light != "dusk":
        raise ValueError(f"light {light!r}: one of {', '.join(LIGHTS)}")
    f = (img.astype(np.float32) / 255.0) ** 1.6 * 0.55
    f *= np.array([0.75, 0.9, 1.15], np.float32)  # BGR
    f = 0.85 * f + 0.15 * float(f.mean())
    return np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 1920x1080") from None
    if not (64 <= w <= 10000 and 64 <= h <= 10000):
        raise ValueError(f"size {text!r}: each side must be 64..10000 pixels")
    return w, h


def pixels_per_metre(width: int) -> float:
    """Ground sample at the nearest phase: close-up video at ~1080p, wider 12 MP stills from
    further out, where a missing disc shrinks to tens of pixels as on real survey photos."""
    return 150.0 if width <= 2048 else 100.0


@dataclass(frozen=True)
class Route:
    lat0: float
    lon0: float
    bearing: float  # degrees from true north, direction of flight
    ground_alt: float  # metres above sea level at the line

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        """Route frame (x along, y to the right) -> WGS-84."""
        b = math.radians(self.bearing)
        lat, lon = offset_latlon(self.lat0, self.lon0, x * math.sin(b) + y * math.cos(b),
                                 x * math.cos(b) - y * math.sin(b))
        return float(lat), float(lon)


@dataclass
class FlightSummary:
    out: Path
    flight_id: str
    frames: int
    size: tuple[int, int]
    towers: int
    route_m: float
    boxes: dict[str, int]
    faults: dict[str, int]
    seconds: float
    fault_rows: list[dict] = field(default_factory=list, repr=False)

    def lines(self) -> list[str]:
        return [
            f"flight {self.flight_id}: {self.frames} frames of {self.size[0]}x{self.size[1]} "
            f"over {self.route_m:.0f} m, {self.towers} towers -> {self.out}",
            "boxes: " + ", ".join(f"{k} {v}" for k, v in self.boxes.items()),
            "faults seen: " + (", ".join(f"{k} {v}" for k, v in self.faults.items()) or "none"),
            f"rendered in {self.seconds:.1f} s ({self.seconds / max(1, self.frames):.2f} s/frame)",
        ]


def _wrap180(deg: float) -> float:
    return (deg + 180.0) % 360.0 - 180.0


def generate_flight(out: Path, frames: int, size: tuple[int, int] = (1920, 1080), seed: int = 0,
                    progress: bool = True, quality: int = 90, yaw_jitter: float = 0.0,
                    orbit: float = 0.0, light: str = "day") -> FlightSummary:
    """`yaw_jitter`: the gimbal turned up to this many degrees off square to the line, towards or
    away from the direction of flight, anew each frame (0: square, as the flights have always been;
    drawn only when set, so a flight without it is unchanged).
    `orbit`: instead of flying along the line, fly an arc around each tower in turn, from `orbit`
    degrees before it to as many past it, at the line flight's distance from its arms, the camera
    turned to the tower all the way (the frames split evenly between the towers).
    `light`: `day` (as the flights have always been) or `dusk` (`apply_light`)."""
    if frames < 1:
        raise ValueError("a flight needs at least one frame")
    if light not in LIGHTS:
        raise ValueError(f"light {light!r}: one of {', '.join(LIGHTS)}")
    if not 0 <= orbit < 80:
        raise ValueError("an orbit's arc is 0 to 80 degrees either side of the tower")
    started = time.perf_counter()
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    names = load_class_list().names
    index = {n: i for i, n in enumerate(names)}
    rng = np.random.default_rng(seed)
    width, height = size
    flight_id = f"synth{seed:04d}"

    f = Camera(width, height, 0, 0, 0).f
    near = f / pixels_per_metre(width)
    coverage = width / pixels_per_metre(width)
    step = coverage * (1 - OVERLAP)
    length = step * frames + coverage
    scene = build_scene(rng, length, near)
    route = Route(25.0 + rng.uniform(-0.5, 0.5), 102.7 + rng.uniform(-0.5, 0.5), rng.uniform(0, 360),
                  rng.uniform(1500, 2400))
    altitude = scene.top_arm_z + rng.uniform(0.8, 2.0)
    pitch = -math.degrees(math.atan((altitude - (scene.top_arm_z - 1.2)) / near))
    t0 = datetime(2026, 5, 12, 2, 30, tzinfo=UTC) + timedelta(minutes=int(rng.integers(0, 300)))
    gimbal_yaw = _wrap180(route.bearing + 90)

    arcs = _orbits(scene, frames, coverage, length, orbit) if orbit > 0 else None
    seen: Counter[str] = Counter()
    boxes_by_class: Counter[str] = Counter()
    poses = []
    for i in tqdm(range(frames), desc=f"rendering {flight_id}", unit="frame", disable=not progress):
        x = coverage / 2 + i * step + rng.uniform(-0.08, 0.08) * step
        z = altitude + rng.uniform(-0.3, 0.3)
        p = pitch + rng.uniform(-1.0, 1.0)
        yaw = float(rng.uniform(-yaw_jitter, yaw_jitter)) if yaw_jitter > 0 else 0.0
        y = 0.0
        if arcs is not None:  # on the arc around its tower, looking at the arms' tips
            tower_x, yaw = arcs[i]
            x, y = tower_x - near * math.sin(math.radians(yaw)), near - near * math.cos(math.radians(yaw))
        cam = Camera(width, height, x, z, p, yaw_deg=yaw, y=y)
        img, boxes = render(scene, cam, seed)
        img = apply_light(img, light)
        cv2.setRNGSeed(seed * 100_003 + i)
        noise = np.zeros(img.shape, np.int16)
        cv2.randn(noise, 0, 3)
        img = cv2.add(img.astype(np.int16), noise, dtype=cv2.CV_8U)
        lat, lon = route.to_latlon(x, y)
        pose = Pose(time=t0 + timedelta(seconds=i * step / SPEED), lat=lat, lon=lon,
                    abs_alt=route.ground_alt + z, rel_alt=z, flight_yaw=_wrap180(route.bearing),
                    gimbal_yaw=_wrap180(gimbal_yaw - yaw), gimbal_pitch=p,
                    target_distance=near / math.cos(math.radians(p)) / (1.0 if arcs is not None else
                                                                         math.cos(math.radians(yaw))))
        ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        focal_mm = FOCAL_35MM * 6.4 / 36  # a 1/2.3" sensor (6.4 mm wide) behind a 24 mm-equivalent lens
        name = f"{flight_id}_{i:05d}"
        (out / "images" / f"{name}.jpg").write_bytes(tag_jpeg(jpeg.tobytes(), pose, width, height, focal_mm,
                                                              FOCAL_35MM))
        _write_labels(out / "labels" / f"{name}.txt", boxes, index, width, height)
        for b in boxes:
            boxes_by_class[b.label] += 1
            if b.label != "insulator":
                seen[b.key] += 1
        poses.append({"frame": i, "image": f"images/{name}.jpg", "x": x, **_pose_json(pose)})

    fault_rows = []
    for fault in scene.faults:
        if seen[fault.id] == 0:
            continue
        lat, lon = route.to_latlon(float(fault.pos[0]), float(fault.pos[1]))
        fault_rows.append({"fault_id": fault.id, "class": fault.cls, "lat": round(lat, 8), "lon": round(lon, 8),
                           "alt": round(route.ground_alt + float(fault.pos[2]), 2), "tower_id": fault.tower,
                           "frames": seen[fault.id]})
    _write_csv(out / "faults.csv", fault_rows, ["fault_id", "class", "lat", "lon", "alt", "tower_id", "frames"])
    # The asset register's view of the line (`pli cloud towers import`): every tower of the scene.
    tower_rows = []
    for k, tw in enumerate(scene.towers):
        lat, lon = route.to_latlon(float(tw.x), float(tw.y))
        tower_rows.append({"line": f"{flight_id}-L1", "tower": f"T{k:02d}", "lat": round(lat, 8), "lon": round(lon, 8),
                           "order": k})
    _write_csv(out / "towers.csv", tower_rows, ["line", "tower", "lat", "lon", "order"])
    _write_csv(out / "telemetry.csv", [{"frame": p["frame"], "time": p["time"], "lat": p["lat"], "lon": p["lon"],
                                        "alt": p["abs_alt"]} for p in poses],
               ["frame", "time", "lat", "lon", "alt"])
    # One flight is one folder: train and val both point at it (`pli data import` splits).
    write_data_yaml(out, names, {"train": "images", "val": "images"})
    towers_seen = sorted({r["tower_id"] for r in fault_rows})
    (out / "flight.json").write_text(json.dumps({
        "flight_id": flight_id, "seed": seed, "frames": frames, "size": [width, height], "light": light,
        "route": asdict(route), "camera": {"hfov_deg": Camera(width, height, 0, 0, 0).hfov_deg,
                                           "focal_35mm": FOCAL_35MM, "near_phase_distance_m": near},
        "line_offset_m": scene.line_y, "towers": len([t for t in scene.towers if t.x <= length]),
        "towers_with_faults_seen": towers_seen, "poses": poses,
    }, indent=1))
    summary = FlightSummary(out, flight_id, frames, size, len([t for t in scene.towers if t.x <= length]),
                            length, {n: boxes_by_class[n] for n in names},
                            dict(Counter(r["class"] for r in fault_rows)), time.perf_counter() - started,
                            fault_rows)
    log.info("%s", "; ".join(summary.lines()))
    return summary


def _orbits(scene, frames: int, coverage: float, length: float, half_deg: float) -> list[tuple[float, float]]:
    """(tower x, camera yaw) of each frame: arcs from -half_deg to +half_deg, a tower each."""
    towers = [t.x for t in scene.towers if coverage / 2 <= t.x <= length - coverage / 2]
    if not towers:
        raise ValueError("no tower inside the flight to orbit: give more frames")
    per = max(3, frames // len(towers))
    out = []
    for k, tx in enumerate(towers):
        n = per if k < len(towers) - 1 else frames - per * k
        out += [(tx, -half_deg + 2 * half_deg * j / max(n - 1, 1)) for j in range(max(n, 0))]
        if len(out) >= frames:
            break
    return out[:frames]


def _pose_json(pose: Pose) -> dict:
    d = asdict(pose)
    d["time"] = pose.time.isoformat().replace("+00:00", "Z")
    return d


def _write_labels(path: Path, boxes: list[Box], index: dict[str, int], width: int, height: int) -> None:
    if not boxes:
        path.write_text("")
        return
    yolo = xyxy_to_yolo(np.array([b.xyxy for b in boxes]), width, height)
    path.write_text(yolo_lines([index[b.label] for b in boxes], yolo))


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

