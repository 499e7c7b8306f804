"""`pli cloud`: the service's processes: schema, ingest, API, job worker, OpenAPI.
Only argparse at module level (see pli/cli.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def register(csub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--health", type=Path, help="heartbeat file for the health check (`pli health FILE`): "
                   "beats every 5 s while the broker and the database answer")
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
    p.add_argument("--health", type=Path, help="heartbeat file for the health check (`pli health FILE`): "
                   "beats every 5 s while its threads run and the queue answers")
    p.set_defaults(func=_worker)

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
    from cloud.settings import secret, settings
    from comms.health import Heartbeat
    from comms.mqtt_link import MqttConfig

    check_named(create=args.create)  # acknowledged alerts must land where the operators look
    upgrade()
    cfg = MqttConfig(host=args.mqtt_host, port=args.mqtt_port, username=args.mqtt_user,
                     password=secret(settings().mqtt_password), tls_ca=args.mqtt_tls_ca)
    worker = IngestWorker(cfg, group=args.group, fleet=args.fleet, name=args.name, batch=args.batch).start()
    worker.subscribed.wait(10)  # the first beat after the subscription, not before the connection
    beat = Heartbeat(args.health, lambda: _ingest_problem(worker), name=args.name or "ingest").start() \
        if args.health else None
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
        if beat is not None:
            beat.stop()
        worker.stop()
        if watcher is not None:
            watcher.stop()
    s = worker.stats
    print(json.dumps({"messages": s.messages, "stored": s.stored, "duplicates": s.duplicates, "refused": s.refused,
                      "conflicts": s.conflicts, "rejected": s.rejected, "db_retries": s.db_retries}))
    return 0


def _ingest_problem(worker) -> str | None:
    from sqlalchemy import text

    from cloud.db import session_scope

    problems = [] if worker.client.is_connected() else ["not connected to the broker"]
    try:
        with session_scope() as s:
            s.execute(text("SELECT 1"))
    except Exception as exc:  # the database is down: said, with the broker's state beside it
        problems.append(f"database: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
    return "; ".join(problems) or None


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
    from comms.health import Heartbeat

    upgrade()
    worker = Worker(args.workers).start()
    beat = Heartbeat(args.health, worker.problem, name="worker").start() if args.health else None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if beat is not None:
            beat.stop()
        worker.stop()
    return 0


def _openapi(args: argparse.Namespace) -> int:
    from cloud.api.app import create_app

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(create_app("sqlite://").openapi(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0
