"""Live telemetry from the autopilot over MAVLink (pymavlink): a frame's pose is the telemetry
interpolated at the frame's capture time.

Read: GLOBAL_POSITION_INT (position, AMSL and relative altitude), ATTITUDE (the vehicle's yaw),
GIMBAL_DEVICE_ATTITUDE_STATUS (the gimbal's quaternion; MOUNT_ORIENTATION for older autopilots),
DISTANCE_SENSOR (the laser range finder), SYSTEM_TIME (the autopilot's boot clock against UNIX
time) and HEARTBEAT. Every sample is put on the autopilot's UNIX clock (boot time + the offset
SYSTEM_TIME gives; before one arrives, the time of receipt), kept in time order (late messages
land where they belong) and looked up by time.

A frame's time is the camera's capture time on that clock: for a live camera, when the frame was
grabbed minus the camera's latency and minus the measured offset between this computer's clock
and the autopilot's; for a recording, its start plus the frame's position in it. A pose is
`live` when position samples lie on both sides of that time within `max_gap_s` (or one lies
within `hold_s` of it); otherwise the nearest sample is used and the pose is `stale` (the alert is
flagged); with no position sample within `max_stale_s` it has no position (the fault is dropped
and said). Never a silent drone position.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from edge.geotag import Geotag
from edge.sources import Frame

log = logging.getLogger(__name__)

MESSAGES = ("GLOBAL_POSITION_INT", "ATTITUDE", "GIMBAL_DEVICE_ATTITUDE_STATUS", "MOUNT_ORIENTATION",
            "DISTANCE_SENSOR", "SYSTEM_TIME", "HEARTBEAT")
GIMBAL_YAW_IN_EARTH_FRAME = 2048  # GIMBAL_DEVICE_FLAGS_YAW_IN_EARTH_FRAME
GIMBAL_YAW_LOCK = 16  # GIMBAL_DEVICE_FLAGS_YAW_LOCK: older gimbals' way of saying the same
MAX_KEEP_S = 600.0  # samples kept per stream: ten minutes of flight


def quaternion_to_euler(w: float, x: float, y: float, z: float) -> tuple[float, float, float]:
    """(roll, pitch, yaw) in degrees of a MAVLink quaternion (w, x, y, z; aerospace ZYX order)."""
    n = math.sqrt(w * w + x * x + y * y + z * z)
    if not math.isfinite(n) or n < 1e-9:
        raise ValueError("not a rotation quaternion")
    w, x, y, z = w / n, x / n, y / n, z / n
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return math.degrees(roll), math.degrees(pitch), math.degrees(yaw)


def euler_to_quaternion(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """The inverse (degrees in, w x y z out): what the simulator sends."""
    r, p, y = (math.radians(v) / 2 for v in (roll, pitch, yaw))
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return (cr * cp * cy + sr * sp * sy, sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy)


def _wrap180(deg: float) -> float:
    return (deg + 180.0) % 360.0 - 180.0


def _lerp_angle(a: float, b: float, f: float) -> float:
    return _wrap180(a + _wrap180(b - a) * f)


class Stream:
    """One kind of sample in time order: (t, values) with t on the autopilot's UNIX clock."""

    def __init__(self, angles: tuple[int, ...] = ()):
        self.t: list[float] = []
        self.v: list[tuple[float, ...]] = []
        self.angles = angles  # indices of values that are angles in degrees (interpolated the short way)

    def add(self, t: float, values: tuple[float, ...]) -> None:
        if not math.isfinite(t) or not all(math.isfinite(x) for x in values):
            return  # NaN never enters the track
        values = tuple(_wrap180(x) if k in self.angles else x for k, x in enumerate(values))
        i = bisect.bisect_right(self.t, t)
        if i > 0 and self.t[i - 1] == t:
            self.v[i - 1] = values  # the same instant again: the later word
            return
        self.t.insert(i, t)
        self.v.insert(i, values)
        if self.t[-1] - self.t[0] > MAX_KEEP_S:
            cut = bisect.bisect_left(self.t, self.t[-1] - MAX_KEEP_S)
            del self.t[:cut], self.v[:cut]

    def at(self, t: float, max_gap_s: float) -> tuple[tuple[float, ...], float, bool] | None:
        """(values at t, distance in seconds to the nearest sample, interpolated between samples
        at most `max_gap_s` apart); None when empty."""
        if not self.t:
            return None
        i = bisect.bisect_left(self.t, t)
        if i < len(self.t) and self.t[i] == t:
            return self.v[i], 0.0, True
        if 0 < i < len(self.t) and self.t[i] - self.t[i - 1] <= max_gap_s:
            t0, t1 = self.t[i - 1], self.t[i]
            f = (t - t0) / (t1 - t0)
            a, b = self.v[i - 1], self.v[i]
            vals = tuple(_lerp_angle(x, y, f) if k in self.angles else x + (y - x) * f
                         for k, (x, y) in enumerate(zip(a, b, strict=True)))
            return vals, min(t - t0, t1 - t), True
        j = min((k for k in (i - 1, i) if 0 <= k < len(self.t)), key=lambda k: abs(self.t[k] - t))
        return self.v[j], abs(self.t[j] - t), False

    @property
    def latest(self) -> float | None:
        return self.t[-1] if self.t else None


@dataclass
class Pose:
    geotag: Geotag
    state: str  # "live", "stale" or "missing"
    gap_s: float | None  # from the frame's time to the nearest position sample


@dataclass
class Telemetry:
    """Samples from the autopilot, on its UNIX clock, and the pose at a time. Fed by `Link` (a
    MAVLink connection) or directly (`on_message`) by tests and replays."""

    max_gap_s: float = 1.0
    hold_s: float = 0.1  # a frame this close to a sample (just past the newest, say) takes it as live
    max_stale_s: float = 10.0  # beyond this from any position sample a frame has no position at all
    laser_max_age_s: float = 0.5  # a range older than this is not the frame's target
    position: Stream = field(default_factory=Stream)  # lat, lon, alt, rel_alt
    attitude: Stream = field(default_factory=lambda: Stream((0, 1, 2)))  # roll, pitch, yaw
    gimbal: Stream = field(default_factory=lambda: Stream((0, 1, 2)))  # roll, pitch, yaw (earth frame)
    gimbal_vehicle: Stream = field(default_factory=lambda: Stream((0, 1, 2)))  # yaw relative to the vehicle
    distance: Stream = field(default_factory=Stream)  # metres
    boot_offset_s: float | None = None  # autopilot UNIX time minus its boot time (SYSTEM_TIME)
    clock: str = "receipt"  # "autopilot" once SYSTEM_TIME gave GNSS time
    heartbeat_at: float | None = None  # wall time of the last HEARTBEAT
    skews: deque = field(default_factory=lambda: deque(maxlen=50))  # our wall clock minus the autopilot's
    counts: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    lock: threading.Condition = field(default_factory=threading.Condition)

    def _time(self, boot_ms: int, received: float) -> float:
        if self.boot_offset_s is not None:
            return boot_ms / 1000.0 + self.boot_offset_s
        return received  # no autopilot clock yet: when it arrived

    def on_message(self, msg, received: float | None = None) -> None:
        """One decoded MAVLink message (pymavlink's object, or anything with its fields)."""
        received = time.time() if received is None else received
        kind = msg.get_type()
        try:
            with self.lock:
                self._on(kind, msg, received)
                self.counts[kind] = self.counts.get(kind, 0) + 1
                self.lock.notify_all()
        except (ValueError, TypeError, AttributeError) as exc:
            self.refused += 1
            log.debug("%s refused: %s", kind, exc)

    def _on(self, kind: str, m, received: float) -> None:
        if kind == "SYSTEM_TIME":
            if m.time_unix_usec > 0:  # 0: the autopilot has no GNSS time yet
                self.boot_offset_s = m.time_unix_usec / 1e6 - m.time_boot_ms / 1000.0
                self.clock = "autopilot"
                self.skews.append(received - m.time_unix_usec / 1e6)
        elif kind == "HEARTBEAT":
            self.heartbeat_at = received
        elif kind == "GLOBAL_POSITION_INT":
            lat, lon = m.lat / 1e7, m.lon / 1e7
            if (m.lat == 0 and m.lon == 0) or not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError("no position fix")
            t = self._time(m.time_boot_ms, received)
            self.position.add(t, (lat, lon, m.alt / 1000.0, m.relative_alt / 1000.0))
            if self.boot_offset_s is not None:
                self.skews.append(received - t)
        elif kind == "ATTITUDE":
            self.attitude.add(self._time(m.time_boot_ms, received),
                              tuple(math.degrees(v) for v in (m.roll, m.pitch, m.yaw)))
        elif kind == "GIMBAL_DEVICE_ATTITUDE_STATUS":
            roll, pitch, yaw = quaternion_to_euler(*m.q)
            stream = self.gimbal if m.flags & (GIMBAL_YAW_IN_EARTH_FRAME | GIMBAL_YAW_LOCK) else self.gimbal_vehicle
            stream.add(self._time(m.time_boot_ms, received), (roll, pitch, yaw))
        elif kind == "MOUNT_ORIENTATION":
            yaw = m.yaw_absolute if getattr(m, "yaw_absolute", 0) else None
            if yaw is not None:
                self.gimbal.add(self._time(m.time_boot_ms, received), (m.roll, m.pitch, yaw))
            else:
                self.gimbal_vehicle.add(self._time(m.time_boot_ms, received), (m.roll, m.pitch, m.yaw))
        elif kind == "DISTANCE_SENSOR":
            cm = m.current_distance
            if m.min_distance <= cm < m.max_distance:  # at or beyond the maximum: nothing in range
                self.distance.add(self._time(m.time_boot_ms, received), (cm / 100.0,))

    @property
    def skew_s(self) -> float | None:
        """This computer's clock minus the autopilot's, as the least delayed messages show it."""
        with self.lock:
            return min(self.skews) if self.skews else None

    def wait_for(self, t: float, timeout_s: float) -> bool:
        """Wait until a position sample at or after `t` has arrived (the interpolation has both
        sides), at most `timeout_s`; False when it did not come."""
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while (self.position.latest is None or self.position.latest < t):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(left)
            return True

    def pose_at(self, t: float) -> Pose:
        with self.lock:
            pos = self.position.at(t, self.max_gap_s)
            if pos is None:
                return Pose(Geotag(time=datetime.fromtimestamp(t, UTC)), "missing", None)
            (lat, lon, alt, rel_alt), gap, live = pos
            if gap > self.max_stale_s:
                return Pose(Geotag(time=datetime.fromtimestamp(t, UTC)), "missing", gap)
            live = live or gap <= self.hold_s
            gimbal = self.gimbal.at(t, self.max_gap_s)
            att = self.attitude.at(t, self.max_gap_s)
            pitch = yaw = None
            if gimbal is not None and gimbal[1] <= self.max_gap_s:
                _, pitch, yaw = gimbal[0]
            else:
                rel = self.gimbal_vehicle.at(t, self.max_gap_s)
                if rel is not None and rel[1] <= self.max_gap_s and att is not None and att[1] <= self.max_gap_s:
                    pitch, yaw = rel[0][1], _wrap180(att[0][2] + rel[0][2])  # gimbal yaw on the vehicle's
            rng = self.distance.at(t, self.laser_max_age_s)
            laser = rng[0][0] if rng is not None and rng[1] <= self.laser_max_age_s else None
            flight_yaw = att[0][2] if att is not None and att[1] <= self.max_gap_s else None
            when = datetime.fromtimestamp(t, UTC)
            tag = Geotag(time=when, gnss_time=when if self.clock == "autopilot" else None, lat=lat, lon=lon,
                         alt=alt, rel_alt=rel_alt, gimbal_pitch=pitch, gimbal_yaw=yaw, flight_yaw=flight_yaw,
                         target_distance=laser)
            return Pose(tag, "live" if live else "stale", gap)

    def summary(self) -> dict:
        with self.lock:
            return {"messages": dict(sorted(self.counts.items())), "refused": self.refused, "clock": self.clock,
                    "skew_s": round(min(self.skews), 3) if self.skews else None,
                    "positions": len(self.position.t)}


class Link:
    """A MAVLink connection (`udpin:127.0.0.1:14550`, `udpout:...`, `tcp:...`, a serial device
    `/dev/ttyACM0` with `baud`) read on a thread into a `Telemetry`."""

    def __init__(self, url: str, telemetry: Telemetry | None = None, baud: int = 57600):
        os.environ.setdefault("MAVLINK20", "1")  # GIMBAL_DEVICE_ATTITUDE_STATUS needs MAVLink 2
        from pymavlink import mavutil  # the dialect loads in ~0.3 s: only when MAVLink is used

        self.mavutil = mavutil
        self.telemetry = telemetry or Telemetry()
        self.url = url
        self.conn = mavutil.mavlink_connection(url, baud=baud, source_system=255, source_component=191,
                                               autoreconnect=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mavlink", daemon=True)

    def start(self) -> Link:
        self._thread.start()
        return self

    def _run(self) -> None:
        beat = 0.0
        while not self._stop.is_set():
            if time.monotonic() - beat >= 1.0:  # we are a ground station: the autopilot may wait for us
                beat = time.monotonic()
                try:
                    m = self.mavutil.mavlink
                    self.conn.mav.heartbeat_send(m.MAV_TYPE_ONBOARD_CONTROLLER, m.MAV_AUTOPILOT_INVALID, 0, 0,
                                                 m.MAV_STATE_ACTIVE)
                except OSError as exc:
                    log.debug("heartbeat not sent: %s", exc)
            try:
                msg = self.conn.recv_match(type=list(MESSAGES), blocking=True, timeout=0.2)
            except (OSError, ValueError) as exc:  # a serial port unplugged, a garbled packet
                log.warning("MAVLink %s: %s", self.url, exc)
                time.sleep(0.2)
                continue
            if msg is not None and msg.get_type() != "BAD_DATA":
                self.telemetry.on_message(msg)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        self.conn.close()

    def __enter__(self) -> Link:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class FrameClock:
    """When a frame was captured, on the autopilot's clock."""

    start: datetime | None = None  # a recording's first frame (its position 0 s)
    latency_s: float = 0.1  # a live camera: from capture to the frame in our hands
    wait_s: float = 0.5  # how long a frame waits for the telemetry after it


class Posing:
    """Frames given their pose from live telemetry (the runtime's `RunConfig.posing`); counts by
    pose state for the run's summary."""

    def __init__(self, telemetry: Telemetry, clock: FrameClock):
        self.telemetry, self.clock = telemetry, clock
        self.states: dict[str, int] = {}

    def capture_time(self, frame: Frame) -> float | None:
        if frame.offset_s is not None:
            if self.clock.start is None:
                raise ValueError("a recording with --mavlink needs --video-start (its first frame's UTC time)")
            return self.clock.start.timestamp() + frame.offset_s
        if frame.grabbed is not None:  # a camera or a stream: now, less the camera's delay and the clocks' skew
            return frame.grabbed - self.clock.latency_s - (self.telemetry.skew_s or 0.0)
        t = frame.geotag.time  # a photo: its own time stamp
        return t.timestamp() if t is not None and t.tzinfo is not None else None

    def __call__(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        for frame in frames:
            t = self.capture_time(frame)
            if t is None:
                pose = Pose(Geotag(), "missing", None)
            else:
                self.telemetry.wait_for(t, self.clock.wait_s)
                pose = self.telemetry.pose_at(t)
            self.states[pose.state] = self.states.get(pose.state, 0) + 1
            if pose.state != "live":
                log.warning("frame %s: telemetry %s%s", frame.name, pose.state,
                            f" (nearest position {pose.gap_s:.2f} s away)" if pose.gap_s is not None else
                            " (no position received)")
            yield replace(frame, geotag=replace(pose.geotag, telemetry=pose.state))

    def line(self) -> str:
        states = ", ".join(f"{k} {v}" for k, v in sorted(self.states.items())) or "no frames"
        s = self.telemetry.summary()
        return f"telemetry: MAVLink poses {states}; clock {s['clock']}, {sum(s['messages'].values())} messages"
