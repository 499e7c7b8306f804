"""`pli telemetry`: the edge side's commands (only the edge extra needed)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("telemetry", help="print a flight log (DJI .SRT or CSV) as JSON lines",
                       description="Parse a telemetry sidecar (DJI .SRT of any generation, or a CSV with time, lat, "
                       "lon, alt) and print one JSON object per fix: frame, time (ISO 8601; UTC with Z when the "
                       "offset is known), lat, lon, alt. Exit 2 when the file holds no position.")
    p.add_argument("file", type=Path, help=".srt or .csv file")
    p.add_argument("--tz", help="time zone of the file's local times: +08:00, UTC or an IANA name")
    p.set_defaults(func=_telemetry)


def _telemetry(args: argparse.Namespace) -> int:
    import json

    from edge.telemetry import load_track

    for fix in load_track(args.file, args.tz):
        print(json.dumps(fix.to_json()))
    return 0
