"""Recovering `pli-default.pt` from the shipped ONNX: does the rebuilt model train?

Both rebuilds (`training/recover.py`): "measured" (batch-norm statistics measured on 128 CPLID
train images) and "identity" (the naive one). For each: the re-export against the shipped ONNX,
how far a training-mode forward lands from the eval output, then a fine-tune of `--epochs` on
the CPLID train split with the recipe's optimizer (what ultralytics' `optimizer=auto` chose for
it: AdamW; its schedule starts at lr0 = 0.002*5/(4+nc) = 0.001429 and ends at lr0*lrf =
1.429e-5), no warmup (warmup's bias learning rate of 0.1 would wreck any AdamW fine-tune),
mosaic off (`--mosaic`); scored on CPLID val with `pli eval`'s code, and how far its folded
weights moved. Resumable: each finished arm is kept in the results file, per setting.

    .venv/bin/python benchmarks/bn_rebuild.py [--cplid ../shared/datasets/cplid] [--epochs 1] [--lr0 1.429e-5]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("YOLO_OFFLINE", "1")

from training.data_import import import_dataset  # noqa: E402
from training.dataset import YoloDataset  # noqa: E402
from training.evaluate import evaluate  # noqa: E402
from training.export import export_model  # noqa: E402
from training.recover import bn_mismatch, max_difference, rebuild, save, train_mode_drift  # noqa: E402
from training.train import train  # noqa: E402

SHIPPED = REPO / "models" / "pli-default.onnx"
LR = round(0.002 * 5 / (4 + 3), 6)


def cpu_flags() -> str:
    flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f" {f}" in flags)


def raw_weight_change(a: Path, b: Path) -> float:
    """‖W_b − W_a‖ / ‖W_a‖ over the convolutions' own weights, batch norm left out: what the
    optimizer moved (the folded weights also move with the running statistics)."""
    import torch

    def convs(p: Path) -> dict:
        m = torch.load(p, map_location="cpu", weights_only=False)
        m = (m.get("ema") or m["model"]).float()
        return {k: v for k, v in m.state_dict().items() if k.endswith("conv.weight") and "dfl" not in k}

    wa, wb = convs(a), convs(b)
    num = sum(float(((wb[k] - wa[k]) ** 2).sum()) for k in wa)
    return (num / sum(float((wa[k] ** 2).sum()) for k in wa)) ** 0.5


def weight_change(a: Path, b: Path) -> float:
    """‖W_b − W_a‖ / ‖W_a‖ over every convolution weight (BN folded, as the drone runs it)."""
    import torch

    def convs(p: Path) -> dict:
        m = torch.load(p, map_location="cpu", weights_only=False)
        m = (m.get("ema") or m["model"]).float().fuse()
        return {k: v for k, v in m.state_dict().items() if k.endswith("conv.weight") and "dfl" not in k}

    wa, wb = convs(a), convs(b)
    num = sum(float(((wb[k] - wa[k]) ** 2).sum()) for k in wa)
    den = sum(float((wa[k] ** 2).sum()) for k in wa)
    return (num / den) ** 0.5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cplid", type=Path, default=REPO.parent / "shared" / "datasets" / "cplid")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bn_rebuild")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr0", type=float, default=LR)
    ap.add_argument("--mosaic", type=float, default=0.0, help="the recipe ends with mosaic off (close_mosaic): "
                    "a fine-tune continues from there")
    ap.add_argument("--stats-images", type=int, default=128, help="CPLID train images the statistics come from")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "bn_rebuild.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / "cplid" / "data.yaml"
    if not data.exists():
        import_dataset(args.cplid, "voc", args.work / "cplid", split_file=REPO / "recipes" / "cplid_split.json")
    ds = YoloDataset.open(data)
    train_imgs = ds.images("train")
    random.Random(0).shuffle(train_imgs)
    val_imgs = ds.images("val")
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results["setup"] = {"cpu_flags": cpu_flags(), "cores": os.cpu_count(), "python": platform.python_version(),
                        "optimizer": "AdamW", "warmup_epochs": 0, "stats_images": args.stats_images,
                        "train_images": len(train_imgs), "val_images": len(val_imgs)}
    key = f"epochs={args.epochs} lr0={args.lr0} mosaic={args.mosaic}"
    run_doc = results.setdefault("runs", {}).setdefault(key, {"epochs": args.epochs, "lr0": args.lr0,
                                                              "mosaic": args.mosaic})
    if "shipped" not in results:
        results["shipped"] = {"cplid_val_map50": evaluate(SHIPPED, data, "val").map50}
    for mode in ("measured", "identity"):
        arm = run_doc.get(mode, {})
        if arm.get("done"):
            continue
        t0 = time.perf_counter()
        model = rebuild(SHIPPED, train_imgs[:args.stats_images], mode=mode)
        pt = save(model, args.work / f"{mode}.pt", SHIPPED)
        arm["rebuild_s"] = round(time.perf_counter() - t0, 1)
        arm["train_mode_drift"] = round(train_mode_drift(model, train_imgs[-16:]), 4)
        arm["bn_mismatch_val"] = round(bn_mismatch(model, val_imgs[:32]), 4)
        reexport = export_model(pt, args.work / f"{mode}.onnx", dynamic_batch=True)
        arm["reexport_max_abs_diff"] = max_difference(SHIPPED, reexport.onnx, val_imgs[:32])
        arm["before_cplid_val_map50"] = evaluate(reexport.onnx, data, "val").map50
        t0 = time.perf_counter()
        run = train(data, model=str(pt), epochs=args.epochs, project=args.work, name=f"ft-{mode}",
                    optimizer="AdamW", lr0=args.lr0, warmup_epochs=0, mosaic=args.mosaic, seed=0,
                    deterministic=False, val=False)
        arm["finetune_s"] = round(time.perf_counter() - t0, 1)
        arm["weight_change"] = round(weight_change(pt, run.last), 5)
        arm["raw_conv_weight_change"] = round(raw_weight_change(pt, run.last), 6)
        tuned = export_model(run.last, args.work / f"{mode}-ft.onnx", dynamic_batch=True)
        arm["after_cplid_val_map50"] = evaluate(tuned.onnx, data, "val").map50
        arm["drop_points"] = round(100 * (arm["before_cplid_val_map50"] - arm["after_cplid_val_map50"]), 2)
        arm["done"] = True
        run_doc[mode] = arm
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        logging.info("%s: %s", mode, arm)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
