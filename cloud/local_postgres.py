"""A PostgreSQL server from the OS packages, started by this process on a loopback port.

For the test suite and local runs (deployment runs its own, see docker-compose.yml). PostgreSQL
refuses to run as root, so as root the data directory belongs to the `postgres` user and the
server runs as that user (`runuser`). It listens on 127.0.0.1 only, trusts local connections
for one database user (`pli`): a throwaway server, never one holding real data.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from comms.local_broker import free_port


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise FileNotFoundError(f"PostgreSQL's {name} is not installed (scripts/setup.sh installs postgresql)")
    return found


class LocalPostgres:
    def __init__(self, folder: Path | None = None, user: str = "pli", database: str = "pli"):
        self.initdb, self.pg_ctl = _bin("initdb"), _bin("pg_ctl")
        # under /tmp, not below a root-only folder: the postgres user must reach it
        self.folder = Path(folder or tempfile.mkdtemp(prefix="pli-postgres-"))
        self.data = self.folder / "data"
        self.port, self.user, self.database = free_port(), user, database
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *cmd: str) -> None:
        out = subprocess.run([*self._as, *cmd], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed: {out.stderr.strip()[-500:]}")

    def start(self) -> LocalPostgres:
        if self._as:
            pw = pwd.getpwnam("postgres")
            os.chown(self.folder, pw.pw_uid, pw.pw_gid)
        if not self.data.exists():
            self._run(self.initdb, "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                      "--no-instructions")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=on -c max_connections=300"
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w", "-o", options,
                  "start")
        self._create_database()
        return self

    def _create_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + 20
        while True:
            try:
                with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres",
                                     autocommit=True) as con:
                    if not con.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone():
                        con.execute(f'CREATE DATABASE "{self.database}"')
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        if self.data.exists():
            subprocess.run([*self._as, self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"],
                           capture_output=True, text=True)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
