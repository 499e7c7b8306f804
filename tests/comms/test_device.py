"""`pli device init`: identity in the file, secrets never."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from comms.device import DeviceConfig


def _init(tmp_path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pli", "device", "init", "--drone-id", "UAV-07", "--key-id", "7",
                           "--ground-address", "0179773", "--out", str(tmp_path / "device.json"), *extra],
                          capture_output=True, text=True, env={**os.environ, **env})


def test_device_init_keeps_secrets_out_of_the_file(tmp_path):
    key = "a1" * 32
    out = _init(tmp_path, {"PLI_DEVICE_KEY": key, "PLI_MQTT_PASSWORD": "hunter2"})
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "device.json").read_text()
    assert key not in text and "hunter2" not in text
    cfg = DeviceConfig.load(tmp_path / "device.json")
    assert cfg.drone_id == "UAV-07" and cfg.mqtt_user == "fleet1/UAV-07" and json.loads(text)["key_id"] == 7
    os.environ["PLI_DEVICE_KEY"] = key
    try:
        assert cfg.key() == bytes.fromhex(key)
    finally:
        del os.environ["PLI_DEVICE_KEY"]


def test_missing_or_bad_key_and_bad_address_are_refused(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PLI_DEVICE_KEY"}
    out = subprocess.run([sys.executable, "-m", "pli", "device", "init", "--drone-id", "UAV-07", "--key-id", "7",
                          "--ground-address", "0179773", "--out", str(tmp_path / "d.json")],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "PLI_DEVICE_KEY" in out.stderr and not (tmp_path / "d.json").exists()
    short = tmp_path / "short.key"
    short.write_text("abcd")
    out = _init(tmp_path, {}, "--key-file", str(short))
    assert out.returncode == 2 and "at least 16" in out.stderr
    out = _init(tmp_path, {"PLI_DEVICE_KEY": "a1" * 32}, "--ground-address", "12")
    assert out.returncode == 2 and "7 digits" in out.stderr
