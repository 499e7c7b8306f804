"""A small autopilot simulator: a synthetic flight's telemetry (`flight.json` of `pli data synth`)
replayed as MAVLink over UDP on loopback, for the demo and the tests (ArduPilot SITL is not on
the package registries this project installs from).

It sends, at `rate` per second of flight time, GLOBAL_POSITION_INT, ATTITUDE, the gimbal's
attitude (GIMBAL_DEVICE_ATTITUDE_STATUS in the earth frame, in the vehicle's frame, or the older
MOUNT_ORIENTATION) and DISTANCE_SENSOR (the laser), with SYSTEM_TIME and HEARTBEAT once a second.
The pose between the flight's frames is interpolated (the drone flies straight between them).
Flight time runs `speed` times faster than the wall clock; the autopilot's clock is the flight's
own (SYSTEM_TIME says the flight's UNIX time), so a recording of the flight whose start is known
lines up with it; `clock="now"` flies it today instead (a live camera's frames line up).
Messages are dropped (`drop`) and sent late, after the next ones (`late`), by a seeded
generator. By default it waits for a ground station's HEARTBEAT before the flight starts,
so no telemetry is lost to a listener that is still starting.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edge.mavlink import GIMBAL_YAW_IN_EARTH_FRAME, GIMBAL_YAW_LOCK, euler_to_quaternion

log = logging.getLogger(__name__)
LEAD_S = 3.0  # flight seconds of telemetry before the first frame and after the last
BOOT_BEFORE_S = 120.0  # the autopilot booted this long before the flight's telemetry starts


@dataclass
class SimConfig:
    flight: Path  # flight.json
    to: str = "udpout:127.0.0.1:14550"
    rate: float = 10.0  # messages of each kind per second of flight time
    speed: float = 1.0  # flight seconds per wall second
    drop: float = 0.0  # share of messages never sent
    late: float = 0.0  # share sent after the next tick's
    seed: int = 0
    gimbal: str = "earth"  # earth | vehicle | mount (MOUNT_ORIENTATION)
    laser: bool = True
    wait_gcs_s: float = 30.0  # wait this long for a ground station's HEARTBEAT (0: start at once)
    clock: str = "flight"  # SYSTEM_TIME says the flight's own time, or "now": the flight flown today


def load_poses(flight: Path) -> list[dict]:
    doc = json.loads(Path(flight).read_text())
    poses = doc.get("poses") or []
    if not poses:
        raise ValueError(f"{flight}: no poses")
    for p in poses:
        p["t"] = datetime.fromisoformat(p["time"].replace("Z", "+00:00")).timestamp()
    return sorted(poses, key=lambda p: p["t"])


def _wrap180(deg: float) -> float:
    return (deg + 180.0) % 360.0 - 180.0


def pose_at(poses: list[dict], t: float) -> dict:
    """The pose at flight time t: linear between frames, angles the short way, held at the ends."""
    if t <= poses[0]["t"]:
        return dict(poses[0])
    if t >= poses[-1]["t"]:
        return dict(poses[-1])
    i = next(k for k in range(1, len(poses)) if poses[k]["t"] >= t)
    a, b = poses[i - 1], poses[i]
    f = (t - a["t"]) / (b["t"] - a["t"]) if b["t"] > a["t"] else 0.0
    out = {"t": t}
    for key in ("lat", "lon", "abs_alt", "rel_alt", "gimbal_pitch", "target_distance"):
        if a.get(key) is not None and b.get(key) is not None:
            out[key] = a[key] + (b[key] - a[key]) * f
    for key in ("flight_yaw", "gimbal_yaw"):
        out[key] = _wrap180(a[key] + _wrap180(b[key] - a[key]) * f)
    return out


def messages(mav, poses: list[dict], t: float, boot: float, cfg: SimConfig) -> list:
    """The messages of one tick at flight time t."""
    p = pose_at(poses, t)
    ms = int((t - boot) * 1000)
    north, east = _velocity(poses, t)
    out = [mav.global_position_int_encode(ms, round(p["lat"] * 1e7), round(p["lon"] * 1e7),
                                          round(p["abs_alt"] * 1000), round(p["rel_alt"] * 1000), round(north * 100),
                                          round(east * 100), 0, round((p["flight_yaw"] % 360) * 100)),
           mav.attitude_encode(ms, 0.0, 0.0, math.radians(p["flight_yaw"]), 0.0, 0.0, 0.0)]
    if cfg.gimbal == "mount":
        out.append(mav.mount_orientation_encode(ms, 0.0, p["gimbal_pitch"], _wrap180(p["gimbal_yaw"] - p["flight_yaw"]),
                                                p["gimbal_yaw"] % 360))
    else:
        earth = cfg.gimbal == "earth"
        yaw = p["gimbal_yaw"] if earth else _wrap180(p["gimbal_yaw"] - p["flight_yaw"])
        flags = GIMBAL_YAW_IN_EARTH_FRAME | GIMBAL_YAW_LOCK if earth else 0
        out.append(mav.gimbal_device_attitude_status_encode(0, 0, ms, flags, euler_to_quaternion(0.0, p["gimbal_pitch"],
                                                                                                yaw),
                                                            0.0, 0.0, 0.0, 0))
    if cfg.laser and p.get("target_distance"):
        out.append(mav.distance_sensor_encode(ms, 20, 60000, round(p["target_distance"] * 100), 0, 1, 100, 0))
    return out


def _velocity(poses: list[dict], t: float) -> tuple[float, float]:
    a, b = pose_at(poses, t - 0.5), pose_at(poses, t + 0.5)
    north = (b["lat"] - a["lat"]) * 111_320.0
    east = (b["lon"] - a["lon"]) * 111_320.0 * math.cos(math.radians(a["lat"]))
    return north, east


def run(cfg: SimConfig, stop=None) -> dict:
    """Fly the flight once; returns what was sent, dropped and sent late."""
    os.environ.setdefault("MAVLINK20", "1")  # GIMBAL_DEVICE_ATTITUDE_STATUS needs MAVLink 2
    from pymavlink import mavutil

    poses = load_poses(cfg.flight)
    conn = mavutil.mavlink_connection(cfg.to, source_system=1, source_component=1)
    mav = conn.mav
    rng = random.Random(cfg.seed)
    start_t, end_t = poses[0]["t"] - LEAD_S, poses[-1]["t"] + LEAD_S
    boot = start_t - BOOT_BEFORE_S
    counts = {"sent": 0, "dropped": 0, "late": 0}

    def heartbeat() -> None:
        conn.mav.heartbeat_send(mavutil.mavlink.MAV_TYPE_QUADROTOR, mavutil.mavlink.MAV_AUTOPILOT_GENERIC, 0, 0,
                                mavutil.mavlink.MAV_STATE_ACTIVE)

    if cfg.wait_gcs_s > 0:
        deadline = time.monotonic() + cfg.wait_gcs_s
        while time.monotonic() < deadline:
            heartbeat()
            if conn.recv_match(type="HEARTBEAT", blocking=True, timeout=0.5) is not None:
                break
        else:
            raise TimeoutError(f"no ground station's HEARTBEAT on {cfg.to} in {cfg.wait_gcs_s:g} s")
    wall0 = time.monotonic()
    shift = time.time() - start_t if cfg.clock == "now" else 0.0  # seconds added to every UNIX time sent
    held: list = []
    tick, last_second = 0, -1
    while True:
        t = start_t + tick / cfg.rate
        if t > end_t or (stop is not None and stop.is_set()):
            break
        delay = wall0 + (t - start_t) / cfg.speed - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        batch = []
        if int(t) != last_second:  # once a flight second: the clock and a heartbeat
            last_second = int(t)
            batch.append(mav.system_time_encode(int((t + shift) * 1e6), int((t - boot) * 1000)))
            heartbeat()
        batch += messages(mav, poses, t, boot, cfg)
        late_ones, held = held, []
        out = []
        for msg in batch:
            if msg.get_type() != "SYSTEM_TIME" and rng.random() < cfg.drop:
                counts["dropped"] += 1
            elif msg.get_type() != "SYSTEM_TIME" and rng.random() < cfg.late:
                counts["late"] += 1
                held.append(msg)  # goes out with the next tick, after its first message
            else:
                out.append(msg)
        for msg in out[:1] + late_ones + out[1:]:
            mav.send(msg)
            counts["sent"] += 1
        tick += 1
    for msg in held:
        mav.send(msg)
        counts["sent"] += 1
    conn.close()
    log.info("autopilot simulator: %(sent)d messages sent, %(dropped)d dropped, %(late)d late", counts)
    return counts
