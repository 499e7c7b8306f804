"""A drone's parts for `pli edge doctor` tests, in either venv: TUF metadata written with
python-tuf, and a flight.json for the autopilot simulator."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from tuf.api.metadata import Metadata, Root, TargetFile, Targets


def tuf_metadata(tuf: Path, root_expires: datetime, targets: dict[str, str] | None = None,
                 targets_expires: datetime | None = None) -> None:
    """`tuf/metadata/root.json` (and `targets.json` naming each path's sha256) as the drone keeps them."""
    meta = tuf / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    Metadata(Root(expires=root_expires)).to_file(str(meta / "root.json"))
    if targets is not None:
        files = {path: TargetFile(1, {"sha256": sha}, path) for path, sha in targets.items()}
        Metadata(Targets(expires=targets_expires or root_expires, targets=files)).to_file(str(meta / "targets.json"))


def flight_json(path: Path, start: datetime, frames: int = 6) -> Path:
    """A short straight flight, one pose a second from `start`."""
    poses = [{"frame": i, "time": (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
              "lat": 25.0 + i * 1e-5, "lon": 102.0, "abs_alt": 1500.0, "rel_alt": 30.0, "flight_yaw": 10.0,
              "gimbal_yaw": 100.0, "gimbal_pitch": -20.0, "target_distance": 15.0} for i in range(frames)]
    path.write_text(json.dumps({"poses": poses}))
    return path
