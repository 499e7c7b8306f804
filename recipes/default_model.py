"""Recipe of the base model B0 (class list 1: insulator, defect, bird_nest). Reproduce with

    .venv/bin/python recipes/default_model.py [--init ../shared/pretrained/yolov8n-coco/yolov8n-coco.pt]
        [--cplid ../shared/datasets/cplid] [--schedule cpu|gpu] [--device 0]

Data: the CPLID train split (the committed split file recipes/cplid_split.json; its val split
is held out for evaluation) plus short synthetic flights cut into native-resolution tiles, which
bring `bird_nest`, more missing discs, and the look of the demo's frames. Model: YOLOv8n, 640 px
input, started from Ultralytics' COCO weights (`--init`; `--init yolov8n.yaml` trains from
random weights, as the models before B0 were). The init's sha256 and origin go into every
checkpoint (training/train.py:describe_init), so the model card and the release's dataset
snapshot say what the model grew from. IDD is *not* in B0: it enters as the second campaign,
through the learning service (`pli cloud learn`).

Compute is the constraint; the schedule is the recipe's (`SCHEDULES`):
- `cpu` (2 cores): 20 epochs, batch 16, mosaic off for the last 5. About 11 minutes an epoch
  here, so it runs over sessions: after every epoch the slim checkpoint and the curve so far
  are kept in models/checkpoints/ (b0-last.pt, b0-last-results.csv: commit them), and the next
  run of this command resumes from them, in a fresh checkout too.
- `gpu`: 150 epochs, batch 64, 8 loader processes: minutes on one GPU. `--pack DIR` first writes
  the training data shrunk to the model input with relative paths, to carry to a GPU machine
  that cannot see the dataset; there, `--data DIR/data.yaml --schedule gpu --device 0`.
`--time H` gives either a wall-clock budget instead (ultralytics fits epochs and the learning
rate to it after the first epoch).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

import cv2
import yaml
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.data_import import import_dataset  # noqa: E402
from training.synth.flight import generate_flight  # noqa: E402
from training.tiles import tile_dataset  # noqa: E402
from training.train import describe_init, train  # noqa: E402

SPLIT_FILE = REPO / "recipes" / "cplid_split.json"
CHECKPOINT = REPO / "models" / "checkpoints" / "b0-last.pt"
COCO_INIT = REPO.parent / "shared" / "pretrained" / "yolov8n-coco" / "yolov8n-coco.pt"
SYNTH_SEEDS = (101, 102, 104, 105)
SYNTH_FRAMES = 48  # ~600 tiles, fault tiles twice: synthetic missing discs are small and need many views
SETTINGS = dict(patience=1000, cache="ram", seed=0, deterministic=False)
SCHEDULES = {
    "cpu": dict(epochs=20, batch=16, close_mosaic=5, workers=0),
    "gpu": dict(epochs=150, batch=64, close_mosaic=15, workers=8),
}

log = logging.getLogger("recipe")


def build_data(cplid: Path, work: Path, imgsz: int) -> Path:
    """CPLID (fixed split) + tiles of synthetic flights; returns the data.yaml to train on."""
    split_file = SPLIT_FILE if SPLIT_FILE.exists() else None
    cp = import_dataset(cplid, "voc", work / "cplid", ratios=None if split_file else [0.8, 0.2], seed=0,
                        split_file=split_file)
    if split_file is None:
        shutil.copyfile(cp.split_file, SPLIT_FILE)
        log.info("wrote the CPLID split file %s: commit it", SPLIT_FILE)
    tiles = []
    for seed in SYNTH_SEEDS:
        flight = work / f"synth{seed}_{SYNTH_FRAMES}"
        if not (flight / "faults.csv").exists():
            generate_flight(flight, SYNTH_FRAMES, (1920, 1080), seed)
        out = work / f"synth{seed}_{SYNTH_FRAMES}_tiles{imgsz}"
        if not (out / "data.yaml").exists():
            tile_dataset(flight, out, size=imgsz, overlap=0.2, keep_empty=0.05, seed=seed, fault_repeat=2)
        tiles.append(str(out / "images" / "train"))
    data = {
        "train": [str(work / "cplid" / "images" / "train"), *tiles],
        "val": str(work / "cplid" / "images" / "val"),
        "names": dict(enumerate(cp.class_names)),
    }
    path = work / "default_model.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def pack(data_yaml: Path, out: Path, long_side: int, quality: int = 80) -> Path:
    """Copy a (multi-folder) training set into `out`, images shrunk to `long_side`, relative paths."""
    spec = yaml.safe_load(data_yaml.read_text())
    packed: dict[str, object] = {}
    for split in ("train", "val"):
        folders = spec[split] if isinstance(spec[split], list) else [spec[split]]
        rel = []
        for folder in map(Path, folders):
            name = f"{folder.parents[1].name}_{split}"
            img_out, lbl_out = out / name / "images", out / name / "labels"
            img_out.mkdir(parents=True, exist_ok=True)
            lbl_out.mkdir(parents=True, exist_ok=True)
            for img in tqdm(sorted(folder.iterdir()), desc=f"pack {name}", unit="img"):
                im = cv2.imread(str(img))
                if im is None:
                    continue
                scale = long_side / max(im.shape[:2])
                if scale < 1:
                    im = cv2.resize(im, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                cv2.imwrite(str(img_out / f"{img.stem}.jpg"), im, [cv2.IMWRITE_JPEG_QUALITY, quality])
                label = folder.parents[1] / "labels" / folder.name / f"{img.stem}.txt"
                if label.exists():  # YOLO labels are normalized: resizing leaves them valid
                    shutil.copyfile(label, lbl_out / label.name)
            rel.append(f"{name}/images")
        packed[split] = rel if len(rel) > 1 else rel[0]
    packed["names"] = spec["names"]
    path = out / "data.yaml"
    path.write_text(yaml.safe_dump(packed, sort_keys=False))
    log.info("packed %s -> %s", data_yaml, path)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cplid", type=Path, default=REPO.parent / "shared" / "datasets" / "cplid")
    ap.add_argument("--work", type=Path, default=REPO / "data" / "default_model")
    ap.add_argument("--data", type=Path, help="a data.yaml built before (e.g. by --pack): skip building")
    ap.add_argument("--pack", type=Path, help="write the training data, shrunk to --imgsz, here and stop")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--init", "--model", dest="init", default=str(COCO_INIT),
                    help="checkpoint to start from (default: the shared COCO YOLOv8n), or a model yaml "
                    "(yolov8n.yaml) for random weights")
    ap.add_argument("--schedule", choices=sorted(SCHEDULES),
                    help="the recipe's schedule (default: cpu on the CPU, gpu on a CUDA device)")
    ap.add_argument("--epochs", type=int, help="total epochs over all sessions (default: the schedule's)")
    ap.add_argument("--time", type=float, help="training budget in hours (overrides --epochs)")
    ap.add_argument("--device", default="cpu", help="cpu, or a CUDA index such as 0")
    ap.add_argument("--workers", type=int, help="data-loading processes (default: the schedule's)")
    ap.add_argument("--name", default="b0", help="run folder name under WORK/runs")
    ap.add_argument("--fresh", action="store_true", help="ignore the kept checkpoint: start again from --init")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if CHECKPOINT.exists() and not args.fresh and not args.pack:
        log.info("resuming from %s", CHECKPOINT)
        data = args.data or build_data(args.cplid, args.work, args.imgsz)
        result = train(data, resume=CHECKPOINT, keep_last=CHECKPOINT, device=args.device)
        log.info("finished: best %s; metrics %s", result.best, result.metrics)
        return 0
    describe_init(args.init)  # a missing checkpoint fails here, before any data is built
    data = args.data or build_data(args.cplid, args.work, args.imgsz)
    if args.pack:
        pack(data, args.pack, args.imgsz)
        return 0
    schedule = dict(SCHEDULES[args.schedule or ("cpu" if args.device == "cpu" else "gpu")])
    if args.epochs:
        schedule["epochs"] = args.epochs
    if args.workers is not None:
        schedule["workers"] = args.workers
    extra = {"time": args.time} if args.time else {}
    keep = CHECKPOINT if args.device == "cpu" and args.data is None else None  # cross-session CPU runs
    result = train(data, model=args.init, imgsz=args.imgsz, device=args.device, project=args.work / "runs",
                   name=args.name, keep_last=keep, **SETTINGS, **schedule, **extra)
    log.info("finished: best %s; metrics %s", result.best, result.metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
