"""`pli device init`, `pli telemetry`, `pli detect` and `pli edge run`: the drone's commands (edge extra
only). Only argparse at module level (see pli/cli.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from comms.settings import with_env_help


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("device", help="this drone's identity and endpoints", description="Device configuration.")
    with_env_help(d)
    dsub = d.add_subparsers(dest="device_command", required=True, metavar="{init}")
    p = dsub.add_parser("init", help="write the device config (no secrets in it)",
                        description="Write this drone's config: id, fleet, key id, the ground station's BeiDou "
                        "address, the MQTT endpoint. Secrets stay out of it: the HMAC key comes from "
                        "$PLI_DEVICE_KEY (hex) or --key-file, the MQTT password from $PLI_MQTT_PASSWORD.")
    p.add_argument("--drone-id", required=True)
    p.add_argument("--fleet", default="fleet1")
    p.add_argument("--key-id", type=int, required=True, help="the drone's key id at the ground station")
    p.add_argument("--ground-address", required=True, help="the ground station's BeiDou address (7 digits)")
    p.add_argument("--mqtt-host", default="127.0.0.1")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--mqtt-tls-ca", help="CA file: connect with TLS")
    p.add_argument("--key-file", help="file holding the HMAC key in hex (keep it outside the repository)")
    p.add_argument("--group", default="fleet", help="rollout group for model updates (default fleet; canary drones "
                   "take releases first)")
    p.add_argument("--update-url", help="the cloud's API URL, for signed model updates (token: $PLI_TOKEN)")
    p.add_argument("--tuf-root", help="the fleet's 1.root.json: the trust anchor of model updates, installed "
                   "beside the config (tuf/)")
    p.add_argument("--out", default="device.json", help="config file to write (default device.json)")
    p.set_defaults(func=_device_init)

    p = sub.add_parser("telemetry", help="print a flight log (DJI .SRT or CSV) as JSON lines",
                       description="Parse a telemetry sidecar (DJI .SRT of any generation, or a CSV with time, lat, "
                       "lon, alt) and print one JSON object per fix: frame, time (ISO 8601; UTC with Z when the "
                       "offset is known), lat, lon, alt. Exit 2 when the file holds no position.")
    p.add_argument("file", type=Path, help=".srt or .csv file")
    p.add_argument("--tz", help="time zone of the file's local times: +08:00, UTC or an IANA name")
    p.set_defaults(func=_telemetry)

    p = sub.add_parser("detect", help="run an ONNX detector on images",
                       description="Detect with an ONNX model through the edge detector. Tiles high-resolution "
                       "images automatically (guided past 4x the model input, every tile past 2x). With --json: "
                       "one JSON object per image per line, boxes in source-image pixels.")
    p.add_argument("model", type=Path, help="ONNX model")
    p.add_argument("images", nargs="+", type=Path, help="image files")
    p.add_argument("--tile", default="auto", choices=["auto", "on", "guided", "off"],
                   help="tiled inference: auto (guided past 4x the model input, every tile past 2x, else one "
                   "pass), on (every tile), guided (tiles only where a coarse pass saw something) or off (default "
                   "auto)")
    p.add_argument("--conf", type=float, help="confidence threshold (default: the model's)")
    p.add_argument("--threads", type=int, help="onnxruntime intra-op threads")
    p.add_argument("--json", action="store_true", help="JSON lines output")
    p.set_defaults(func=_detect)

    edge = sub.add_parser("edge", help="the on-drone runtime", description="On-drone commands.")
    with_env_help(edge)
    esub = edge.add_subparsers(dest="edge_command", required=True, metavar="{run,golden}")
    p = esub.add_parser("golden", help="golden frames of a model: what any build of it must detect again",
                        description="Run MODEL on IMAGES and write its golden frames (the images as JPEG, with every "
                        "detection at least --margin above the operating threshold). A drone swaps to a model only "
                        "when it finds them again (same class, IoU >= 0.8). With --card, the model card names them.")
    p.add_argument("model", type=Path)
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--out", type=Path, help="default: <model>.golden.json beside the model")
    p.add_argument("--conf", type=float, help="operating threshold (default: the model card's, else 0.25)")
    p.add_argument("--margin", type=float, default=0.1)
    p.add_argument("--card", action="store_true", help="write the golden file's name into the model card")
    p.set_defaults(func=_golden)
    p = esub.add_parser("doctor", help="is this drone ready to fly? each check with what to fix",
                        description="Checks the execution providers, the model's card and signature, the TUF root and "
                        "expiry, the clock (GNSS over MAVLink against the wall clock), the BeiDou and modem serial "
                        "ports, the outbox and free disk, and the autopilot's MAVLink heartbeat. Exits 1 when any "
                        "check fails, printing what to fix.")
    p.add_argument("--config", type=Path, default=Path("device.json"), help="device config (default device.json)")
    p.add_argument("--model", type=Path, help="the ONNX model `pli edge run` flies")
    p.add_argument("--outbox", type=Path, default=Path("outbox/outbox.db"), help="default outbox/outbox.db")
    p.add_argument("--beidou-port", help="serial device of the BeiDou terminal")
    p.add_argument("--modem-port", help="serial device of the 4G modem's AT port")
    p.add_argument("--mavlink", metavar="URL", help="the autopilot's MAVLink (udpin:..., /dev/ttyACM0)")
    p.add_argument("--wait", type=float, default=5.0, help="seconds to listen for the autopilot (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object: ok and every check")
    p.set_defaults(func=_doctor)

    p = esub.add_parser("autopilot-sim", help="replay a synthetic flight's telemetry as MAVLink over UDP",
                        description="A small autopilot simulator (edge/autopilot_sim.py): a flight.json of `pli data "
                        "synth` sent as GLOBAL_POSITION_INT, ATTITUDE, gimbal attitude, DISTANCE_SENSOR, SYSTEM_TIME "
                        "and HEARTBEAT, with dropped and late messages, for `pli edge run --mavlink`.")
    p.add_argument("flight", type=Path, help="flight.json of a synthetic flight")
    p.add_argument("--to", default="udpout:127.0.0.1:14550", help="where to send (default udpout:127.0.0.1:14550)")
    p.add_argument("--rate", type=float, default=10.0, help="messages of each kind per flight second (default 10)")
    p.add_argument("--speed", type=float, default=1.0, help="flight seconds per wall second (default 1)")
    p.add_argument("--drop", type=float, default=0.0, help="share of messages dropped (default 0)")
    p.add_argument("--late", type=float, default=0.0, help="share of messages sent after the next ones (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gimbal", choices=["earth", "vehicle", "mount"], default="earth",
                   help="gimbal attitude in the earth frame, in the vehicle's, or as MOUNT_ORIENTATION (older "
                   "autopilots)")
    p.add_argument("--no-laser", action="store_true", help="send no DISTANCE_SENSOR")
    p.add_argument("--wait-gcs", type=float, default=30.0,
                   help="seconds to wait for a ground station's HEARTBEAT before flying (0: fly at once)")
    p.add_argument("--clock", choices=["flight", "now"], default="flight",
                   help="SYSTEM_TIME as the flight's own time (default; a recording lines up) or now (a live camera)")
    p.set_defaults(func=_autopilot_sim)

    p = esub.add_parser("run", help="process a flight into geotagged alerts",
                        description="Frames (image folder, video, camera index or stream URL) -> detector (tiled "
                        "when large) -> fault tracker -> alerts with crops in the outbox. Prints a summary.")
    p.add_argument("--source", required=True, help="image folder, video file, camera index or rtsp:// URL")
    p.add_argument("--model", required=True, type=Path, help="ONNX model")
    p.add_argument("--update-every", type=float, default=300.0,
                   help="seconds between checks for a signed release (with --update-url at device init)")
    p.add_argument("--outbox", type=Path, default=Path("outbox/outbox.db"),
                   help="the durable outbox, SQLite (default outbox/outbox.db); crops go beside it")
    p.add_argument("--config", type=Path, default=Path("device.json"),
                   help="device config from `pli device init` (default device.json): drone id and fleet come "
                   "from it, as for `pli link run`")
    p.add_argument("--drone-id", help="override the device file's drone id (logged as a warning); required when "
                   "there is no device file (photos processed on the ground)")
    p.add_argument("--flight-id", help="flight id (default: UTC start time; a run cut short keeps its own)")
    p.add_argument("--fresh", action="store_true",
                   help="run a folder cut short by a crash all again, as a new flight; by default it resumes "
                        "by photo under its flight id and reports no fault twice (a finished folder run "
                        "again is always a new flight)")
    p.add_argument("--telemetry", type=Path, help="telemetry sidecar (.SRT or .csv) if not beside the video")
    p.add_argument("--tz", help="time zone of the telemetry's local times")
    p.add_argument("--tile", default="auto", choices=["auto", "on", "guided", "off"],
                   help="tiled inference: auto (guided past 4x the model input, every tile past 2x, else one "
                   "pass), on (every tile), guided (tiles only where a coarse pass saw something) or off (default "
                   "auto)")
    p.add_argument("--conf", type=float, help="confidence threshold (default: the model's)")
    p.add_argument("--threads", type=int, help="onnxruntime intra-op threads")
    p.add_argument("--k", type=int, default=2, help="confirm a fault seen in k ... (default 2)")
    p.add_argument("--n", type=int, default=3, help="... of the last n frames (default 3)")
    p.add_argument("--radius", type=float, default=15.0, help="same fault within this many metres (default 15)")
    p.add_argument("--watch", type=Path, help="folder to watch for model updates (verified, swapped between frames)")
    m = p.add_argument_group("live telemetry (MAVLink)", "each frame's pose from the autopilot's telemetry "
                             "interpolated at the frame's capture time (edge/mavlink.py)")
    m.add_argument("--mavlink", metavar="URL", help="udpin:127.0.0.1:14550, tcp:HOST:PORT or a serial device "
                   "(/dev/ttyACM0)")
    m.add_argument("--mavlink-baud", type=int, default=57600, help="serial speed (default 57600)")
    m.add_argument("--camera-latency-ms", type=float, default=100.0,
                   help="a live camera's delay from capture to the frame read (default 100)")
    m.add_argument("--video-start", help="a recording's first frame, UTC (ISO 8601): its frames' times")
    m.add_argument("--telemetry-wait", type=float, default=0.5,
                   help="seconds a frame waits for the telemetry after its time (default 0.5)")
    m.add_argument("--max-gap", type=float, default=1.0,
                   help="interpolate between position samples at most this many seconds apart; else the pose "
                   "is stale and the alert flagged (default 1.0)")
    m.add_argument("--max-stale", type=float, default=10.0,
                   help="a frame farther than this many seconds from any position sample has no position "
                   "(default 10)")
    p.set_defaults(func=_run)


def _telemetry(args: argparse.Namespace) -> int:
    import json

    from edge.telemetry import load_track

    for fix in load_track(args.file, args.tz):
        print(json.dumps(fix.to_json()))
    return 0


def _detect(args: argparse.Namespace) -> int:
    import json
    import logging

    import cv2

    from edge.detector import Detector
    from edge.tiled import detect

    det = Detector(args.model, threads=args.threads)
    failed = 0
    for path in args.images:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            logging.getLogger("pli.detect").warning("%s: unreadable image; skipped", path)
            failed += 1
            continue
        d = detect(det, image, args.tile, conf=args.conf)
        boxes = [{"class": det.names[c], "confidence": round(float(s), 4), "xyxy": [round(float(v), 1) for v in b]}
                 for b, s, c in zip(d.xyxy, d.confidence, d.class_id, strict=True)]
        if args.json:
            print(json.dumps({"image": str(path), "detections": boxes}))
        else:
            print(f"{path}: " + (", ".join(f"{b['class']} {b['confidence']:.2f}" for b in boxes) or "nothing"))
    return 2 if failed == len(args.images) else 0


def identity(config: Path, drone_id: str | None) -> tuple[str, str | None, int | None]:
    """(drone id, fleet, key id) for a drone-side command: the device file's, `--drone-id` only
    as a logged override or, with no device file (photos processed on the ground), explicitly."""
    import logging

    from comms.device import DeviceConfig

    if not config.exists():
        if drone_id is None:
            raise ValueError(f"no device file {config}: run `pli device init` on the drone (or pass --config), or "
                             "give --drone-id to process photos on the ground")
        return drone_id, None, None
    cfg = DeviceConfig.load(config)
    if drone_id is not None and drone_id != cfg.drone_id:
        logging.getLogger("pli.identity").warning("--drone-id %s overrides the device file's %s (%s)", drone_id,
                                                  cfg.drone_id, config)
        return drone_id, None, None
    return cfg.drone_id, cfg.fleet, cfg.key_id


def _run(args: argparse.Namespace) -> int:
    from comms.outbox import Outbox
    from edge.runtime import RunConfig, run_flight
    from edge.tracker import TrackerConfig

    drone_id, fleet, key_id = identity(args.config, args.drone_id)
    config = RunConfig(drone_id=drone_id, flight_id=args.flight_id, fresh=args.fresh, tile=args.tile, conf=args.conf,
                       threads=args.threads, tracker=TrackerConfig(k=args.k, n=args.n, radius_m=args.radius),
                       watch=args.watch, updates=_update_loop(args))
    if config.updates is not None:
        config.state = config.updates.watch / "state.json"
    if args.config.exists():
        from comms.device import status_path

        config.status, config.fleet = status_path(args.config), fleet
    if args.telemetry or args.tz:
        from edge.sources import open_source

        source = open_source(args.source, args.telemetry, args.tz)
    else:
        source = args.source
    if isinstance(source, str | Path) and not _stream_like(str(source)) and not Path(source).exists():
        raise FileNotFoundError(f"--source {source}: no such file or folder")
    link = _mavlink(args, config)
    try:
        # The outbox opens (a new epoch) only once the model has loaded: see run_flight.
        summary = run_flight(source, args.model, lambda: Outbox(args.outbox, drone_id, fleet, key_id), config)
    finally:
        if link is not None:
            link.close()
    print("\n".join(summary.lines()))
    print(f"outbox: {args.outbox}")
    return 0


def _mavlink(args: argparse.Namespace, config):
    """With --mavlink: the link read on its own thread, and the frames posed from it."""
    if not args.mavlink:
        if args.video_start:
            raise ValueError("--video-start goes with --mavlink")
        return None
    from datetime import datetime

    from edge.mavlink import FrameClock, Link, Posing, Telemetry

    start = None
    if args.video_start:
        start = datetime.fromisoformat(args.video_start.replace("Z", "+00:00"))
        if start.tzinfo is None:
            raise ValueError(f"--video-start {args.video_start}: give the UTC offset (Z or +08:00)")
    telemetry = Telemetry(max_gap_s=args.max_gap, max_stale_s=args.max_stale)
    link = Link(args.mavlink, telemetry, baud=args.mavlink_baud).start()
    config.posing = Posing(link.telemetry, FrameClock(start, args.camera_latency_ms / 1000.0, args.telemetry_wait))
    return link


def _doctor(args: argparse.Namespace) -> int:
    from edge.doctor import diagnose, report

    text, rc = report(diagnose(args.config, args.model, args.outbox, args.beidou_port, args.modem_port, args.mavlink,
                               args.wait), args.json)
    print(text)
    return rc


def _autopilot_sim(args: argparse.Namespace) -> int:
    from edge.autopilot_sim import SimConfig, run

    for name in ("drop", "late"):
        if not 0.0 <= getattr(args, name) < 1.0:
            raise ValueError(f"--{name} {getattr(args, name)}: a share from 0 to below 1")
    if args.rate <= 0 or args.speed <= 0:
        raise ValueError("--rate and --speed must be positive")
    counts = run(SimConfig(args.flight, args.to, args.rate, args.speed, args.drop, args.late, args.seed, args.gimbal,
                           not args.no_laser, args.wait_gcs, args.clock))
    print(f"sent {counts['sent']} messages, dropped {counts['dropped']}, late {counts['late']}")
    return 0


def _stream_like(source: str) -> bool:
    """A camera index or a stream URL (rtsp://, http://...): nothing on disk to check."""
    return source.isdigit() or "://" in source


def _update_loop(args: argparse.Namespace):
    """Signed model updates when the device file names the cloud (`--update-url` at device init)
    and a fleet token is in $PLI_TOKEN; else none (the drone keeps its model)."""
    import logging

    from comms.device import DeviceConfig, state_dir
    from comms.settings import drone_settings
    from edge.update import UpdateClient, UpdateLoop

    if not args.config.exists():
        return None
    device = DeviceConfig.load(args.config)
    if not device.update_url:
        return None
    token = drone_settings().token
    if not token:
        logging.getLogger("pli.updates").warning("no $PLI_TOKEN: model updates from %s are off", device.update_url)
        return None
    state = state_dir(args.config)
    client = UpdateClient(state, device.update_url, token, device.group, drone_id=device.drone_id)
    return UpdateLoop(client, state / "models", args.update_every)


def _device_init(args: argparse.Namespace) -> int:
    from comms.device import DeviceConfig
    from comms.mqtt_link import broker_user

    cfg = DeviceConfig(args.drone_id, args.fleet, args.key_id, args.ground_address, args.mqtt_host, args.mqtt_port,
                       broker_user(args.fleet, args.drone_id), args.mqtt_tls_ca, args.key_file, args.group,
                       args.update_url)
    cfg.key()  # a config whose key cannot be found is refused now, not in flight
    if args.tuf_root:
        from comms.device import state_dir
        from edge.update import install_root

        install_root(state_dir(Path(args.out)), Path(args.tuf_root).read_bytes())
    print(f"wrote {cfg.save(args.out)} (drone {cfg.drone_id}, key id {cfg.key_id}; secrets stay in the environment)")
    return 0


def _golden(args: argparse.Namespace) -> int:
    import json

    import cv2

    from edge import golden
    from edge.detector import Detector
    from edge.model_card import ModelCard

    card = ModelCard.beside(args.model)
    conf = args.conf if args.conf is not None else float(card.conf if card else 0.25)
    images = {}
    for p in args.images:
        image = cv2.imread(str(p))
        if image is None:
            raise ValueError(f"{p}: not an image")
        images[p.name] = image
    doc = golden.make(Detector(args.model), images, conf, args.margin)
    out = args.out or args.model.with_name(args.model.stem + ".golden.json")
    out.write_text(json.dumps(doc))
    n = sum(len(f["detections"]) for f in doc["frames"])
    print(f"wrote {out}: {len(doc['frames'])} frames, {n} detections at >= {conf + args.margin:.2f}")
    if args.card:
        if card is None:
            raise ValueError(f"--card: no model card beside {args.model}")
        card.with_(golden=out.name).save(ModelCard.path_for(args.model))
    return 0
