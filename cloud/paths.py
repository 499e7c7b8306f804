"""Where the cloud keeps its files and what it starts from: one module, so "where is the default
model?" has one answer. Folders follow `PLI_CLOUD_DIR` (default `./pli-cloud`)."""

from __future__ import annotations

from pathlib import Path

from cloud.settings import settings

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "models" / "pli-default.onnx"  # the shipped model: what a fleet starts with
DEFAULT_WEIGHTS = REPO / "models" / "pli-default.pt"  # its PyTorch weights: what the first learning run grows


def cloud_dir() -> Path:
    return settings().cloud_dir


def registry_dir() -> Path:
    """The releases' files, one folder per version (cloud/registry/rollout.py)."""
    return cloud_dir() / "registry"


def weights_dir() -> Path:
    """The PyTorch weights each release was built from: beside the registry, never a TUF target."""
    return registry_dir() / "weights"
