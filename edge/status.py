"""What the drone runs, as it reports it: a small JSON file the link publishes, retained.

The runtime (`pli edge run`) writes it whenever something changes (a swap, a model becoming
the last good one, a refused update, a rollback) and every `EVERY_FRAMES` frames for the
distance flown; `pli link run`, which holds the MQTT connection, publishes it retained on
`pli/<fleet>/<drone>/status` when its content changes (comms/mqtt_link.py). The runtime needs no
broker, and a drone that lands reports its last state at the next connection. The cloud's
deployments follow these reports (cloud/registry/fleet_status.py).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from edge.geo import distance_m

log = logging.getLogger(__name__)

SCHEMA = "pli.status/1"
EVERY_FRAMES = 50


@dataclass
class ModelReport:
    drone: str
    fleet: str | None
    group: str | None
    model: str  # <file stem>/<card version>, as alerts carry it
    release: str | None  # the card's version
    state: str  # "trial" (swapped in, not yet good), "good", "given" (started with it)
    last_good: str | None = None
    crashes: int = 0  # starts of the current model that followed a run that did not end
    refused: list[dict] = field(default_factory=list)  # [{"model", "reason", "at"}], the latest few
    frames_on_model: int = 0
    km_on_model: float = 0.0
    at: str = ""
    schema: str = SCHEMA


class StatusFile:
    """The report on disk, replaced whole (a reader sees the old or the new one)."""

    def __init__(self, path: Path, drone: str, fleet: str | None, group: str | None):
        self.path, self.drone, self.fleet, self.group = Path(path), drone, fleet, group
        self.report: ModelReport | None = None
        self._last: tuple[float, float] | None = None

    def model(self, model: str, release: str | None, state: str, last_good: str | None = None,
              crashes: int = 0) -> None:
        refused = self.report.refused if self.report else []
        self.report = ModelReport(self.drone, self.fleet, self.group, model, release, state, last_good, crashes,
                                  refused)
        self.write()

    def refusal(self, model: str, reason: str) -> None:
        if self.report is None:
            return
        entry = {"model": model, "reason": reason[:300], "at": _now()}
        self.report.refused = [*self.report.refused, entry][-5:]
        self.write()

    def regroup(self, group: str | None) -> None:
        if group != self.group:
            self.group = group
            if self.report is not None:
                self.report.group = group
                self.write()

    def state(self, state: str, last_good: str | None) -> None:
        if self.report is not None:
            self.report.state, self.report.last_good = state, last_good
            self.write()

    def frame(self, lat: float | None, lon: float | None) -> None:
        """A frame went by on the current model: count it and the distance from the last fix."""
        if self.report is None:
            return
        r = self.report
        r.frames_on_model += 1
        if lat is not None and lon is not None and math.isfinite(lat) and math.isfinite(lon):
            if self._last is not None:
                r.km_on_model += float(distance_m(*self._last, lat, lon)) / 1000
            self._last = (lat, lon)
        if r.frames_on_model % EVERY_FRAMES == 0:
            self.write()

    def swapped(self) -> None:
        self._last = None

    def write(self) -> None:
        if self.report is None:
            return
        self.report.at = _now()
        self.report.km_on_model = round(self.report.km_on_model, 4)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(asdict(self.report), separators=(",", ":")))
            os.replace(tmp, self.path)
        except OSError as exc:  # a full disk: the report is for the link, the flight goes on
            tmp.unlink(missing_ok=True)
            log.error("status %s not written (%s): the previous one stands", self.path, exc.strerror or exc)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
