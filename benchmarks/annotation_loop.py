"""The operators' loop, measured: the cloud's `/ml/predict` for one task, a 100-task batch
import with predictions into a real Label Studio, and pre-annotation as an operator meets it
(boxes to add, delete or move per image, starting from the model's boxes or from nothing).

    .venv/bin/python benchmarks/annotation_loop.py [--cplid ../shared/datasets/cplid] [--idd ../shared/datasets/idd]

Label Studio (from .venv-ls) and `pli cloud serve` run on loopback; the photos go into the
cloud's object store first, as flight uploads do. One JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("YOLO_OFFLINE", "1")

from annotation import backend  # noqa: E402
from annotation.client import LabelStudio  # noqa: E402
from annotation.edits import edits, total  # noqa: E402
from annotation.label_config import detection_config  # noqa: E402
from annotation.server import LabelStudioServer  # noqa: E402
from comms.classes import load_class_list  # noqa: E402
from comms.local_broker import free_port  # noqa: E402
from edge.detector import Detector  # noqa: E402
from edge.tiled import detect  # noqa: E402

MODEL = REPO / "models" / "pli-default.onnx"


def cpu_flags() -> str:
    flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f" {f}" in flags)


def edits_on(data: Path, split: str, det: Detector, names: list[str]) -> dict:
    from training.dataset import YoloDataset

    ds = YoloDataset.open(data)
    from_model, from_nothing, parts = [], [], {"add": 0, "delete": 0, "move": 0}
    images = ds.images(split)
    for img in tqdm(images, desc=f"edits {data.parent.name}", unit="img"):
        read = ds.read(img)
        if read is None:
            continue
        image, gt_xyxy, gt_cls = read
        gt_names = np.array([ds.names[c] for c in gt_cls])
        d = detect(det, image, "auto")
        pred_names = np.array([names[c] for c in d.class_id])
        e = edits(d.xyxy, pred_names, gt_xyxy, gt_names)
        from_model.append(total(e))
        from_nothing.append(len(gt_xyxy))
        for k in parts:
            parts[k] += e[k]
    n = len(from_model)
    return {"images": n, "edits_per_image_from_model": round(float(np.mean(from_model)), 3),
            "edits_per_image_from_nothing": round(float(np.mean(from_nothing)), 3),
            "adds": parts["add"], "deletes": parts["delete"], "moves": parts["move"],
            "classes_in_data": list(ds.names)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cplid", type=Path, default=REPO.parent / "shared" / "datasets" / "cplid")
    ap.add_argument("--idd", type=Path, default=REPO.parent / "shared" / "datasets" / "idd")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "annotation_loop")
    ap.add_argument("--predict-calls", type=int, default=30)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    from training.data_import import import_dataset

    args.work.mkdir(parents=True, exist_ok=True)
    cplid = args.work / "cplid" / "data.yaml"
    if not cplid.exists():
        import_dataset(args.cplid, "voc", args.work / "cplid", split_file=REPO / "recipes" / "cplid_split.json")
    idd = args.work / "idd" / "data.yaml"
    if not idd.exists():
        import_dataset(args.idd / "annotations.json", "coco", args.work / "idd", ratios=[1.0], seed=0,
                       class_map={"broken": "defect", "pollution-flashover": "flashover"})
    from training.dataset import YoloDataset

    val = YoloDataset.open(idd).images("train")  # real 640x360 photos: "a 640 px task"
    out: dict = {"cpu_flags": cpu_flags(), "cores": os.cpu_count(), "model": MODEL.name}

    # The cloud, with the photos in its store, and Label Studio.
    work = Path(tempfile.mkdtemp(prefix="pli-annot-bench-"))
    secret = secrets.token_hex(8)
    env = {**os.environ, "PLI_DATABASE_URL": f"sqlite:///{work / 'cloud.db'}", "PLI_CLOUD_DIR": str(work / "cloud"),
           "PLI_ML_PASSWORD": secret, "PLI_ANNOTATION_SECRET": secret}
    os.environ.update(PLI_ANNOTATION_SECRET=secret)
    from cloud.db import session_scope, upgrade
    from cloud.models import Image
    from cloud.storage import LocalStore

    upgrade(env["PLI_DATABASE_URL"])
    store = LocalStore(work / "cloud" / "objects")
    ids = []
    with session_scope(env["PLI_DATABASE_URL"]) as s:
        for p in val[:args.batch]:
            store.put_file(f"photos/{p.name}", p)
            row = Image(name=p.name, key=f"photos/{p.name}")
            s.add(row)
            s.flush()
            ids.append(row.id)
    port = free_port()
    cloud = subprocess.Popen([sys.executable, "-m", "pli", "-q", "cloud", "serve", "--port", str(port)], env=env,
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    ls_server = LabelStudioServer(work / "ls")
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        # /predict, one task at a time, as Label Studio calls it when an operator opens a task
        times = []
        with httpx.Client(auth=("label-studio", secret), timeout=60) as c:
            c.post(f"{base}/ml/predict", json={"tasks": [backend.image_task(base, ids[0])]}).raise_for_status()  # warm
            for i in range(args.predict_calls):
                task = backend.image_task(base, ids[i % len(ids)])
                t0 = time.perf_counter()
                c.post(f"{base}/ml/predict", json={"tasks": [task]}).raise_for_status()
                times.append((time.perf_counter() - t0) * 1000)
        sizes = {cv2.imread(str(p)).shape[1::-1] for p in val[:args.predict_calls]}
        out["predict_ms"] = {"calls": len(times), "p50": round(statistics.median(times), 1),
                             "p95": round(float(np.percentile(times, 95)), 1), "image_sizes": sorted(sizes)}

        # A batch of tasks with their predictions, imported at once
        det = Detector(MODEL)
        version = "pli-default/" + json.loads(MODEL.with_suffix(".json").read_text())["version"]
        t0 = time.perf_counter()
        tasks = []
        for i, p in zip(ids, val[:args.batch], strict=True):
            image = cv2.imread(str(p))
            h, w = image.shape[:2]
            tasks.append({**backend.image_task(base, i),
                          "predictions": [backend.prediction(detect(det, image, "auto"), w, h, version)]})
        predict_s = time.perf_counter() - t0
        ls_server.start()
        ls = LabelStudio(ls_server.url, ls_server.token)
        project = ls.create_project("benchmark batch", detection_config(load_class_list()))
        t0 = time.perf_counter()
        imported = ls.import_tasks(project, tasks)
        import_s = time.perf_counter() - t0
        with_preds = sum(1 for t in ls.export(project, all_tasks=True) if t.get("predictions"))
        out["batch_import"] = {"tasks": len(imported), "with_predictions": with_preds,
                               "predict_s": round(predict_s, 2), "import_s": round(import_s, 2)}
        ls.close()
    finally:
        cloud.terminate()
        cloud.wait(10)
        ls_server.stop()

    names = list(Detector(MODEL).names)
    out["edits_cplid_val"] = edits_on(cplid, "val", det, names)
    out["edits_idd"] = edits_on(idd, "train", det, names)
    print(json.dumps(out))
    (REPO / "benchmarks" / "results").mkdir(exist_ok=True)
    (REPO / "benchmarks" / "results" / "annotation_loop.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
