"""The loop demo's small scenario (`scripts/demo_loop.py --small`), run as a user runs it, with
the test session's Label Studio: every stage happens for real (the edge, the links and ingest,
the upload, Label Studio's tasks and webhooks, the learning worker, the gates, TUF, the canary's
swap), and the summary says what each stage did. The gates decide; the test checks that what the
summary claims about the canary follows from their decision."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_the_small_loop_runs_every_stage_and_its_summary_follows_the_gates(label_studio, tmp_path):
    out = tmp_path / "loop"
    env = {**os.environ, "PLI_LS_URL": label_studio.url, "PLI_LS_TOKEN": label_studio.token}
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "demo_loop.py"), str(out), "--small"], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert "time per stage" in done.stdout and "learning run" in done.stdout

    db = sqlite3.connect(out / "cloud" / "pli.db")
    # the operators annotated every training photo of flight 1's campaign, through Label Studio,
    # and each annotation reached the cloud once (by webhook or poll)
    photos = summary["operators"]["boxes"]["photos"]
    train = len(list((out / "cloud" / "campaigns" / "dusk-line" / "images" / "train").glob("*.jpg")))
    assert photos == train > 0
    box_rows = db.execute("select count(*) from annotations where alert_id is null").fetchone()[0]
    review_rows = db.execute("select count(*) from annotations where alert_id is not null").fetchone()[0]
    assert box_rows == photos
    alerts_1 = summary["flights"][0]["alerts"]
    assert review_rows == sum(summary["operators"]["reviews"].values()) == alerts_1
    # flight 1's alerts came home through the links into the database, the photos by upload
    assert db.execute("select count(*) from alerts where drone_id = 'UAV-01'").fetchone()[0] == alerts_1
    assert db.execute("select count(*) from images where key like 'flights/%'").fetchone()[0] == 12

    run = summary["learning"]
    row = db.execute("select status, release, trigger from learning_runs where id = ?", (run["id"],)).fetchone()
    assert row[0] == run["status"] in ("released", "refused") and row[2] == "annotations"
    assert len(run["data"]["operators"]) == photos  # trained on what the operators gave
    m = run["matrix"]
    assert set(m["parent"]) == set(m["candidate"]) == {"day-lines", "dusk-line"}
    canary, fleet = summary["flights"][2], summary["flights"][1]
    assert fleet["model"].startswith("shipped")  # the fleet group has no release: an operator promotes
    if run["status"] == "released":
        newest = m["candidate"]["dusk-line"]["map50"] > m["parent"]["dusk-line"]["map50"]
        assert newest and row[1] == run["release"]
        assert summary["canary"]["swapped"] and summary["canary"]["status"]["release"] == run["release"]
        assert "gates: passed" in done.stdout
    else:
        assert run["decision"]["reasons"] and not summary["canary"]["swapped"]
        assert "gates: refused" in done.stdout and run["decision"]["reasons"][0] in done.stdout.replace("\n", " ")
    assert canary["faults"] == fleet["faults"] > 0
