"""A Redis server on a free loopback port, started and stopped by this process: the shared queue
of a distributed crawl in the tests and on one machine (`pli data crawl --redis URL`; a real
deployment runs its own Redis with a password, `redis://:PASSWORD@host:6379/0`). No persistence,
protected mode on, nothing beyond loopback."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from comms.local_broker import free_port


class LocalRedis:
    def __init__(self, folder: Path):
        exe = shutil.which("redis-server")
        if exe is None:
            raise FileNotFoundError("redis-server is not installed (scripts/setup.sh installs it)")
        self.exe, self.port, self.folder = exe, free_port(), Path(folder)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> LocalRedis:
        import redis

        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([self.exe, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--protected-mode", "yes", "--dir", str(self.folder)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
