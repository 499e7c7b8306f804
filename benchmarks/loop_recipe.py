"""The loop demo's recipe against the service's default, on the same photos (docs/benchmarks.md,
"The loop demo"): fine-tune the shipped weights on a dusk flight's training split plus a day
flight's, score both on held-out dusk and day flights.

    .venv/bin/python benchmarks/loop_recipe.py '{"epochs":5,"freeze":10,"lr0":0.002}' sgd-f10-e5 [WORK]
    .venv/bin/python benchmarks/loop_recipe.py '{"epochs":5,"freeze":0}' adamw-f0-e5 [WORK]

One JSON line per arm, appended to benchmarks/results/loop_recipe.jsonl.
"""

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.assemble import assemble  # noqa: E402
from training.data_import import import_dataset  # noqa: E402
from training.dataset import YoloDataset  # noqa: E402
from training.evaluate import evaluate  # noqa: E402
from training.heads import grow_head, run_classes  # noqa: E402
from training.synth.flight import generate_flight  # noqa: E402
from training.train import train  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "loop_recipe.jsonl"


def flight(work: Path, name: str, seed: int, frames: int, light: str) -> Path:
    """A rendered flight split as a campaign is (65/15/20), made once."""
    out, ds = work / name, work / f"{name}-ds"
    if not (out / "data.yaml").exists():
        generate_flight(out, frames, (1920, 1080), seed, progress=False, light=light)
    if not (ds / "data.yaml").exists():
        import_dataset(out, "yolo", ds, ratios=[0.65, 0.15, 0.2], progress=False)
    return ds / "data.yaml"


def main() -> int:
    recipe, tag = json.loads(sys.argv[1]), sys.argv[2]
    work_root = Path(sys.argv[3]) if len(sys.argv) > 3 else Path("/tmp/pli-loop-recipe")
    dusk_a, dusk_b = flight(work_root, "duskA", 41, 26, "dusk"), flight(work_root, "duskB", 42, 16, "dusk")
    day_c, day_d = flight(work_root, "dayC", 43, 26, "day"), flight(work_root, "dayD", 44, 16, "day")
    start = REPO / "models" / "pli-default.pt"
    names = run_classes(start, YoloDataset.open(dusk_a).names)
    work = work_root / tag
    parent = grow_head(start, names, work / "parent.pt")
    parts = [(t, d, sorted(YoloDataset.open(d).images("train"))) for t, d in (("a", dusk_a), ("c", day_c))]
    data = assemble(work / "data", names, parts, dusk_a)
    overrides = {"freeze": recipe.get("freeze", 10), "warmup_epochs": 0.0, "warmup_bias_lr": 0.0, "val": False,
                 "seed": 0}
    if recipe.get("lr0"):
        overrides |= {"optimizer": "SGD", "lr0": recipe["lr0"]}
    imgsz = recipe.get("imgsz", 640)
    t = time.perf_counter()
    result = train(data, model=str(parent), imgsz=imgsz, epochs=recipe["epochs"], batch=8, project=work,
                   name="train", **overrides)
    out = {"tag": tag, "recipe": recipe, "train_s": round(time.perf_counter() - t)}
    for name, d in (("duskB", dusk_b), ("dayD", day_d)):
        for weights, label in ((parent, "parent"), (result.last, "cand")):
            out[f"{name}/{label}"] = round(evaluate(weights, d, "test", imgsz=imgsz, progress=False).map50, 3)
    print(json.dumps(out))
    with RESULTS.open("a") as fh:
        fh.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
