"""`pli edge run`: alerts with crops in a durable outbox, bad frames survived, verified model swaps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from comms.outbox import Outbox
from edge.runtime import ModelSlot, RunConfig, class_change_problem, run_flight

pytestmark = pytest.mark.slow


def test_run_flight_writes_alerts_with_crops(exported_fp32, flight, tmp_path):
    outbox = Outbox(tmp_path / "out" / "outbox.db", "UAV-07")
    cfg = RunConfig(drone_id="UAV-07", flight_id="T1", conf=0.05)
    summary = run_flight(flight.out / "images", exported_fp32, outbox, cfg, progress=False)
    assert summary.frames == flight.frames and summary.fps > 0
    alerts = outbox.alerts()
    assert sum(summary.alerts.values()) == len(alerts)
    assert [a["seq"] for a in alerts] == list(range(1, len(alerts) + 1))
    frames = {p.name for p in (flight.out / "images").iterdir()}
    for a in alerts:
        assert a["id"] == f"UAV-07-00001-{a['seq']:010d}" and a["class"] in ("defect", "bird_nest")
        # provenance: the photo, its time, the pixel box, the model and its class-list version
        assert a["source_frame"] in frames and a["frame_time"] and a["time"] == a["frame_time"]
        x1, y1, x2, y2 = a["box"]
        assert 0 <= x1 < x2 and 0 <= y1 < y2 and a["class_list_version"] == 1 and a["flags"] == []
        card = json.loads(exported_fp32.with_suffix(".json").read_text())
        assert a["model_version"] == f"{exported_fp32.stem}/{card['version']}"
        # several views with the laser as a prior; a fault seen once more has its error estimate
        assert a["position_source"] in ("laser", "multi_view") and (tmp_path / "out" / "crops").exists()
        assert (a["position_error_m"] is not None) == (a["position_source"] == "multi_view")
        assert a["crop"] and Path(a["crop"]).stat().st_size > 0
    thumbs = [q.thumb for q in outbox.due("mqtt")]
    assert thumbs and all(t is not None and t[:2] == b"\xff\xd8" for t in thumbs)  # JPEG thumbnails for 4G


def test_cli_survives_bad_frames_and_prints_a_summary(exported_fp32, flight, tmp_path):
    folder = tmp_path / "frames"
    shutil.copytree(flight.out / "images", folder)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = subprocess.run([sys.executable, "-m", "pli", "edge", "run", "--source", str(folder), "--model",
                          str(exported_fp32), "--outbox", str(tmp_path / "o" / "outbox.db"), "--drone-id", "UAV-07",
                          "--config", str(tmp_path / "none.json")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"frames: {flight.frames} in" in out.stdout and "alerts:" in out.stdout
    assert "zero.jpg" in out.stderr and "corrupt.jpg" in out.stderr and "Traceback" not in out.stderr


MODELS = Path(__file__).resolve().parents[2] / "models"


def _candidate(watch: Path, name: str, model: Path, golden_doc: dict | None, card_extra: dict | None = None) -> None:
    """A model dropped into the update folder with its card (and golden frames)."""
    import hashlib

    shutil.copyfile(model, watch / f"{name}.onnx")
    card = json.loads(model.with_suffix(".json").read_text()) if model.with_suffix(".json").exists() else {}
    card["sha256"] = hashlib.sha256((watch / f"{name}.onnx").read_bytes()).hexdigest()
    if golden_doc is not None:
        (watch / f"{name}.golden.json").write_text(json.dumps(golden_doc))
        card["golden"] = f"{name}.golden.json"
    (watch / f"{name}.json").write_text(json.dumps({**card, **(card_extra or {})}))


def test_model_swap_needs_a_matching_card_and_its_golden_frames(exported_fp32, flight, tmp_path):
    """Probation: hash, load, classes, and the golden frames found again. A model that loads but
    detects something else (here: the tiny test model against the shipped model's golden frames)
    is refused, as is one whose card names no golden frames; the shipped model itself passes."""
    import hashlib

    import cv2

    from edge import golden
    from edge.detector import Detector

    shipped = MODELS / "pli-default.onnx"
    watch = tmp_path / "updates"
    watch.mkdir()
    from edge.status import StatusFile

    status = StatusFile(tmp_path / "status.json", "UAV-07", "fleet1", "canary")
    slot = ModelSlot(shipped, None, watch, status=status)
    frame = np.zeros((320, 480, 3), np.uint8)
    images = {p.name: cv2.imread(str(p)) for p in sorted((flight.out / "images").glob("*.jpg"))}
    reference = golden.make(Detector(shipped), images, threshold=0.25)
    assert sum(len(f["detections"]) for f in reference["frames"]) >= 3
    # A file whose hash disagrees with its card stays out.
    _candidate(watch, "bad", shipped, reference, {"sha256": "0" * 64})
    slot.maybe_swap(frame)
    assert slot.swaps == 0 and slot.path == shipped
    # A truncated file with a card that matches its (truncated) bytes fails to load: refused too.
    (watch / "cut.onnx").write_bytes(shipped.read_bytes()[:1000])
    (watch / "cut.json").write_text(json.dumps({"sha256": hashlib.sha256((watch / "cut.onnx").read_bytes())
                                                .hexdigest(), "golden": "bad.golden.json"}))
    slot.maybe_swap(frame)
    assert slot.swaps == 0
    # Loads, classes the drone may take, but does not find the golden frames: refused.
    assert class_change_problem(Detector(shipped).names, Detector(exported_fp32).names) is None  # only golden tells
    _candidate(watch, "tiny", exported_fp32, reference)
    assert golden.check(Detector(watch / "tiny.onnx"), reference)  # the reason it stays out
    slot.maybe_swap(frame)
    assert slot.swaps == 0
    refused = json.loads((tmp_path / "status.json").read_text())["refused"]  # each reported, for the cloud
    assert [r["model"] for r in refused] == ["updates/bad.onnx", "updates/cut.onnx", "updates/tiny.onnx"]
    assert "golden frames not reproduced" in refused[-1]["reason"]
    # The genuine article without golden frames proves nothing: refused; with them: swapped in, once.
    _candidate(watch, "nogolden", shipped, None)
    slot.maybe_swap(frame)
    assert slot.swaps == 0
    _candidate(watch, "v2", shipped, reference)
    slot.maybe_swap(frame)
    slot.maybe_swap(frame)
    assert slot.swaps == 1 and slot.path.name == "v2.onnx"


def test_a_model_update_may_grow_the_class_list_at_its_end_but_not_rename_or_reorder():
    """A learning run grows the head (class-list version 2 adds flashover) and a rollback may go
    back to the shorter list; a renamed or moved class would give old ids another meaning."""
    from comms.classes import class_list_for
    v1 = ["insulator", "defect", "bird_nest"]
    v2 = [*v1, "flashover"]
    assert class_change_problem(v1, v1) is None
    assert class_change_problem(v1, v2) is None and class_list_for(v2).version == 2
    assert class_change_problem(v2, v1) is None  # the rollback
    assert "differ" in class_change_problem(v1, ["insulator", "bird_nest", "defect"])
    assert "differ" in class_change_problem(v2, ["insulator", "defect", "nest", "flashover"])


def test_the_tracker_follows_a_swapped_models_class_list():
    """After a rollback to a shorter list, a track of a class that list lacks is dropped (it could
    not be packed); after growth, the new class is tracked."""
    from comms.classes import class_list_for
    from edge.detections import Detections
    from edge.geolocate import Located
    from edge.tracker import FaultTracker

    v1 = class_list_for(["insulator", "defect", "bird_nest"])
    v2 = class_list_for(["insulator", "defect", "bird_nest", "flashover"])
    tracker = FaultTracker(v2)
    box = np.array([[10.0, 10.0, 50.0, 50.0], [100.0, 10.0, 150.0, 50.0]])
    dets = Detections(box, np.array([0.9, 0.9]), np.array([1, 3]), v2.names)
    here = Located(np.array([25.3, 25.3001]), np.array([103.1, 103.1001]), "laser")
    tracker.update(0, dets, here)
    assert sorted(t.cls for t in tracker.tracks) == ["defect", "flashover"]
    tracker.use_classes(v1)
    assert [t.cls for t in tracker.tracks] == ["defect"]


def test_a_start_that_fails_early_uses_up_no_epoch(exported_fp32, flight, tmp_path):
    """A missing model or source is refused in one line before the outbox opens: each failed start
    used to move the drone one epoch on (of 65,535)."""
    outbox = tmp_path / "o" / "outbox.db"
    base = [sys.executable, "-m", "pli", "edge", "run", "--outbox", str(outbox), "--drone-id", "UAV-07",
            "--config", str(tmp_path / "none.json")]
    for args in (["--source", str(flight.out / "images"), "--model", str(tmp_path / "missing.onnx")],
                 ["--source", str(tmp_path / "no-such-folder"), "--model", str(exported_fp32)]):
        out = subprocess.run([*base, *args], capture_output=True, text=True)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.strip().splitlines()[-1].startswith("pli: error: ")
    assert not outbox.exists()
    ok = subprocess.run([*base, "--source", str(flight.out / "images"), "--model", str(exported_fp32)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert Outbox(outbox, "UAV-07", new_epoch=False).epoch == 1  # the first successful start's epoch


def test_a_folder_run_again_after_a_crash_resumes_by_photo_and_reports_no_fault_twice(
        exported_fp32, flight, tmp_path, monkeypatch):
    """Issue 25, 8c: the same folder run again after a crash used to report its faults again under
    a new epoch. Now it resumes by photo under its first flight id; a finished folder run again is
    a new flight; `fresh` does not resume a run cut short."""
    import edge.runtime as rt
    from edge.geo import distance_m

    images, cfg = flight.out / "images", RunConfig(drone_id="UAV-07", conf=0.05)
    clean = Outbox(tmp_path / "clean" / "outbox.db", "UAV-07")
    run_flight(images, exported_fp32, clean, cfg, progress=False)
    expected = clean.alerts()
    assert expected
    real, calls = rt.detect, []

    def power_cut_at_the_seventh_frame(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise RuntimeError("power cut")
        return real(*args, **kwargs)

    box = tmp_path / "o" / "outbox.db"
    monkeypatch.setattr(rt, "detect", power_cut_at_the_seventh_frame)
    with pytest.raises(RuntimeError, match="power cut"):
        run_flight(images, exported_fp32, Outbox(box, "UAV-07"), cfg, progress=False)
    monkeypatch.setattr(rt, "detect", real)
    again = run_flight(images, exported_fp32, Outbox(box, "UAV-07"), cfg, progress=False)
    assert again.frames == flight.frames - 6  # the six done before the cut are not run again
    got = Outbox(box, "UAV-07", new_epoch=False).alerts()
    assert len({a["flight_id"] for a in got}) == 1 and len(got) <= len(expected)
    before = [a for a in got if a["epoch"] == 1]  # put before the cut
    after = [a for a in got if a["epoch"] == 2]
    assert before and len(before) + len(after) == len(got)
    for a in after:  # no fault of before the cut reported again, and each one the clean run found
        assert not [b for b in before if b["class"] == a["class"] and
                    distance_m(a["lat"], a["lon"], b["lat"], b["lon"]) <= cfg.tracker.radius_m], a["id"]
    for a in got:
        assert [b for b in expected if b["class"] == a["class"] and
                distance_m(a["lat"], a["lon"], b["lat"], b["lon"]) <= cfg.tracker.radius_m], a["id"]
    assert run_flight(images, exported_fp32, Outbox(box, "UAV-07"), cfg, progress=False).frames == flight.frames
    flights = {a["flight_id"] for a in Outbox(box, "UAV-07", new_epoch=False).alerts()}
    assert len(flights) == 2  # the finished folder run again: a second flight
    calls.clear()
    monkeypatch.setattr(rt, "detect", power_cut_at_the_seventh_frame)
    with pytest.raises(RuntimeError, match="power cut"):
        run_flight(images, exported_fp32, Outbox(box, "UAV-07"), RunConfig(drone_id="UAV-07", flight_id="F3"),
                   progress=False)
    monkeypatch.setattr(rt, "detect", real)
    fresh = RunConfig(drone_id="UAV-07", conf=0.05, fresh=True, flight_id="F3")
    assert run_flight(images, exported_fp32, Outbox(box, "UAV-07"), fresh, progress=False).frames == flight.frames


def test_a_folder_run_again_within_the_same_second_is_still_a_new_flight(tmp_path):
    """Default flight ids have a second's resolution: a fast folder run again in the second its
    last run began gets a distinct id, never the finished flight's."""
    from edge.progress import RunProgress

    runs = RunProgress(tmp_path / "progress.db")
    first, _ = runs.begin("/flights/a", None, "F20261207T101500")
    runs.finish("/flights/a", first)
    second, done = runs.begin("/flights/a", None, "F20261207T101500")
    assert (first, second, done) == ("F20261207T101500", "F20261207T101500-2", set())
    runs.finish("/flights/a", second)
    assert runs.begin("/flights/b", None, "F20261207T101500")[0] == "F20261207T101500-3"  # unique in the outbox
    assert runs.begin("/flights/a", "F3", "F20261207T101500")[0] == "F3"  # a given id is kept
    runs.close()
