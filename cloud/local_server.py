"""`pli cloud serve` as a child process on a free loopback port, for tests, benchmarks and demos
that need the real HTTP server (the drones' TUF client, Label Studio's callbacks)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from comms.local_broker import free_port

REPO = Path(__file__).resolve().parents[1]


class CloudServer:
    """Started on enter with `env` added to this process's environment; `base` is its URL."""

    def __init__(self, env: dict[str, str], port: int | None = None, startup_s: float = 30.0):
        self.env, self.port, self.startup_s = env, port or free_port(), startup_s
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> CloudServer:
        self.proc = subprocess.Popen([sys.executable, "-m", "pli", "-q", "cloud", "serve", "--port", str(self.port)],
                                     env={**os.environ, **self.env}, cwd=REPO, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pli cloud serve exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.base}/health").status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.__exit__()
        raise TimeoutError(f"pli cloud serve did not answer on {self.base} within {self.startup_s:.0f} s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
