"""Campaigns (cloud/campaigns.py): imported once, a fifth of the photos frozen as the test set,
named by releases; the same name twice is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cloud import campaigns
from cloud.db import session_scope

ROOT = Path(__file__).resolve().parents[2]


def test_a_campaign_freezes_a_fifth_of_its_photos_and_releases_name_it(flight, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    env = {"PLI_DATABASE_URL": url, "PLI_CLOUD_DIR": str(tmp_path / "cloud")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = subprocess.run([sys.executable, "-m", "pli", "cloud", "campaign", "add", "synth", str(flight.out),
                          "--format", "yolo", "--class-list", "2"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    with session_scope(url) as s:
        row = campaigns.get(s, "synth")
        assert row.class_list_version == 2 and len(row.test_set) == round(flight.frames * 0.2)
        campaigns.check_frozen(row)
    from training.dataset import YoloDataset

    ds = YoloDataset.open(Path(row.data))
    assert ds.names == ["insulator", "defect", "bird_nest", "flashover"]  # class-list version 2's order
    assert not set(p.name for p in ds.images("test")) & set(p.name for p in ds.images("train"))
    from cloud.registry.build import TestSet

    named = TestSet.parse("synth")
    assert (named.name, named.split, named.data) == ("synth", "test", Path(row.data))
    again = subprocess.run([sys.executable, "-m", "pli", "cloud", "campaign", "add", "synth", str(flight.out),
                            "--format", "yolo"], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 2 and "frozen" in again.stderr
    (Path(row.data).parent / "images" / "test" / row.test_set[0]).unlink()  # someone moves a test photo
    with pytest.raises(ValueError, match="test split changed"):
        TestSet.parse("synth")


def test_a_campaign_can_keep_a_models_own_held_out_photos_as_its_test_set(flight, tmp_path, monkeypatch):
    """What the fleet's model already trained on keeps that model's split (a split file, or the
    source's own splits): the forgetting gate must never score photos the model has seen."""
    import json

    from cloud.db import upgrade
    from training.dataset import YoloDataset

    url = f"sqlite:///{tmp_path / 'c.db'}"
    monkeypatch.setenv("PLI_DATABASE_URL", url)
    monkeypatch.setenv("PLI_CLOUD_DIR", str(tmp_path / "cloud"))
    upgrade(url)
    frames = sorted(p.stem for p in (flight.out / "images").glob("*.jpg"))
    held_out = frames[:3]
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"splits": {"train": frames[3:], "test": held_out}}))
    out = subprocess.run([sys.executable, "-m", "pli", "cloud", "campaign", "add", "seen", str(flight.out),
                          "--format", "yolo", "--split-file", str(split)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    with session_scope(url) as s:
        row = campaigns.get(s, "seen")
        assert sorted(Path(n).stem for n in row.test_set) == held_out
    assert len(YoloDataset.open(Path(row.data)).images("train")) == len(frames) - 3
    no_test = tmp_path / "no-test.json"
    no_test.write_text(json.dumps({"splits": {"train": frames}}))
    with session_scope(url) as s, pytest.raises(ValueError, match="no test photos"):
        campaigns.add(s, "untested", flight.out, "yolo", split_file=no_test)

    src = tmp_path / "src"  # a YOLO source with its own train and test folders (tiles of two flights, say)
    for split, names in (("train", frames[3:]), ("test", held_out)):
        for kind, ext in (("images", ".jpg"), ("labels", ".txt")):
            (src / kind / split).mkdir(parents=True)
            for n in names:
                (src / kind / split / f"{n}{ext}").symlink_to(flight.out / kind / f"{n}{ext}")
    (src / "data.yaml").write_text(json.dumps({"train": "images/train", "test": "images/test", "path": str(src),
                                               "names": {0: "insulator", 1: "defect", 2: "bird_nest"}}))
    with session_scope(url) as s:
        row = campaigns.add(s, "kept", src / "data.yaml", "yolo", source_splits=True)
        assert sorted(Path(n).stem for n in row.test_set) == held_out
