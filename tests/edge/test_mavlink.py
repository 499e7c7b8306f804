"""Live telemetry over MAVLink (edge/mavlink.py): real pymavlink messages, encoded and decoded,
put on the autopilot's clock, interpolated at a frame's time whatever order they came in, NaN
and out-of-range readings kept out, stale and missing poses said; and a whole flight with frames
from a video and telemetry only over MAVLink on loopback, with dropped and late messages, from
the autopilot simulator (edge/autopilot_sim.py)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comms.local_broker import free_port
from comms.outbox import Outbox
from edge.geo import distance_m
from edge.mavlink import (
    GIMBAL_YAW_IN_EARTH_FRAME,
    FrameClock,
    Posing,
    Stream,
    Telemetry,
    euler_to_quaternion,
    quaternion_to_euler,
)
from edge.sources import Frame

os.environ.setdefault("MAVLINK20", "1")
from pymavlink.dialects.v20 import common as mavlink2

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "pli-default.onnx"
T0 = datetime(2026, 5, 12, 7, 0, tzinfo=UTC).timestamp()
BOOT = T0 - 100.0  # the autopilot booted 100 s before T0


class _Wire:
    def __init__(self):
        self.mav = mavlink2.MAVLink(None, srcSystem=1, srcComponent=1)
        self.mav.robust_parsing = True

    def roundtrip(self, msg):
        """The message as bytes on a wire and parsed back: what a Link hands over."""
        data = msg.pack(self.mav)
        return self.mav.parse_char(data)


def _pos(w: _Wire, t: float, lat: float, lon: float, alt: float = 130.0, rel: float = 30.0, boot: float = BOOT):
    return w.roundtrip(w.mav.global_position_int_encode(int((t - boot) * 1000), round(lat * 1e7), round(lon * 1e7),
                                                        round(alt * 1000), round(rel * 1000), 0, 0, 0, 0))


def _clock(w: _Wire, tel: Telemetry, t: float = T0, delay: float = 0.0, boot: float = BOOT) -> None:
    tel.on_message(w.roundtrip(w.mav.system_time_encode(int(t * 1e6), int((t - boot) * 1000))), received=t + delay)


@given(st.floats(-179, 179), st.floats(-85, 85), st.floats(-179, 179))
def test_quaternions_round_trip(roll, pitch, yaw):
    r, p, y = quaternion_to_euler(*euler_to_quaternion(roll, pitch, yaw))
    assert math.isclose(p, pitch, abs_tol=1e-6)
    assert abs(((r - roll) + 180) % 360 - 180) < 1e-5 and abs(((y - yaw) + 180) % 360 - 180) < 1e-5


def test_a_zero_quaternion_is_refused_not_a_pose():
    with pytest.raises(ValueError):
        quaternion_to_euler(0, 0, 0, 0)


@settings(max_examples=60)
@given(st.permutations(list(range(8))), st.floats(0.0, 7.0))
def test_samples_in_any_order_interpolate_the_same(order, t):
    s = Stream()
    for k in order:  # late messages land where they belong
        s.add(float(k), (10.0 * k,))
    values, gap, live = s.at(t, max_gap_s=1.0)
    assert live and math.isclose(values[0], 10.0 * t, abs_tol=1e-9) and gap <= 0.5


def test_angles_interpolate_the_short_way_and_nan_never_enters():
    s = Stream(angles=(0,))
    s.add(0.0, (170.0,))
    s.add(1.0, (-170.0,))
    s.add(0.5, (float("nan"),))
    assert len(s.t) == 2
    assert math.isclose(abs(s.at(0.5, 2.0)[0][0]), 180.0)


def test_position_on_the_autopilots_clock_gimbal_laser_and_attitude():
    w, tel = _Wire(), Telemetry()
    _clock(w, tel, delay=0.05)
    for k in range(11):  # 1 s of telemetry at 10 Hz, flying north-east
        t = T0 + k / 10
        tel.on_message(_pos(w, t, 25.0 + k * 1e-5, 102.0 + k * 2e-5), received=t + 0.05)
        tel.on_message(w.roundtrip(w.mav.attitude_encode(int((t - BOOT) * 1000), 0.0, 0.0, math.radians(30), 0, 0, 0)),
                       received=t + 0.05)
        # the gimbal in the vehicle's frame: 90 deg right of the nose, 20 deg down
        tel.on_message(w.roundtrip(w.mav.gimbal_device_attitude_status_encode(
            0, 0, int((t - BOOT) * 1000), 0, euler_to_quaternion(0, -20, 90), 0, 0, 0, 0)), received=t + 0.05)
        tel.on_message(w.roundtrip(w.mav.distance_sensor_encode(int((t - BOOT) * 1000), 20, 4000, 1650, 0, 1, 100, 0)),
                       received=t + 0.05)
    pose = tel.pose_at(T0 + 0.55)
    g = pose.geotag
    assert pose.state == "live" and tel.clock == "autopilot"
    assert math.isclose(g.lat, 25.0 + 5.5e-5, abs_tol=1e-7) and math.isclose(g.lon, 102.0 + 11e-5, abs_tol=2e-7)
    assert math.isclose(g.alt, 130.0) and math.isclose(g.rel_alt, 30.0)
    assert math.isclose(g.gimbal_pitch, -20.0, abs_tol=1e-3) and math.isclose(g.gimbal_yaw, 120.0, abs_tol=1e-3)
    assert math.isclose(g.flight_yaw, 30.0, abs_tol=1e-3) and math.isclose(g.target_distance, 16.5)
    assert g.time == datetime.fromtimestamp(T0 + 0.55, UTC) and g.gnss_time == g.time
    assert math.isclose(tel.skew_s, 0.05, abs_tol=1e-3)  # receipt 50 ms after the autopilot's time


def test_earth_frame_gimbal_mount_orientation_and_a_laser_out_of_range():
    w, tel = _Wire(), Telemetry()
    _clock(w, tel)
    ms = int((T0 + 1 - BOOT) * 1000)
    for t in (T0, T0 + 2):
        tel.on_message(_pos(w, t, 25.0, 102.0), received=t)
    tel.on_message(w.roundtrip(w.mav.gimbal_device_attitude_status_encode(
        0, 0, ms, GIMBAL_YAW_IN_EARTH_FRAME, euler_to_quaternion(0, -35, -60), 0, 0, 0, 0)), received=T0 + 1)
    tel.on_message(w.roundtrip(w.mav.distance_sensor_encode(ms, 20, 4000, 4000, 0, 1, 100, 0)), received=T0 + 1)
    g = tel.pose_at(T0 + 1).geotag
    assert math.isclose(g.gimbal_yaw, -60.0, abs_tol=1e-3) and math.isclose(g.gimbal_pitch, -35.0, abs_tol=1e-3)
    assert g.target_distance is None  # at its maximum: nothing in range
    old = Telemetry()
    _clock(w, old)
    old.on_message(_pos(w, T0, 25.0, 102.0), received=T0)
    old.on_message(w.roundtrip(w.mav.mount_orientation_encode(int((T0 - BOOT) * 1000), 0, -15, 10, 250)), received=T0)
    g = old.pose_at(T0).geotag
    assert math.isclose(g.gimbal_yaw, -110.0) and math.isclose(g.gimbal_pitch, -15.0)


def test_stale_and_missing_telemetry_are_said():
    w, tel = _Wire(), Telemetry(max_gap_s=1.0)
    assert tel.pose_at(T0).state == "missing" and not tel.pose_at(T0).geotag.has_position
    _clock(w, tel)
    tel.on_message(_pos(w, T0, 25.0, 102.0), received=T0)
    tel.on_message(_pos(w, T0 + 5, 25.001, 102.0), received=T0 + 5)
    gap = tel.pose_at(T0 + 2)
    assert gap.state == "stale" and gap.geotag.lat == 25.0 and math.isclose(gap.gap_s, 2.0, abs_tol=1e-3)
    assert tel.pose_at(T0 + 9).state == "stale"  # after the last sample: never extrapolated silently
    assert tel.pose_at(T0 + 5.05).state == "live"  # just past the newest sample: held
    far = tel.pose_at(T0 + 16)
    assert far.state == "missing" and not far.geotag.has_position  # beyond max_stale_s: no position at all
    tel.on_message(_pos(w, T0 + 6, 0.0, 0.0), received=T0 + 6)  # 0, 0: no GNSS fix
    assert tel.refused == 1 and len(tel.position.t) == 2


def test_posing_a_recording_by_its_start_and_a_live_camera_by_its_latency():
    w, tel = _Wire(), Telemetry()
    _clock(w, tel, delay=0.02)
    for k in range(30):
        tel.on_message(_pos(w, T0 + k / 10, 25.0 + k * 1e-5, 102.0), received=T0 + k / 10 + 0.02)
    img = np.zeros((8, 8, 3), np.uint8)
    from edge.geotag import Geotag

    frames = [Frame(0, "v_0", img, Geotag(), offset_s=1.0), Frame(1, "cam_1", img, Geotag(), grabbed=T0 + 2.12)]
    posing = Posing(tel, FrameClock(start=datetime.fromtimestamp(T0, UTC), latency_s=0.1, wait_s=0.0))
    a, b = list(posing(frames))
    assert math.isclose(a.geotag.lat, 25.0 + 10e-5, abs_tol=1e-9) and a.geotag.telemetry == "live"
    # grabbed at 2.12 on our clock, 20 ms ahead of the autopilot's, 100 ms after capture: 2.00
    assert math.isclose(b.geotag.lat, 25.0 + 20e-5, abs_tol=1e-8)
    with pytest.raises(ValueError, match="--video-start"):
        list(Posing(tel, FrameClock())([frames[0]]))
    assert posing.states == {"live": 2} and "live 2" in posing.line()


def _video(flight: Path, out: Path) -> tuple[Path, str]:
    """The flight's photos as a video at the flight's own frame rate; its first frame's time."""
    doc = json.loads((flight / "flight.json").read_text())
    poses = doc["poses"]
    times = [datetime.fromisoformat(p["time"].replace("Z", "+00:00")).timestamp() for p in poses]
    fps = (len(times) - 1) / (times[-1] - times[0])
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, tuple(doc["size"]))
    for p in poses:
        writer.write(cv2.imread(str(flight / p["image"])))
    writer.release()
    return out, poses[0]["time"]


@pytest.fixture(scope="module")
def mav_flight(tmp_path_factory):
    from training.synth.flight import generate_flight

    return generate_flight(tmp_path_factory.mktemp("mav") / "flight", frames=24, size=(1920, 1080), seed=21,
                           progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("gimbal", ["earth", "mount"])
def test_a_flight_from_a_video_with_telemetry_only_over_mavlink(mav_flight, tmp_path, gimbal):
    """Frames from a video, poses only from MAVLink on loopback (10 % of messages dropped, 5 %
    late; the gimbal in the earth frame, or in the vehicle's as an older autopilot's
    MOUNT_ORIENTATION): every alert within 15 m of its fault, as photos with EXIF are
    (tests/integration), found from its views or the laser, none stale."""
    video, start = _video(mav_flight.out, tmp_path / "flight.mp4")
    port = free_port()
    sim = subprocess.Popen([sys.executable, "-m", "pli", "edge", "autopilot-sim", str(mav_flight.out / "flight.json"),
                            "--to", f"udpout:127.0.0.1:{port}", "--speed", "8", "--drop", "0.1", "--late", "0.05",
                            "--gimbal", gimbal], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run = subprocess.run([sys.executable, "-m", "pli", "edge", "run", "--source", str(video), "--model", str(MODEL),
                              "--outbox", str(tmp_path / "outbox.db"), "--drone-id", "UAV-01", "--config",
                              str(tmp_path / "none.json"), "--mavlink", f"udpin:127.0.0.1:{port}", "--video-start",
                              start, "--telemetry-wait", "5"], cwd=ROOT, capture_output=True, text=True, timeout=240)
        out, err = sim.communicate(timeout=60)
    finally:
        sim.kill()
    assert run.returncode == 0, run.stderr[-3000:]
    assert sim.returncode == 0, err[-2000:]
    sent = int(out.split()[1])
    dropped = int(out.split("dropped")[1].split(",")[0])
    assert dropped > 0.05 * (sent + dropped)
    assert "telemetry: MAVLink poses live 24;" in run.stdout
    faults = list(csv.DictReader((mav_flight.out / "faults.csv").open()))
    alerts = Outbox(tmp_path / "outbox.db", "UAV-01").alerts()
    assert len(alerts) >= 4, run.stdout
    for a in alerts:
        d = min(float(distance_m(a["lat"], a["lon"], float(f["lat"]), float(f["lon"])))
                for f in faults if f["class"] == a["class"])
        assert d <= 15.0, (a["id"], a["class"], d)
        assert a["position_source"] in ("laser", "multi_view") and "telemetry_stale" not in a["flags"]
        t = datetime.fromisoformat(a["frame_time"].replace("Z", "+00:00"))
        assert datetime.fromisoformat(start.replace("Z", "+00:00")) <= t <= \
            datetime.fromisoformat(start.replace("Z", "+00:00")) + timedelta(minutes=2)


@pytest.mark.slow
def test_frames_past_the_telemetry_are_stale_and_their_alerts_flagged(mav_flight, tmp_path):
    """Telemetry that stops after the flight's first seconds: later frames take the last known
    pose, said as stale, and every alert raised on them carries the flag."""
    from edge.geotag import read_geotag
    from edge.runtime import RunConfig, run_flight
    from edge.sources import image_folder

    w, tel = _Wire(), Telemetry(max_gap_s=1.0, max_stale_s=120.0)
    poses = json.loads((mav_flight.out / "flight.json").read_text())["poses"]
    first = datetime.fromisoformat(poses[0]["time"].replace("Z", "+00:00")).timestamp()
    _clock(w, tel, first, boot=first - 60)
    for p in poses[:3]:  # the first three frames' poses, then nothing
        t = datetime.fromisoformat(p["time"].replace("Z", "+00:00")).timestamp()
        tel.on_message(_pos(w, t, p["lat"], p["lon"], p["abs_alt"], p["rel_alt"], boot=first - 60), received=t)
    frames = list(image_folder(mav_flight.out / "images"))
    assert read_geotag(mav_flight.out / poses[5]["image"]).time is not None  # photos: posed by their own time
    posing = Posing(tel, FrameClock(wait_s=0.0))
    summary = run_flight(frames, MODEL, Outbox(tmp_path / "o.db", "UAV-01"),
                         RunConfig(drone_id="UAV-01", posing=posing), progress=False)
    assert posing.states["stale"] >= 20 and posing.states.get("live", 0) == 3
    alerts = Outbox(tmp_path / "o.db", "UAV-01").alerts()
    assert alerts and summary.notes
    late = [a for a in alerts if datetime.fromisoformat(a["frame_time"].replace("Z", "+00:00")).timestamp()
            > first + 5]
    assert late and all("telemetry_stale" in a["flags"] for a in late)
    assert all(a["position_source"] == "drone" for a in late)  # no pose in the stale samples: the drone's place
