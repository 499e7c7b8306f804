"""`pli cloud release add WEIGHTS.pt`: FP32 and INT8 builds scored on every campaign's frozen
test set, golden frames per build that each build passes (and a blind model fails), the class
list with its alert rules, the training data's snapshot, the parent; recorded once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloud.db import session_scope, upgrade
from cloud.registry import rollout
from cloud.registry.build import TestSet, snapshot
from edge import golden
from edge.detector import Detector

ROOT = Path(__file__).resolve().parents[2]


def test_release_add_builds_scores_and_records_a_release_from_weights(tiny_model, tmp_path, monkeypatch):
    result, data = tiny_model
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    env = {**os.environ, "PLI_DATABASE_URL": url, "PLI_CLOUD_DIR": str(tmp_path / "cloud")}
    out = subprocess.run([sys.executable, "-m", "pli", "cloud", "release", "add", str(result.last),
                          "--version", "2026.12.01", "--parent", "2026.11.22", "--imgsz", "160",
                          "--campaign", f"tiles={data}:train", "--campaign", f"again={data}:val"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "tiles mAP50" in out.stdout and "again mAP50" in out.stdout

    monkeypatch.setenv("PLI_CLOUD_DIR", str(tmp_path / "cloud"))
    with session_scope(url) as s:
        card = rollout.get_release(s, "2026.12.01").card
    folder = tmp_path / "cloud" / "registry" / "2026.12.01"
    builds = card["builds"]
    assert {b["precision"] for b in builds.values()} == {"fp32", "int8"}
    assert card["parent"] == "2026.11.22"
    assert card["class_list"]["version"] == 1
    assert [r["name"] for r in card["class_list"]["rules"]] == ["insulator", "defect", "bird_nest"]
    assert {r["name"]: r["severity"] for r in card["class_list"]["rules"]}["defect"] == "high"
    assert card["dataset"]["digest"] == snapshot(data)["digest"]  # the data that trained it, exactly
    snap = json.loads((folder / "dataset.json").read_text())
    assert len(snap["splits"]["train"]) == len(list((data.parent / "images" / "train").iterdir()))
    assert set(card["test_sets"]) == {"tiles", "again"}
    for name, build in builds.items():
        assert {"tiles", "again"} <= set(build["metrics"])  # scored on every campaign
        assert 0 < build["metrics"]["tiles"]["map50"] <= 1
        gold = json.loads((folder / build["golden"]).read_text())
        assert build["golden"] == f"golden-{build['precision']}.json"
        assert golden.check(Detector(folder / name), gold) == []  # each build passes its own
    fp32 = next(n for n, b in builds.items() if b["precision"] == "fp32")
    int8 = next(n for n, b in builds.items() if b["precision"] == "int8")
    assert builds[fp32]["golden"] != builds[int8]["golden"]
    for name, digest in card["files"].items():  # every file recorded with its hash
        import hashlib

        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest

    pre = subprocess.run([sys.executable, "-m", "pli", "cloud", "release", "preannotate", "2026.12.01"], env=env,
                         cwd=ROOT, capture_output=True, text=True)
    assert pre.returncode == 0, pre.stderr[-2000:]
    from cloud.registry.rollout import preannotation_model

    assert preannotation_model() == folder / fp32  # Label Studio's pre-annotation, not the fleet's model

    again = subprocess.run([sys.executable, "-m", "pli", "cloud", "release", "add", str(result.last),
                            "--version", "2026.12.01", "--imgsz", "160", "--campaign", f"tiles={data}:train"],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode != 0 and "immutable" in again.stderr


def test_a_campaign_is_named_with_its_data_and_a_release_needs_one(tmp_path):
    with pytest.raises(ValueError, match=r"NAME=DATA\.yaml"):
        TestSet.parse("no-equals-sign")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TestSet.parse(f"idd={tmp_path / 'missing.yaml'}")
    from cloud.registry.build import build

    with pytest.raises(ValueError, match="at least one campaign"):
        build(tmp_path / "w.pt", "1", tmp_path / "out", [])
    upgrade(f"sqlite:///{tmp_path / 'c.db'}")
