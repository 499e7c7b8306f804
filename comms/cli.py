"""`pli beidou ...`: BeiDou RDSS tools. Only argparse at module level (see pli/cli.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from comms.settings import with_env_help

DIALECT_NAMES = ("2.1", "4.0", "bds3")  # comms.beidou.dialects.DIALECTS, without importing it for --help


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("ground", help="the ground station: BeiDou in, MQTT out",
                       description="Ground station tools.")
    with_env_help(g)
    gsub = g.add_subparsers(dest="ground_command", required=True, metavar="{run}")
    p = gsub.add_parser("run", help="read the receiving terminal and republish verified alerts to MQTT",
                        description="Read BeiDou messages from the receiving terminal's serial port, verify each "
                        "message's tag with its drone's key (PLI_KEYS_FILE or --keys), drop replays (kept in "
                        "--replay-db), and publish the alerts as JSON to MQTT. Runs until interrupted.")
    p.add_argument("--port", required=True, help="serial device of the receiving terminal")
    p.add_argument("--dialect", choices=DIALECT_NAMES, help="the terminal's dialect (default: detect it)")
    p.add_argument("--keys", help="key file (default: $PLI_KEYS_FILE)")
    p.add_argument("--replay-db", default="ground/replay.db", help="replay window store (default ground/replay.db)")
    p.add_argument("--mqtt-host", default="127.0.0.1")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--mqtt-user", help="username (password from $PLI_MQTT_PASSWORD)")
    p.add_argument("--fleet", default="fleet1")
    p.add_argument("--beidou-acks", action="store_true",
                   help="answer each drone by BeiDou short message: acknowledgements, and signed refusals of what "
                   "cannot pass (too old for the replay window, unknown class-list version, superseded epoch); costs "
                   "the ground terminal's send slots, lets drones out of 4G re-send what was lost")
    p.add_argument("--class-lists", help="folder of known class-list versions, N.toml each (default: the packaged "
                   "comms/class_lists); a message of another version is refused and waits for MQTT")
    p.add_argument("--health", help="heartbeat file for the health check (`pli health FILE`): beats every 5 s "
                   "while the terminal's port is open and the broker connected")
    p.set_defaults(func=_ground)

    p = sub.add_parser("health", help="a service's health check: is its heartbeat file fresh and ok",
                       description="Exit 0 if the heartbeat file that `pli cloud ingest`, `pli cloud worker` or "
                       "`pli ground run` writes (--health FILE) is fresh and says ok; else exit 1 with why. What a "
                       "container's health check and scripts/stack.sh run.")
    p.add_argument("file", type=Path)
    p.add_argument("--max-age", type=float, default=15.0, help="seconds a beat stays fresh (default 15: three "
                   "missed beats)")
    p.set_defaults(func=_health)

    lk = sub.add_parser("link", help="the drone's sending loop: outbox -> 4G or BeiDou -> home",
                        description="Drone-side link tools.")
    with_env_help(lk)
    lsub = lk.add_subparsers(dest="link_command", required=True, metavar="{run,status}")
    p = lsub.add_parser("run", help="send the outbox's alerts home over MQTT or BeiDou until interrupted",
                        description="Read the outbox that `pli edge run` writes and send its alerts home: over "
                        "MQTT (4G) while the modem's signal and the broker allow, else over BeiDou short messages "
                        "(signed batches, paced to the card), else hold them. Alerts stay in the outbox until the "
                        "cloud acknowledges them. Identity and endpoints from `pli device init`'s config; the "
                        "HMAC key and MQTT password from the environment.")
    p.add_argument("--config", default="device.json", help="device config (default device.json)")
    p.add_argument("--outbox", required=True, help="the outbox database `pli edge run --outbox` writes")
    p.add_argument("--beidou-port", help="serial device of the BeiDou terminal (dialect detected)")
    p.add_argument("--beidou-retry-s", type=float, default=30.0,
                   help="seconds between attempts to open a terminal that is absent or silent (default 30)")
    p.add_argument("--beidou-max-bits", type=int,
                   help="message size in bits when the card's level does not say it (a BDS-3 regional card)")
    p.add_argument("--modem-port", help="serial device of the 4G modem's AT port (signal from AT+CSQ)")
    p.add_argument("--assume-csq", type=int, help="fixed CSQ 0..31 instead of a modem (wired or bench setups)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between link decisions (default 1)")
    p.add_argument("--until-empty", action="store_true", help="exit once every alert is acknowledged")
    p.add_argument("--beidou-acks", action="store_true",
                   help="the ground station answers over BeiDou (pli ground run --beidou-acks): re-send alerts "
                   "of messages it did not acknowledge within three service intervals")
    p.set_defaults(func=_link_run)

    p = lsub.add_parser("status", help="what is still unsent, by severity and state: is it safe to power off?",
                        description="Read the outbox and print what has not been acknowledged yet, by severity "
                        "(high, medium, low) and state: pending (never left the drone), sent_beidou (sent by short "
                        "message, confirmation awaited), sent_mqtt (published, the cloud's acknowledgement awaited); "
                        "alerts the ground station refused for BeiDou (they wait for 4G) are counted apart. Safe to "
                        "power off means every alert is acknowledged; nothing is ever lost by powering off (the "
                        "outbox is durable), but what is unacknowledged reaches home only once the drone runs again. "
                        "Exit 0 when safe, 1 when not.")
    p.add_argument("--config", default="device.json", help="device config (default device.json)")
    p.add_argument("--outbox", required=True, help="the outbox database")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    p.set_defaults(func=_link_status)

    m = sub.add_parser("modem", help="the 4G modem's signal (AT+CSQ)", description="4G modem tools.")
    msub = m.add_subparsers(dest="modem_command", required=True, metavar="{csq}")
    p = msub.add_parser("csq", help="read the cellular signal over the modem's AT port",
                        description="Send AT+CSQ to the modem's serial port and print one JSON line per reading: "
                        '{"time", "csq"} with csq 0..31, or null when unknown (99, no answer, ERROR, port gone). '
                        "Exit 2 when no reading was known.")
    p.add_argument("--port", required=True, help="the modem's AT serial device (e.g. /dev/ttyUSB2)")
    p.add_argument("--every", type=float, default=0.0, help="seconds between readings (default: read once)")
    p.add_argument("--count", type=int, default=1, help="number of readings with --every (default 1; 0 = forever)")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for an answer (default 1)")
    p.set_defaults(func=_modem_csq)

    bd = sub.add_parser("beidou", help="BeiDou RDSS short-message tools",
                        description="Decode BeiDou terminal sentences and frames (text 2.1, binary 4.0, BDS-3).")
    bsub = bd.add_subparsers(dest="beidou_command", required=True, metavar="{parse,sim}")
    p = bsub.add_parser("parse", help="decode a sentence or frame to JSON",
                        description="Decode one text sentence, or a binary frame given with --hex, and print it "
                        "as JSON (dialect, type, named fields). With '-', read one item per line from stdin: a "
                        "text sentence, or 'hex:' and a binary frame; a bad line prints {\"error\": ...}. "
                        "Exit 2 when anything failed.")
    p.add_argument("sentence", nargs="?", help="a text sentence such as '$BDBSI,...*5F', or - for stdin")
    p.add_argument("--hex", help="a binary (or text) frame as hex bytes, spaces allowed")
    p.set_defaults(func=_parse)

    p = bsub.add_parser("sim", help="simulated terminals on pseudo-terminals (drone's and ground's)",
                        description="Open two simulated BeiDou terminals on pseudo-terminals, "
                        "linked by a simulated satellite, print their device paths as one JSON line, and run "
                        "until interrupted. Point the driver (or a serial console) at a device path.")
    p.add_argument("--address", default="0247718", help="the drone terminal's address (default 0247718)")
    p.add_argument("--peer-address", default="0179773", help="the ground terminal's address (default 0179773)")
    p.add_argument("--freq", type=float, default=60.0, help="service frequency in seconds (default 60)")
    p.add_argument("--level", type=int, default=3, choices=[1, 2, 3, 4], help="comm level (default 3)")
    p.add_argument("--delay", type=float, default=2.0, help="delivery delay in seconds (default 2)")
    p.add_argument("--loss", type=float, default=0.0, help="probability a message is lost (default 0)")
    p.add_argument("--outage", help="START:END seconds with no beam power on the drone's terminal")
    p.add_argument("--power", type=int, default=3, choices=range(1, 5), metavar="{1..4}",
                   help="beam power of both terminals, outside outages (default 3)")
    p.add_argument("--dialect", default="2.1", choices=DIALECT_NAMES,
                   help="the drone terminal's dialect: text 2.1, binary 4.0 or BDS-3 text (default 2.1)")
    p.add_argument("--peer-dialect", choices=DIALECT_NAMES, help="the ground terminal's (default: same)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_sim)


def _bytes_of_hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text.replace(" ", "").replace(":", ""))
    except ValueError:
        raise ValueError(f"not hex bytes: {text[:40]!r}") from None


def _parse(args: argparse.Namespace) -> int:
    from comms.beidou.protocol import ParseError, decode_any, decode_text

    if args.sentence == "-":
        failed = False
        for line in sys.stdin.buffer:
            item = line.strip()
            if not item:
                continue
            try:
                frame = decode_any(_bytes_of_hex(item[4:].decode("ascii", "replace"))) \
                    if item[:4].lower() == b"hex:" else decode_text(item)
                print(json.dumps(frame.to_json(), ensure_ascii=False))
            except (ParseError, ValueError) as exc:
                failed = True
                print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}, ensure_ascii=False))
        return 2 if failed else 0
    if (args.sentence is None) == (args.hex is None):
        raise ValueError("give one sentence, --hex BYTES, or - for stdin")
    data = _bytes_of_hex(args.hex) if args.hex is not None else args.sentence.encode("latin-1", "replace")
    try:
        frame = decode_any(data)
    except ParseError as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    print(json.dumps(frame.to_json(), ensure_ascii=False))
    return 0


def _sim(args: argparse.Namespace) -> int:
    import signal
    import threading

    from comms.beidou.sim import Network, SimTerminal, TerminalConfig, outage, steady

    profile = steady(args.power)
    if args.outage:
        try:
            start, end = (float(x) for x in args.outage.split(":"))
        except ValueError:
            raise ValueError(f"--outage {args.outage!r}: expected START:END in seconds") from None
        profile = outage(start, end, args.power)
    if not 0 <= args.loss <= 1:
        raise ValueError("--loss is a probability between 0 and 1")
    net = Network()
    common = dict(service_frequency_s=args.freq, comm_level=args.level, delay_s=args.delay, loss=args.loss)
    drone = SimTerminal(TerminalConfig(address=args.address, profile=profile, seed=args.seed, dialect=args.dialect,
                                       **common), net).start()
    ground = SimTerminal(TerminalConfig(address=args.peer_address, seed=args.seed + 1, profile=steady(args.power),
                                        dialect=args.peer_dialect or args.dialect, **common), net).start()
    print(json.dumps({"drone": {"address": args.address, "device": drone.device, "dialect": drone.cfg.dialect},
                      "ground": {"address": args.peer_address, "device": ground.device,
                                 "dialect": ground.cfg.dialect}}), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        drone.stop()
        ground.stop()
    print(f"sent {drone.sent} (refused {drone.refused}) from the drone, {ground.sent} from the ground",
          file=sys.stderr)
    return 0


def _ground(args: argparse.Namespace) -> int:
    import signal
    import threading

    from comms.beidou.driver import Driver
    from comms.classes import known_class_lists
    from comms.ground import GroundStation, load_keys
    from comms.health import Heartbeat
    from comms.mqtt_link import MqttConfig, connect, make_client
    from comms.replay import ReplayGuard
    from comms.settings import drone_settings

    keys = load_keys(args.keys)
    lists = known_class_lists(args.class_lists)
    Path(args.replay_db).parent.mkdir(parents=True, exist_ok=True)
    cfg = MqttConfig(host=args.mqtt_host, port=args.mqtt_port, fleet=args.fleet, username=args.mqtt_user,
                     password=drone_settings().mqtt_password)
    client = make_client(f"pli-ground-{args.fleet}", cfg)
    connect(client, cfg)
    driver = Driver(args.port, dialect=args.dialect)
    station = GroundStation(keys, ReplayGuard(args.replay_db), client, args.fleet, beidou_acks=args.beidou_acks,
                            class_lists=lists)
    beat = Heartbeat(args.health, lambda: None if client.is_connected() and driver.serial.is_open
                     else "broker not connected or terminal's port closed", name="ground").start() \
        if args.health else None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        station.run(driver, stop)
    except KeyboardInterrupt:
        pass
    finally:
        if beat is not None:
            beat.stop()
        driver.close()
        client.loop_stop()
    s = station.stats
    print(f"messages {s.messages}: alerts passed on {s.alerts}, rejected {s.rejected}, replays {s.replays}, "
          f"alerts refused {s.refused}; answers sent: {s.ack_messages} acknowledgements, {s.refusal_messages} "
          "refusals")
    return 0


def _health(args: argparse.Namespace) -> int:
    from comms.health import check

    problem = check(args.file, args.max_age)
    print(problem or f"{args.file}: healthy", file=sys.stderr if problem else sys.stdout)
    return 1 if problem else 0


def _modem_csq(args: argparse.Namespace) -> int:
    import time
    from datetime import UTC, datetime

    from comms.modem import Modem

    modem = Modem(args.port, timeout_s=args.timeout)
    known = False
    n = 0
    try:
        while True:
            value = modem.csq()
            known |= value is not None
            print(json.dumps({"time": datetime.now(UTC).isoformat(timespec="seconds"), "csq": value}), flush=True)
            n += 1
            if not args.every or (args.count and n >= args.count):
                break
            time.sleep(args.every)
    except KeyboardInterrupt:
        pass
    finally:
        modem.close()
    return 0 if known else 2


def _link_run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from comms.beidou.driver import Driver
    from comms.device import DeviceConfig, status_path
    from comms.forwarder import Forwarder
    from comms.modem import Modem
    from comms.mqtt_link import MqttConfig, MqttLink, broker_user
    from comms.outbox import Outbox
    from comms.selector import LinkSelector

    cfg = DeviceConfig.load(args.config)
    key = cfg.key()
    if args.modem_port and args.assume_csq is not None:
        raise ValueError("give --modem-port or --assume-csq, not both")
    if args.assume_csq is not None and not 0 <= args.assume_csq <= 31:
        raise ValueError("--assume-csq is a CSQ value 0..31")
    # The link numbers nothing new (a renumbering continues the edge's counter): no epoch of its own.
    box = Outbox(args.outbox, cfg.drone_id, cfg.fleet, cfg.key_id, new_epoch=False)
    link = MqttLink(box, MqttConfig(host=cfg.mqtt_host, port=cfg.mqtt_port, fleet=cfg.fleet,
                                    username=cfg.mqtt_user or broker_user(cfg.fleet, cfg.drone_id),
                                    password=cfg.mqtt_password(),
                                    tls_ca=cfg.mqtt_tls_ca), status_file=status_path(args.config))
    modem = Modem(args.modem_port, min_interval_s=min(5.0, args.interval)) if args.modem_port else None
    signal_source = modem if modem is not None else (lambda: args.assume_csq)
    fwd = Forwarder(box, link, None, LinkSelector(), signal_source, cfg.key_id, key, cfg.ground_address,
                    beidou_acks=args.beidou_acks)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    link.start()
    if args.beidou_port:
        fwd.open_beidou(lambda: Driver(args.beidou_port, max_bits=args.beidou_max_bits), stop, args.beidou_retry_s)
    try:
        fwd.run(stop, args.interval, args.until_empty)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        link.stop()
        if fwd.beidou is not None:
            fwd.beidou.close()
        if modem is not None:
            modem.close()
    counts = box.counts()
    print(json.dumps({"outbox": counts, "epoch": box.epoch, "beidou_messages": fwd.stats.beidou_messages,
                      "beidou_alerts": fwd.stats.beidou_alerts, "beidou_acks": fwd.stats.beidou_acks,
                      "beidou_refused": fwd.stats.beidou_refused, "beidou_cancelled": fwd.stats.beidou_cancelled,
                      "unpackable": fwd.stats.unpackable, "mqtt_pubacks": link.pubacks,
                      "switches": [{"link": s.link, "reason": s.reason} for s in fwd.selector.history]}))
    return 0


def _link_status(args: argparse.Namespace) -> int:
    from comms.device import DeviceConfig
    from comms.outbox import Outbox

    cfg = DeviceConfig.load(args.config)
    if not Path(args.outbox).exists():
        raise ValueError(f"{args.outbox}: no outbox there")
    status = Outbox(args.outbox, cfg.drone_id, cfg.fleet, new_epoch=False).status()
    if args.json:
        print(json.dumps(status))
    else:
        print(f"drone {status['drone_id']} (fleet {status['fleet']}), epoch {status['epoch']}: "
              f"{status['acknowledged']} acknowledged, {status['unacknowledged']} not yet")
        for severity, states in status["unsent_by_severity"].items():
            print(f"  {severity:<6} " + ", ".join(f"{n} {state}" for state, n in sorted(states.items())))
        for reason, n in status["beidou_refused"].items():
            print(f"  refused for BeiDou ({reason}): {n}, waiting for 4G")
        high = sum(status["unsent_by_severity"].get("high", {}).values())
        print("safe to power off: every alert is acknowledged" if status["safe_to_power_off"] else
              f"NOT safe to power off: {status['unacknowledged']} alerts unacknowledged ({high} high severity); "
              "they are kept and go home when the drone runs again")
    return 0 if status["safe_to_power_off"] else 1
