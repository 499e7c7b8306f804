"""Where confirmed alerts go: a durable JSON-lines file until comms' SQLite outbox exists.

The interface is the one the SQLite outbox will keep: `next_seq()` hands out the drone's
sequence numbers (never reused, also after a restart, since they are read back from the
file) and `put(alert)` makes an alert durable before returning (fsync).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from comms.alert import Alert


def alert_to_json(alert: Alert) -> dict:
    return {
        "id": alert.id, "drone_id": alert.drone_id, "seq": alert.seq, "flight_id": alert.flight_id,
        "time": alert.time.isoformat().replace("+00:00", "Z"), "lat": round(alert.lat, 7),
        "lon": round(alert.lon, 7), "alt": round(alert.alt, 2), "class": alert.fault_class,
        "confidence": round(alert.confidence, 4), "severity": alert.severity.name.lower(),
        "tower_id": alert.tower_id, "crop": alert.crop_path, "position_source": alert.position_source,
    }


class JsonlOutbox:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_partial_tail()
        self._next = 1 + max((json.loads(line)["seq"] for line in self._lines()), default=0)

    def _drop_partial_tail(self) -> None:
        """A power loss mid-write leaves a line without its newline: it was never acknowledged."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)

    def _lines(self) -> list[str]:
        if not self.path.exists():
            return []
        return [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def next_seq(self) -> int:
        seq, self._next = self._next, self._next + 1
        return seq

    def put(self, alert: Alert) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(alert_to_json(alert)) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def alerts(self) -> list[dict]:
        return [json.loads(line) for line in self._lines()]
