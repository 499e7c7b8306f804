"""`pli edge doctor` where the drone runs it: the edge-only venv (scripts/test.sh, PLI_EDGE_ENV=1).

A good drone (a model with its card that is a target of the fleet's signed metadata, a TUF root
that has not expired, two serial ports on pseudo-terminals, an outbox, the autopilot simulator
over MAVLink with GNSS time of today) passes every check; then the same drone with each fault in
turn fails that check, and only that one, with what to fix, and the command exits 1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from drone_parts import flight_json, tuf_metadata

from comms.alert import Alert
from comms.classes import Severity
from comms.local_broker import free_port
from comms.outbox import Outbox
from comms.pty_device import PtyDevice
from edge.detector import file_sha256

in_edge_env = pytest.mark.skipif(os.environ.get("PLI_EDGE_ENV") != "1", reason="only in the edge-only venv")
ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC)


def _doctor(drone: Path, ports: tuple[str, str], mavlink_port: int, wait: float, outbox: Path | None = None):
    run = subprocess.run([sys.executable, "-m", "pli", "edge", "doctor", "--config", str(drone / "device.json"),
                          "--model", str(drone / "current.onnx"), "--outbox", str(outbox or drone / "outbox.db"),
                          "--beidou-port", ports[0], "--modem-port", ports[1],
                          "--mavlink", f"udpin:127.0.0.1:{mavlink_port}", "--wait", str(wait), "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    doc = json.loads(run.stdout)
    return run.returncode, {c["name"]: c for c in doc["checks"]}


def _autopilot(flight: Path, port: int, clock: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pli", "edge", "autopilot-sim", str(flight), "--to",
                             f"udpout:127.0.0.1:{port}", "--clock", clock, "--wait-gcs", "60"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@in_edge_env
def test_a_good_drone_passes_and_each_fault_fails_its_own_check(tmp_path):
    drone = tmp_path / "drone"
    drone.mkdir()
    shutil.copy(ROOT / "models" / "pli-default.onnx", drone / "current.onnx")
    (drone / "current.json").write_text((ROOT / "models" / "pli-default.json").read_text())
    signed = {"releases/r1/current.onnx": file_sha256(drone / "current.onnx")}
    tuf_metadata(drone / "tuf", NOW + timedelta(days=365), signed)
    box = Outbox(drone / "outbox.db", "UAV-07")
    epoch, seq = box.next_id()
    box.put(Alert("UAV-07", seq, "F1", NOW, 25.0, 102.0, 100.0, "defect", 0.9, Severity.HIGH, epoch=epoch))
    box.close()
    beidou, modem = PtyDevice().start(), PtyDevice().start()
    ports = (beidou.device, modem.device)
    try:
        port = free_port()
        sim = _autopilot(flight_json(tmp_path / "today.json", NOW, frames=40), port, "now")
        try:
            rc, checks = _doctor(drone, ports, port, 20)
        finally:
            sim.kill()
        assert rc == 0, checks
        assert {n for n, c in checks.items() if c["status"] != "ok"} <= {"providers"}  # CPU only: a warning
        assert checks["providers"]["status"] in ("ok", "warn")

        def only_fails(name: str, rc_checks) -> dict:
            rc, checks = rc_checks
            failed = {n for n, c in checks.items() if c["status"] == "FAIL"}
            assert rc == 1 and failed == {name}, (name, checks)
            assert checks[name]["fix"]
            return checks[name]

        port = free_port()  # the autopilot's clock 200 days off
        sim = _autopilot(flight_json(tmp_path / "old.json", NOW - timedelta(days=200), frames=40), port, "flight")
        try:
            assert "off it" in only_fails("clock", _doctor(drone, ports, port, 20))["detail"]
        finally:
            sim.kill()
        sim_port = free_port()
        sim = _autopilot(flight_json(tmp_path / "today2.json", NOW, frames=400), sim_port, "now")
        try:
            gone = drone / "current.onnx.bak"
            shutil.copy(drone / "current.onnx", gone)
            with (drone / "current.onnx").open("ab") as fh:  # changed after it was signed
                fh.write(b"\0")
            only_fails("model", _doctor(drone, ports, sim_port, 20))
            shutil.move(gone, drone / "current.onnx")
            tuf_metadata(drone / "tuf", NOW - timedelta(days=1))  # the root expired
            only_fails("tuf", _doctor(drone, ports, sim_port, 20))
            tuf_metadata(drone / "tuf", NOW + timedelta(days=365), signed)
            only_fails("beidou", _doctor(drone, (str(tmp_path / "ttyUSB9"), ports[1]), sim_port, 20))
            broken = tmp_path / "broken.db"
            broken.write_bytes(b"not a database" * 100)
            only_fails("outbox", _doctor(drone, ports, sim_port, 20, outbox=broken))
        finally:
            sim.kill()
        only_fails("mavlink", _doctor(drone, ports, free_port(), 1))  # no autopilot: and no GNSS clock (a warning)
    finally:
        beidou.stop()
        modem.stop()
