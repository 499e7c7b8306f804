"""The alert record: one confirmed fault, as every side of the system sees it.

Its id is derived from the drone id and the drone's sequence number only, so an alert that
travels twice (BeiDou first, MQTT later) or is retried after a crash keeps one id, and the
cloud can drop duplicates by id alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from comms.classes import Severity

_DRONE_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MAX_SEQ = 2**32 - 1


def alert_id(drone_id: str, seq: int) -> str:
    """Stable alert id: `<drone id>-<sequence number, 10 digits>`."""
    if not _DRONE_ID.match(drone_id):
        raise ValueError(f"drone id {drone_id!r} must be 1-32 of [A-Za-z0-9_-]")
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"sequence number {seq} out of range 0..{MAX_SEQ}")
    return f"{drone_id}-{seq:010d}"


def parse_alert_id(text: str) -> tuple[str, int]:
    drone_id, sep, seq = text.rpartition("-")
    if not sep or not seq.isdigit():
        raise ValueError(f"not an alert id: {text!r}")
    seq_n = int(seq)
    if alert_id(drone_id, seq_n) != text:
        raise ValueError(f"not a canonical alert id: {text!r}")
    return drone_id, seq_n


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
    # "projected": ground position of the fault from the camera pose; "drone": the drone's own.
    position_source: str = "drone"
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        alert_id(self.drone_id, self.seq)  # validates both
        if self.time.tzinfo is None:
            raise ValueError("alert time must be timezone-aware (UTC)")
        if not -90.0 <= self.lat <= 90.0 or not -180.0 <= self.lon <= 180.0:
            raise ValueError(f"position out of range: lat={self.lat}, lon={self.lon}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence {self.confidence} out of range 0..1")
        if self.position_source not in ("projected", "drone"):
            raise ValueError(f"position_source must be 'projected' or 'drone', not {self.position_source!r}")
        object.__setattr__(self, "severity", Severity(self.severity))
        object.__setattr__(self, "time", self.time.astimezone(UTC))

    @property
    def id(self) -> str:
        return alert_id(self.drone_id, self.seq)
