"""Campaigns (cloud/campaigns.py): imported once, a fifth of the photos frozen as the test set,
named by releases; the same name twice is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cloud import campaigns
from cloud.db import session_scope

ROOT = Path(__file__).resolve().parents[1]


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
    from cloud.registry.build import Campaign

    named = Campaign.parse("synth")
    assert (named.name, named.split, named.data) == ("synth", "test", Path(row.data))
    again = subprocess.run([sys.executable, "-m", "pli", "cloud", "campaign", "add", "synth", str(flight.out),
                            "--format", "yolo"], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 2 and "frozen" in again.stderr
    (Path(row.data).parent / "images" / "test" / row.test_set[0]).unlink()  # someone moves a test photo
    with pytest.raises(ValueError, match="test split changed"):
        Campaign.parse("synth")
