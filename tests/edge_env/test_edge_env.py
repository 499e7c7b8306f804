"""The drone's environment: `.[edge]` only. Run there by scripts/test.sh (PLI_EDGE_ENV=1)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

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


MODELS = Path(__file__).resolve().parents[2] / "models"


@in_edge_env
def test_edge_run_and_detect_work_with_only_the_edge_extra(tmp_path):
    """The drone's commands on the shipped models, in the venv that has no torch or ultralytics.

    The frames are rendered by the full venv (PLI_FULL_PYTHON, set by scripts/test.sh): the
    synthetic generator is training tooling, not something the drone carries."""
    full = os.environ.get("PLI_FULL_PYTHON")
    if not full or not Path(full).exists():
        pytest.fail("PLI_FULL_PYTHON (a venv with the training extra) renders the frames")
    flight = tmp_path / "flight"
    subprocess.run([full, "-m", "pli", "data", "synth", "--out", str(flight), "--frames", "6", "--size",
                    "1920x1080", "--seed", "21"], check=True, capture_output=True)
    env = {**os.environ, "PLI_DEVICE_KEY": "ab" * 32}
    init = subprocess.run([sys.executable, "-m", "pli", "device", "init", "--drone-id", "UAV-07", "--key-id", "7",
                           "--ground-address", "0179773", "--out", str(tmp_path / "device.json")],
                          capture_output=True, text=True, env=env)
    assert init.returncode == 0, init.stderr
    run = subprocess.run([sys.executable, "-m", "pli", "edge", "run", "--config", str(tmp_path / "device.json"),
                          "--source", str(flight / "images"), "--model", str(MODELS / "pli-default-int8.onnx"),
                          "--outbox", str(tmp_path / "o" / "outbox.db")], capture_output=True, text=True, env=env)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert "frames: 6 in" in run.stdout
    status = subprocess.run([sys.executable, "-m", "pli", "link", "status", "--config", str(tmp_path / "device.json"),
                             "--outbox", str(tmp_path / "o" / "outbox.db"), "--json"], capture_output=True, text=True)
    assert status.returncode in (0, 1) and json.loads(status.stdout)["drone_id"] == "UAV-07", status.stderr
    image = sorted((flight / "images").glob("*.jpg"))[0]
    det = subprocess.run([sys.executable, "-m", "pli", "detect", str(MODELS / "pli-default.onnx"), str(image),
                          "--json"], capture_output=True, text=True)
    assert det.returncode == 0, det.stderr
    doc = json.loads(det.stdout.strip().splitlines()[-1])
    assert doc["image"] == str(image)
    assert any(d["class"] == "insulator" for d in doc["detections"])
    for d in doc["detections"]:
        assert len(d["xyxy"]) == 4 and 0 <= d["xyxy"][0] < d["xyxy"][2] <= 1920 and 0 < d["confidence"] <= 1


@in_edge_env
def test_the_drones_links_work_with_only_the_edge_extra():
    """Terminal driver (dialect detected), modem reader and the link commands, without torch."""
    from comms.beidou.driver import Driver
    from comms.beidou.sim import Network, SimTerminal, TerminalConfig
    from comms.modem import Modem
    from comms.modem_sim import SimModem

    net = Network()
    sims = [SimTerminal(TerminalConfig(address=a, dialect=d, service_frequency_s=1, delay_s=0.05), net).start()
            for a, d in (("0247718", "4.0"), ("0179773", "bds3"))]
    modem = SimModem(lambda t: 17).start()
    drivers = [Driver(s.device) for s in sims]
    try:
        assert [d.card.dialect for d in drivers] == ["4.0", "bds3"]
        assert drivers[0].send("0179773", b"alert batch").ok
        assert drivers[1].receive(timeout=3) == ("0247718", b"alert batch")
        assert Modem(modem.device).csq() == 17
    finally:
        for d in drivers:
            d.close()
        for s in sims:
            s.stop()
        modem.stop()
    for cmd in (["link", "run"], ["link", "status"], ["modem", "csq"], ["ground", "run"], ["beidou", "sim"]):
        out = subprocess.run([sys.executable, "-m", "pli", *cmd, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage" in out.stdout, out.stderr


@in_edge_env
def test_cloud_commands_on_the_drone_say_which_extra_they_need():
    out = subprocess.run([sys.executable, "-m", "pli", "cloud", "serve"], capture_output=True, text=True)
    assert out.returncode == 2 and "pip install '.[cloud]'" in out.stderr and "Traceback" not in out.stderr


MAKE_REPOSITORY = """
import os, sys
from pathlib import Path
from securesystemslib.signer import CryptoSigner
from cloud.registry import keys
from cloud.registry.tuf_repo import TufRepo
tmp = Path(sys.argv[1])
roots = [keys.generate(tmp / "offline" / f"root-{i}.pem") for i in range(3)]
signers = [keys.load_signer(tmp / "offline" / f"root-{i}.pem") for i in range(2)]
online = {r: CryptoSigner.generate_ed25519() for r in keys.ONLINE_ROLES}
repo = TufRepo.create(tmp / "site" / "tuf", roots, signers, online)
model = tmp / "m.onnx"
model.write_bytes(os.urandom(5000))
repo.release("1.0", {"m.onnx": model}, ["canary"], online)
print(repo.metadata_dir)
print(repo.targets_dir)
"""


@in_edge_env
def test_the_update_client_verifies_a_release_with_only_the_edge_extra(tmp_path):
    """python-tuf's client on the drone (no torch, no cloud packages): a repository signed with 2 of 3
    root keys, made by the cloud's code in the full venv (PLI_FULL_PYTHON), served over plain HTTP;
    the release for the drone's group is taken, a tampered file is not."""
    import functools
    import http.server
    import threading

    from edge.update import UpdateClient, UpdateRefused, install_root

    full = os.environ.get("PLI_FULL_PYTHON")
    if not full or not Path(full).exists():
        pytest.fail("PLI_FULL_PYTHON (a venv with the cloud extra) makes the repository")
    made = subprocess.run([full, "-c", MAKE_REPOSITORY, str(tmp_path)], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[2])
    metadata_dir, targets_dir = (Path(line) for line in made.stdout.split())
    model = tmp_path / "m.onnx"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        install_root(tmp_path / "drone", (metadata_dir / "1.root.json").read_bytes())
        client = UpdateClient(tmp_path / "drone", f"http://127.0.0.1:{httpd.server_port}", "token", "canary")
        assert client.check().files["models/1.0/m.onnx"].read_bytes() == model.read_bytes()
        assert importlib.util.find_spec("torch") is None
        (stored,) = (targets_dir / "models" / "1.0").glob("*.m.onnx")
        stored.write_bytes(os.urandom(5000))
        for cached in (tmp_path / "drone" / "staging").iterdir():
            cached.unlink()
        with pytest.raises(UpdateRefused):
            client.check()
    finally:
        httpd.shutdown()
