"""A crawl into a campaign: `pli data crawl --campaign` stores the kept photos as the campaign's
unlabelled pool (object store, `pool_photos` with source, licence, hashes, relevance), drops a
copy of a photo another campaign already holds, keeps aside what the model sees nothing in,
never stores a photo twice; then `pli cloud select` chooses from that pool and the chosen
photos become Label Studio tasks pre-annotated by the model, with their origin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from crawl_site import Site
from sqlalchemy import select

from cloud import campaigns
from cloud.db import session_scope, upgrade
from cloud.models import Campaign, Image, PoolPhoto

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "pli-default.onnx"


def _blank() -> bytes:
    """A smooth grey gradient: nothing for the detector, not a duplicate of anything."""
    ramp = np.tile(np.linspace(90, 160, 800, dtype=np.uint8), (600, 1))
    return cv2.imencode(".jpg", cv2.merge([ramp, ramp, ramp]))[1].tobytes()


class FlightSite(Site):
    """One gallery: three flight frames mirrored (new photos with insulators), one frame exactly
    as a campaign holds it, and a blank photo."""

    def __init__(self, frames: list[Path]):
        super().__init__()
        self.gallery = []
        for i, f in enumerate(frames[:3]):
            img = cv2.flip(cv2.imread(str(f)), 1)
            self.files[f"/flight/m{i}.jpg"] = ("image/jpeg", cv2.imencode(".jpg", img)[1].tobytes())
            self.gallery.append(f"/flight/m{i}.jpg")
        self.files["/flight/copy.jpg"] = ("image/jpeg", frames[3].read_bytes())
        self.files["/flight/blank.jpg"] = ("image/jpeg", _blank())
        self.gallery += ["/flight/copy.jpg", "/flight/blank.jpg"]

    def pages(self) -> dict[str, str]:
        return {**super().pages(), "/gallery.html": "<html><body>" + "".join(
            f'<img src="{p}">' for p in self.gallery) + "</body></html>"}


@pytest.fixture
def cloud_env(flight, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    env = {"PLI_DATABASE_URL": url, "PLI_CLOUD_DIR": str(tmp_path / "cloud"), "PLI_ANNOTATION_SECRET": "links-1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    upgrade(url)
    with session_scope(url) as s:
        campaigns.add(s, "synth", flight.out, "yolo")
        data = Path(campaigns.get(s, "synth").data)
    frames = sorted((data.parent / "images" / "train").glob("*.jpg"))
    return env, url, frames


def _pli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pli", "-q", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env, "PLI_CRAWL_CONTACT": "ops@example.invalid"}, timeout=180)


def test_a_crawl_becomes_a_campaigns_pool_and_label_studio_tasks(cloud_env, tmp_path, label_studio, monkeypatch):
    env, url, frames = cloud_env
    out = tmp_path / "crawl"
    with FlightSite(frames) as site:
        run = _pli(env, "data", "crawl", "--out", str(out), "--seed", f"{site.base}/gallery.html", "--depth", "0",
                   "--licence", "unknown", "--model", str(MODEL), "--rate", "50", "--no-progress",
                   "--campaign", "crawled")
    assert run.returncode == 0, run.stderr[-3000:]
    dropped = [json.loads(line) for line in (out / "dropped.jsonl").read_text().splitlines()]
    # the frame's GPS block is stripped on the way in, so its bytes differ: the perceptual hash catches it
    assert [(Path(d["url"]).name, d["reason"]) for d in dropped] == [("copy.jpg", "near_duplicate")]
    assert "campaign synth" in dropped[0]["detail"]  # known from the cloud before it was kept
    into = json.loads(run.stdout.strip().splitlines()[-1])
    with session_scope(url) as s:
        camp = s.scalar(select(Campaign).where(Campaign.name == "crawled"))
        assert camp.data is None and camp.test_set == []  # an unlabelled pool: nothing to score yet
        rows = list(s.scalars(select(PoolPhoto).where(PoolPhoto.campaign_id == camp.id)))
        offered = {Path(r.source_url).name for r in rows if not r.aside}
        aside = {Path(r.source_url).name for r in rows if r.aside}
        assert offered == {"m0.jpg", "m1.jpg", "m2.jpg"} and aside == {"blank.jpg"}
        assert into == {"campaign": "crawled", "added": 3, "aside": 1, "skipped": 0, "pool": 4}
        for r in rows:
            image = s.get(Image, r.image_id)
            assert image.key == f"campaigns/crawled/{r.sha256}.jpg" and image.sha256 == r.sha256
            assert r.licence_family == "unknown" and len(r.phash) == 16
            assert r.relevance["threshold"] == 0.25 and (r.relevance["detections"] > 0) != r.aside
    again = _pli(env, "cloud", "campaign", "import-crawl", "crawled", str(out))  # the same crawl twice: stored once
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout) == {"campaign": "crawled", "added": 0, "aside": 0, "skipped": 4, "pool": 4}
    listed = _pli(env, "cloud", "campaign", "list")
    assert "pool 3 (+1 aside)" in listed.stdout and "no dataset yet" in listed.stdout

    from annotation.client import LabelStudio
    from annotation.label_config import detection_config
    from cloud.selection_job import run_selection
    from comms.classes import load_class_list

    ls = LabelStudio(label_studio.url, label_studio.token)
    project = ls.create_project("crawled selection", detection_config(load_class_list()))
    monkeypatch.setenv("PLI_LS_URL", label_studio.url)
    monkeypatch.setenv("PLI_LS_TOKEN", label_studio.token)
    picked = run_selection("crawled", 2, "random", project=project, cloud_url="http://127.0.0.1:9", missed=0)
    doc = json.loads(Path(picked["version"]).read_text())
    assert doc["pool"] == 3 and len(doc["images"]) == 2  # the aside photo is never offered
    tasks = ls.export(project, all_tasks=True)
    assert len(tasks) == 2
    for t in tasks:
        (pred,) = ls.predictions(t["id"])
        assert pred["result"], "a crawled photo of a line gets the model's boxes as its pre-annotation"
        assert t["data"]["licence"] == "not stated" and t["data"]["source_url"].startswith("http://127.0.0.1:")
    ls.close()


def test_an_unlabelled_pool_is_refused_where_a_dataset_is_needed(cloud_env, tmp_path):
    from cloud import pseudo_labels

    _, url, _ = cloud_env
    with session_scope(url) as s:
        s.add(Campaign(name="empty-pool", test_set=[], data=None))
    with pytest.raises(ValueError, match="unlabelled pool"):
        pseudo_labels.run("empty-pool")
    with pytest.raises(ValueError, match="no training photos"):
        from cloud.selection_job import run_selection

        run_selection("empty-pool", 2, "random")
    with pytest.raises(ValueError, match="not a crawl's folder"):
        from cloud import pool

        pool.add_crawl(tmp_path / "nothing", "empty-pool")
