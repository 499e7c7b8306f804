"""`pli cloud select` as a job: a campaign's photos embedded by the detector (cached), chosen,
written as a dataset version and made Label Studio tasks with the model's boxes; queued
through the API by an operator."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cloud import campaigns, jobs
from cloud.db import session_scope, upgrade
from cloud.paths import DEFAULT_WEIGHTS
from cloud.tokens import create_token


@pytest.fixture
def campaign(flight, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    monkeypatch.setenv("PLI_DATABASE_URL", url)
    monkeypatch.setenv("PLI_CLOUD_DIR", str(tmp_path / "cloud"))
    monkeypatch.setenv("PLI_ANNOTATION_SECRET", "links-1")
    upgrade(url)
    with session_scope(url) as s:
        campaigns.add(s, "synth", flight.out, "yolo")
    return url


def test_a_selection_is_a_dataset_version_and_label_studio_tasks(campaign, tmp_path, label_studio, monkeypatch):
    from annotation.client import LabelStudio
    from annotation.label_config import detection_config
    from cloud.selection_job import run_selection
    from comms.classes import load_class_list

    ls = LabelStudio(label_studio.url, label_studio.token)
    project = ls.create_project("synth selection", detection_config(load_class_list()))
    monkeypatch.setenv("PLI_LS_URL", label_studio.url)
    monkeypatch.setenv("PLI_LS_TOKEN", label_studio.token)
    out = run_selection("synth", 3, "coreset", project=project, cloud_url="http://127.0.0.1:9")
    doc = json.loads(Path(out["version"]).read_text())
    assert out["selected"] == 3 == len(doc["images"]) == len(set(doc["images"]))
    missed = doc.get("missed_fault", [])
    assert out["missed_fault"] == len(missed) <= 1 and not set(missed) & set(doc["images"])
    assert out["tasks"] == 3 + len(missed)
    tasks = ls.export(project, all_tasks=True)
    assert len(tasks) == out["tasks"] and all(t["predictions"] for t in tasks)  # pre-annotated
    assert sum(t["data"].get("kind") == "missed_fault" for t in tasks) == len(missed)
    cache = list((tmp_path / "cloud" / "embeddings").rglob("*.npy"))
    assert len(cache) == doc["pool"]  # every photo of the pool embedded once, kept
    again = run_selection("synth", 3, "coreset")  # no project, from the cache: the same choice (same seed)
    assert json.loads(Path(again["version"]).read_text())["images"] == doc["images"]
    ls.close()


def test_an_operator_queues_a_selection_through_the_api_and_a_worker_runs_it(campaign, monkeypatch):
    from cloud.api.app import create_app

    with session_scope(campaign) as s:
        operator = create_token(s, "ops", "operator")
        fleet = create_token(s, "uav", "fleet", "fleet1")
    client = TestClient(create_app(campaign))
    body = {"budget": 2, "strategy": "random", "seed": 1}
    assert client.post("/campaigns/synth/select", json=body, headers={"Authorization": f"Bearer {fleet}"}
                       ).status_code == 403
    assert client.post("/campaigns/nope/select", json=body, headers={"Authorization": f"Bearer {operator}"}
                       ).status_code == 404
    r = client.post("/campaigns/synth/select", json=body, headers={"Authorization": f"Bearer {operator}"})
    assert r.status_code == 202
    job_id = r.json()["job"]
    jobs.reset_queue()
    worker = jobs.Worker(workers=1).start()
    try:
        for _ in range(300):
            j = client.get(f"/jobs/{job_id}", headers={"Authorization": f"Bearer {operator}"}).json()
            if j["status"] in ("done", "failed"):
                break
            time.sleep(0.1)
    finally:
        worker.stop()
        jobs.reset_queue()
    assert j["status"] == "done", j
    assert j["result"]["selected"] == 2


def test_pseudo_labels_make_a_dataset_version_with_their_precision_and_recall(campaign, tmp_path):
    from cloud import pseudo_labels
    from training.dataset import YoloDataset, label_path_for

    with session_scope(campaign) as s:
        data = Path(campaigns.get(s, "synth").data)
    train = sorted(YoloDataset.open(data).images("train"))
    report = pseudo_labels.run("synth", labelled=[train[0].name])
    assert report["labelled"] == 1 and report["pseudo_labelled"] == len(train) - 1
    assert report["true_boxes"] > 0 and report["precision"] is not None and 0 <= report["recall"] <= 1
    version = Path(report["data"]).parent
    labels = sorted((version / "labels" / "train").glob("*.txt"))
    assert len(labels) == len(train)
    assert (version / "labels" / "train" / f"{train[0].stem}.txt").read_text() == label_path_for(train[0]).read_text()
    ds = YoloDataset.open(Path(report["data"]))  # ultralytics' layout: images beside their labels
    assert len(ds.images("train")) == len(train) and ds.names == YoloDataset.open(data).names


def test_pseudo_labels_become_label_studio_tasks_with_their_weak_boxes(campaign, label_studio, monkeypatch):
    from annotation.client import LabelStudio
    from annotation.label_config import detection_config
    from cloud import pseudo_labels
    from comms.classes import load_class_list

    ls = LabelStudio(label_studio.url, label_studio.token)
    project = ls.create_project("synth pseudo-labels", detection_config(load_class_list()))
    with pytest.raises(ValueError, match="PLI_LS_URL"):  # refused before the work, not after it
        pseudo_labels.run("synth", project=project, cloud_url="http://127.0.0.1:9")
    monkeypatch.setenv("PLI_LS_URL", label_studio.url)
    monkeypatch.setenv("PLI_LS_TOKEN", label_studio.token)
    report = pseudo_labels.run("synth", project=project, cloud_url="http://127.0.0.1:9")
    assert report["label_studio"]["tasks"] == report["pseudo_labelled"] > 0
    tasks = ls.export(project, all_tasks=True)
    assert len(tasks) == report["pseudo_labelled"] and all(t["data"]["kind"] == "pseudo_label" for t in tasks)
    version = Path(report["data"]).parent
    for t in tasks:  # each task's prediction is exactly the photo's pseudo-labels
        (pred,) = ls.predictions(t["id"])
        assert pred["model_version"] == report["label_studio"]["model_version"]
        from cloud.models import Image

        with session_scope(campaign) as s:
            name = s.get(Image, t["data"]["pli_image_id"]).name
        lines = (version / "labels" / "train" / f"{Path(name).stem}.txt").read_text().splitlines()
        assert len(pred["result"]) == len(lines)
    assert sum(len(ls.predictions(t["id"])[0]["result"]) for t in tasks) == report["boxes"]
    ls.close()


def test_a_scan_gives_fault_only_uncertainty_and_the_insulators_most_confident_first():
    import numpy as np

    from cloud.selection_job import Scan
    from edge.detections import Detections

    names = ["insulator", "defect", "bird_nest"]
    d = [Detections(np.array([[0, 0, 10, 10], [5, 5, 30, 40], [1, 1, 2, 2]]), np.array([0.3, 0.8, 0.5]),
                    np.array([0, 0, 1]), names),
         Detections(np.array([[0, 0, 10, 10]]), np.array([0.5]), np.array([0]), names),
         Detections.empty(names)]
    scan = Scan(d, names, operating_conf=0.25)
    assert scan.uncertainty(faults_only=True)[1] == 0 < scan.uncertainty()[1]  # an insulator only: no fault doubt
    assert scan.uncertainty(faults_only=True)[0] == pytest.approx(1.0)  # the defect at 0.5
    ins = scan.insulators()
    assert ins[0].tolist() == [[5, 5, 30, 40], [0, 0, 10, 10]] and len(ins[1]) == 1 and len(ins[2]) == 0
    assert len(scan.insulators(conf=0.4)[0]) == 1
    assert scan.top().tolist() == pytest.approx([0.8, 0.5, 0.0])


@pytest.mark.parametrize("strategy", ["crops", "faults"])
def test_crops_and_faults_choose_distinct_photos_through_the_real_detector(campaign, strategy):
    from cloud.selection_job import candidates, run_selection

    out = run_selection("synth", 3, strategy)
    doc = json.loads(Path(out["version"]).read_text())
    assert out["selected"] == 3 == len(set(doc["images"])) and doc["strategy"] == strategy
    assert set(doc["images"]) <= {p.name for p in candidates("synth")}


def test_crop_embeddings_are_cached_per_photo_and_its_crops(campaign, tmp_path, monkeypatch):
    from cloud import embeddings
    from cloud.selection_job import candidates, run_selection

    out = run_selection("synth", 3, "crops")
    cached = sorted((tmp_path / "cloud" / "embeddings").rglob("crops/*.npy"))
    assert len(cached) == len(candidates("synth"))  # one vector per photo of the pool
    before = {p: p.stat().st_mtime_ns for p in cached}
    calls = []
    real = embeddings.Embedder.__call__
    monkeypatch.setattr(embeddings.Embedder, "__call__", lambda self, ims: calls.append(len(ims)) or real(self, ims))
    again = run_selection("synth", 3, "crops")
    assert calls == []  # every crop vector from the cache: nothing embedded again
    assert {p: p.stat().st_mtime_ns for p in cached} == before
    first = json.loads(Path(out["version"]).read_text())["images"]
    assert json.loads(Path(again["version"]).read_text())["images"] == first
    photo = candidates("synth")[0]
    embeddings.embed_crops(DEFAULT_WEIGHTS, [photo], [np.array([[3.0, 4.0, 60.0, 50.0]])],
                           tmp_path / "cloud" / "embeddings", progress=False)
    assert calls and len(list((tmp_path / "cloud" / "embeddings").rglob("crops/*.npy"))) == len(cached) + 1
