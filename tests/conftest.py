"""Shared fixtures. ultralytics is configured for offline use before anything imports it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="pli-yolo-cfg-"))

REPO = Path(__file__).resolve().parents[1]
CPLID = Path(os.environ.get("PLI_CPLID", REPO.parent / "shared" / "datasets" / "cplid"))


@pytest.fixture(scope="session")
def cplid() -> Path:
    if not (CPLID / "Normal_Insulators").is_dir():
        pytest.skip(f"CPLID not found at {CPLID}")
    return CPLID


@pytest.fixture(scope="session")
def flight(tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic flight shared by the tests that only read it."""
    from training.synth.flight import generate_flight

    out = tmp_path_factory.mktemp("flight")
    return generate_flight(out, frames=10, size=(960, 540), seed=8, progress=False)
