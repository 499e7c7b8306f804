"""`pli cloud`: flights after landing: upload, the crew's report, towers, tracks.
Only argparse at module level (see pli/cli.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(csub: argparse._SubParsersAction) -> None:
    from comms.settings import drone_settings  # a dataclass: light enough for --help

    p = csub.add_parser("upload", help="a landed flight's photos and telemetry to the cloud (resumable)",
                        description="Declare every photo and telemetry file of FLIGHT_DIR (name, size, sha256) to "
                        "the cloud, then send what it lacks, in chunks, from where an earlier run stopped; a second "
                        "run sends nothing. The token (role fleet) comes from $PLI_TOKEN or --token-file.")
    p.add_argument("flight_dir", type=Path)
    p.add_argument("--url", default=drone_settings().cloud_url,
                   help="the cloud's API (default $PLI_CLOUD_URL or http://127.0.0.1:8000)")
    p.add_argument("--flight-id", help="default: flight_id in FLIGHT_DIR/flight.json")
    p.add_argument("--config", type=Path, default=Path("device.json"),
                   help="the drone's device file from `pli device init` (its id; default device.json)")
    p.add_argument("--drone-id", help="without a device file: the drone that flew it")
    p.add_argument("--token-file", type=Path)
    p.add_argument("--chunk-mb", type=float, default=4.0, help="bytes per request, in MiB (default 4)")
    p.set_defaults(func=_upload)

    p = csub.add_parser("report", help="a flight's printable report (PDF) for the maintenance crew",
                        description="Write the flight's report: a table per tower of its faults, with crops, "
                        "positions and status (the same as the page's PDF link).")
    p.add_argument("flight_id")
    p.add_argument("--out", type=Path, help="default: report-<flight>.pdf")
    p.set_defaults(func=_report)

    t = csub.add_parser("towers", help="the asset register", description="Lines and towers.")
    tsub = t.add_subparsers(dest="towers_command", required=True, metavar="{import}")
    p = tsub.add_parser("import", help="import towers from CSV (line,tower,lat,lon[,order]) or KML",
                        description="Insert or move towers; alerts stored afterwards get the nearest tower and span.")
    p.add_argument("file", type=Path)
    p.set_defaults(func=_towers_import)

    f = csub.add_parser("flights", help="flights", description="Flight tools.")
    fsub = f.add_subparsers(dest="flights_command", required=True, metavar="{track}")
    p = fsub.add_parser("track", help="a flight's track (telemetry): records clean passes over known faults",
                        description="Read a telemetry file (DJI .SRT or CSV) and record, for every known fault the "
                        "flight passed without alerting it, a clean pass (which confirms a repair).")
    p.add_argument("flight_id")
    p.add_argument("file", type=Path, help="telemetry (.srt or .csv)")
    p.add_argument("--drone", required=True, help="the drone that flew it")
    p.set_defaults(func=_flight_track)


def _towers_import(args: argparse.Namespace) -> int:
    from cloud.db import session_scope, upgrade
    from cloud.towers import import_towers, read_register

    upgrade()
    rows = read_register(args.file)
    with session_scope() as s:
        n = import_towers(s, rows)
    print(f"{n} towers on {len({r.line for r in rows})} lines imported from {args.file}")
    return 0


def _flight_track(args: argparse.Namespace) -> int:
    from cloud.db import session_scope, upgrade
    from cloud.flights import record_track
    from cloud.models import Drone
    from edge.telemetry import load_track

    upgrade()
    fixes = [fix for fix in load_track(args.file) if fix.lat is not None and fix.lon is not None]
    points = [[fix.lat, fix.lon] for fix in fixes]
    times = [fix.time for fix in fixes if fix.time is not None and fix.time.tzinfo is not None]
    with session_scope() as s:
        if s.get(Drone, args.drone) is None:
            raise ValueError(f"unknown drone {args.drone}")
        passed = record_track(s, args.flight_id, args.drone, points, (min(times), max(times)) if times else None)
    print(f"flight {args.flight_id}: {len(points)} track points, clean passes over faults "
          f"{sorted(f.id for f in passed) or 'none'}")
    return 0


def _upload(args: argparse.Namespace) -> int:
    import logging

    from cloud.upload_client import upload
    from comms.settings import drone_settings
    from edge.cli import identity

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per chunk says nothing the bar does not
    token = drone_settings().token or (args.token_file.read_text().strip() if args.token_file else None)
    if not token:
        raise ValueError("no token: set $PLI_TOKEN or give --token-file (a fleet token: pli cloud token create)")
    drone_id, _, _ = identity(args.config, args.drone_id)
    s = upload(args.flight_dir, args.url, token, drone_id, args.flight_id, chunk=int(args.chunk_mb * (1 << 20)))
    print(json.dumps({"flight_id": s.flight_id, "files": s.files, "already_stored": s.already,
                      "stored_now": s.stored, "refused": s.refused, "bytes_sent": s.bytes_sent}))
    return 1 if s.refused else 0


def _report(args: argparse.Namespace) -> int:
    from cloud.db import session_scope, upgrade
    from cloud.flight_report import flight_report, pdf

    upgrade()
    with session_scope() as s:
        report = flight_report(s, args.flight_id, photos=True)
        if report is None:
            raise ValueError(f"no flight {args.flight_id} in the database")
        data = pdf(report)
    out = args.out or Path(f"report-{args.flight_id}.pdf")
    out.write_bytes(data)
    photos = sum(a.has_photo for a in report.alerts)
    print(f"wrote {out}: {len(report.alerts)} alerts ({photos} linked to their uploaded photo), "
          f"{len(report.by_tower())} tower group(s)")
    return 0
