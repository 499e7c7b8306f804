"""docker-compose.yml's services as processes on this machine, for where no Docker engine runs.

    python scripts/stack.py init [--secrets DIR]           # secrets, broker users, TLS, BeiDou keys
    python scripts/stack.py up [--dir D] [--only a,b] [--skip a,b]
    python scripts/stack.py status [--dir D]
    python scripts/stack.py down [--dir D]

Not a second description of the deployment: it reads the compose file and runs what it says.
Each service gets the compose file's command, env files, environment and secrets (mounted paths
`/run/secrets/<name>` become the secret files), its volumes as folders under D, and its health
check, run until it passes before the services that depend on it start. Each service listens on
its own loopback address (127.0.77.N, N its place in the file), so the compose file's host
names and ports stay as written: `postgres:5432` becomes `127.0.77.2:5432`, and a service's own
`0.0.0.0` or `localhost` its address. Images become what this machine has: mosquitto,
PostgreSQL, Redis and Label Studio themselves; the `pli` images the project's virtual
environment of the same extra (`cloud`: .venv-cloud, no torch; `learn`: .venv; `edge`:
.venv-edge); the S3 store (MinIO in the file) moto's S3 server, an emulator, said as such.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
VENVS = {"cloud": ".venv-cloud", "learn": ".venv", "edge": ".venv-edge"}
NET = "127.0.77."
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable syntax: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}."""
    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        val = env.get(name)
        if (op in (":-", ":?") and not val) or (op in ("-", "?") and val is None):
            if op.endswith("?"):
                raise ValueError(f"{name}: {arg or 'required'}")
            return arg
        return val or ""
    return _VAR.sub(one, value)


def _interpolated(node, env: dict[str, str]):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolated(x, env) for x in node]
    if isinstance(node, dict):
        return {k: _interpolated(v, env) for k, v in node.items()}
    return node


def _env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


@dataclass
class Service:
    name: str
    spec: dict
    ip: str

    @property
    def image(self) -> str:
        return self.spec.get("image", "")


class Stack:
    def __init__(self, folder: Path, compose: Path = COMPOSE, secrets_dir: Path | None = None,
                 env: dict[str, str] | None = None):
        self.folder, self.compose = folder.resolve(), compose.resolve()
        self.base = self.compose.parent
        raw = compose.read_text()
        self.doc = yaml.safe_load(raw)  # anchors and merge keys resolved
        self.env = dict(os.environ if env is None else env)
        self.services = {name: Service(name, _interpolated(spec, self.env), f"{NET}{i + 1}")
                         for i, (name, spec) in enumerate(self.doc["services"].items())}
        self.secrets_dir = (secrets_dir or self.base / "deploy" / "secrets").resolve()

    # -- paths and names, rewritten from the containers' to this machine's
    def secret_file(self, name: str) -> Path:
        rel = Path(self.doc["secrets"][name]["file"])
        default = self.base / "deploy" / "secrets"
        path = (self.base / rel).resolve()
        return self.secrets_dir / path.relative_to(default) if path.is_relative_to(default) else path

    def volume_dir(self, svc: Service, target: str) -> Path | None:
        for v in svc.spec.get("volumes", []):
            src, _, rest = v.partition(":")
            if rest.split(":")[0].rstrip("/") == target.rstrip("/"):
                return self._source(src)
        return None

    def _source(self, src: str) -> Path:
        if src.startswith((".", "/")):
            path = (self.base / src).resolve()
            default = self.base / "deploy" / "secrets"
            return self.secrets_dir / path.relative_to(default) if path.is_relative_to(default) else path
        path = self.folder / "volumes" / src  # a named volume: made, as the engine makes it
        path.mkdir(parents=True, exist_ok=True)
        return path

    def rewrite(self, svc: Service, text: str, host: bool = False) -> str:
        # first: the host paths put in below may be under /tmp
        text = re.sub(r"(?<![\w/])/tmp/", f"{self.folder}/run/{svc.name}/tmp/", text)
        for name in svc.spec.get("secrets", []):
            text = text.replace(f"/run/secrets/{name}", str(self.secret_file(name)))
        mounts = [(v.split(":")[1], self._source(v.split(":")[0])) for v in svc.spec.get("volumes", [])]
        for target, src in sorted(mounts, key=lambda m: -len(m[0])):  # the longest container path first
            text = re.sub(rf"(?<![\w/]){re.escape(target.rstrip('/'))}(?=/|\b|$)", str(src), text)
        for d in svc.spec.get("devices", []):
            device, _, target = d.partition(":")
            text = text.replace(target, device)
        for other in sorted(self.services.values(), key=lambda s: -len(s.name)):
            if host and text == other.name:  # a bare host name: an argument after --*host, a *_HOST value
                text = other.ip
            # host:port, and //host in a URL (never a bare word: `pli cloud worker` stays a command)
            text = re.sub(rf"(?<![\w.-]){re.escape(other.name)}(?=:\d)|(?<=//){re.escape(other.name)}(?=[:/]|$)",
                          other.ip, text)
        if host and text in ("localhost", "127.0.0.1", "0.0.0.0"):
            return svc.ip
        return re.sub(r"(?<![\w.])(localhost|127\.0\.0\.1|0\.0\.0\.0)(?=:\d)|(?<=//)(localhost|127\.0\.0\.1|0\.0\.0\.0)"
                      r"(?=[:/]|$)|(?<=-h )(localhost|127\.0\.0\.1)(?= )", svc.ip, text)

    def rewrite_args(self, svc: Service, args: list[str]) -> list[str]:
        """An argv: a value after `-h` or an option ending in `host` is a host name."""
        return [self.rewrite(svc, str(a), host=i > 0 and (str(args[i - 1]).endswith("host") or args[i - 1] == "-h"))
                for i, a in enumerate(args)]

    def environment(self, svc: Service) -> dict[str, str]:
        env: dict[str, str] = {}
        for f in svc.spec.get("env_file", []):
            env.update(_env_file(self.base / f))
        given = svc.spec.get("environment", {})
        env.update(given if isinstance(given, dict) else dict(e.split("=", 1) for e in given))
        env = {k: self.rewrite(svc, str(v), host=k.endswith("_HOST")) for k, v in env.items()}
        venv = self.venv(svc)
        path = [str(venv / "bin")] if venv else []
        if svc.image.startswith("postgres"):
            path += sorted(str(p) for p in Path("/usr/lib/postgresql").glob("*/bin"))[-1:]
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("PLI_", "LABEL_STUDIO_", "AWS_"))}
        return {**keep, **env, "PATH": os.pathsep.join([*path, os.environ.get("PATH", "")]),
                "HOME": str(self.folder / "run" / svc.name)}

    def venv(self, svc: Service) -> Path | None:
        if svc.image.startswith("heartexlabs/label-studio"):
            return REPO / ".venv-ls"
        extra = self._extra(svc)
        return REPO / VENVS[extra] if extra else None

    def _extra(self, svc: Service) -> str | None:
        build = svc.spec.get("build")
        if build is None:  # an image another service builds
            builder = next((s for s in self.services.values() if s.spec.get("build") and s.image == svc.image), None)
            build = builder.spec["build"] if builder else None
        if build is None:
            return None
        return (build.get("args", {}) if isinstance(build, dict) else {}).get("EXTRA", "cloud")

    # -- what runs
    def command(self, svc: Service) -> list[str]:
        """The process for a service: the compose command, or what stands in for the image's own."""
        run = self.folder / "run" / svc.name
        cmd = self.rewrite_args(svc, svc.spec.get("command", []))
        if svc.image.startswith("eclipse-mosquitto"):
            return [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(self._mosquitto_conf(svc))]
        if svc.image.startswith("postgres"):
            return self._postgres(svc)
        if svc.image.startswith("redis"):
            data = self.volume_dir(svc, "/data")
            return [shutil.which("redis-server") or "redis-server", *cmd[1:], "--bind", svc.ip, "--port", "6379",
                    "--dir", str(data), "--daemonize", "no"]
        if svc.image.startswith("minio/"):  # stand-in: moto's S3 server, an emulator, not MinIO
            return [str(REPO / ".venv" / "bin" / "moto_server"), "-H", svc.ip, "-p", "9000"]
        if not cmd:
            raise ValueError(f"{svc.name}: no command and no stand-in for image {svc.image!r}")
        run.mkdir(parents=True, exist_ok=True)
        return cmd

    def _mosquitto_conf(self, svc: Service) -> Path:
        src = self.volume_dir(svc, "/mosquitto/config/mosquitto.conf")
        conf = self.rewrite(svc, src.read_text())
        conf = re.sub(r"^listener (\d+)\s*$", rf"listener \1 {svc.ip}", conf, flags=re.M)
        run = self.folder / "run" / svc.name
        run.mkdir(parents=True, exist_ok=True)
        me = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
        out = run / "mosquitto.conf"
        out.write_text(conf + f"\nuser {me}\nlog_dest file {run}/mosquitto.log\n")
        return out

    def _postgres(self, svc: Service) -> list[str]:
        env = self.environment(svc)
        data = self.volume_dir(svc, "/var/lib/postgresql/data")
        sock = self.folder / "run" / svc.name
        as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        bindir = Path(sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1])
        if not (data / "PG_VERSION").exists():
            data.mkdir(parents=True, exist_ok=True)
            sock.mkdir(parents=True, exist_ok=True)
            pw = sock / "pwfile"
            pw.write_text(Path(env["POSTGRES_PASSWORD_FILE"]).read_text().strip() + "\n")
            if as_pg:
                shutil.chown(data, "postgres")
                shutil.chown(sock, "postgres")
                shutil.chown(pw, "postgres")
            subprocess.run([*as_pg, str(bindir / "initdb"), "-D", str(data), "-U", env["POSTGRES_USER"],
                            f"--pwfile={pw}", "--auth=scram-sha-256", "-E", "UTF8"], check=True,
                           stdout=subprocess.DEVNULL)
            pw.unlink()
        sock.mkdir(parents=True, exist_ok=True)
        if as_pg:
            shutil.chown(sock, "postgres")
            for parent in (self.folder, self.folder / "run", self.folder / "volumes"):
                parent.chmod(parent.stat().st_mode | 0o011)  # the postgres user passes through
        return [*as_pg, str(bindir / "postgres"), "-D", str(data), "-k", str(sock), "-h", svc.ip, "-p", "5432"]

    def health(self, svc: Service) -> str | None:
        """None when the service's compose health check passes (its stand-in's own for MinIO)."""
        if svc.image.startswith("minio/"):
            import urllib.request

            try:
                urllib.request.urlopen(f"http://{svc.ip}:9000/", timeout=3)
                return None
            except OSError as exc:
                return str(exc)
        test = svc.spec.get("healthcheck", {}).get("test")
        if not test:
            return None
        kind, *args = test
        argv = ["sh", "-c", self.rewrite(svc, args[0])] if kind == "CMD-SHELL" else self.rewrite_args(svc, args)
        try:
            done = subprocess.run(argv, env=self.environment(svc), capture_output=True, text=True, timeout=20,
                                  cwd=self.folder / "run" / svc.name)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        return None if done.returncode == 0 else (done.stderr or done.stdout).strip()[-300:] or f"rc {done.returncode}"

    # -- lifecycle
    def order(self, names: list[str]) -> list[Service]:
        seen: list[str] = []

        def visit(name: str) -> None:
            if name in seen:
                return
            for dep in self.services[name].spec.get("depends_on", {}):
                visit(dep)  # what it depends on comes first, asked for or not
            seen.append(name)

        for name in names:
            visit(name)
        return [self.services[n] for n in seen]

    def pid_file(self, svc: Service) -> Path:
        return self.folder / "run" / f"{svc.name}.pid"

    def running(self, svc: Service) -> bool:
        try:
            os.kill(int(self.pid_file(svc).read_text()), 0)
            return True
        except (OSError, ValueError):
            return False

    def start(self, svc: Service) -> subprocess.Popen | None:
        """The service's process, started (None: it was running already)."""
        if self.running(svc):
            print(f"  {svc.name}: already running")
            return None
        argv = self.command(svc)
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)
        (self.folder / "run" / svc.name).mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "logs" / f"{svc.name}.log", "ab")  # noqa: SIM115 (the child's for its life)
        proc = subprocess.Popen(argv, env=self.environment(svc), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=self.folder / "run" / svc.name, start_new_session=True)
        self.pid_file(svc).write_text(str(proc.pid))
        return proc

    def wait_healthy(self, svc: Service, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
        deadline, problem = time.monotonic() + timeout_s, None
        while time.monotonic() < deadline:
            if not self.running(svc) or (proc is not None and proc.poll() is not None):
                raise RuntimeError(f"{svc.name} exited: see {self.folder}/logs/{svc.name}.log")
            problem = self.health(svc)
            if problem is None:
                if svc.image.startswith("postgres"):
                    self._create_database(svc)  # as the image's first start does (idempotent)
                return
            time.sleep(0.5)
        raise TimeoutError(f"{svc.name} not healthy within {timeout_s:.0f} s: {problem}")

    def _create_database(self, svc: Service) -> None:
        env = self.environment(svc)
        pw = Path(env["POSTGRES_PASSWORD_FILE"]).read_text().strip()
        import psycopg

        with psycopg.connect(host=svc.ip, port=5432, user=env["POSTGRES_USER"], password=pw, dbname="postgres",
                             autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (env["POSTGRES_DB"],)).fetchone():
                conn.execute(f'CREATE DATABASE "{env["POSTGRES_DB"]}"')

    def up(self, names: list[str], skip: set[str] = frozenset()) -> None:
        for svc in [s for s in self.order(names) if s.name not in skip]:
            t0 = time.monotonic()
            proc = self.start(svc)
            wait = _seconds(svc.spec.get("healthcheck", {}).get("start_period", "30s")) + 60
            self.wait_healthy(svc, wait, proc)
            print(f"  {svc.name}: healthy at {svc.ip} ({time.monotonic() - t0:.1f} s)", flush=True)

    def down(self) -> None:
        for svc in reversed(self.order(list(self.services))):
            if not self.pid_file(svc).exists():
                continue
            pid = int(self.pid_file(svc).read_text())
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.running(svc):
                time.sleep(0.1)
            if self.running(svc):
                os.killpg(pid, signal.SIGKILL)
            self.pid_file(svc).unlink(missing_ok=True)
            print(f"  {svc.name}: stopped")

    def status(self) -> dict[str, str]:
        return {s.name: ("healthy" if self.health(s) is None else "unhealthy") if self.running(s) else "stopped"
                for s in self.services.values()}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m)", str(text))
    if not m:
        return 30.0
    n, unit = int(m.group(1)), m.group(2)
    return n / 1000 if unit == "ms" else n * 60 if unit == "m" else float(n)


def init_secrets(stack: Stack, drones: int = 2) -> None:
    """Every secret file the compose file names that is missing, made at random (mode 600); the
    broker's password file from the passwords (users cloud, ground and fleet1/UAV-0N), its TLS
    certificates, the drones' BeiDou keys. Existing files are kept: run it again safely."""
    d = stack.secrets_dir
    os.umask(0o077)
    d.mkdir(parents=True, exist_ok=True)

    def make(name: str, value: str) -> None:
        path = stack.secret_file(name)
        if not path.exists():
            path.write_text(value)
            print(f"  made {path}")

    for name in stack.doc["secrets"]:
        if name.startswith(("s3_credentials", "beidou_keys")):
            continue
        make(name, f"pli{secrets.token_hex(6)}" if name == "s3_access_key" else secrets.token_hex(20))
    ak, sk = stack.secret_file("s3_access_key").read_text(), stack.secret_file("s3_secret_key").read_text()
    make("s3_credentials", f"[default]\naws_access_key_id = {ak}\naws_secret_access_key = {sk}\n")
    drones_doc = {str(i + 1): {"drone_id": f"UAV-{i + 1:02d}", "key_hex": secrets.token_hex(32)} for i in range(drones)}
    make("beidou_keys", json.dumps(drones_doc, indent=1))
    mq = d / "mosquitto"
    mq.mkdir(exist_ok=True)
    passwd, drone_pw = mq / "passwd", mq / "drone_passwords.json"
    if not passwd.exists():
        users = {"cloud": stack.secret_file("mqtt_cloud_password").read_text(),
                 "ground": stack.secret_file("mqtt_ground_password").read_text()}
        drone_pws = {f"fleet1/UAV-{i + 1:02d}": secrets.token_urlsafe(18) for i in range(drones)}
        drone_pw.write_text(json.dumps(drone_pws, indent=1))  # give each drone its own (`pli device init`)
        for i, (user, pw) in enumerate({**users, **drone_pws}.items()):
            subprocess.run(["mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(passwd), user, pw],
                           check=True, capture_output=True)
        passwd.chmod(0o644)  # read by mosquitto's own user in its container
        print(f"  made {passwd} (users cloud, ground, {', '.join(drone_pws)}; drones' passwords in {drone_pw})")
    if not (mq / "certs" / "server.crt").exists():
        subprocess.run(["bash", str(REPO / "deploy" / "mosquitto" / "make-certs.sh"), str(mq / "certs"),
                        "localhost", "mosquitto", *(s.ip for s in stack.services.values() if s.name == "mosquitto")],
                       check=True, stdout=subprocess.DEVNULL)
        (mq / "certs" / "server.key").chmod(0o644)  # mosquitto's user (uid 1883) reads it in its container
        print(f"  made {mq / 'certs'} (give ca.crt to the drones)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/stack.sh", description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["init", "up", "down", "status"])
    ap.add_argument("--dir", type=Path, default=REPO / ".stack", help="where the processes keep data and logs")
    ap.add_argument("--compose", type=Path, default=COMPOSE)
    ap.add_argument("--secrets", type=Path, help="the secrets folder (default deploy/secrets)")
    ap.add_argument("--only", help="these services (and what they depend on), comma-separated")
    ap.add_argument("--skip", help="all services but these, comma-separated")
    args = ap.parse_args(argv)
    stack = Stack(args.dir, args.compose, args.secrets)
    if args.action == "init":
        init_secrets(stack)
        return 0
    if args.action == "down":
        stack.down()
        return 0
    if args.action == "status":
        st = stack.status()
        for name, state in st.items():
            print(f"  {name:<14} {state:<10} {stack.services[name].ip}")
        return 0 if all(v == "healthy" for v in st.values()) else 1
    names = args.only.split(",") if args.only else list(stack.services)
    skip = set(args.skip.split(",")) if args.skip else set()
    unknown = (set(names) | skip) - set(stack.services)
    if unknown:
        ap.error(f"no such service: {', '.join(sorted(unknown))}")
    missing = [n for n in stack.doc["secrets"] if not stack.secret_file(n).exists()]
    if missing:
        print(f"stack: missing secrets {missing}: run `scripts/stack.sh init` first", file=sys.stderr)
        return 2
    try:
        stack.up(names, skip)
    except (RuntimeError, TimeoutError, ValueError, OSError, subprocess.CalledProcessError) as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    print(f"stack up: logs in {stack.folder}/logs; `scripts/stack.sh down --dir {args.dir}` stops it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
