"""The Label Studio server, in its own virtual environment (`.venv-ls`, made by scripts/setup.sh:
label-studio 1.23.2 pins label-studio-sdk 2.1.2, numpy < 2.3 and opencv 4.12, which the
project's own environment cannot share), started headless on loopback.

The first boot of a data folder creates the admin user and its legacy API token from the
environment (`LABEL_STUDIO_USERNAME`, `_PASSWORD`, `_USER_TOKEN`, with
`LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true`); Label Studio refuses ML backends and webhooks on
private addresses unless told otherwise, and the cloud is on loopback here (pitfalls.md).
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
VERSION = "1.23.2"


def ls_binary() -> Path:
    """`PLI_LS_BIN`, else the project's `.venv-ls/bin/label-studio`."""
    path = Path(os.environ.get("PLI_LS_BIN") or REPO / ".venv-ls" / "bin" / "label-studio")
    if not path.exists():
        raise FileNotFoundError(f"{path}: Label Studio is not installed (bash scripts/setup.sh ls)")
    return path


def free_port_pair() -> int:
    """A port P with P+1 free too: Label Studio opens a second listener there."""
    import socket

    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        try:
            with socket.socket() as b:
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no pair of free ports")


@dataclass
class LabelStudioServer:
    data_dir: Path
    port: int = 0
    username: str = "admin@pli.local"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    token: str = field(default_factory=lambda: secrets.token_hex(20))
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = None

    @classmethod
    def from_env(cls, data_dir: Path, port: int) -> LabelStudioServer:
        """Credentials from `PLI_LS_USERNAME`, `PLI_LS_PASSWORD`, `PLI_LS_TOKEN` (never the repo)."""
        missing = [v for v in ("PLI_LS_PASSWORD", "PLI_LS_TOKEN") if not os.environ.get(v)]
        if missing:
            raise ValueError(f"set {' and '.join(missing)}: Label Studio's admin password and API token")
        return cls(Path(data_dir), port, os.environ.get("PLI_LS_USERNAME", "admin@pli.local"),
                   os.environ["PLI_LS_PASSWORD"], os.environ["PLI_LS_TOKEN"])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "LABEL_STUDIO_USERNAME": self.username, "LABEL_STUDIO_PASSWORD": self.password,
                "LABEL_STUDIO_USER_TOKEN": self.token, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
                "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "false", "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "false",
                "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir), "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
                "COLLECT_ANALYTICS": "false", "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "false",
                # no error reports to Label Studio's Sentry (server and page): nothing leaves the site
                "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": ""}

    def start(self, timeout_s: float = 180.0) -> LabelStudioServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port_pair()
        # The admin's name, password and token go in the environment (LABEL_STUDIO_*), never on the
        # command line, where every user of the machine reads them (`ps`).
        cmd = [str(ls_binary()), "start", "--no-browser", "--port", str(self.port), "--internal-host", self.host,
               "--host", self.url, "--data-dir", str(self.data_dir)]
        logf = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 (kept open for the child's life)
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Label Studio exited ({self.proc.returncode}); see {self.data_dir}/server.log")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    log.info("Label Studio %s up at %s", VERSION, self.url)
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"Label Studio did not answer /health within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            import signal

            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
