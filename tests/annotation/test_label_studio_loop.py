"""The operators' loop against a real Label Studio server: a project from the class list,
tasks imported without predictions pointing at the cloud's photos behind signed links, Label
Studio asking the cloud's ML backend for boxes when a task is opened, an operator's annotation,
the export back into a YOLO dataset within a pixel; nothing anonymous on the cloud's side."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from annotation import backend
from annotation.client import LabelStudio
from annotation.label_config import detection_config
from cloud.db import session_scope, upgrade
from cloud.models import Image
from comms.classes import class_list_for, load_class_list
from comms.local_broker import free_port
from edge.detector import Detector

ROOT = Path(__file__).resolve().parents[2]
# what pre-annotations name: the shipped model and its card version
SHIPPED_VERSION = "pli-default/" + json.loads((ROOT / "models" / "pli-default.json").read_text())["version"]


class Cloud:
    """`pli cloud serve` on loopback, stopped and started again at will (same port, database)."""

    def __init__(self, env: dict):
        self.env, self.port, self.proc = env, free_port(), None
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> Cloud:
        self.proc = subprocess.Popen([sys.executable, "-m", "pli", "-q", "cloud", "serve", "--port", str(self.port)],
                                     env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                if httpx.get(f"{self.base}/health").status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError("the cloud did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, flight):
    """The cloud with the ML backend's password, the webhook's secret and the image-link secret
    in its environment, and the flight's photos in its object store."""
    from cloud.storage import LocalStore

    work = tmp_path_factory.mktemp("cloud-ls")
    env = {**os.environ, "PLI_DATABASE_URL": f"sqlite:///{work / 'cloud.db'}", "PLI_CLOUD_DIR": str(work / "cloud"),
           "PLI_ML_USER": "label-studio", "PLI_ML_PASSWORD": "ml-secret-1", "PLI_ANNOTATION_SECRET": "links-secret-1",
           "PLI_LS_WEBHOOK_SECRET": "hook-secret-1"}
    upgrade(env["PLI_DATABASE_URL"])
    old = {"PLI_ANNOTATION_SECRET": os.environ.get("PLI_ANNOTATION_SECRET")}
    os.environ["PLI_ANNOTATION_SECRET"] = env["PLI_ANNOTATION_SECRET"]  # the tests sign links as the cloud does
    objects = LocalStore(work / "cloud" / "objects")  # where the server's default store keeps them
    ids = []
    with session_scope(env["PLI_DATABASE_URL"]) as s:
        for p in sorted((flight.out / "images").glob("*.jpg"))[:3]:
            key = f"photos/{p.name}"
            objects.put_file(key, p)
            row = Image(name=p.name, key=key)
            s.add(row)
            s.flush()
            ids.append(row.id)
    server = Cloud(env).start()
    yield server.base, ids, env, server
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_label_studio_pre_annotates_from_the_cloud_and_its_export_imports_within_a_pixel(label_studio, cloud,
                                                                                          tmp_path):
    base, ids, env, _ = cloud
    ls = LabelStudio(label_studio.url, label_studio.token)
    project = ls.create_project("campaign 1 - synthetic", detection_config(load_class_list()),
                                evaluate_predictions_automatically=True)
    ml = ls.add_ml_backend(project, f"{base}/ml", "pli cloud", "label-studio", "ml-secret-1")
    assert ml.get("state") in ("CO", "Connected", None), ml
    tasks = ls.import_tasks(project, [backend.image_task(base, i) for i in ids])  # no predictions
    assert len(tasks) == len(ids)
    opened = ls.task(tasks[0])  # as the labelling page opens it: Label Studio calls /ml/predict now
    preds = opened.get("predictions") or ls.predictions(tasks[0])
    assert preds, opened
    p = preds[0]
    assert p["model_version"] == SHIPPED_VERSION
    boxes = [r for r in p["result"] if r["type"] == "rectanglelabels"]
    assert boxes and all(0 < r["score"] <= 1 for r in boxes)

    # The operator keeps the model's boxes, moves one and adds one, and submits.
    result = [{k: r[k] for k in ("id", "type", "from_name", "to_name", "original_width", "original_height",
                                 "value")} for r in boxes]
    result[0]["value"] = {**result[0]["value"], "x": result[0]["value"]["x"] + 1.0}
    result.append({"id": "added1", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                   "original_width": 960, "original_height": 540,
                   "value": {"x": 10.0, "y": 20.0, "width": 5.0, "height": 8.0, "rotation": 0,
                             "rectanglelabels": ["bird_nest"]}})
    ls.annotate(tasks[0], result)
    export = tmp_path / "export.json"
    export.write_text(json.dumps(ls.export(project)))
    out = subprocess.run([sys.executable, "-m", "pli", "data", "import", str(export), "--format", "labelstudio",
                          "--server", label_studio.url, "--out", str(tmp_path / "ds"), "--split", "1,0"],
                         cwd=ROOT, capture_output=True, text=True, env={**os.environ,
                                                                      "PLI_LS_TOKEN": label_studio.token})
    assert out.returncode == 0, out.stderr[-2000:]
    from training.dataset import YoloDataset

    ds = YoloDataset.open(tmp_path / "ds" / "data.yaml")
    images = [i for split in ds.distinct_splits() for i in ds.images(split)]
    assert len(images) == 1, out.stdout + out.stderr[-2000:]  # the one task annotated
    img = images[0]
    _, xyxy, cls = ds.read(img)
    want = np.array([[r["value"]["x"] * 9.6, r["value"]["y"] * 5.4, (r["value"]["x"] + r["value"]["width"]) * 9.6,
                      (r["value"]["y"] + r["value"]["height"]) * 5.4] for r in result])
    got = sorted(zip([ds.names[c] for c in cls], xyxy.tolist(), strict=True))
    expected = sorted(zip([r["value"]["rectanglelabels"][0] for r in result], want.tolist(), strict=True))
    assert [n for n, _ in got] == [n for n, _ in expected]  # classes by name
    assert np.abs(np.array([b for _, b in got]) - np.array([b for _, b in expected])).max() < 1.0

    # The cloud does the same from the server directly, its photos from its own store by id.
    direct = subprocess.run([sys.executable, "-m", "pli", "annotate", "export", "--project", str(project),
                             "--out", str(tmp_path / "direct"), "--split", "1,0"], cwd=ROOT, capture_output=True,
                            text=True, env={**env, "PLI_LS_URL": label_studio.url, "PLI_LS_TOKEN": label_studio.token})
    assert direct.returncode == 0, direct.stderr[-2000:]
    ds2 = YoloDataset.open(tmp_path / "direct" / "data.yaml")
    (img2,) = ds2.images("train")
    _, xyxy2, cls2 = ds2.read(img2)
    assert sorted(zip(cls2.tolist(), np.round(xyxy2, 3).tolist(), strict=True)) == sorted(
        zip(cls.tolist(), np.round(xyxy, 3).tolist(), strict=True))
    assert not (tmp_path / "direct" / "fetched").exists()  # nothing fetched: the cloud had the photo

    # A large set: tasks imported with the cloud's predictions, in batches; flagged missed-fault tasks.
    made = subprocess.run([sys.executable, "-m", "pli", "annotate", "tasks", "--project", str(project), "--cloud-url",
                           base, "--image", str(ids[1]), "--image", str(ids[2]), "--predictions", "--missed-fault",
                           "--batch", "1"], cwd=ROOT, capture_output=True, text=True,
                          env={**env, "PLI_LS_URL": label_studio.url, "PLI_LS_TOKEN": label_studio.token})
    assert made.returncode == 0 and "2 tasks" in made.stdout, made.stderr[-2000:]
    batch = [t for t in ls.export(project, all_tasks=True) if t["data"].get("kind") == "missed_fault"]
    assert sorted(t["data"]["pli_image_id"] for t in batch) == sorted(ids[1:3])
    assert all(t["data"]["title"].startswith("MISSED FAULT?") for t in batch)  # marked where an operator sees it
    for t in batch:
        (pred,) = ls.predictions(t["id"])
        assert pred["model_version"] == SHIPPED_VERSION


def test_the_ml_backend_and_the_image_links_refuse_the_anonymous(cloud):
    base, ids, _, _ = cloud
    assert httpx.get(f"{base}/ml/health").status_code == 401
    assert httpx.get(f"{base}/ml/health", auth=("label-studio", "wrong")).status_code == 401
    assert httpx.get(f"{base}/ml/health", auth=("label-studio", "ml-secret-1")).status_code == 200
    assert httpx.post(f"{base}/ml/predict", json={"tasks": []}).status_code == 401
    assert httpx.get(f"{base}/annotation/images/{ids[0]}").status_code == 403  # no token
    link = backend.image_task(base, ids[0])["data"]["image"]
    assert httpx.get(link).status_code == 200 and httpx.get(link).content[:2] == b"\xff\xd8"
    assert httpx.get(link.replace(f"/images/{ids[0]}?", f"/images/{ids[1]}?")).status_code == 403  # another photo
    expired = f"{base}/annotation/images/{ids[0]}?{backend.sign(ids[0], expires=int(time.time()) - 1)}"
    assert httpx.get(expired).status_code == 403


def _review(verdict: str, other: str | None = None) -> list[dict]:
    result = [{"id": "v1", "type": "choices", "from_name": "verdict", "to_name": "image",
               "value": {"choices": [verdict]}}]
    if other:
        result.append({"id": "c1", "type": "choices", "from_name": "correct_class", "to_name": "image",
                       "value": {"choices": [other]}})
    return result


def test_annotations_come_back_by_webhook_and_by_reconciliation_and_reviews_set_alerts(label_studio, cloud,
                                                                                       monkeypatch):
    """The webhook records (and queues) each annotation; with the cloud stopped, an annotation
    still made is found by reconciliation when it is back; a confirm and a false alarm in the
    review project set the alerts' status, the Label Studio user named in the audit trail."""
    from datetime import UTC, datetime

    from cloud import annotations
    from cloud.alerts import record as record_alert
    from cloud.label_studio import wire_project
    from cloud.models import Alert, AlertEvent, Annotation, Job
    from comms import alert_json
    from comms.alert import Alert as Record
    from comms.classes import Severity

    base, ids, env, server = cloud
    url = env["PLI_DATABASE_URL"]
    for k in ("PLI_ML_PASSWORD", "PLI_LS_WEBHOOK_SECRET"):
        monkeypatch.setenv(k, env[k])
    ls = LabelStudio(label_studio.url, label_studio.token)
    project = wire_project(ls, "campaign webhook", base)
    (t1, t2) = ls.import_tasks(project, [backend.image_task(base, i) for i in ids[:2]])
    box = [{"id": "b1", "type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": 960,
            "original_height": 540, "value": {"x": 10.0, "y": 10.0, "width": 5.0, "height": 5.0, "rotation": 0,
                                              "rectanglelabels": ["defect"]}}]
    a1 = ls.annotate(t1, box)

    def stored() -> dict[int, str]:
        with session_scope(url) as s:
            return {a.id: a.via for a in s.query(Annotation)}

    for _ in range(100):
        if a1["id"] in stored():
            break
        time.sleep(0.1)
    assert stored() == {a1["id"]: "webhook"}  # pushed by Label Studio, within the request's second
    with session_scope(url) as s:
        assert s.query(Job).filter(Job.kind == "annotations").count() >= 1  # applying is queued, not done inline

    server.stop()  # the webhook of the next annotation is lost
    a2 = ls.annotate(t2, box)
    server.start()
    assert a2["id"] not in stored()
    with session_scope(url) as s:
        assert annotations.reconcile(s, {project: ls.export(project)}) == {"annotations": 2, "new_or_newer": 1}
    with session_scope(url) as s:  # and again: nothing new, nothing twice
        assert annotations.reconcile(s, {project: ls.export(project)}) == {"annotations": 2, "new_or_newer": 0}
    assert stored() == {a1["id"]: "webhook", a2["id"]: "poll"}

    # The review project: two alerts, an operator's confirm and false alarm.
    t0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    with session_scope(url) as s:
        for seq in (1, 2):
            rec = Record("UAV-07", seq, "F-rev", t0, 25.3, 103.1 + seq / 1000, 1600.0, "defect", 0.9, Severity.HIGH,
                         position_source="laser", epoch=1, class_list_version=1, source_frame="IMG_1.JPG")
            record_alert(s, "pli/fleet1/UAV-07/alerts", alert_json.dumps(rec, b"\xff\xd8crop-jpeg"))
        alert_ids = [a.id for a in s.query(Alert).order_by(Alert.id)]
    review = wire_project(ls, "alert review", base, review=True)
    config = ls.project(review)["label_config"]
    shipped = class_list_for(Detector(ROOT / "models" / "pli-default.onnx").names)  # the pre-annotator's list
    assert config.count("<Header") >= 3 and "Which fault is it?" in config and 'visibleWhen="choice-selected"' in config
    offered = set(re.findall(r'<Choice value="([^"]+)"', config)) - {"confirm", "false alarm", "other class"}
    assert offered == set(shipped.fault_names) and "insulator" not in offered
    cli_env = {**env, "PLI_LS_URL": label_studio.url, "PLI_LS_TOKEN": label_studio.token}
    for _ in range(2):  # run twice: the second adds nothing
        out = subprocess.run([sys.executable, "-m", "pli", "annotate", "review", "--project", str(review),
                              "--cloud-url", base], cwd=ROOT, capture_output=True, text=True, env=cli_env)
        assert out.returncode == 0, out.stderr[-2000:]
    assert "0 review tasks" in out.stdout
    by_alert = {t["data"]["pli_alert_id"]: t for t in ls.export(review, all_tasks=True)}
    assert sorted(by_alert) == alert_ids
    crop = by_alert[alert_ids[0]]["data"]["crop"]
    assert httpx.get(crop).status_code == 200 and httpx.get(crop.split("?")[0]).status_code == 403
    tasks = [by_alert[a]["id"] for a in alert_ids]
    ls.annotate(tasks[0], _review("confirm"))
    ls.annotate(tasks[1], _review("false alarm"))
    for _ in range(100):
        with session_scope(url) as s:
            if s.query(Annotation).filter(Annotation.alert_id.is_not(None)).count() == 2:
                break
        time.sleep(0.1)
    # The queued jobs run on a worker (`pli cloud worker`'s consumer, in this process, on the
    # server's queue and database), not in the webhook's request.
    from cloud import jobs

    for k, v in {"PLI_LS_URL": label_studio.url, "PLI_LS_TOKEN": label_studio.token, "PLI_DATABASE_URL": url,
                 "PLI_CLOUD_DIR": env["PLI_CLOUD_DIR"]}.items():
        monkeypatch.setenv(k, v)
    jobs.reset_queue()
    worker = jobs.Worker(workers=1).start()
    try:
        for _ in range(200):
            with session_scope(url) as s:
                statuses = [s.get(Alert, a).status for a in alert_ids]
            if "new" not in statuses:
                break
            time.sleep(0.1)
    finally:
        worker.stop()
        jobs.reset_queue()
    with session_scope(url) as s:
        assert [s.get(Alert, a).status for a in alert_ids] == ["confirmed", "false_alarm"]
        assert s.query(Annotation).filter(Annotation.applied.is_(False)).count() == 0
        actors = {e.actor for e in s.query(AlertEvent).filter(AlertEvent.alert_id.in_(alert_ids))}
    assert actors == {f"{label_studio.username} (label-studio)"}
    assert httpx.post(f"{base}/annotation/webhook", json={"action": "ANNOTATION_CREATED"}).status_code == 401
    assert httpx.post(f"{base}/annotation/webhook", json={"action": "ANNOTATION_CREATED"},
                      headers={"X-PLI-Webhook": "wrong"}).status_code == 401


def test_label_studio_killed_while_operators_annotate_loses_no_annotation(label_studio, cloud, monkeypatch):
    """Label Studio SIGKILLed between two operators' annotations: the one it had accepted survives
    its restart (its database committed it before answering), an operator's save while it is down
    fails at the operator's side (nothing accepted, nothing to lose), the reconciliation poll
    fails with a clear error instead of recording anything, and once it is back every annotation
    is in the cloud exactly once, by webhook or by the poll."""
    import signal

    from cloud import annotations
    from cloud.label_studio import wire_project
    from cloud.models import Annotation

    base, ids, env, _server = cloud
    url = env["PLI_DATABASE_URL"]
    for k in ("PLI_ML_PASSWORD", "PLI_LS_WEBHOOK_SECRET"):
        monkeypatch.setenv(k, env[k])
    ls = LabelStudio(label_studio.url, label_studio.token)
    project = wire_project(ls, "campaign outage", base)
    tasks = ls.import_tasks(project, [backend.image_task(base, i) for i in ids[:3]])
    box = [{"id": "b1", "type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": 960,
            "original_height": 540, "value": {"x": 20.0, "y": 20.0, "width": 6.0, "height": 6.0, "rotation": 0,
                                              "rectanglelabels": ["bird_nest"]}}]

    def stored() -> dict[int, str]:
        with session_scope(url) as s:
            return {a.id: a.via for a in s.query(Annotation).filter(Annotation.project == project)}

    first = ls.annotate(tasks[0], box)
    os.killpg(label_studio.proc.pid, signal.SIGKILL)  # the annotation server's power cut
    label_studio.proc.wait(10)
    down = time.monotonic()
    with pytest.raises(httpx.HTTPError):
        ls.annotate(tasks[1], box)  # the operator's save fails in front of the operator
    with pytest.raises(httpx.HTTPError), session_scope(url) as s:
        annotations.reconcile(s, {project: ls.export(project)})
    label_studio.start()
    up = time.monotonic()
    ls = LabelStudio(label_studio.url, label_studio.token)
    later = [ls.annotate(t, box) for t in tasks[1:]]  # the operators carry on (the failed save again)
    with session_scope(url) as s:
        counts = annotations.reconcile(s, {project: ls.export(project)})
    assert counts["annotations"] == 3  # the first survived the kill
    with session_scope(url) as s:
        assert annotations.reconcile(s, {project: ls.export(project)})["new_or_newer"] == 0  # nothing twice
    got = stored()
    assert sorted(got) == sorted([first["id"], *(a["id"] for a in later)]) and len(got) == 3
    print({"fault": "Label Studio SIGKILLed while operators annotate", "annotations": 3, "lost": 0,
           "stored_twice": 0, "restart_s": round(up - down, 1)})


def test_an_operator_opens_a_task_in_the_browser_and_sees_the_models_boxes(label_studio, cloud):
    """Debian's Chromium, headless: log into Label Studio, open a task imported without
    predictions; the page shows the cloud model's boxes (with their scores) over the photo the
    cloud serves behind its signed link. The same photo without the link's token is refused."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, ids, _, _ = cloud
    ls = LabelStudio(label_studio.url, label_studio.token)
    project = ls.create_project("campaign browser", detection_config(load_class_list()),
                                evaluate_predictions_automatically=True)
    ls.add_ml_backend(project, f"{base}/ml", "pli cloud", "label-studio", "ml-secret-1")
    (task,) = ls.import_tasks(project, [backend.image_task(base, ids[2])])
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.get(f"{label_studio.url}/user/login/")
        driver.find_element(By.NAME, "email").send_keys(label_studio.username)
        driver.find_element(By.NAME, "password").send_keys(label_studio.password)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(driver, 30).until(lambda d: "/user/login" not in d.current_url)
        driver.get(f"{label_studio.url}/projects/{project}/data?tab=0&task={task}")
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".lsf-outliner-item"))
        time.sleep(1)
        regions = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".lsf-outliner-item")]
        predicted = ls.predictions(task)
        assert predicted and predicted[0]["model_version"] == SHIPPED_VERSION
        boxes = [r for r in predicted[0]["result"] if r["type"] == "rectanglelabels"]
        assert len(regions) == len(boxes)  # every box of the model on the page
        assert {r["value"]["rectanglelabels"][0] for r in boxes} == {t.split()[1] for t in regions}
        assert "pli-defa" in driver.find_element(By.TAG_NAME, "body").text  # the prediction's model version tab
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "issue loading URL" not in body, body[:500]
        shown = driver.execute_script(
            "return [...document.images].filter(i => i.src.includes(arguments[0]) && i.naturalWidth > 0)"
            ".map(i => i.naturalWidth)", f"/annotation/images/{ids[2]}?exp=")
        assert shown and shown[0] == 960  # the photo itself, through the cloud's signed link
        ARTIFACTS = ROOT / "test-artifacts"
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "label-studio-task.png"))
        driver.get(f"{base}/annotation/images/{ids[2]}")  # no token: refused
        assert "signed, unexpired link is required" in driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()
        ls.close()


def test_pli_annotate_server_without_its_credentials_is_one_error_line(tmp_path, monkeypatch):
    for k in ("PLI_LS_PASSWORD", "PLI_LS_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    out = subprocess.run([sys.executable, "-m", "pli", "annotate", "server", "--data-dir", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "pli: error: set PLI_LS_PASSWORD and PLI_LS_TOKEN: Label Studio's admin password and API token"]
