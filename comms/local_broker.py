"""A Mosquitto broker on a free loopback port, started and stopped by this process.

For the test suite (a real broker, restartable mid-test) and the demo; deployment runs its own
broker from deploy/mosquitto with credentials and ACLs. Nothing here listens beyond loopback.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto"


class LocalBroker:
    def __init__(self, folder: Path, extra: str = ""):
        """`extra`: more mosquitto.conf lines (e.g. `max_queued_messages 0` for a benchmark's deep queue)."""
        exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if exe is None:
            raise FileNotFoundError("mosquitto is not installed (scripts/setup.sh installs it)")
        self.exe, self.port, self.tls_port = exe, free_port(), free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.conf = folder / "mosquitto.conf"
        # Persistence keeps sessions and queued QoS 1 messages over a broker restart. As root,
        # mosquitto would drop to the `mosquitto` user, who cannot write here: stay this user.
        self._write_conf(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                         f"persistence_location {folder}/\nautosave_interval 1\n{extra}")
        self.proc: subprocess.Popen | None = None

    def _write_conf(self, body: str) -> None:
        me = pwd.getpwuid(os.getuid()).pw_name
        self.conf.write_text(body + f"\nuser {me}\nlog_dest file {self.folder}/mosquitto.log\n")

    @classmethod
    def deployment(cls, folder: Path, users: dict[str, str], acl: Path | None = None,
                   settings: dict[str, str] | None = None) -> LocalBroker:
        """The deployment config itself (deploy/mosquitto: passwords, ACLs, TLS) on loopback ports.

        Certificates come from deploy/mosquitto/make-certs.sh into `folder`/certs (CA: ca.crt);
        `users` are written with mosquitto_passwd. The plain listener is `port`, TLS `tls_port`.
        `settings`: values for lines the file has (e.g. a small `max_queued_messages` for a test).
        """
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["bash", str(DEPLOY / "make-certs.sh"), str(folder / "certs"), "localhost", "127.0.0.1"],
                       check=True, capture_output=True)
        passwd = folder / "passwd"
        for i, (user, password) in enumerate(users.items()):
            subprocess.run(["mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(passwd), user, password],
                           check=True, capture_output=True)
        broker = cls(folder)
        conf = (DEPLOY / "mosquitto.conf").read_text()
        for old, new in (("/mosquitto/config/passwd", str(passwd)),
                         ("/mosquitto/config/acl", str(acl or DEPLOY / "acl")),
                         ("/mosquitto/certs/", f"{folder}/certs/"), ("/mosquitto/data/", f"{folder}/"),
                         ("listener 1883", f"listener {broker.port} 127.0.0.1"),
                         ("listener 8883", f"listener {broker.tls_port} 127.0.0.1")):
            if old not in conf:
                raise ValueError(f"deploy/mosquitto/mosquitto.conf no longer has {old!r}")
            conf = conf.replace(old, new)
        for key, value in (settings or {}).items():
            lines = conf.splitlines()
            at = [i for i, line in enumerate(lines) if line.split(" ", 1)[0] == key]
            if not at:
                raise ValueError(f"deploy/mosquitto/mosquitto.conf has no {key!r} line")
            lines[at[0]] = f"{key} {value}"
            conf = "\n".join(lines) + "\n"
        broker._write_conf(conf)
        return broker

    def start(self) -> LocalBroker:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on port {self.port}")

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads its password and ACL files."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.proc.wait(timeout=10)
        self.proc = None
