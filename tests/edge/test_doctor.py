"""`pli edge doctor` on real parts: TUF metadata written with python-tuf, a model with its card,
a pseudo-terminal for a serial port, a real outbox, and the autopilot simulator over MAVLink on
loopback for the heartbeat and the GNSS clock. Each broken part fails its check with a fix;
the command exits 1 while anything fails."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from drone_parts import flight_json, tuf_metadata

from comms.alert import Alert
from comms.classes import Severity
from comms.local_broker import free_port
from comms.outbox import Outbox
from comms.pty_device import PtyDevice
from edge import doctor
from edge.detector import file_sha256

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "pli-default.onnx"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def drone(tmp_path):
    """A drone folder: device.json's place, the model and its card copied beside it."""
    shutil.copy(MODEL, tmp_path / "m.onnx")
    card = json.loads(MODEL.with_suffix(".json").read_text())
    (tmp_path / "m.json").write_text(json.dumps(card))
    return tmp_path


def test_tuf_root_expiry_is_checked(tmp_path):
    tuf = tmp_path / "tuf"
    assert doctor.tuf_root(tuf, NOW).status == doctor.FAIL
    tuf_metadata(tuf, NOW + timedelta(days=365), {}, NOW + timedelta(days=3))
    soon = doctor.tuf_root(tuf, NOW)
    assert soon.status == doctor.WARN and "targets expires" in soon.detail and "14 days" in soon.fix
    tuf_metadata(tuf, NOW - timedelta(days=1))
    gone = doctor.tuf_root(tuf, NOW)
    assert gone.status == doctor.FAIL and "new root" in gone.fix
    shutil.rmtree(tuf)
    tuf_metadata(tuf, NOW + timedelta(days=365), {}, NOW + timedelta(days=90))
    assert doctor.tuf_root(tuf, NOW).status == doctor.OK


def test_the_model_is_its_cards_file_and_a_signed_target(drone):
    tuf = drone / "tuf"
    m = drone / "m.onnx"
    assert doctor.model(m, tuf).status == doctor.WARN  # a card, but not from a signed release
    tuf_metadata(tuf, NOW + timedelta(days=30), {"releases/r1/m.onnx": file_sha256(m)})
    ok = doctor.model(m, tuf)
    assert ok.status == doctor.OK and "releases/r1/m.onnx" in ok.detail
    with m.open("ab") as fh:  # changed after it was signed
        fh.write(b"\0")
    bad = doctor.model(m, tuf)
    assert bad.status == doctor.FAIL and "is not its card's" in bad.detail
    (drone / "m.json").unlink()
    assert doctor.model(m, tuf).status == doctor.FAIL
    assert doctor.model(drone / "none.onnx", tuf).status == doctor.FAIL


def test_serial_ports_and_the_outbox(tmp_path):
    pty = PtyDevice().start()
    try:
        assert doctor.serial_port("beidou", pty.device).status == doctor.OK
    finally:
        pty.stop()
    missing = doctor.serial_port("modem", str(tmp_path / "ttyUSB9"))
    assert missing.status == doctor.FAIL and "udev" in missing.fix
    box = Outbox(tmp_path / "outbox.db", "UAV-01")
    epoch, seq = box.next_id()
    box.put(Alert("UAV-01", seq, "F1", NOW, 25.0, 102.0, 100.0, "defect", 0.9, Severity.HIGH, epoch=epoch))
    box.close()
    check = doctor.outbox(tmp_path / "outbox.db")
    assert check.status == doctor.OK and check.detail.startswith("1 alerts not yet acknowledged")


@pytest.mark.parametrize("clock,status", [("now", doctor.OK), ("flight", doctor.FAIL)])
def test_heartbeat_and_clock_from_the_autopilot(tmp_path, clock, status):
    """A flight flown now agrees with the wall clock; an autopilot whose GNSS time says 200 days
    ago (the flight's own) is a clock to fix before flying."""
    from edge.autopilot_sim import SimConfig, run

    port = free_port()
    flight = flight_json(tmp_path / "flight.json", datetime.now(UTC) - timedelta(days=200))
    stop = threading.Event()
    sim = threading.Thread(target=run, args=(SimConfig(flight, f"udpout:127.0.0.1:{port}", rate=10, speed=1.0,
                                                       wait_gcs_s=20, clock=clock), stop), daemon=True)
    sim.start()
    checks = {c.name: c for c in doctor.diagnose(tmp_path / "device.json", mavlink=f"udpin:127.0.0.1:{port}",
                                                 wait_s=8)}
    assert checks["mavlink"].status == doctor.OK and "GLOBAL_POSITION_INT" in checks["mavlink"].detail
    assert checks["clock"].status == status, checks["clock"]
    stop.set()
    sim.join(20)


def test_the_command_says_what_to_fix_and_exits_1(drone):
    run = subprocess.run([sys.executable, "-m", "pli", "edge", "doctor", "--config", str(drone / "device.json"),
                          "--model", str(drone / "m.onnx"), "--outbox", str(drone / "outbox.db"), "--mavlink",
                          f"udpin:127.0.0.1:{free_port()}", "--wait", "1", "--json"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 1, run.stderr[-2000:]
    doc = json.loads(run.stdout)
    failed = {c["name"]: c for c in doc["checks"] if c["status"] == "FAIL"}
    assert not doc["ok"] and set(failed) == {"tuf", "mavlink"}
    assert all(c["fix"] for c in failed.values())


@pytest.mark.parametrize("unit", sorted((ROOT / "deploy" / "jetson").glob("*.service")), ids=lambda p: p.name)
def test_the_jetson_units_run_commands_this_cli_accepts(unit):
    """Every pli command line in the systemd units parses with today's CLI (a renamed flag fails)."""
    import shlex

    from pli.cli import build_parser

    text = unit.read_text()
    lines = [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith(("ExecStart=", "ExecStartPre="))]
    assert lines
    for line in lines:
        argv = shlex.split(line)
        assert argv[0].endswith("/pli")
        args = build_parser().parse_args(argv[1:])
        assert callable(args.func)
    assert "EnvironmentFile=" in text  # secrets from a file, never the command line
