"""The job queue: huey, SQLite storage on one machine, Redis when workers spread over machines.

Every job (selection, pseudo-labels, training, export, release, notifications) is a huey task
declared with `@job(kind)`: enqueuing records it in the database's `jobs` table, and running it
records its start, end, result or error, so the API can show it. `PLI_REDIS_URL` switches the
storage to Redis; the default keeps huey's queue in `pli-cloud/huey.db`.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from huey import RedisHuey, SqliteHuey
from huey.api import Huey

from cloud.db import session_scope
from cloud.models import Job
from cloud.paths import cloud_dir
from cloud.settings import settings

log = logging.getLogger(__name__)
REDIS_ENV = "PLI_REDIS_URL"

_huey: Huey | None = None
_lock = threading.Lock()


def queue() -> Huey:
    """The process's huey instance (made on first use, from the environment)."""
    global _huey
    with _lock:
        if _huey is None:
            if settings().redis_url:
                _huey = RedisHuey("pli", url=settings().redis_url)
            else:
                cloud_dir().mkdir(parents=True, exist_ok=True)
                _huey = SqliteHuey("pli", filename=str(cloud_dir() / "huey.db"))
        return _huey


def reset_queue() -> None:
    """Forget the instance (a test or a CLI that changed PLI_CLOUD_DIR or PLI_REDIS_URL)."""
    global _huey
    with _lock:
        _huey = None
        _TASKS.clear()


_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("pli_job", default=None)


def worker_id() -> str:
    """host:pid of this process, recorded on the jobs it runs (so a restarted worker can tell its
    dead predecessor's jobs from another live worker's)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def note(**fields: Any) -> None:
    """From inside a running job: facts about it kept in its row's result now (a learning run's
    id, say), so a worker that dies mid-job leaves them for the next one to clean up."""
    job_id = _current.get()
    if job_id is None:
        return
    with session_scope() as s:
        row = s.get(Job, job_id)
        if row is not None:
            row.result = {**(row.result or {}), **fields}


_TASKS: dict[str, Any] = {}
_FUNCS: dict[str, Callable] = {}


_SETTINGS: dict[str, dict] = {}


def job(kind: str, **settings) -> Callable[[Callable], Callable]:
    """Declare a job: `enqueue(kind, **args)` runs `fn(**args)` on a huey worker, recorded.
    `settings` go to huey (retries, retry_delay, retry_backoff: a failed run is tried again)."""

    def register(fn: Callable) -> Callable:
        _FUNCS[kind], _SETTINGS[kind] = fn, settings
        return fn

    return register


def _task(kind: str):
    if kind not in _TASKS:
        fn = _FUNCS[kind]

        @functools.wraps(fn)
        def run(job_id: str, args: dict) -> Any:
            _mark(job_id, status="running", started_at=datetime.now(UTC), result={"worker": worker_id()})
            token = _current.set(job_id)
            try:
                result = fn(**args)
            except Exception as exc:
                _mark(job_id, status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=datetime.now(UTC))
                raise
            finally:
                _current.reset(token)
            _mark(job_id, status="done", result=result if isinstance(result, dict) else {"value": result},
                  finished_at=datetime.now(UTC))
            return result

        _TASKS[kind] = queue().task(name=f"pli.{kind}", **_SETTINGS[kind])(run)
    return _TASKS[kind]


def _mark(job_id: str, **fields) -> None:
    with session_scope() as s:
        row = s.get(Job, job_id)
        if row is not None:
            for k, v in fields.items():
                setattr(row, k, v)


def enqueue(kind: str, delay_s: float = 0, **args) -> str:
    """Queue a job; returns its id (the same in huey and in the `jobs` table)."""
    import uuid

    if kind not in _FUNCS:
        raise ValueError(f"unknown job {kind!r}: one of {sorted(_FUNCS)}")
    job_id = uuid.uuid4().hex
    with session_scope() as s:
        s.add(Job(id=job_id, kind=kind, status="queued", args=args))
    task = _task(kind)
    if delay_s:
        task.schedule(args=(job_id, args), delay=delay_s, id=job_id)
    else:
        t = task.s(job_id, args)
        t.id = job_id
        queue().enqueue(t)
    return job_id


class Worker:
    """huey's consumer in this process (`pli cloud worker`, and the tests): threads, no signals."""

    def __init__(self, workers: int = 2):
        for kind in _FUNCS:
            _task(kind)
        self.consumer = queue().create_consumer(workers=workers, worker_type="thread", periodic=False,
                                                initial_delay=0.05, max_delay=0.5, check_worker_health=False,
                                                scheduler_interval=1)

    def start(self) -> Worker:
        recover_stale()
        self.consumer.start()
        return self

    def problem(self) -> str | None:
        """For its heartbeat: None while every worker thread runs and the queue answers."""
        dead = sum(not t.is_alive() for _, t in self.consumer.worker_threads)
        if dead:
            return f"{dead} of {len(self.consumer.worker_threads)} worker threads stopped"
        queue().pending_count()  # raises where Redis (or the SQLite queue) cannot be reached
        return None

    def stop(self) -> None:
        self.consumer.stop(graceful=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_stale() -> list[str]:
    """Jobs left "running" by a worker of this host that is gone (killed, crashed, powered off):
    marked failed, never run again by themselves (huey dropped them when they were taken), and a
    learning run they started marked failed with them. What such a job left half done is not a
    release: a release is recorded, and signed for drones, only as a learning run's last step.
    Their ids."""
    from cloud.models import LearningRun

    host = socket.gethostname()
    failed = []
    with session_scope() as s:
        for row in s.query(Job).filter(Job.status == "running"):
            worker = str((row.result or {}).get("worker", ""))
            w_host, _, w_pid = worker.rpartition(":")
            if w_host != host or not w_pid.isdigit() or _alive(int(w_pid)):
                continue  # another machine's worker, or one still running it
            why = f"worker {worker} stopped mid-run (killed or crashed); queue it again"
            row.status, row.error, row.finished_at = "failed", why, datetime.now(UTC)
            run_id = (row.result or {}).get("learning_run")
            if run_id is not None and (run := s.get(LearningRun, int(run_id))) is not None and run.status == "running":
                run.status, run.finished_at = "failed", datetime.now(UTC)
                run.decision = {"passed": False, "reasons": [why]}
            failed.append(row.id)
            log.warning("job %s (%s): %s", row.id, row.kind, why)
    return failed
