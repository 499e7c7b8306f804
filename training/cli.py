"""`pli data ...` (import, synth, augment, tile, stats, crawl) and `pli train`.

Only argparse lives at module level: `pli --help` must work where the training extra is not
installed (on the drone); the heavy imports happen inside each command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.crawl import cli as crawl_cli


def register(sub: argparse._SubParsersAction) -> None:
    register_data(sub)
    register_train(sub)
    register_export(sub)
    register_eval(sub)
    register_recover(sub)


def register_recover(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recover", help="PyTorch weights back from a fused ONNX export (batch norm that trains)",
                       description="Loads the export's fused convolutions into the ultralytics model and restores "
                       "batch norm from per-channel statistics measured on real images (training/recover.py), so "
                       "the weights fine-tune; --check re-exports them and compares with the original file.")
    p.add_argument("onnx", type=Path)
    p.add_argument("--images", type=Path, required=True, help="folder of real images (searched recursively)")
    p.add_argument("--limit", type=int, default=128, help="images to measure on (default 128, a seeded sample)")
    p.add_argument("--cfg", default="yolov8n.yaml", help="the model yaml the export came from")
    p.add_argument("--bn", choices=["measured", "identity"], default="measured")
    p.add_argument("--out", type=Path, required=True, help="the .pt to write")
    p.add_argument("--check", action="store_true", help="re-export and print the largest output difference")
    p.set_defaults(func=_recover)


def _recover(args: argparse.Namespace) -> int:
    import json
    import random
    import tempfile

    from edge.detector import file_sha256
    from training.dataset import IMAGE_SUFFIXES
    from training.recover import max_difference, rebuild, save

    images = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"{args.images}: no images")
    random.Random(0).shuffle(images)
    model = rebuild(args.onnx, images[:args.limit], args.cfg, args.bn)
    save(model, args.out, args.onnx)
    n = min(args.limit, len(images))
    print(f"{args.out} (sha256 {file_sha256(args.out)[:16]}...), batch norm {args.bn} on {n} images")
    if args.check:
        from training.export import export_model

        with tempfile.TemporaryDirectory() as tmp:
            again = export_model(args.out, Path(tmp) / "again.onnx", dynamic_batch=True).onnx
            print(json.dumps({"max_difference": max_difference(args.onnx, again, images[-16:])}))
    return 0


def register_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="mAP per class of a .pt or .onnx model",
                       description="mAP50 and mAP50-95 per class (pycocotools) at conf 0.001 / NMS IoU 0.7, and "
                       "precision/recall at the model's operating threshold. ONNX models run through the edge "
                       "detector, exactly as on the drone. Classes are matched by name: model classes without "
                       "ground truth here, and data classes the model lacks, are reported and left out of the "
                       "mean, so a model is scored on a dataset whose class list differs (the same for .pt).")
    p.add_argument("model", type=Path, help="model file (.pt or .onnx)")
    p.add_argument("--data", required=True, type=Path, help="data.yaml of a YOLO dataset")
    p.add_argument("--split", default="val", choices=["train", "val", "test"],
                   help="split (default val): a folder, a .txt list of images or a list of those in data.yaml, as "
                   "ultralytics reads them; one folder may serve several splits")
    p.add_argument("--imgsz", type=int, help="input size for .pt models (default: the model's)")
    p.add_argument("--map", action="append", metavar="SRC=DST",
                   help="rename a data class before matching it to the model's (repeatable; DST '-' drops it)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line: per-class figures, "
                   "scored_classes, not_in_model (data classes the model lacks, with their boxes) and not_in_data")
    p.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    import json

    from training.dataset import parse_class_map
    from training.evaluate import evaluate

    r = evaluate(args.model, args.data, args.split, args.imgsz, class_map=parse_class_map(args.map))
    print(f"{'class':<12} {'mAP50':>7} {'mAP50-95':>9} {'P':>6} {'R':>6}")
    for name, m in r.per_class.items():
        pr = r.pr_per_class.get(name, {})
        print(f"{name:<12} {m['map50']:>7.3f} {m['map50_95']:>9.3f} {pr.get('precision', 0):>6.3f} "
              f"{pr.get('recall', 0):>6.3f}")
    for name, boxes in r.not_in_model.items():
        print(f"{name:<12} not a class of the model: {boxes} boxes left out of the mean")
    if r.not_in_data:
        print(f"model classes without ground truth in this split (left out): {', '.join(r.not_in_data)}")
    print(f"{'all':<12} {r.map50:>7.3f} {r.map50_95:>9.3f} {r.precision:>6.3f} {r.recall:>6.3f}"
          f"   ({r.images} images, P/R at conf {r.conf})")
    if args.json:
        print(json.dumps(r.to_json()))
    return 0


def register_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export weights to ONNX (FP32 or INT8) with a model card",
                       description="ONNX export through ultralytics; --int8 adds static QDQ quantization "
                       "(per-channel) calibrated on real images. Writes MODEL.onnx and MODEL.json (model card).")
    p.add_argument("weights", type=Path, help="trained weights (.pt)")
    p.add_argument("--out", required=True, type=Path, help="output .onnx path")
    p.add_argument("--imgsz", type=int, default=640, help="input size (default 640)")
    p.add_argument("--dynamic-batch", action="store_true", help="symbolic batch axis (tiles in one call)")
    p.add_argument("--conf", type=float, default=0.25, help="operating confidence threshold stored in the model")
    p.add_argument("--int8", action="store_true", help="static INT8 quantization (needs --calib)")
    p.add_argument("--calib", type=Path,
                   help="real images for INT8 calibration: a folder, or a data.yaml (its train split)")
    p.add_argument("--keep-head-fp32", action="store_true", help="leave the detection head in FP32")
    p.add_argument("--version", help="model version for the card (default: UTC date and time)")
    p.add_argument("--eval", action="append", default=[], metavar="NAME=DATA.yaml[:SPLIT]",
                   help="score the exported file on a dataset split (default val) and put it in the card's "
                   "metrics; repeatable")
    p.add_argument("--training-data", help="one-line summary of the training data for the card")
    p.set_defaults(func=_export)


def _parse_evals(specs: list[str]) -> dict[str, tuple[Path, str]]:
    from training.dataset import named_split

    evals = {}
    for spec in specs:
        name, data, split = named_split(spec)
        evals[name] = (data, split or "val")
    return evals


def _export(args: argparse.Namespace) -> int:
    from training.export import export_model

    r = export_model(args.weights, args.out, args.imgsz, args.dynamic_batch, args.conf, args.int8, args.calib,
                     args.keep_head_fp32, args.version, _parse_evals(args.eval), args.training_data)
    print(f"{r.onnx} ({r.card_data.precision}, sha256 {r.card_data.sha256[:16]}...)\nmodel card: {r.card}")
    return 0


def register_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="datasets: import, synth, augment, tile, stats, crawl",
                          description="Build and inspect YOLO datasets; gather photos for a new campaign.")
    dsub = data.add_subparsers(dest="data_command", required=True,
                               metavar="{import,synth,augment,tile,stats,crawl}")

    p = dsub.add_parser("import", help="convert VOC / COCO / YOLO into a split YOLO dataset",
                        description="Convert a dataset into YOLO layout with a stratified, group-aware, "
                        "seeded split; prints images and boxes per split and class.")
    p.add_argument("src", type=Path, help="source folder (or COCO JSON file)")
    p.add_argument("--format", required=True, choices=["voc", "coco", "yolo", "labelstudio"], help="source format "
                   "(labelstudio: a Label Studio JSON export)")
    p.add_argument("--images", type=Path, help="labelstudio: folder holding the tasks' photos (found by file name, "
                   "Label Studio's upload prefix stripped)")
    p.add_argument("--server", help="labelstudio: fetch photos found nowhere else from this Label Studio server "
                   "(token in $PLI_LS_TOKEN)")
    p.add_argument("--out", required=True, type=Path, help="output dataset folder")
    p.add_argument("--split", help="train,val[,test] fractions, e.g. 0.8,0.2 (default 0.8,0.2, or the "
                   "source's own splits when it has them)")
    p.add_argument("--group-by", help="keep groups on one side: a regex on the file name (first group "
                   "= group id), 'parent' (one folder per flight) or 'field:NAME' (a source field, e.g. "
                   "field:video_id)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--split-file", type=Path, help="reuse a split file (split.json) instead of splitting")
    p.add_argument("--map", action="append", metavar="SRC=DST",
                   help="rename a source class (repeatable), e.g. --map broken=defect --map "
                   "pollution-flashover=flashover; DST '-' drops the class's boxes. Applied before the names are "
                   "checked against the configured class list (classes it lacks are appended after it, with a "
                   "warning)")
    p.set_defaults(func=_import)

    p = dsub.add_parser("synth", help="render a synthetic inspection flight",
                        description="Render a geotagged synthetic flight along a power line with YOLO "
                        "labels (insulator, defect, bird_nest) and the ground truth of its faults.")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--frames", required=True, type=int, help="number of frames")
    p.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT, e.g. 1920x1080 or 4000x3000")
    p.add_argument("--seed", type=int, default=0, help="scene and route seed (default 0)")
    p.add_argument("--yaw-jitter", type=float, default=0.0,
                   help="turn the gimbal up to this many degrees off square to the line, anew each frame (default 0)")
    p.add_argument("--orbit", type=float, default=0.0, metavar="DEG",
                   help="fly an arc around each tower in turn, DEG either side of it, the camera on the tower "
                   "(default 0: along the line)")
    p.add_argument("--light", choices=["day", "dusk"], default="day",
                   help="day (default) or dusk: a low warm sun behind haze, darker and flatter")
    p.set_defaults(func=_synth)

    p = dsub.add_parser("augment", help="albumentations augmentation of a YOLO dataset",
                        description="Write originals plus K augmented copies of each train image "
                        "(val/test copied unchanged).")
    p.add_argument("src", type=Path, help="YOLO dataset folder (with data.yaml)")
    p.add_argument("--out", required=True, type=Path, help="output dataset folder")
    p.add_argument("--preset", default="uav", choices=["uav"], help="transform preset")
    p.add_argument("--copies", type=int, default=2, help="augmented copies per train image (default 2)")
    p.add_argument("--seed", type=int, default=0, help="augmentation seed (default 0)")
    p.add_argument("--min-visibility", type=float, default=0.3,
                   help="drop a box with less of its area left in frame (default 0.3)")
    p.set_defaults(func=_augment)

    p = dsub.add_parser("tile", help="cut a YOLO dataset into overlapping tiles",
                        description="Cut every image into overlapping tiles at native resolution (the windows "
                        "the edge detector uses on high-resolution photos), boxes clipped per tile.")
    p.add_argument("src", type=Path, help="YOLO dataset folder (with data.yaml)")
    p.add_argument("--out", required=True, type=Path, help="output dataset folder")
    p.add_argument("--size", type=int, default=640, help="tile side in pixels (default 640)")
    p.add_argument("--overlap", type=float, default=0.2, help="overlap between tiles, 0..1 (default 0.2)")
    p.add_argument("--min-visibility", type=float, default=0.4,
                   help="keep a box in a tile when this share of its area is inside (default 0.4)")
    p.add_argument("--keep-empty", type=float, default=0.1,
                   help="share of tiles without boxes to keep as background (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed for the background sample (default 0)")
    p.add_argument("--fault-repeat", type=int, default=1,
                   help="write train tiles that hold a fault-class box this many times (default 1)")
    p.set_defaults(func=_tile)

    p = dsub.add_parser("stats", help="counts per class and split, box sizes",
                        description="Images and boxes per split and class, box sizes by COCO area "
                        "(small < 32², medium < 96², large), images without labels.")
    p.add_argument("dir", type=Path, help="YOLO dataset folder (with data.yaml)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=_stats)
    crawl_cli.register(dsub)


def register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a detector with ultralytics (offline)",
                       description="Train YOLO from a model yaml or weights, offline, on all CPU cores. Writes a "
                       "run folder with weights, results.csv and learning_curve.png.")
    p.add_argument("--data", required=True, type=Path, help="data.yaml of a YOLO dataset")
    p.add_argument("--model", default="yolov8n.yaml", help="model yaml (yolov8n.yaml, yolo11n.yaml) or weights .pt")
    p.add_argument("--imgsz", type=int, default=640, help="input size (default 640)")
    p.add_argument("--epochs", type=int, default=100, help="epochs (default 100)")
    p.add_argument("--time", type=float, help="wall-clock budget in hours; overrides --epochs (the schedule is fitted "
                   "to it after the first epoch)")
    p.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    p.add_argument("--device", default="cpu", help="cpu or a CUDA index such as 0 (default cpu)")
    p.add_argument("--workers", type=int, default=0,
                   help="data-loading processes (default 0: in the main process, best on a small CPU)")
    p.add_argument("--resume", type=Path, help="run folder or last.pt to continue")
    p.add_argument("--project", type=Path, default=Path("runs/train"), help="parent of run folders")
    p.add_argument("--name", default="run", help="run folder name (default run)")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from training.train import train

    extra = {"time": args.time} if args.time else {}
    result = train(args.data, args.model, args.imgsz, args.epochs, args.batch, args.device, args.resume,
                   args.project, args.name, workers=args.workers, **extra)
    print(f"run folder: {result.run_dir}\nbest weights: {result.best}")
    for k, v in result.metrics.items():
        print(f"  {k}: {v:.4f}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from training.data_import import import_dataset
    from training.dataset import parse_class_map
    from training.split import parse_ratios
    from training.stats import render_table

    options = {}
    if args.format == "labelstudio":
        options = {"images": args.images}
        if args.server:
            import os

            from training.importers.labelstudio import image_fetcher

            token = os.environ.get("PLI_LS_TOKEN")
            if not token:
                raise ValueError("--server needs the Label Studio token in $PLI_LS_TOKEN")
            options.update(fetch=image_fetcher(args.server, token), cache=args.out / "fetched")
    elif args.images or args.server:
        raise ValueError("--images and --server are for --format labelstudio")
    result = import_dataset(args.src, args.format, args.out,
                            ratios=parse_ratios(args.split) if args.split else None,
                            group_by=args.group_by, seed=args.seed, split_file=args.split_file,
                            class_map=parse_class_map(args.map), importer_options=options)
    print(render_table(result.stats, result.class_names))
    total = result.stats["all"]
    print(f"{total.images} images, " + ", ".join(f"{total.boxes[c]} {c} boxes" for c in result.class_names))
    if result.report.warnings:
        print(f"{len(result.report.warnings)} warnings (see log above)")
    print(f"wrote {result.data_yaml} and {result.split_file}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from training.synth.flight import generate_flight, parse_size

    summary = generate_flight(args.out, args.frames, parse_size(args.size), args.seed, yaw_jitter=args.yaw_jitter,
                              orbit=args.orbit, light=args.light)
    print("\n".join(summary.lines()))
    return 0


def _augment(args: argparse.Namespace) -> int:
    from training.augment import augment_dataset

    counts = augment_dataset(args.src, args.out, args.preset, args.copies, args.seed, args.min_visibility)
    print("images written: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" -> {args.out}")
    return 0


def _tile(args: argparse.Namespace) -> int:
    from training.tiles import tile_dataset

    counts = tile_dataset(args.src, args.out, args.size, args.overlap, args.min_visibility, args.keep_empty,
                          args.seed, args.fault_repeat)
    print("tiles written: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" -> {args.out}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    import json

    from training.stats import dataset_stats, render_table

    stats, names, _report = dataset_stats(args.dir)
    if args.json:
        print(json.dumps({k: v.to_dict() for k, v in stats.items()}))
    else:
        print(render_table(stats, names, sizes=True))
    return 0
