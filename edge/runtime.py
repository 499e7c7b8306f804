"""`pli edge run`: a flight from frames to geotagged alerts in the outbox.

frames (sources.py) -> detector, tiled when the frame is large (tiled.py) -> ground position
(geolocate.py) -> fault tracker (tracker.py) -> Alert with a JPEG crop -> outbox.

Between frames the runtime may swap to a new model from a watched folder: the file must
match the sha256 in its model card, load, keep the class list, and pass a self-test on a
reference frame; otherwise the current model stays and the refusal is logged.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from comms.alert import Alert, restamp
from comms.alert_json import thumbnail_of
from comms.classes import class_list_for
from comms.outbox import Outbox
from edge import golden, model_state
from edge.detector import Detector, ModelError, file_sha256
from edge.geo import distance_m
from edge.geolocate import Located, locate
from edge.geotag import Geotag
from edge.model_card import ModelCard
from edge.model_state import StateFile
from edge.progress import RunProgress
from edge.sources import Frame, open_source
from edge.status import StatusFile
from edge.tiled import detect
from edge.tracker import ConfirmedFault, FaultTracker, TrackerConfig
from edge.update import UpdateLoop

log = logging.getLogger(__name__)


@dataclass
class RunConfig:
    drone_id: str | None = None  # default: the outbox's owner (from the device file)
    flight_id: str | None = None
    tile: str = "auto"
    conf: float | None = None
    threads: int | None = None
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    crops: Path | None = None  # default: beside the outbox
    watch: Path | None = None  # folder of model updates
    updates: UpdateLoop | None = None  # signed releases (edge/update.py), staged into `watch`
    state: Path | None = None  # which model runs across restarts (edge/model_state.py)
    status: Path | None = None  # what it runs, for the link to report (edge/status.py)
    fleet: str | None = None
    fresh: bool = False  # a folder run before: run it all again (default: resume by photo)
    posing: Callable[[Iterable[Frame]], Iterable[Frame]] | None = None  # poses from live telemetry (mavlink.py)


@dataclass
class RunSummary:
    frames: int
    seconds: float
    alerts: dict[str, int]
    model: str
    swaps: int
    notes: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        alerts = ", ".join(f"{k} {v}" for k, v in sorted(self.alerts.items())) or "none"
        return [f"frames: {self.frames} in {self.seconds:.1f} s ({self.fps:.2f} fps)",
                f"alerts: {sum(self.alerts.values())} ({alerts})", f"model: {self.model} ({self.swaps} swaps)",
                *self.notes]


class ModelSlot:
    """The model in use, and the verified swap to a newer one."""

    def __init__(self, path: Path, threads: int | None, watch: Path | None, updates: UpdateLoop | None = None,
                 state: StateFile | None = None, status: StatusFile | None = None):
        self.detector = Detector(path, threads=threads)
        self.path, self.threads, self.watch, self.updates, self.state = Path(path), threads, watch, updates, state
        self._refused: set[Path] = state.refused() if state is not None else set()
        self.frames_on_current = 0
        self.classes = class_list_for(self.detector.names)
        self.version = model_version(self.path)
        self.swaps = 0
        self._seen: set[tuple[str, float]] = set()
        self.status = status
        self._update_refusal: str | None = None
        if status is not None:
            s = state.current() if state is not None else None
            on_it = s is not None and s.current is not None and Path(s.current) == self.path
            status.model(self.version, _release_of(self.path), ("trial" if s.trial else "good") if on_it else "given",
                         _version_of(s.last_good) if on_it else None,
                         max(0, s.trial_starts - 1) if on_it and s.trial else 0)
            if state is not None and state.rolled_back:
                status.refusal(model_version(Path(state.rolled_back)),
                               f"crashed {model_state.MAX_TRIAL_STARTS} starts on trial: rolled back")

    def _candidates(self) -> list[Path]:
        """New or rewritten `.onnx` files under the watch folder, oldest first, hidden folders
        (a half-staged release) left out. Checked every frame: scandir, not Path.rglob (a
        quarter of the time, 0.1 ms a frame)."""
        if self.watch is None:
            return []
        found: list[tuple[float, Path]] = []
        folders = [str(self.watch)]
        while folders:
            try:
                with os.scandir(folders.pop()) as entries:
                    for e in entries:
                        if e.name.startswith("."):
                            continue
                        if e.is_dir():
                            folders.append(e.path)
                        elif e.name.endswith(".onnx") and (e.path, mtime := e.stat().st_mtime) not in self._seen:
                            found.append((mtime, Path(e.path)))
            except (FileNotFoundError, NotADirectoryError):
                continue  # no watch folder (yet), or one removed while it was read
        return [p for _, p in sorted(found, key=lambda mp: mp[0])]

    def maybe_swap(self, reference: np.ndarray | None) -> None:
        if self.updates is not None and self.status is not None:
            if self.updates.last_refusal != self._update_refusal:
                self._update_refusal = self.updates.last_refusal
                if self._update_refusal:
                    self.status.refusal("update", self._update_refusal)
            self.status.regroup(self.updates.client.group)  # moved by a signed assignment
        wanted = self.updates.wanted if self.updates is not None else None
        if wanted is not None and wanted != self.path and wanted not in self._refused:
            self._try(wanted, reference)  # the group's current release, a rollback included
        for path in self._candidates():
            self._seen.add((str(path), path.stat().st_mtime))
            if path != self.path:
                self._try(path, reference)

    def _try(self, path: Path, reference: np.ndarray | None) -> None:
        try:
            det = self.verify(path, reference)
        except (ModelError, ValueError, OSError) as exc:
            self._refused.add(path)
            log.warning("model update %s refused, keeping %s: %s", path.name, self.path.name, exc)
            if self.status is not None:
                self.status.refusal(f"{path.parent.name}/{path.name}", str(exc))
            return
        log.info("model swapped: %s -> %s", self.path.name, path.name)
        if self.state is not None:
            self.state.swapped(path, self.path)  # on trial until it has run GOOD_AFTER_FRAMES frames
        old = self.version
        self.detector, self.path, self.version = det, path, model_version(path)
        self.classes = class_list_for(det.names)  # a grown list (a new class-list version) from here on
        self.swaps += 1
        self.frames_on_current = 0
        if self.status is not None:
            self.status.model(self.version, _release_of(path), "trial" if self.state is not None else "given", old)
            self.status.swapped()

    def ran_frame(self, geotag: Geotag | None = None) -> None:
        self.frames_on_current += 1
        if self.status is not None:
            has = geotag is not None and geotag.has_position
            self.status.frame(geotag.lat if has else None, geotag.lon if has else None)
        if self.state is not None and self.frames_on_current == model_state.GOOD_AFTER_FRAMES:
            self.state.ran(self.frames_on_current)
            if self.status is not None:
                self.status.state("good", self.version)

    def verify(self, path: Path, reference: np.ndarray | None) -> Detector:
        """Probation of a candidate: its card's sha256, it loads, its classes are the running
        model's (grown or shrunk at the end only) and a class-list version the links know, and it
        finds its golden frames again (edge/golden.py): a model that merely loads, or detects
        nothing, stays out."""
        card = ModelCard.beside(path)
        if card is None:
            raise ValueError("no model card beside it")
        if not card.matches(path):
            raise ValueError("sha256 does not match its model card")
        det = Detector(path, threads=self.threads)
        problem = class_change_problem(self.detector.names, det.names)
        if problem:
            raise ValueError(problem)
        class_list_for(det.names)  # a version the links can pack (raises ValueError otherwise)
        if reference is not None:
            out = det(reference)
            if not np.all(np.isfinite(out.xyxy)) or not np.all(np.isfinite(out.confidence)):
                raise ValueError("self-test on the reference frame gave non-finite output")
        if not card.golden:
            raise ValueError("its card names no golden frames: a model that only loads proves nothing")
        golden_path = path.parent / Path(card.golden).name
        problems = golden.check(det, json.loads(golden_path.read_text()))
        if problems:
            raise ValueError(f"golden frames not reproduced: {problems[0]} ({len(problems)} in all)")
        return det


def class_change_problem(running: list[str], candidate: list[str]) -> str | None:
    """Why a model with `candidate` classes may not replace one with `running` classes, or None.
    A class list grows at the end (a learning run adds `flashover`) and a rollback may take the
    shorter list back; a class renamed or moved would make old ids mean something else."""
    running, candidate = list(running), list(candidate)
    n = min(len(running), len(candidate))
    if running[:n] != candidate[:n]:
        return f"classes {candidate} differ from {running} (a list may only grow or shrink at its end)"
    return None


def _release_of(path: Path) -> str | None:
    card = ModelCard.beside(path)
    return card.version if card else None


def _version_of(path: str | None) -> str | None:
    return model_version(Path(path)) if path and Path(path).is_file() else None


def model_version(path: Path) -> str:
    """`<file stem>/<model card version>`, or the file's sha256 prefix when it has no card."""
    card = ModelCard.beside(path)
    return f"{Path(path).stem}/{card.version if card else 'sha256:' + file_sha256(path)[:12]}"


def _crop(image: np.ndarray, box: tuple[float, float, float, float], margin: float = 0.5) -> np.ndarray:
    x1, y1, x2, y2 = box
    mw, mh = (x2 - x1) * margin, (y2 - y1) * margin
    h, w = image.shape[:2]
    return image[max(0, int(y1 - mh)):min(h, int(y2 + mh)), max(0, int(x1 - mw)):min(w, int(x2 + mw))]


def run_flight(source: str | Path | Iterable[Frame], model: Path, outbox: Outbox | Callable[[], Outbox],
               config: RunConfig | None = None, progress: bool = True) -> RunSummary:
    """`outbox`: the outbox, or how to open it: then it opens only once the model has loaded,
    so a start that fails early uses up none of the drone's 65,535 epochs."""
    cfg = config or RunConfig()
    if not callable(outbox) and cfg.drone_id not in (None, outbox.drone_id):
        raise ValueError(f"drone id {cfg.drone_id} differs from the outbox's owner {outbox.drone_id}")
    if callable(outbox):
        Detector(Path(model), threads=cfg.threads)  # a missing or broken model fails here, before the outbox
        outbox = outbox()
        if cfg.drone_id not in (None, outbox.drone_id):
            raise ValueError(f"drone id {cfg.drone_id} differs from the outbox's owner {outbox.drone_id}")
    if cfg.updates is not None:
        cfg.updates.start()  # the first check before the first frame; then every `every_s`
    state = StateFile(cfg.state) if cfg.state is not None else None
    if state is not None:
        model = state.start(Path(model))  # after a restart: the model it ran, or the last good one
    status = None
    if cfg.status is not None:
        group = cfg.updates.client.group if cfg.updates is not None else None
        status = StatusFile(cfg.status, outbox.drone_id, cfg.fleet, group)
    slot = ModelSlot(model, cfg.threads, cfg.watch, cfg.updates, state, status)
    classes = slot.classes  # the model's own list: its alerts are packed with that version
    tracker = FaultTracker(classes, cfg.tracker)
    flight_id = cfg.flight_id or datetime.now(UTC).strftime("F%Y%m%dT%H%M%S")
    key = str(Path(source).resolve()) if isinstance(source, str | Path) and Path(source).exists() else None
    runs, done, reported = None, set(), []
    if key is not None:  # a folder or video run before (crashed, say): resume by photo, same flight
        runs = RunProgress(outbox.path.parent / "progress.db")
        flight_id, done = runs.begin(key, cfg.flight_id, flight_id, cfg.fresh)
        if done:
            reported = [a for a in outbox.alerts() if a.get("flight_id") == flight_id]
            log.info("resuming %s: %d frames done in flight %s before it stopped (--fresh runs it all again)",
                     source, len(done), flight_id)
    crops = cfg.crops or outbox.path.parent / "crops"
    crops.mkdir(parents=True, exist_ok=True)
    # the best view of a new fault is among them (it may wait settle_frames for more views)
    recent: deque[Frame] = deque(maxlen=cfg.tracker.n + cfg.tracker.settle_frames)
    counts: Counter[str] = Counter()
    reference: np.ndarray | None = None
    frames = 0
    started = time.perf_counter()
    unmarked: list[str] = []  # frames done whose faults may still be held by the tracker

    def raise_alert(event: ConfirmedFault, frame: Frame) -> None:
        if reported and (same := _reported(event, reported, cfg.tracker.radius_m)):
            log.info("%s at %.6f, %.6f: already reported as %s before the restart", event.cls, event.lat,
                     event.lon, same)
            return
        made = _alert(event, recent, frame, outbox, flight_id, crops, slot)
        if made is not None:
            alert, crop = made
            outbox.put(alert, thumbnail_of(crop))  # from the crop in memory: no re-read of the file
            counts[alert.fault_class] += 1
            log.info("alert %s: %s at %.6f, %.6f (%s)", alert.id, alert.fault_class, alert.lat, alert.lon,
                     alert.position_source)

    frames_in = open_source(source) if isinstance(source, str | Path) else source
    if cfg.posing is not None:
        frames_in = cfg.posing(frames_in)
    try:
        for frame in tqdm(frames_in, desc="flight", unit="frame", disable=not progress):
            if frame.name in done:
                continue
            slot.maybe_swap(reference)
            tracker.use_classes(slot.classes)  # the running model's list (grown by an update, say)
            reference = reference if reference is not None else frame.image
            dets = detect(slot.detector, frame.image, cfg.tile, conf=cfg.conf)
            h, w = frame.image.shape[:2]
            centres = np.stack([(dets.xyxy[:, 0] + dets.xyxy[:, 2]) / 2, (dets.xyxy[:, 1] + dets.xyxy[:, 3]) / 2], 1)
            if frame.geotag.has_position:
                located = locate(frame.geotag, w, h, centres)
            else:
                located = Located(np.full(len(dets), np.nan), np.full(len(dets), np.nan), "drone")
            recent.append(frame)
            frames += 1
            slot.ran_frame(frame.geotag)
            outbox.recover()  # after a full disk: held alerts written once there is room (at most 1/s)
            for event in tracker.update(frame.index, dets, located):
                raise_alert(event, frame)
            unmarked.append(frame.name)
            if runs is not None and not tracker.holding:  # a resumed run sees a held fault's frames again
                for name in unmarked:
                    runs.mark(key, flight_id, name)  # after its alerts are in the outbox
                unmarked.clear()
        if recent:
            for event in tracker.flush():  # faults still waiting for views when the frames ended
                raise_alert(event, recent[-1])
        if runs is not None:
            for name in unmarked:
                runs.mark(key, flight_id, name)
            runs.finish(key, flight_id)
    finally:
        if runs is not None:
            runs.close()
        if cfg.updates is not None:
            cfg.updates.stop()
        if status is not None:
            status.write()  # the figures as the flight ends, for the link to report
    notes = [cfg.posing.line()] if hasattr(cfg.posing, "line") else []
    return RunSummary(frames, time.perf_counter() - started, dict(counts), slot.path.name, slot.swaps, notes)


def _reported(event: ConfirmedFault, reported: list[dict], radius_m: float) -> str | None:
    """The id of an alert of this flight, put before a restart, for the same fault (same class,
    within the tracker's radius): the tracker starts empty after a restart, so a fault it had
    confirmed in the frames before is confirmed again in the next ones."""
    for a in reported:
        if a.get("class") == event.cls and np.isfinite(event.lat) and \
                float(distance_m(a["lat"], a["lon"], event.lat, event.lon)) <= radius_m:
            return a.get("id")
    return None


def _write_crop(path: Path, crop: np.ndarray) -> bool:
    """The crop as a JPEG, whole or not at all (a full disk leaves no half file behind)."""
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_bytes(np.asarray(buf).tobytes())
        tmp.replace(path)
        return bool(ok)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False


def _alert(event: ConfirmedFault, recent: deque[Frame], current: Frame, outbox: Outbox, flight_id: str,
           crops: Path, slot: ModelSlot) -> tuple[Alert, np.ndarray] | None:
    if not (np.isfinite(event.lat) and np.isfinite(event.lon)):
        log.warning("fault %s (%s) confirmed on frames without position: no alert", event.track_id, event.cls)
        return None
    best = next((f for f in recent if f.index == event.frame), current)
    epoch, seq = outbox.next_id()
    crop_path: Path | None = crops / f"{flight_id}_{epoch:05d}_{seq:06d}_{event.cls}.jpg"
    crop = _crop(best.image, event.box)
    if outbox.full:  # a full disk: the alert (and its thumbnail) before any crop file
        crop_path = None
    elif not _write_crop(crop_path, crop):
        log.error("crop %s could not be written (disk full?): the alert goes without it", crop_path.name)
        crop_path = None
    tag = best.geotag
    # A camera with an unset clock: GNSS time, else the time of receipt, flagged (never dropped).
    when, restamped = restamp(tag.time, tag.gnss_time, datetime.now(UTC))
    if restamped:
        log.warning("frame %s: time %s is unset or before 2020; alert re-stamped %s", best.name, tag.time,
                    when.isoformat())
    stale = tag.telemetry == "stale"
    if stale:
        log.warning("fault %s (%s): the pose of frame %s is stale telemetry; alert flagged", event.track_id,
                    event.cls, best.name)
    alert = Alert(drone_id=outbox.drone_id, seq=seq, flight_id=flight_id, time=when, lat=event.lat, lon=event.lon,
                  alt=tag.alt if tag.alt is not None else 0.0, fault_class=event.cls,
                  confidence=min(1.0, event.confidence), severity=event.severity,
                  crop_path=str(crop_path) if crop_path else None,
                  position_source=event.position_source, epoch=epoch,
                  class_list_version=slot.classes.version, model_version=slot.version,
                  source_frame=best.name, frame_time=tag.time, box=event.box, time_restamped=restamped,
                  telemetry_stale=stale, position_error_m=event.error_m)
    return alert, crop
