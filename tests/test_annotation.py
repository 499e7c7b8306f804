"""The operators' loop against a real Label Studio server: a project from the class list,
tasks imported without predictions pointing at the cloud's photos behind signed links, Label
Studio asking the cloud's ML backend for boxes when a task is opened, an operator's annotation,
the export back into a YOLO dataset within a pixel; nothing anonymous on the cloud's side."""

from __future__ import annotations

import json
import os
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
from comms.classes import load_class_list
from comms.local_broker import free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, flight):
    """`pli cloud serve` with the ML backend's password and the image-link secret in its
    environment, and the flight's photos in its object store."""
    work = tmp_path_factory.mktemp("cloud-ls")
    env = {**os.environ, "PLI_DATABASE_URL": f"sqlite:///{work / 'cloud.db'}", "PLI_CLOUD_DIR": str(work / "cloud"),
           "PLI_ML_USER": "label-studio", "PLI_ML_PASSWORD": "ml-secret-1", "PLI_ANNOTATION_SECRET": "links-secret-1"}
    upgrade(env["PLI_DATABASE_URL"])
    old = {"PLI_ANNOTATION_SECRET": os.environ.get("PLI_ANNOTATION_SECRET")}
    os.environ["PLI_ANNOTATION_SECRET"] = env["PLI_ANNOTATION_SECRET"]  # the tests sign links as the cloud does
    from cloud.storage import LocalStore

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
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pli", "-q", "cloud", "serve", "--port", str(port)], env=env,
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield base, ids, env
    proc.terminate()
    proc.wait(10)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_label_studio_pre_annotates_from_the_cloud_and_its_export_imports_within_a_pixel(label_studio, cloud,
                                                                                          tmp_path):
    base, ids, _ = cloud
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
    assert p["model_version"] == "pli-default/2026.11.22"
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


def test_the_ml_backend_and_the_image_links_refuse_the_anonymous(cloud):
    base, ids, _ = cloud
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
