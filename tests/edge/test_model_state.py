"""Which model a drone runs across restarts (edge/model_state.py): a model on trial that was
started twice without finishing a trial (the runtime crashed with it) goes back to the last good
one and stays refused; SIGKILL at any instant of a state write leaves a state naming a model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from edge import model_state
from edge.model_state import ModelState, StateFile


def _models(tmp_path: Path) -> tuple[Path, Path]:
    old, new = tmp_path / "old.onnx", tmp_path / "new.onnx"
    old.write_bytes(b"old")
    new.write_bytes(b"new")
    return old, new


def test_a_model_that_crashes_the_runtime_twice_is_rolled_back_and_stays_refused(tmp_path):
    old, new = _models(tmp_path)
    state = StateFile(tmp_path / "state.json")
    assert state.start(old) == old  # no state yet: the given model
    state.swapped(new, old)  # probation passed in run 1; run 1 then crashes
    assert state.start(old) == new  # run 2 tries it again; it crashes too
    assert state.start(old) == old  # run 3: back to the last good model
    assert state.refused() == {new}
    assert state.start(old) == old and ModelState.load(state.path).trial is False


def test_a_trial_that_runs_long_enough_becomes_the_last_good_model(tmp_path, monkeypatch):
    monkeypatch.setattr(model_state, "GOOD_AFTER_FRAMES", 5)
    old, new = _models(tmp_path)
    state = StateFile(tmp_path / "state.json")
    state.swapped(new, old)
    state.ran(4)
    assert ModelState.load(state.path).trial
    state.ran(5)
    s = ModelState.load(state.path)
    assert not s.trial and s.last_good == str(new)
    for _ in range(4):  # restarts after that are no trial: the model stays
        assert state.start(old) == new


WRITER = """
import sys, itertools
from pathlib import Path
from edge.model_state import StateFile
state = StateFile(Path(sys.argv[1]))
a, b = Path(sys.argv[2]), Path(sys.argv[3])
print("ready", flush=True)
for i in itertools.count():
    state.swapped(a, b) if i % 2 else state.swapped(b, a)
"""


def test_sigkill_during_state_writes_always_leaves_a_whole_state(tmp_path):
    old, new = _models(tmp_path)
    path = tmp_path / "state.json"
    StateFile(path).swapped(new, old)
    root = Path(__file__).resolve().parents[2]
    for k in range(15):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(old), str(new)], cwd=root,
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)})
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.01 + (k % 5) * 0.013)  # mid-stream, at different instants
        p.send_signal(signal.SIGKILL)
        p.wait()
        doc = json.loads(path.read_text())  # never half a file
        assert doc["current"] in (str(old), str(new)) and doc["last_good"] in (str(old), str(new))
        assert StateFile(path).start(old) in (old, new)


def test_a_crashing_trial_model_is_reported_with_its_crashes_and_its_rollback(flight, tmp_path):
    """What the drone's status says (edge/status.py): the crashed start counted while the trial
    model is retried, then the rollback, for the canary's health in the cloud."""
    import shutil

    from comms.outbox import Outbox
    from edge.runtime import RunConfig, run_flight

    shipped = Path(__file__).resolve().parents[2] / "models" / "pli-default.onnx"
    trial = tmp_path / "2026.12.01" / "pli-next.onnx"
    trial.parent.mkdir()
    shutil.copyfile(shipped, trial)
    card = json.loads(shipped.with_suffix(".json").read_text())
    (trial.with_suffix(".json")).write_text(json.dumps({**card, "version": "2026.12.01"}))
    state, status = tmp_path / "state.json", tmp_path / "status.json"
    StateFile(state).swapped(trial, shipped)  # run 1 swapped it in, then crashed
    box = Outbox(tmp_path / "outbox.db", "UAV-07")

    def run() -> dict:  # 10 frames: each run ends before the trial's 50
        run_flight(flight.out / "images", shipped, box, RunConfig(state=state, status=status), progress=False)
        return json.loads(status.read_text())

    second = run()  # run 2: the trial model again, one crashed start behind it
    assert (second["release"], second["state"], second["crashes"]) == ("2026.12.01", "trial", 1)
    third = run()  # run 2 "crashed" too (it ended before its trial did): back to the shipped model
    assert (third["release"], third["state"]) == (card["version"], "good")
    assert third["refused"][-1]["model"] == "pli-next/2026.12.01" and "rolled back" in third["refused"][-1]["reason"]


STAGER = """
import sys, time
from pathlib import Path
from edge.update import Release, install
src, watch = Path(sys.argv[1]), Path(sys.argv[2])
files = {f"models/9.9/{p.name}": p for p in sorted(src.iterdir())}
print("ready", flush=True)
install(Release("9.9", "canary", files, {}), watch)
print("staged", flush=True)
time.sleep(60)  # killed here too: staged, and the runtime not yet swapped to it
"""


def test_sigkill_while_a_release_is_staged_never_shows_half_a_release(tmp_path):
    """The drone powered off at any instant of staging a verified release (edge/update.py:install)
    or after it: the update folder shows the whole release or none of it (a half-copied one stays
    in a hidden folder the runtime never looks at, removed by the next staging), so probation and
    the swap only ever see whole files."""
    import hashlib

    src, watch = tmp_path / "release", tmp_path / "watch"
    src.mkdir()
    (src / "pli-next.onnx").write_bytes(os.urandom(24 << 20))  # big enough to be cut mid-copy
    (src / "pli-next.json").write_text(json.dumps({"sha256": "..."}))
    (src / "pli-next.golden.json").write_text("{}")
    want = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()}
    root = Path(__file__).resolve().parents[2]
    seen = {"none": 0, "whole": 0}
    for k in range(12):
        if k % 3 == 0:  # stage again now and then, to be cut at new instants
            shutil.rmtree(watch / "9.9", ignore_errors=True)
        p = subprocess.Popen([sys.executable, "-c", STAGER, str(src), str(watch)], cwd=root, stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(root)})
        assert p.stdout.readline().strip() == "ready"
        time.sleep((k % 6) * 0.012)
        p.send_signal(signal.SIGKILL)
        p.wait()
        visible = [q for q in watch.rglob("*") if not any(part.startswith(".") for part in q.relative_to(watch).parts)]
        if not visible:
            seen["none"] += 1
            continue
        got = {q.name: hashlib.sha256(q.read_bytes()).hexdigest() for q in visible if q.is_file()}
        assert got == want, f"kill {k}: a partial release in view"
        seen["whole"] += 1
    assert seen["none"] and seen["whole"]  # cut before the rename and after it
    from edge.update import Release, install

    install(Release("9.9", "canary", {f"models/9.9/{q.name}": q for q in src.iterdir()}, {}), watch)
    assert not list(watch.glob(".*.tmp"))  # what killed stagers left is gone
    assert {q.name: hashlib.sha256(q.read_bytes()).hexdigest() for q in (watch / "9.9").iterdir()} == want
