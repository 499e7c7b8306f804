"""`pli cloud ...`: the cloud service's commands. Only argparse at module level (see pli/cli.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("cloud", help="the cloud service: database, ingest, API, jobs",
                       description="Cloud service commands. The database is PLI_DATABASE_URL (PostgreSQL: "
                       "postgresql+psycopg://user@host:port/db), else the SQLite file pli-cloud/pli.db "
                       "(PLI_CLOUD_DIR moves it).")
    csub = c.add_subparsers(dest="cloud_command", required=True,
                            metavar="{db,ingest,serve,worker,token,operator,towers,flights,upload,report,tuf,release,campaign,select,"
                            "pseudo-label,learn,acl,openapi}")

    d = csub.add_parser("db", help="database schema (Alembic)", description="Database schema tools.")
    dsub = d.add_subparsers(dest="db_command", required=True, metavar="{upgrade}")
    p = dsub.add_parser("upgrade", help="bring the schema to the newest revision",
                        description="Run the Alembic migrations up to `head` (or --revision).")
    p.add_argument("--revision", default="head")
    p.set_defaults(func=_db_upgrade)

    p = csub.add_parser("ingest", help="MQTT alerts into the database (shared subscription)",
                        description="Subscribe to $share/<group>/pli/<fleet>/+/alerts and store every alert: "
                        "one transaction per batch; the broker's PUBACK and the drone's acknowledgement go out only "
                        "after the commit. Several workers with the same --group split the fleet. The password comes "
                        "from $PLI_MQTT_PASSWORD. Runs until interrupted.")
    p.add_argument("--mqtt-host", default="127.0.0.1")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--mqtt-user", help="user name (the broker's ACL gives `cloud` the alerts)")
    p.add_argument("--mqtt-tls-ca", help="CA file: connect with TLS")
    p.add_argument("--group", default="ingest", help="shared-subscription group (default ingest)")
    p.add_argument("--fleet", default="+", help="fleet to ingest (default: every fleet)")
    p.add_argument("--no-status", dest="status", action="store_false",
                   help="do not record the drones' status reports (what they run) into the deployments")
    p.add_argument("--name", help="this worker's MQTT client id (stable: its queued messages survive a restart)")
    p.add_argument("--batch", type=int, default=500, help="alerts per transaction at most (default 500)")
    p.add_argument("--create", action="store_true",
                   help="make a new SQLite database under $PLI_CLOUD_DIR (default ./pli-cloud) when none is named "
                   "and none is there (without it, ingest refuses to acknowledge alerts into a database it made)")
    p.set_defaults(func=_ingest)

    p = csub.add_parser("serve", help="the HTTP API (FastAPI, uvicorn)",
                        description="Serve the API on 127.0.0.1 (default). Every endpoint but /health needs a token: "
                        "make one with `pli cloud token create`.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="server processes (default 1; one per core under load)")
    p.set_defaults(func=_serve)

    p = csub.add_parser("worker", help="run queued jobs (huey consumer)",
                        description="Run the job queue's consumer (SQLite storage in pli-cloud/huey.db, or Redis "
                        "with PLI_REDIS_URL) until interrupted.")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=_worker)

    t = csub.add_parser("token", help="API tokens", description="API tokens (stored hashed).")
    tsub = t.add_subparsers(dest="token_command", required=True, metavar="{create}")
    p = tsub.add_parser("create", help="make a token and print it (the only time it is shown)")
    p.add_argument("--name", required=True)
    p.add_argument("--role", required=True, choices=["operator", "fleet", "admin"])
    p.add_argument("--fleet", help="a fleet token's fleet (required for --role fleet)")
    p.add_argument("--drone", help="make it one drone's token (registers the drone in --fleet)")
    p.set_defaults(func=_token_create)

    o = csub.add_parser("operator", help="operators who log in to the pages",
                        description="People at the pages log in with a name and password (machines use tokens).")
    osub = o.add_subparsers(dest="operator_command", required=True, metavar="{add}")
    p = osub.add_parser("add", help="add an operator, or set an operator's password",
                        description="The password comes from $PLI_OPERATOR_PASSWORD, else --password-file, else "
                        "it is asked for (never on the command line, where other users could read it).")
    p.add_argument("name")
    p.add_argument("--role", choices=["operator", "admin"], default="operator")
    p.add_argument("--password-file", type=Path)
    p.set_defaults(func=_operator_add)

    p = csub.add_parser("upload", help="a landed flight's photos and telemetry to the cloud (resumable)",
                        description="Declare every photo and telemetry file of FLIGHT_DIR (name, size, sha256) to "
                        "the cloud, then send what it lacks, in chunks, from where an earlier run stopped; a second "
                        "run sends nothing. The token (role fleet) comes from $PLI_TOKEN or --token-file.")
    p.add_argument("flight_dir", type=Path)
    p.add_argument("--url", default=os.environ.get("PLI_CLOUD_URL", "http://127.0.0.1:8000"),
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

    t = csub.add_parser("tuf", help="the fleet's signed update repository (TUF)",
                        description="The TUF repository drones take models from (PLI_TUF_DIR, default "
                        "pli-cloud/tuf). Root keys are offline files; the online roles' keys come from "
                        "PLI_TUF_TARGETS_KEY, PLI_TUF_SNAPSHOT_KEY, PLI_TUF_TIMESTAMP_KEY (PEM) or their _FILE "
                        "variants.")
    tsub = t.add_subparsers(dest="tuf_command", required=True, metavar="{keygen,init,publish,timestamp,rotate-root}")
    p = tsub.add_parser("keygen", help="make an Ed25519 key file (0600) and its public half (.pub.json)")
    p.add_argument("out", type=Path, nargs="+", help="key files to write (e.g. offline/root-1.pem)")
    p.set_defaults(func=_tuf_keygen)
    p = tsub.add_parser("init", help="a new repository: root signed by THRESHOLD of the offline root keys")
    p.add_argument("--root-key", type=Path, action="append", required=True,
                   help="a root key: its .pub.json, or the private .pem when it signs (repeat)")
    p.add_argument("--threshold", type=int, default=2)
    p.set_defaults(func=_tuf_init)
    p = tsub.add_parser("publish", help="sign release VERSION's files for groups (a new targets version)")
    p.add_argument("version")
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--group", action="append", required=True, help="canary, fleet, ... (repeat)")
    p.set_defaults(func=_tuf_publish)
    p = tsub.add_parser("timestamp", help="re-sign the timestamp (run at least daily: drones refuse an expired one)")
    p.set_defaults(func=_tuf_timestamp)
    p = tsub.add_parser("rotate-root", help="a new root with other root keys, signed by old and new thresholds")
    p.add_argument("--old-key", type=Path, action="append", required=True, help="old root private key (repeat)")
    p.add_argument("--new-key", type=Path, action="append", required=True, help="new root private key (repeat)")
    p.add_argument("--threshold", type=int, default=2)
    p.set_defaults(func=_tuf_rotate)

    r = csub.add_parser("release", help="model releases and their rollout (canary, then fleet)",
                        description="Releases are recorded once (immutable) and signed for a group in the TUF "
                        "repository; the online signing keys come from the environment (see `pli cloud tuf`).")
    rsub = r.add_subparsers(dest="release_command", required=True,
                            metavar="{add,list,show,promote,preannotate,assign,rollback,ship}")
    p = rsub.add_parser("add", help="build and record a release from training weights (or from built files)",
                        description="`add WEIGHTS.pt --campaign NAME=DATA.yaml[:SPLIT] ...`: export FP32 and INT8 "
                        "ONNX, score both on every campaign's frozen test set, make golden frames per build, "
                        "snapshot the training data, record it all as an immutable release. `add VERSION FILES...`: "
                        "record builds made elsewhere (each .onnx with its card and golden frames).")
    p.add_argument("sources", nargs="+", metavar="WEIGHTS.pt | VERSION FILES...")
    p.add_argument("--version", dest="release_version", help="the release's version (default: UTC date and time)")
    p.add_argument("--campaign", action="append", default=[], metavar="NAME=DATA.yaml[:SPLIT]",
                   help="a campaign's frozen test set (split default: test, else val); repeat for each campaign")
    p.add_argument("--data", type=Path, help="the data.yaml that trained the weights (default: the one the "
                   "checkpoint names)")
    p.add_argument("--calib", type=Path, help="images to calibrate INT8 on (default: the training images)")
    p.add_argument("--golden-images", type=Path, help="folder of candidate golden frames (default: the first "
                   "campaign's test images)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--parent", help="the release it was trained from")
    p.set_defaults(func=_release_add)
    p = rsub.add_parser("list", help="releases and where they are rolled out")
    p.set_defaults(func=_release_list)
    p = rsub.add_parser("show", help="one release, with the canary's health")
    p.add_argument("version")
    p.set_defaults(func=_release_show)
    p = rsub.add_parser("promote", help="sign a release for a group (the fleet only after the canary)")
    p.add_argument("version")
    p.add_argument("--group", choices=["canary", "fleet"], default="canary")
    p.set_defaults(func=_release_promote)
    p = rsub.add_parser("preannotate", help="the release whose FP32 build pre-annotates Label Studio tasks")
    p.add_argument("version")
    p.set_defaults(func=_release_preannotate)
    p = rsub.add_parser("assign", help="move a drone to a rollout group (signed metadata; the ACL follows)",
                        description="Signs drones/DRONE/group.json in the TUF targets: a drone takes its group "
                        "from this and from nothing else after `pli device init`. With --acl, the broker's ACL is "
                        "rewritten from every signed assignment; --reload-pid sends mosquitto its SIGHUP.")
    p.add_argument("drone")
    p.add_argument("group", choices=["canary", "fleet"])
    p.add_argument("--fleet", default="fleet1")
    p.add_argument("--acl", type=Path, help="the ACL file to rewrite")
    p.add_argument("--reload-pid", type=int, help="mosquitto's pid, to re-read the ACL")
    p.set_defaults(func=_release_assign)
    p = rsub.add_parser("rollback", help="sign an older release for a group again")
    p.add_argument("--group", choices=["canary", "fleet"], required=True)
    p.add_argument("--to", required=True, help="the release to go back to")
    p.set_defaults(func=_release_rollback)
    p = rsub.add_parser("ship", help="copy a release's builds, cards, golden frames and weights out as NAME.*",
                        description="What a checkout carries as its default model (models/pli-default.*): the "
                        "release's files byte for byte, renamed, each card naming the release it is.")
    p.add_argument("version")
    p.add_argument("--out", type=Path, default=Path("models"))
    p.add_argument("--name", default="pli-default")
    p.set_defaults(func=_release_ship)

    p = csub.add_parser("select", help="choose a campaign's photos for operators to label (coreset, uncertainty, "
                        "hybrid, random)", description="Writes the choice as a dataset version and, with --project, "
                        "makes it Label Studio tasks pre-annotated by the registry's model. --queue runs it as a job.")
    p.add_argument("--campaign", required=True)
    p.add_argument("--budget", type=int, required=True)
    p.add_argument("--strategy", required=True, choices=["coreset", "uncertainty", "hybrid", "random"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", type=Path, help="PyTorch weights for the embeddings (default models/pli-default.pt)")
    p.add_argument("--model", type=Path, help="ONNX detector for the uncertainty (default the shipped one)")
    p.add_argument("--project", type=int, help="Label Studio project to put the tasks in")
    p.add_argument("--cloud-url", help="the cloud as Label Studio reaches it (with --project)")
    p.add_argument("--missed", type=int, help="'missed fault' review tasks: photos where the model is unsure but "
                   "raised nothing (default a fifth of the budget with --project)")
    p.add_argument("--queue", action="store_true", help="enqueue for `pli cloud worker` instead of running here")
    p.set_defaults(func=_select)

    p = csub.add_parser("pseudo-label", help="weak labels for a campaign's unlabelled photos (a dataset version)",
                        description="The model's boxes, kept where the class's F1-best threshold on validation is "
                        "cleared and test-time augmentation (and the next frame of a flight) agrees; reviews remove "
                        "false alarms and add confirmed faults. Prints the batch's precision and recall.")
    p.add_argument("--campaign", required=True)
    p.add_argument("--labelled", type=Path, help="a selection (pli cloud select) whose photos keep their true labels")
    p.add_argument("--model", type=Path, help="the teacher, ONNX (default the shipped model)")
    p.add_argument("--project", type=int, help="Label Studio project: the pseudo-labelled photos become its tasks")
    p.add_argument("--cloud-url", help="the cloud as Label Studio reaches it (with --project)")
    p.add_argument("--queue", action="store_true", help="enqueue for `pli cloud worker` instead of running here")
    p.set_defaults(func=_pseudo_label)

    p = csub.add_parser("learn", help="fine-tune a candidate on a campaign's labels with replay, gate it, release "
                        "it to the canary group", description="From the current release's weights (class head grown "
                        "to the campaign's class list): the campaign's labels (or a pseudo-label version), a replay "
                        "set chosen by coreset from earlier campaigns; scored with the parent on every campaign's "
                        "frozen test set; released to the canary group only if the newest campaign improves, no "
                        "earlier one drops more than --margin mAP50 points and every build keeps its golden frames.")
    p.add_argument("--campaign", required=True)
    p.add_argument("--epochs", type=int, help="default 10 (the service's recipe, cloud/learning.py:Recipe, "
                   "PLI_LEARN_RECIPE changes it)")
    p.add_argument("--imgsz", type=int, help="default 640")
    p.add_argument("--batch", type=int, help="default 8")
    p.add_argument("--freeze", type=int, help="layers kept frozen (default 10: the backbone)")
    p.add_argument("--lr0", type=float, help="SGD's rate (default 0.002)")
    p.add_argument("--replay-repeat", type=int, help="a campaign smaller than its replay share is shown up to this "
                   "many times (default 2)")
    p.add_argument("--seed", type=int)
    p.add_argument("--replay", type=int, help="photos of earlier campaigns replayed, shared evenly (default 200)")
    p.add_argument("--pseudo", type=Path, help="a pseudo-label version's data.yaml (pli cloud pseudo-label)")
    p.add_argument("--labelled", type=Path, help="a selection (pli cloud select): only its photos' labels")
    p.add_argument("--margin", type=float, default=1.5, help="the most mAP50 points an earlier campaign may lose")
    p.add_argument("--from", dest="weights", type=Path, help="start from these weights, not the current release's")
    p.add_argument("--queue", action="store_true", help="enqueue for `pli cloud worker` instead of running here")
    p.set_defaults(func=_learn)

    cp = csub.add_parser("campaign", help="campaigns: datasets with a frozen test set",
                         description="Import a campaign once: train / val / test (a fifth of its photos, frozen: "
                         "every release is scored on the same ones).")
    cpsub = cp.add_subparsers(dest="campaign_command", required=True, metavar="{add,list}")
    p = cpsub.add_parser("add", help="import a campaign's photos and freeze its test set")
    p.add_argument("name")
    p.add_argument("src", type=Path)
    p.add_argument("--format", required=True, choices=["voc", "coco", "yolo", "labelstudio"])
    p.add_argument("--map", action="append", metavar="SRC=DST", help="rename a source class (DST empty: drop it)")
    p.add_argument("--class-list", type=int, help="the class-list version the campaign is labelled with")
    p.add_argument("--group-by", help="keep groups (flights) on one side of the split (see pli data import)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-file", type=Path, help="fixed splits (pli data import's split.json form) instead of "
                   "the random fifth: e.g. the model's own held-out photos as the test set")
    p.add_argument("--description", default="")
    p.set_defaults(func=_campaign_add)
    p = cpsub.add_parser("list", help="campaigns and their frozen test sets")
    p.set_defaults(func=_campaign_list)

    a = csub.add_parser("acl", help="the broker's ACL with per-drone rollout topics",
                        description="Mosquitto's patterns substitute only %u and %c: write the static ACL "
                        "(deploy/mosquitto/acl) plus one block per drone (its group's announcements, its status). "
                        "Then SIGHUP mosquitto to re-read it.")
    asub = a.add_subparsers(dest="acl_command", required=True, metavar="{render}")
    p = asub.add_parser("render", help="write the ACL from a CSV of drone,fleet,group, or from the signed "
                        "group assignments (`pli cloud release assign`)")
    p.add_argument("groups", type=Path, nargs="?", help="CSV of drone,fleet,group (default: the signed assignments)")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_acl_render)

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

    p = csub.add_parser("openapi", help="write the API's OpenAPI spec (committed as docs/openapi.json)")
    p.add_argument("--out", type=Path, default=Path("docs/openapi.json"))
    p.set_defaults(func=_openapi)


def _db_upgrade(args: argparse.Namespace) -> int:
    from cloud.db import database_url, upgrade

    upgrade(revision=args.revision)
    print(f"database {database_url().split('@')[-1]} at revision {args.revision}")
    return 0


# What a worker that dies of a signal most likely met (SQLite maps its WAL index, -shm, into
# memory: a file truncated or a disk gone under it is a SIGBUS, not an error Python can catch).
FATAL = {"SIGBUS": "a memory-mapped file went away under it (the SQLite database's -shm or -wal file truncated or "
                   "deleted, or its disk removed)",
         "SIGSEGV": "a crash in native code", "SIGKILL": "killed (out of memory, or kill -9)"}


def _supervised(run, name: str) -> int:
    """Run `run()` in a forked child and wait: a child killed by a signal (which leaves no line of
    its own) is reported in one line with its likely cause, and the exit is non-zero. SIGTERM and
    SIGINT are passed to the child, which stops cleanly. Nothing the child had not committed was
    acknowledged, so the broker hands it out again to the next start."""
    import signal

    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: the worker itself, killed with its parent (a kill -9 stops both)
        code = 1
        try:
            _die_with_parent(parent)
            code = int(run() or 0)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except (ValueError, OSError) as exc:  # as pli's main says them
            print(f"pli: error: {exc}", file=sys.stderr)
            code = 2
        except KeyboardInterrupt:
            code = 130
        except BaseException:  # the child must never return into the parent's code
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    for sig in (signal.SIGTERM, signal.SIGINT):  # the child stops cleanly on SIGTERM
        signal.signal(sig, lambda _signum, _frame: os.kill(pid, signal.SIGTERM))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        print(f"pli: error: {name} died of {sig}: {FATAL.get(sig, 'see the system log')}; nothing it had not "
              "committed was acknowledged, the broker delivers it again on the next start", file=sys.stderr)
        return 1
    return os.WEXITSTATUS(status)


def _die_with_parent(parent: int) -> None:
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the call took effect
        os._exit(1)


def _ingest(args: argparse.Namespace) -> int:
    return _supervised(lambda: _ingest_worker(args), "pli cloud ingest")


def _ingest_worker(args: argparse.Namespace) -> int:
    import signal
    import threading

    from cloud.db import check_named, upgrade
    from cloud.ingest import IngestWorker
    from comms.mqtt_link import MqttConfig

    check_named(create=args.create)  # acknowledged alerts must land where the operators look
    upgrade()
    cfg = MqttConfig(host=args.mqtt_host, port=args.mqtt_port, username=args.mqtt_user,
                     password=os.environ.get("PLI_MQTT_PASSWORD"), tls_ca=args.mqtt_tls_ca)
    worker = IngestWorker(cfg, group=args.group, fleet=args.fleet, name=args.name, batch=args.batch).start()
    watcher = None
    if args.status:
        from cloud.registry.fleet_status import StatusWatcher

        watcher = StatusWatcher(cfg, fleet=args.fleet, name=f"{args.name}-status" if args.name else None).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        worker.run(stop)
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()
        if watcher is not None:
            watcher.stop()
    s = worker.stats
    print(json.dumps({"messages": s.messages, "stored": s.stored, "duplicates": s.duplicates, "refused": s.refused,
                      "conflicts": s.conflicts, "rejected": s.rejected, "db_retries": s.db_retries}))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from cloud.api.app import create_app
    from cloud.db import upgrade

    upgrade()
    if args.workers > 1:  # uvicorn's worker processes import the app themselves
        uvicorn.run("cloud.api.app:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
                    log_level="warning")
    else:
        uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info")
    return 0


def _worker(args: argparse.Namespace) -> int:
    import signal
    import threading

    import cloud.annotations
    import cloud.learning
    import cloud.notify
    import cloud.pseudo_labels
    import cloud.selection_job  # noqa: F401 - registers its jobs
    from cloud.db import upgrade
    from cloud.jobs import Worker

    upgrade()
    worker = Worker(args.workers).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from cloud.db import session_scope, upgrade
    from cloud.tokens import create_token

    upgrade()
    with session_scope() as s:
        token = create_token(s, args.name, args.role, args.fleet, args.drone)
    print(token)
    return 0


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
    from cloud.faults import record_passes
    from cloud.models import Drone, Flight
    from edge.telemetry import load_track

    upgrade()
    points = [[fix.lat, fix.lon] for fix in load_track(args.file) if fix.lat is not None and fix.lon is not None]
    with session_scope() as s:
        if s.get(Drone, args.drone) is None:
            raise ValueError(f"unknown drone {args.drone}")
        flight = s.get(Flight, args.flight_id) or Flight(id=args.flight_id, drone_id=args.drone)
        s.add(flight)
        flight.track = points
        s.flush()
        passed = record_passes(s, args.flight_id, points)
        flight.passes_recorded = True
    print(f"flight {args.flight_id}: {len(points)} track points, clean passes over faults "
          f"{sorted(f.id for f in passed) or 'none'}")
    return 0


def _openapi(args: argparse.Namespace) -> int:
    from cloud.api.app import create_app

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(create_app("sqlite://").openapi(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0


def _operator_add(args: argparse.Namespace) -> int:
    import getpass

    from cloud.db import session_scope
    from cloud.operators import add_operator

    password = os.environ.get("PLI_OPERATOR_PASSWORD")
    if password is None and args.password_file is not None:
        password = args.password_file.read_text().strip()
    if password is None:
        password = getpass.getpass(f"password for {args.name}: ")
    with session_scope() as s:
        add_operator(s, args.name, password, args.role)
    print(f"operator {args.name} ({args.role}) can log in")
    return 0


def _upload(args: argparse.Namespace) -> int:
    import logging

    from cloud.upload_client import upload
    from edge.cli import identity

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per chunk says nothing the bar does not
    token = os.environ.get("PLI_TOKEN") or (args.token_file.read_text().strip() if args.token_file else None)
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
        report = flight_report(s, args.flight_id)
        if report is None:
            raise ValueError(f"no flight {args.flight_id} in the database")
        data = pdf(report)
    out = args.out or Path(f"report-{args.flight_id}.pdf")
    out.write_bytes(data)
    photos = sum(a.has_photo for a in report.alerts)
    print(f"wrote {out}: {len(report.alerts)} alerts ({photos} linked to their uploaded photo), "
          f"{len(report.by_tower())} tower group(s)")
    return 0


def _tuf_dir() -> Path:
    from cloud.registry.tuf_repo import repo_dir

    return repo_dir()


def _online() -> dict:
    from cloud.registry import keys

    return {r: keys.online_signer(r) for r in keys.ONLINE_ROLES}


def _tuf_keygen(args: argparse.Namespace) -> int:
    from cloud.registry import keys

    for path in args.out:
        key = keys.generate(path)
        print(f"{path}: ed25519 key {key.keyid[:16]}... (public half in {keys.public_path(path)})")
    return 0


def _tuf_init(args: argparse.Namespace) -> int:
    from cloud.registry import keys
    from cloud.registry.tuf_repo import TufRepo

    public = [keys.load_public(p) for p in args.root_key]
    signers = [keys.load_signer(p) for p in args.root_key if p.suffix == ".pem"]
    repo = TufRepo.create(_tuf_dir(), public, signers, _online(), args.threshold)
    print(f"repository in {repo.dir}: root v1 ({args.threshold} of {len(public)} root keys); give drones "
          f"{repo.metadata_dir / '1.root.json'} at device init")
    return 0


def _tuf_publish(args: argparse.Namespace) -> int:
    from cloud.registry.tuf_repo import TufRepo

    version = TufRepo(_tuf_dir()).release(args.version, {f.name: f for f in args.files}, args.group, _online())
    print(f"release {args.version} signed for {', '.join(args.group)} (targets version {version})")
    return 0


def _tuf_timestamp(args: argparse.Namespace) -> int:
    from cloud.registry import keys
    from cloud.registry.tuf_repo import TufRepo

    print(f"timestamp version {TufRepo(_tuf_dir()).refresh_timestamp(keys.online_signer('timestamp'))}")
    return 0


def _tuf_rotate(args: argparse.Namespace) -> int:
    from cloud.registry import keys
    from cloud.registry.tuf_repo import TufRepo

    new = [keys.load_signer(p) for p in args.new_key]
    version = TufRepo(_tuf_dir()).rotate_root([s.public_key for s in new], [keys.load_signer(p) for p in args.old_key],
                                              new, args.threshold)
    print(f"root version {version}")
    return 0


def _release_add(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from cloud.db import session_scope, upgrade
    from cloud.models import ModelRelease
    from cloud.registry.rollout import RolloutError, add_release

    sources = [Path(x) for x in args.sources]
    if len(sources) == 1 and sources[0].suffix == ".pt":
        import tempfile
        from datetime import UTC, datetime

        from cloud.registry.build import Campaign, build

        version = args.release_version or datetime.now(UTC).strftime("%Y.%m.%d-%H%M")
        upgrade()
        with session_scope() as s:  # before minutes of exporting, not after
            if s.scalar(select(ModelRelease.id).where(ModelRelease.version == version)) is not None:
                raise RolloutError(f"release {version} exists: releases are immutable, give a new version")
        golden_images = None
        if args.golden_images:
            golden_images = sorted(p for p in args.golden_images.iterdir() if p.suffix.lower() in (".jpg", ".png"))
        with tempfile.TemporaryDirectory(prefix="pli-release-") as tmp:
            files = build(sources[0], version, Path(tmp), [Campaign.parse(c) for c in args.campaign], args.calib,
                          args.data, golden_images, args.parent, args.imgsz)
            with session_scope() as s:
                row = add_release(s, version, files, args.parent)
                print(f"release {row.version}: {len(row.card['files'])} files recorded")
                for name, b in row.card["builds"].items():
                    scores = ", ".join(f"{k} mAP50 {v['map50']:.3f}" for k, v in (b.get("metrics") or {}).items()
                                       if k != "training_val")
                    print(f"  {name}: {scores}")
        return 0
    if len(sources) < 2 or sources[0].exists():
        raise SystemExit("release add: give WEIGHTS.pt, or VERSION and the built files")
    upgrade()
    with session_scope() as s:
        row = add_release(s, str(sources[0]), sources[1:], args.parent)
        print(f"release {row.version}: {len(row.card['files'])} files recorded")
    return 0


def _release_ship(args: argparse.Namespace) -> int:
    from cloud.db import session_scope, upgrade
    from cloud.registry.rollout import ship

    upgrade()
    with session_scope() as s:
        for path in ship(s, args.version, args.out, args.name):
            print(path)
    return 0


def _release_list(args: argparse.Namespace) -> int:
    from cloud.api.routes.releases import release_json
    from cloud.db import session_scope, upgrade
    from cloud.models import ModelRelease

    upgrade()
    with session_scope() as s:
        from sqlalchemy import select

        for r in s.scalars(select(ModelRelease).order_by(ModelRelease.id)):
            doc = release_json(r)
            steps = [x["group"] + (" (rollback)" if x.get("rollback") else "") for x in doc["rollout"]]
            print(f"{doc['version']:<20} {doc['created_at'][:19]}  groups: {', '.join(steps) or '-'}")
    return 0


def _release_show(args: argparse.Namespace) -> int:
    from cloud.api.routes.releases import release_json
    from cloud.db import session_scope, upgrade
    from cloud.registry import rollout

    upgrade()
    with session_scope() as s:
        doc = {**release_json(rollout.get_release(s, args.version)), "health": rollout.health(s, args.version)}
        print(json.dumps(doc, indent=1))
    return 0


def _release_promote(args: argparse.Namespace) -> int:
    import getpass

    from cloud.db import session_scope, upgrade
    from cloud.registry import rollout

    upgrade()
    with session_scope() as s:
        d = rollout.promote(s, args.version, args.group, f"{getpass.getuser()} (cli)")
        print(f"release {args.version} signed for {d.target}")
    return 0


def _release_preannotate(args: argparse.Namespace) -> int:
    import getpass

    from cloud.db import session_scope, upgrade
    from cloud.registry import rollout

    upgrade()
    with session_scope() as s:
        model = rollout.set_preannotation(s, args.version, f"{getpass.getuser()} (cli)")
    print(f"Label Studio tasks are pre-annotated by {model} (release {args.version}) from now on")
    return 0


def _release_assign(args: argparse.Namespace) -> int:
    from cloud.registry import rollout

    version = rollout.assign(args.drone, args.fleet, args.group, args.acl)
    print(f"drone {args.drone} assigned to {args.group} (targets version {version})")
    if args.acl is not None:
        print(f"wrote {args.acl}")
        if args.reload_pid:
            import signal

            os.kill(args.reload_pid, signal.SIGHUP)
    return 0


def _release_rollback(args: argparse.Namespace) -> int:
    import getpass

    from cloud.db import session_scope, upgrade
    from cloud.registry import rollout

    upgrade()
    with session_scope() as s:
        rollout.rollback(s, args.group, args.to, f"{getpass.getuser()} (cli)")
        print(f"{args.group} goes back to release {args.to}")
    return 0


def _here_or_queued(args: argparse.Namespace, kind: str, run, **kw) -> dict | None:
    """Run a job's function here and return its result, or with --queue enqueue it for
    `pli cloud worker` (None)."""
    from cloud.jobs import enqueue

    if args.queue:
        print(f"job {enqueue(kind, **kw)} queued")
        return None
    return run(**kw)


def _select(args: argparse.Namespace) -> int:
    from cloud import selection_job
    from cloud.db import upgrade

    upgrade()
    out = _here_or_queued(args, "select", selection_job.run_selection, campaign=args.campaign, budget=args.budget,
                          strategy=args.strategy, seed=args.seed,
                          weights=str(args.weights) if args.weights else None,
                          model=str(args.model) if args.model else None, project=args.project,
                          cloud_url=args.cloud_url, missed=args.missed)
    if out is not None:
        print(json.dumps(out))
    return 0


def _selected(path: Path | None) -> list[str] | None:
    """The photos of a selection (pli cloud select's dataset version)."""
    return json.loads(path.read_text())["images"] if path else None


def _pseudo_label(args: argparse.Namespace) -> int:
    from cloud import pseudo_labels
    from cloud.db import upgrade

    upgrade()
    out = _here_or_queued(args, "pseudo_label", pseudo_labels.run, campaign=args.campaign,
                          labelled=_selected(args.labelled), model=str(args.model) if args.model else None,
                          project=args.project, cloud_url=args.cloud_url)
    if out is not None:
        print(json.dumps(out))
    return 0


def _learn(args: argparse.Namespace) -> int:
    from cloud import learning
    from cloud.db import upgrade

    upgrade()
    out = _here_or_queued(args, "learn", learning.learn, campaign=args.campaign, trigger="on demand (cli)",
                          recipe={k: v for k in ("epochs", "imgsz", "batch", "freeze", "lr0", "replay_repeat", "seed")
                                  if (v := getattr(args, k)) is not None},
                          replay=args.replay, pseudo=str(args.pseudo) if args.pseudo else None,
                          labelled=_selected(args.labelled), margin_points=args.margin,
                          weights=str(args.weights) if args.weights else None)
    if out is None:
        return 0
    print(json.dumps({k: out[k] for k in ("run", "passed", "reasons", "release")}))
    for who in ("parent", "candidate"):
        print(f"  {who:<9} " + ", ".join(f"{c} mAP50 {v['map50']:.3f}" for c, v in out["matrix"][who].items()))
    return 0 if out["passed"] else 3


def _campaign_add(args: argparse.Namespace) -> int:
    from cloud import campaigns
    from cloud.db import session_scope, upgrade
    from training.dataset import parse_class_map

    upgrade()
    with session_scope() as s:
        row = campaigns.add(s, args.name, args.src, args.format, parse_class_map(args.map), args.class_list,
                            args.seed, args.description, args.group_by, args.split_file)
        print(f"campaign {row.name}: {row.data}; {len(row.test_set)} photos frozen as its test set")
    return 0


def _campaign_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from cloud.db import session_scope, upgrade
    from cloud.models import Campaign

    upgrade()
    with session_scope() as s:
        for c in s.scalars(select(Campaign).order_by(Campaign.id)):
            print(f"{c.name:<16} class list {c.class_list_version}  test {len(c.test_set)} photos  {c.data}")
    return 0


def _acl_render(args: argparse.Namespace) -> int:
    from cloud.registry.acl import read_groups, render

    if args.groups is not None:
        rows = read_groups(args.groups.read_text())
    else:
        from cloud.registry.rollout import tuf_repo

        rows = tuf_repo().assignments()
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(render(rows))
    os.replace(tmp, args.out)  # the broker never reads half a file
    print(f"wrote {args.out}: {len(rows)} drones; now SIGHUP mosquitto")
    return 0
