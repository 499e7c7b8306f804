"""PyTorch weights recovered from the shipped ONNX (training/recover.py): the re-export gives
the shipped outputs back, and only batch norm with measured statistics trains like the model it
came from (a training-mode forward stays near the eval output; an identity rebuild's does not).
The fine-tune itself is benchmarks/bn_rebuild.py (minutes of CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.recover import bn_mismatch, max_difference, rebuild, save

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "pli-default.onnx"


@pytest.fixture(scope="module")
def frames(flight) -> list[Path]:
    return sorted((flight.out / "images").glob("*.jpg"))


def test_the_rebuild_re_exports_to_the_shipped_outputs_and_trains_only_with_measured_statistics(frames, tmp_path):
    from training.export import export_model

    measured = rebuild(SHIPPED, frames[:6])
    pt = save(measured, tmp_path / "pli-default.pt", SHIPPED)
    again = export_model(pt, tmp_path / "again.onnx", dynamic_batch=True).onnx
    diff = max_difference(SHIPPED, again, frames[6:])
    assert diff["scores"] < 1e-4 and diff["boxes_rel"] < 1e-4, diff  # boxes: a fraction of the 640 px input
    assert diff["boxes_px"] < 0.01
    identity = rebuild(SHIPPED, [], mode="identity")
    # What training normalises with (each batch's own statistics of W'x) against the running ones:
    # equal on the measuring frames, close on others; an identity rebuild's are far off.
    assert bn_mismatch(measured, frames[:6]) < 0.05 < 0.5 < bn_mismatch(identity, frames[:6])
    m, i = bn_mismatch(measured, frames[6:]), bn_mismatch(identity, frames[6:])
    assert m < i / 2, (m, i)


def test_a_file_of_another_architecture_or_no_images_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"in the file, .* in yolov8s.yaml"):
        rebuild(SHIPPED, [], cfg="yolov8s.yaml", mode="identity")
    with pytest.raises(ValueError, match="needs images"):
        rebuild(SHIPPED, [])
    with pytest.raises(ValueError, match="mode"):
        rebuild(SHIPPED, [], mode="zero")


def test_pli_recover_writes_weights_ultralytics_loads(frames, tmp_path):
    out = subprocess.run([sys.executable, "-m", "pli", "recover", str(SHIPPED), "--images", str(frames[0].parent),
                          "--limit", "4", "--out", str(tmp_path / "w.pt")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    from training.yolo import ultralytics

    yolo = ultralytics().YOLO(str(tmp_path / "w.pt"))
    assert list(yolo.names.values()) == json.loads(SHIPPED.with_suffix(".json").read_text())["classes"]
