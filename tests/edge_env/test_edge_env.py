"""The drone's environment: `.[edge]` only. Run there by scripts/test.sh (PLI_EDGE_ENV=1)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

in_edge_env = pytest.mark.skipif(os.environ.get("PLI_EDGE_ENV") != "1", reason="only in the edge-only venv")


@in_edge_env
@pytest.mark.parametrize("heavy", ["torch", "ultralytics", "albumentations", "torchvision"])
def test_heavy_packages_are_absent(heavy):
    assert importlib.util.find_spec(heavy) is None, f"{heavy} must not be installed with .[edge]"


@in_edge_env
@pytest.mark.parametrize("module", ["onnxruntime", "cv2", "serial", "paho.mqtt.client", "piexif", "numpy"])
def test_edge_runtime_packages_are_present(module):
    assert importlib.util.find_spec(module) is not None


def test_pli_help_runs():
    out = subprocess.run([sys.executable, "-m", "pli", "--help"], capture_output=True, text=True, check=True)
    assert "data" in out.stdout


@in_edge_env
def test_training_command_without_training_extra_fails_clearly(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pli", "data", "synth", "--out", str(tmp_path), "--frames", "1"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "not installed" in out.stderr and "Traceback" not in out.stderr
