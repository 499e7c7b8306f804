"""The learning loop (cloud/learning.py) on tiny synthetic campaigns: the gates as rules; the class
head grown without losing the known classes; and the whole loop: a candidate made to forget on
purpose is refused, one trained with replay is released to the canary group and a canary drone
takes it through TUF; the runs are on the API."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from cloud.db import session_scope, upgrade
from cloud.learning import gate
from cloud.local_server import CloudServer
from cloud.tokens import create_token
from edge.detector import Detector

ROOT = Path(__file__).resolve().parents[2]


def test_gates_refuse_a_stalled_newest_campaign_forgetting_and_missed_golden_frames():
    parent = {"cplid": 0.90, "idd": 0.20}
    assert gate({"cplid": 0.89, "idd": 0.30}, parent, "idd").passed  # -1 point: within the margin
    d = gate({"cplid": 0.88, "idd": 0.30}, parent, "idd")  # -2 points
    assert not d.passed and "cplid forgets" in d.reasons[0]
    assert gate({"cplid": 0.88, "idd": 0.30}, parent, "idd", margin_points=2.5).passed
    d = gate({"cplid": 0.95, "idd": 0.20}, parent, "idd")
    assert not d.passed and "does not improve" in d.reasons[0]
    d = gate({"cplid": 0.90, "idd": 0.30}, parent, "idd", golden_failures={"pli-x-int8.json": ["frame 3: missed"]})
    assert not d.passed and "golden" in d.reasons[0]
    assert gate({"idd": 0.3}, {}, "idd").passed  # a first campaign: nothing to forget


def test_replay_is_shared_evenly_over_earlier_campaigns_whatever_their_size():
    from cloud.learning import replay_shares

    assert replay_shares(50, {"cplid": 560, "flights": 57}) == {"cplid": 25, "flights": 25}
    assert replay_shares(100, {"cplid": 560, "flights": 30}) == {"cplid": 70, "flights": 30}  # all it has
    shares = replay_shares(7, {"a": 100, "b": 100, "c": 2})
    assert sum(shares.values()) == 7 and shares["c"] == 2 and abs(shares["a"] - shares["b"]) <= 1
    assert replay_shares(500, {"a": 3, "b": 4}) == {"a": 3, "b": 4} and replay_shares(0, {"a": 3}) == {"a": 0}
    # repeat: a small campaign fills its share by showing its photos again, up to `repeat` times
    assert replay_shares(200, {"cplid": 560, "flights": 57}, repeat=2) == {"cplid": 100, "flights": 100}
    assert replay_shares(300, {"cplid": 560, "flights": 57}, repeat=2) == {"cplid": 186, "flights": 114}


def test_a_run_that_could_not_release_fails_before_it_trains(tmp_path, monkeypatch):
    from cloud.learning import learn

    for role in ("targets", "snapshot", "timestamp"):
        monkeypatch.delenv(f"PLI_TUF_{role.upper()}_KEY", raising=False)
        monkeypatch.delenv(f"PLI_TUF_{role.upper()}_KEY_FILE", raising=False)
    monkeypatch.setenv("PLI_CLOUD_DIR", str(tmp_path))
    with pytest.raises(KeyError, match="no targets key"):
        learn("anything")
    assert not any(tmp_path.iterdir())  # no run's folder: nothing read, nothing trained (and no clock to flake)


def test_a_photo_replayed_twice_is_trained_on_twice(tmp_path):
    from training.assemble import assemble

    src = tmp_path / "src"
    for sub in ("images/train", "labels/train", "images/val"):
        (src / sub).mkdir(parents=True)
    (src / "data.yaml").write_text(f"path: {src}\ntrain: images/train\nval: images/val\nnames: {{0: defect}}\n")
    photo = src / "images" / "train" / "a.jpg"
    photo.write_bytes(b"jpeg")
    (src / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    data = assemble(tmp_path / "out", ["insulator", "defect"], [("replay-x", src, [photo, photo, photo])], src)
    labels = sorted((data.parent / "labels" / "train").glob("*.txt"))
    assert len(labels) == 3 and len(list((data.parent / "images" / "train").iterdir())) == 3
    assert {x.read_text() for x in labels} == {"1 0.5 0.5 0.1 0.1\n"}  # remapped onto the run's class list


def test_a_grown_class_head_keeps_the_known_classes_outputs(tiny_model, tmp_path):
    import torch

    from training.heads import grow_head, names_of, run_classes

    result, _ = tiny_model
    old = names_of(result.last)
    grown = grow_head(result.last, [*old, "flashover"], tmp_path / "grown.pt")
    assert names_of(grown) == [*old, "flashover"]
    with pytest.raises(ValueError, match="only grow at the end"):
        grow_head(result.last, ["flashover", *old], tmp_path / "bad.pt")
    assert grow_head(result.last, old, tmp_path / "same.pt") == result.last  # nothing to grow
    # a campaign of an older (shorter) class list keeps the model's classes; another list is its own
    assert run_classes(grown, old) == [*old, "flashover"] and run_classes(result.last, old) == old
    assert run_classes(grown, ["flashover"]) == ["flashover"]  # not a prefix: grow_head refuses it
    a = torch.load(result.last, weights_only=False)["model"].float().eval()
    b = torch.load(grown, weights_only=False)["model"].float().eval()
    x = torch.rand(1, 3, 160, 160)
    with torch.no_grad():
        ya, yb = a(x)[0], b(x)[0]
    assert yb.shape[1] == ya.shape[1] + 1
    np.testing.assert_allclose(yb[:, :ya.shape[1]].numpy(), ya.numpy(), atol=1e-3)  # boxes and old classes as before


def test_a_head_fine_tuned_from_coco_keeps_its_width_and_scores_when_grown(tmp_path):
    """A model fine-tuned from COCO keeps COCO's 80-channel class branches (ultralytics rebuilds
    them at the source width), where a 4-class head built from the yaml has 64: growing must keep
    the branches, not leave them random (CPLID fell from 0.99 to 0.24 that way)."""
    import torch

    from training.heads import grow_head
    from training.yolo import ultralytics

    DetectionModel = ultralytics().nn.tasks.DetectionModel
    coco = DetectionModel("yolov8n.yaml", nc=80, verbose=False)
    coco.names = {i: f"coco{i}" for i in range(80)}
    old = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    old.names = dict(enumerate(["insulator", "defect", "bird_nest"]))
    old.load(coco, verbose=False)
    assert old.model[-1].cv3[0][-1].in_channels == 80  # the COCO width, not max(64, nc)
    with torch.no_grad():
        for branch in old.model[-1].cv3:
            branch[-1].bias.uniform_(-2, 2)  # scores away from 0, where any two heads look alike
    torch.save({"model": old.half(), "ema": None}, tmp_path / "b0.pt")
    grown = grow_head(tmp_path / "b0.pt", ["insulator", "defect", "bird_nest", "flashover"], tmp_path / "g.pt")
    a = torch.load(tmp_path / "b0.pt", weights_only=False)["model"].float().eval()
    b = torch.load(grown, weights_only=False)["model"].float().eval()
    assert b.model[-1].cv3[0][-1].in_channels == 80
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        ya, yb = a(x)[0], b(x)[0]
    assert float(ya[:, 4:].max()) > 0.5  # the probe has confident scores to keep
    np.testing.assert_allclose(yb[:, :7].numpy(), ya.numpy(), rtol=1e-2, atol=1e-2)


def _negative_flight(src: Path, out: Path) -> Path:
    """A flight as a camera with another look would see it (colours inverted, boxes unchanged):
    a campaign the shipped model has not learnt."""
    import shutil

    import cv2

    shutil.copytree(src, out)
    for p in (out / "images").glob("*.jpg"):
        cv2.imwrite(str(p), 255 - cv2.imread(str(p)))
    return out


@pytest.fixture
def two_campaigns(flight, tmp_path, monkeypatch):
    """Campaign `a` (a synthetic flight the shipped model knows), campaign `b` (another flight,
    inverted), a TUF repository and `pli cloud serve` for the drones."""
    from cloud import campaigns, jobs
    from cloud.registry import keys
    from cloud.registry.tuf_repo import TufRepo
    from training.synth.flight import generate_flight

    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    env = {"PLI_DATABASE_URL": url, "PLI_CLOUD_DIR": str(tmp_path / "cloud"), "PLI_TUF_DIR": str(tmp_path / "repo")}
    for role in keys.ONLINE_ROLES:
        keys.generate(tmp_path / "online" / f"{role}.pem")
        env[f"PLI_TUF_{role.upper()}_KEY_FILE"] = str(tmp_path / "online" / f"{role}.pem")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    jobs.reset_queue()
    upgrade(url)
    root_keys = [keys.generate(tmp_path / "offline" / f"root-{i}.pem") for i in range(3)]
    signers = [keys.load_signer(tmp_path / "offline" / f"root-{i}.pem") for i in range(2)]
    TufRepo.create(tmp_path / "repo", root_keys, signers, {r: keys.online_signer(r) for r in keys.ONLINE_ROLES})
    other = generate_flight(tmp_path / "flight-b", frames=16, size=(960, 540), seed=21, progress=False)
    with session_scope(url) as s:
        campaigns.add(s, "a", flight.out, "yolo")
        campaigns.add(s, "b", _negative_flight(other.out, tmp_path / "negative-b"), "yolo")
        fleet = create_token(s, "uav-1", "fleet", "fleet1")
        operator = create_token(s, "ops", "operator")
    with CloudServer(env) as server:
        yield {"url": url, "base": server.base, "fleet": fleet, "operator": operator, "tmp": tmp_path}
    jobs.reset_queue()


def _blind_labels(campaign_data: Path, out: Path) -> Path:
    """`b`'s training photos with every box removed: what a blind teacher's pseudo-labels are."""
    from training.dataset import YoloDataset

    ds = YoloDataset.open(campaign_data)
    (out / "images" / "train").mkdir(parents=True)
    (out / "labels" / "train").mkdir(parents=True)
    for p in ds.images("train"):
        os.symlink(p.resolve(), out / "images" / "train" / p.name)
        (out / "labels" / "train" / f"{p.stem}.txt").write_text("")
    (out / "data.yaml").write_text(f"path: {out}\ntrain: images/train\nval: images/train\nnames: {ds.names}\n")
    return out / "data.yaml"


def test_the_loop_refuses_a_forgetting_candidate_and_releases_a_good_one_to_the_canary_drones(two_campaigns):
    from fastapi.testclient import TestClient

    from cloud import campaigns
    from cloud.api.app import create_app
    from cloud.learning import learn
    from edge.update import UpdateClient, install_root

    env = two_campaigns
    # from the shipped weights (no release yet); a few dozen steps, so no warmup
    # ultralytics' AdamW, not the service's gentle SGD: ten epochs on three photos must move the model
    small = {"imgsz": 320, "batch": 2, "warmup_epochs": 0, "freeze": 0, "lr0": None, "replay_repeat": 1}
    with session_scope(env["url"]) as s:
        b_data = Path(campaigns.get(s, "b").data)
    blind = _blind_labels(b_data, env["tmp"] / "blind")
    # made to forget: no replay, a blind teacher's empty pseudo-labels, a learning rate far too high
    bad = learn("b", recipe={**small, "epochs": 2, "lr0": 0.5}, pseudo=str(blind), replay=0)
    m = bad["matrix"]
    assert not bad["passed"] and bad["release"] is None
    assert any(r.startswith("a forgets") for r in bad["reasons"]), (bad["reasons"], m)
    assert m["candidate"]["a"]["map50"] < m["parent"]["a"]["map50"] - 0.015  # it did forget: the gate saw it

    # operators confirm boxes on three of b's photos: the third annotation queues a full run, with
    # the service's recipe and margin (tiny test sets: a wider margin), and the worker trains it
    import json

    from annotation import backend
    from cloud import annotations, jobs
    from cloud.learning import after_annotations
    from cloud.models import Job
    from cloud.selection_job import register_photos
    from edge.detections import Detections
    from training.dataset import YoloDataset

    os.environ.update({"PLI_LEARN_AFTER": "3", "PLI_REFRESH_EVERY": "0", "PLI_LEARN_MARGIN": "5",
                       "PLI_LEARN_RECIPE": json.dumps({**small, "epochs": 10})})
    ds = YoloDataset.open(b_data)
    photos = sorted(ds.images("train"))[:3]
    for n, (image_id, p) in enumerate(zip(register_photos("b", photos), photos, strict=True)):
        pixels, xyxy, cls = ds.read(p)
        result = backend.prediction(Detections(xyxy, np.ones(len(cls)), cls, ds.names), pixels.shape[1],
                                    pixels.shape[0], "ops")["result"]
        with session_scope(env["url"]) as s:
            annotations.record(s, 1, {"id": 10 + n, "data": {"pli_image_id": image_id}},
                               {"id": 70 + n, "result": result, "updated_at": f"2026-12-01T11:0{n}:00Z"}, "webhook")
        with session_scope(env["url"]) as s:
            queued = after_annotations(s)
        assert len(queued) == (1 if n == 2 else 0)
    worker = jobs.Worker(workers=1).start()
    try:
        for _ in range(1200):
            with session_scope(env["url"]) as s:
                job = s.get(Job, queued[0])
                status, good = job.status, job.result
            if status in ("done", "failed"):
                break
            time.sleep(0.5)
    finally:
        worker.stop()
        for k in ("PLI_LEARN_AFTER", "PLI_REFRESH_EVERY", "PLI_LEARN_MARGIN", "PLI_LEARN_RECIPE"):
            os.environ.pop(k, None)
    assert status == "done", job.error
    m = good["matrix"]
    assert good["passed"], (good["reasons"], m)
    assert m["candidate"]["b"]["map50"] > m["parent"]["b"]["map50"]
    assert m["candidate"]["a"]["map50"] >= m["parent"]["a"]["map50"] - 0.05
    with session_scope(env["url"]) as s:
        from cloud.models import LearningRun

        run = s.get(LearningRun, good["run"])
        assert run.trigger == "annotations" and len(run.data["operators"]) == 3  # trained on what they confirmed
        assert not set(run.data["new"]) & {p.name for p in photos}  # their photos once, with the operators' boxes

    root = (env["tmp"] / "repo" / "metadata" / "1.root.json").read_bytes()
    install_root(env["tmp"] / "canary", root)
    release = UpdateClient(env["tmp"] / "canary", env["base"], env["fleet"], "canary").check()
    assert release is not None and release.version == good["release"]
    assert any(name.endswith(".onnx") for name in release.files)
    install_root(env["tmp"] / "fleet", root)  # the fleet group waits for an operator's approval
    assert UpdateClient(env["tmp"] / "fleet", env["base"], env["fleet"], "fleet").check() is None

    # shipped as a checkout's default model: the release's bytes, renamed, each card naming it
    import hashlib

    from cloud.registry.rollout import ship

    with session_scope(env["url"]) as s:
        shipped = {p.name for p in ship(s, good["release"], env["tmp"] / "models", "pli-next")}
    assert {"pli-next.onnx", "pli-next.json", "pli-next.golden.json", "pli-next-int8.onnx", "pli-next.pt"} <= shipped
    card = json.loads((env["tmp"] / "models" / "pli-next.json").read_text())
    assert card["release"] == good["release"] and card["golden"] == "pli-next.golden.json"
    assert card["sha256"] == hashlib.sha256((env["tmp"] / "models" / "pli-next.onnx").read_bytes()).hexdigest()
    from training.heads import names_of

    names = Detector(env["tmp"] / "models" / "pli-next-int8.onnx").names
    assert names[:len(ds.names)] == ds.names  # b's classes, in their places,
    assert names == names_of(ROOT / "models" / "pli-default.pt")  # and none of the start's taken away

    client = TestClient(create_app(env["url"]))
    runs = client.get("/learning/runs", headers={"Authorization": f"Bearer {env['operator']}"}).json()
    assert [(r["status"], r["release"]) for r in runs] == [("released", good["release"]), ("refused", None)]
    one = client.get(f"/learning/runs/{runs[1]['id']}", headers={"Authorization": f"Bearer {env['operator']}"}).json()
    assert one["matrix"] == bad["matrix"] and one["curve"]["train/box_loss"] and one["data"]["pseudo"] == str(blind)
    assert client.get("/learning/runs", headers={"Authorization": f"Bearer {env['fleet']}"}).status_code == 403
    from cloud.operators import add_operator

    with session_scope(env["url"]) as s:
        add_operator(s, "carol", "a long enough password")
    assert client.get("/ui/learning", follow_redirects=False).status_code == 303  # a login first
    client.post("/login", data={"name": "carol", "password": "a long enough password"})
    page = client.get("/ui/learning")
    assert page.status_code == 200
    assert f"release {good['release']}" in page.text and "a forgets" in page.text  # both decisions shown
    assert page.text.count("<polyline") >= 6  # the learning curves (losses per epoch) of both runs


def test_operator_annotations_trigger_a_refresh_of_the_pre_annotation_model_only(flight, tmp_path, monkeypatch):
    """Every K annotations (here 3) queue a quick refresh; it trains on the operators' boxes and
    becomes the model Label Studio's tasks are pre-annotated with; the fleet's releases are
    untouched; no new annotations, no new refresh."""
    from annotation import backend
    from cloud import annotations, campaigns, jobs
    from cloud.learning import after_annotations, refresh
    from cloud.models import Job, LearningRun, ModelRelease
    from cloud.registry.rollout import preannotation_model
    from cloud.selection_job import register_photos
    from edge.detections import Detections
    from training.dataset import YoloDataset

    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    monkeypatch.setenv("PLI_DATABASE_URL", url)
    monkeypatch.setenv("PLI_CLOUD_DIR", str(tmp_path / "cloud"))
    monkeypatch.setenv("PLI_REFRESH_EVERY", "3")
    monkeypatch.setenv("PLI_LEARN_AFTER", "0")  # full runs: not in this test
    jobs.reset_queue()
    upgrade(url)
    with session_scope(url) as s:
        data = Path(campaigns.add(s, "a", flight.out, "yolo").data)
    ds = YoloDataset.open(data)
    photos = sorted(ds.images("train"))[:4]
    ids = register_photos("a", photos)
    with session_scope(url) as s:
        for n, (image_id, p) in enumerate(zip(ids, photos, strict=True)):
            pixels, xyxy, cls = ds.read(p)
            h, w = pixels.shape[:2]
            result = backend.prediction(Detections(xyxy, np.ones(len(cls)), cls, ds.names), w, h, "ops")["result"]
            annotations.record(s, 1, {"id": 100 + n, "data": {"pli_image_id": image_id}},
                               {"id": 500 + n, "result": result, "updated_at": f"2026-12-01T10:0{n}:00Z"}, "webhook")
            if n == 1:
                # alerts' reviews on the same photos (a verdict each): neither counted nor trained on
                for k in range(2):
                    verdict = [{"from_name": "verdict", "to_name": "image", "type": "choices",
                                "value": {"choices": ["confirm"]}}]
                    annotations.record(s, 2, {"id": 200 + k, "data": {"pli_image_id": ids[k], "pli_alert_id": f"A{k}"}},
                                       {"id": 600 + k, "result": verdict, "updated_at": "2026-12-01T10:05:00Z"},
                                       "webhook")
                assert after_annotations(s) == []  # two so far: not yet
    with session_scope(url) as s:
        queued = after_annotations(s)
    with session_scope(url) as s:
        assert len(queued) == 1 and s.get(Job, queued[0]).kind == "refresh"
    with session_scope(url) as s:
        assert after_annotations(s) == []  # one is queued already
    out = refresh("a", recipe={"imgsz": 320, "epochs": 2, "batch": 2, "warmup_epochs": 0})
    assert out["annotations"] == 4 and preannotation_model() == Path(out["model"]) and Path(out["model"]).exists()
    with session_scope(url) as s:
        s.get(Job, queued[0]).status = "done"  # (the worker's mark, as it would have set it)
    with session_scope(url) as s:
        run = s.get(LearningRun, out["run"])
        assert run.trigger == "refresh" and run.status == "refreshed" and run.data["photos"] == 4
        assert run.curve["train/box_loss"]
        assert s.query(ModelRelease).count() == 0  # the fleet's releases: untouched
        assert after_annotations(s) == []  # nothing new since the refresh
        assert 0.05 <= run.data["conf"] <= 0.9  # the default (QUICK): the threshold of the fewest edits
    plain = refresh("a", recipe={"imgsz": 320, "epochs": 1, "batch": 2, "warmup_epochs": 0, "tune_conf": False})
    with session_scope(url) as s:
        assert s.get(LearningRun, plain["run"]).data["conf"] is None  # the export's own threshold
    tuned = refresh("a", recipe={"imgsz": 320, "epochs": 1, "batch": 2, "warmup_epochs": 0, "tune_conf": True})
    from edge.model_card import ModelCard

    with session_scope(url) as s:
        run = s.get(LearningRun, tuned["run"])
        assert run.data["from"] == s.get(LearningRun, plain["run"]).data["weights"]  # from the previous refresh
        assert 0.05 <= run.data["conf"] <= 0.9
        assert ModelCard.beside(Path(tuned["model"])).conf == pytest.approx(run.data["conf"])
        assert float(Detector(Path(tuned["model"])).info.metadata["conf"]) == pytest.approx(run.data["conf"])
    jobs.reset_queue()


def test_an_operator_queues_a_learning_run_through_the_api(flight, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from cloud import campaigns, jobs
    from cloud.api.app import create_app
    from cloud.models import Job

    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    monkeypatch.setenv("PLI_DATABASE_URL", url)
    monkeypatch.setenv("PLI_CLOUD_DIR", str(tmp_path / "cloud"))
    jobs.reset_queue()
    upgrade(url)
    with session_scope(url) as s:
        campaigns.add(s, "a", flight.out, "yolo")
        operator, fleet = create_token(s, "ops", "operator"), create_token(s, "uav", "fleet", "fleet1")
    client = TestClient(create_app(url))
    body = {"campaign": "a", "recipe": {"epochs": 3, "imgsz": 320}, "replay": 10}
    assert client.post("/learning/runs", json=body, headers={"Authorization": f"Bearer {fleet}"}).status_code == 403
    ops = {"Authorization": f"Bearer {operator}"}
    assert client.post("/learning/runs", json={**body, "campaign": "nope"}, headers=ops).status_code == 404
    assert client.post("/learning/runs", json={**body, "recipe": {"imgsz": 333}}, headers=ops).status_code == 422
    r = client.post("/learning/runs", json=body, headers=ops)
    assert r.status_code == 202
    with session_scope(url) as s:
        job = s.get(Job, r.json()["job"])
        assert job.kind == "learn" and job.status == "queued" and job.args["recipe"]["epochs"] == 3
        assert job.args["trigger"] == "on demand (ops)" and job.args["replay"] == 10
    assert client.get("/learning/runs/99", headers=ops).status_code == 404
    jobs.reset_queue()


def test_a_worker_killed_mid_training_leaves_a_failed_run_and_no_release(two_campaigns):
    """`pli cloud worker` SIGKILLed while a learning run trains: nothing is released (a release is
    recorded and signed only as a run's last step), and the next worker to start marks the dead
    one's job and run failed (huey had already dropped the job: it is not run again by itself)."""
    import signal
    import subprocess
    import sys

    from waiting import until

    from cloud import jobs
    from cloud.models import Job, LearningRun, ModelRelease

    env = two_campaigns
    job_id = jobs.enqueue("learn", campaign="b", recipe={"imgsz": 320, "batch": 2, "epochs": 60, "warmup_epochs": 0,
                                                          "freeze": 0, "lr0": None}, replay=0)
    cmd = [sys.executable, "-m", "pli", "cloud", "worker", "--workers", "1"]
    log = env["tmp"] / "worker.log"
    worker = subprocess.Popen(cmd, stderr=log.open("w"), cwd=ROOT)

    def training() -> bool:
        with session_scope(env["url"]) as s:
            run = s.query(LearningRun).order_by(LearningRun.id.desc()).first()
            run_id = run.id if run is not None else None
        return run_id is not None and any((env["tmp"] / "cloud" / "learning" / f"run-{run_id}").rglob("results.csv"))

    try:
        assert until(training, 300), log.read_text()[-2000:]  # an epoch done: well inside training
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        with session_scope(env["url"]) as s:
            assert s.get(Job, job_id).status == "running"  # what the dead worker left
            assert s.query(ModelRelease).count() == 0
            s.add(Job(id="live-elsewhere", kind="learn", status="running", args={},
                      result={"worker": jobs.worker_id()}))  # a live worker's (this process): left alone
        worker = subprocess.Popen(cmd, stderr=log.open("a"), cwd=ROOT)

        def failed() -> bool:
            with session_scope(env["url"]) as s:
                return s.get(Job, job_id).status == "failed"

        assert until(failed, 90), log.read_text()[-2000:]
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    with session_scope(env["url"]) as s:
        job = s.get(Job, job_id)
        run = s.get(LearningRun, job.result["learning_run"])
        assert "stopped mid-run" in job.error and run.status == "failed" and run.release is None
        assert "stopped mid-run" in run.decision["reasons"][0]
        assert s.query(ModelRelease).count() == 0  # never a half release
        assert s.get(Job, "live-elsewhere").status == "running"
    assert not any((env["tmp"] / "cloud" / "registry").glob("learn-*"))
