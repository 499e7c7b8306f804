"""The alert record: one confirmed fault, as every side of the system sees it.

Its id is a contract: `<drone id>-<epoch, 5 digits>-<sequence number, 10 digits>`, for example
`UAV-07-00003-0000000042`. The drone id names the drone (its device file); the epoch (1..65535)
moves forward at every outbox open and whenever a receiver reports a higher one; the sequence
number counts up within the drone's outbox. So an alert that travels twice (BeiDou first, MQTT
later) or is retried after a crash keeps one id, a reflashed drone or a restored older outbox
cannot reuse an id the cloud already holds, and every store can drop duplicates by id alone.

An alert also says where it came from (provenance): the source frame and its time, the pixel
box, the model version and class-list version that raised it, and how its position was found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from comms.classes import Severity

_DRONE_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MAX_SEQ = 2**32 - 1
MAX_EPOCH = 2**16 - 1
# Alert times before this are a camera or computer with an unset clock: they are re-stamped.
VALID_FROM = datetime(2020, 1, 1, tzinfo=UTC)
# How the fault's ground position was found. "drone": the drone's own position (no usable pose);
# "laser": range from the laser range finder; "ground_plane": the camera ray met the ground at
# take-off height; "multi_view": the rays of several views met (edge/multiview.py). The BeiDou form
# has two bits for it: the first four as they are, any later one as "other".
POSITION_SOURCES = ("drone", "laser", "ground_plane", "other", "multi_view")
BEIDOU_POSITION_SOURCES = POSITION_SOURCES[:4]
MAX_POSITION_ERROR_M = 100_000.0
# What an alert's JSON `flags` may say, each a boolean field of Alert. "telemetry_stale": the frame's
# pose came from the nearest live telemetry sample, not from samples around the frame's time (the
# BeiDou form has no bit for it: the MQTT copy brings it).
FLAGS = ("time_restamped", "telemetry_stale")


def alert_id(drone_id: str, epoch: int, seq: int) -> str:
    """Stable alert id: `<drone id>-<epoch:05d>-<seq:010d>`."""
    if not _DRONE_ID.match(drone_id):
        raise ValueError(f"drone id {drone_id!r} must be 1-32 of [A-Za-z0-9_-]")
    if not 0 <= epoch <= MAX_EPOCH:
        raise ValueError(f"epoch {epoch} out of range 0..{MAX_EPOCH}")
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"sequence number {seq} out of range 0..{MAX_SEQ}")
    return f"{drone_id}-{epoch:05d}-{seq:010d}"


def parse_alert_id(text: str) -> tuple[str, int, int]:
    """(drone id, epoch, sequence number) of a canonical alert id; ValueError otherwise."""
    parts = text.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise ValueError(f"not an alert id: {text!r}")
    drone_id, epoch, seq = parts[0], int(parts[1]), int(parts[2])
    if alert_id(drone_id, epoch, seq) != text:
        raise ValueError(f"not a canonical alert id: {text!r}")
    return drone_id, epoch, seq


def restamp(time: datetime | None, gnss_time: datetime | None, received: datetime) -> tuple[datetime, bool]:
    """The time to give an alert, and whether it was re-stamped: a missing or pre-2020 time (a
    camera with an unset clock) is replaced by the GNSS time, else by the time the drone got it."""
    if time is not None and time.tzinfo is not None and time >= VALID_FROM:
        return time, False
    for candidate in (gnss_time, received):
        if candidate is not None and candidate.tzinfo is not None and candidate >= VALID_FROM:
            return candidate, True
    # No clock to trust at all: keep what there is, flagged (the BeiDou form cannot carry it).
    return (time if time is not None and time.tzinfo is not None else received), True


@dataclass(frozen=True)
class Alert:
    drone_id: str
    seq: int
    flight_id: str
    time: datetime
    lat: float
    lon: float
    alt: float
    fault_class: str
    confidence: float
    severity: Severity
    tower_id: str | None = None
    crop_path: str | None = None
    position_source: str = "drone"
    epoch: int = 0
    # provenance
    class_list_version: int | None = None  # the list the model's class ids come from (None: unversioned)
    model_version: str | None = None
    source_frame: str | None = None  # photo file name, or "frame <index>" of a video or camera
    frame_time: datetime | None = None  # the frame's own time stamp as read (may be pre-2020)
    box: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2 in source-image pixels
    time_restamped: bool = False  # `time` is GNSS or receipt time: the frame's clock was unset
    telemetry_stale: bool = False  # the position is the nearest telemetry's, not around the frame's time
    position_error_m: float | None = None  # 1-sigma horizontal error estimate, where the drone made one
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        alert_id(self.drone_id, self.epoch, self.seq)  # validates all three
        if self.time.tzinfo is None:
            raise ValueError("alert time must be timezone-aware (UTC)")
        if not -90.0 <= self.lat <= 90.0 or not -180.0 <= self.lon <= 180.0:
            raise ValueError(f"position out of range: lat={self.lat}, lon={self.lon}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence {self.confidence} out of range 0..1")
        if self.position_source not in POSITION_SOURCES:
            raise ValueError(f"position_source must be one of {POSITION_SOURCES}, not {self.position_source!r}")
        if self.position_error_m is not None:
            err = float(self.position_error_m)
            if not 0.0 <= err <= MAX_POSITION_ERROR_M:  # NaN fails too
                raise ValueError(f"position_error_m {self.position_error_m} out of range 0..{MAX_POSITION_ERROR_M:g}")
            object.__setattr__(self, "position_error_m", err)
        if self.box is not None:
            box = tuple(float(v) for v in self.box)
            if len(box) != 4 or box[2] < box[0] or box[3] < box[1]:
                raise ValueError(f"box {self.box} is not x1, y1, x2, y2 with x2 >= x1 and y2 >= y1")
            object.__setattr__(self, "box", box)
        object.__setattr__(self, "severity", Severity(self.severity))
        object.__setattr__(self, "time", self.time.astimezone(UTC))
        if self.frame_time is not None and self.frame_time.tzinfo is not None:
            object.__setattr__(self, "frame_time", self.frame_time.astimezone(UTC))

    @property
    def flags(self) -> list[str]:
        return [name for name in FLAGS if getattr(self, name)]

    @property
    def id(self) -> str:
        return alert_id(self.drone_id, self.epoch, self.seq)


def flag_fields(flags: object) -> dict[str, bool]:
    """Alert's boolean fields from a `flags` list (unknown names ignored: a newer drone's)."""
    names = flags if isinstance(flags, list | tuple) else []
    return {name: name in names for name in FLAGS}
