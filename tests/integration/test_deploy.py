"""The compose file against the Compose Specification's JSON schema, and what a deployment of it
must hold: loopback ports, secrets as files, health checks, images without what they don't need.
scripts/stack.sh runs the same file (tests/integration/test_stack.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
sys.path.insert(0, str(REPO / "scripts"))

from stack import Stack, interpolate  # noqa: E402


def _doc() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_the_compose_file_is_valid_against_the_compose_specification_schema(tmp_path):
    check = [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
    done = subprocess.run([*check, str(COMPOSE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = _doc()
    broken["services"]["api"]["helthcheck"] = broken["services"]["api"].pop("healthcheck")  # a typo'd key
    broken["services"]["ingest-1"]["restart"] = ["always"]
    (tmp_path / "compose.yml").write_text(yaml.safe_dump(broken))
    done = subprocess.run([*check, str(tmp_path / "compose.yml")], capture_output=True, text=True)
    assert done.returncode == 1 and "helthcheck" in done.stdout and "ingest-1'].restart" in done.stdout


def test_every_service_has_a_health_check_loopback_ports_and_secrets_only_from_files():
    doc = _doc()
    services = doc["services"]
    assert {"mosquitto", "postgres", "redis", "objects", "label-studio", "api", "ingest-1", "ingest-2", "worker",
            "ground"} <= set(services)
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        env = dict(svc.get("environment") or {})
        for f in svc.get("env_file", []):
            assert (REPO / f).is_file(), f"{name}: env file {f} missing"
            env.update(line.split("=", 1) for line in (REPO / f).read_text().splitlines()
                       if line.strip() and not line.startswith("#"))
        for key, value in env.items():
            if re.search(r"PASSWORD|SECRET|(?<!LEGACY_API_)TOKEN|KEY(?!S_FILE)", key) and not key.endswith("_FILE"):
                raise AssertionError(f"{name}.{key}: a secret in the environment (use {key}_FILE)")
            if key.endswith("_FILE") and str(value).startswith("/run/secrets/"):
                secret = str(value).removeprefix("/run/secrets/")
                assert secret in svc.get("secrets", []), f"{name}.{key} names secret {secret} it is not given"
        for secret in svc.get("secrets", []):
            assert str(doc["secrets"][secret]["file"]).startswith("./deploy/secrets/"), secret
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/secrets/db_password"], cwd=REPO)
    assert ignored.returncode == 0, "deploy/secrets/ must be ignored by git"


def test_the_api_and_ingest_images_install_no_torch_and_the_worker_does():
    services = _doc()["services"]
    builds = {s["image"]: s["build"]["args"]["EXTRA"] for s in services.values() if "build" in s}
    assert builds == {"pli-cloud:latest": "cloud", "pli-learn:latest": "learn", "pli-ground:latest": "edge"}
    for name in ("api", "ingest-1", "ingest-2"):
        assert services[name]["image"] == "pli-cloud:latest"
    assert services["worker"]["image"] == "pli-learn:latest"
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'if [ "$EXTRA" = learn ]' in dockerfile  # torch only for the learning image
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not any("torch" in d for d in extras["cloud"] + extras["edge"])


def test_stack_reads_the_same_file_and_rewrites_names_paths_and_secrets(tmp_path):
    """What scripts/stack.sh makes of the compose file: service names to their loopback
    addresses, secrets and volumes to files, a bare word (`pli cloud worker`) left alone."""
    assert interpolate("${A:-x}/${B}/$$SYS", {"B": "b"}) == "x/b/$SYS"
    stack = Stack(tmp_path / "st", secrets_dir=tmp_path / "secrets", env={"PLI_BEIDOU_SERIAL": "/dev/pts/9"})
    api, worker, ground = (stack.services[n] for n in ("api", "worker", "ground"))
    env = stack.environment(api)
    pg = stack.services["postgres"].ip
    assert env["PLI_DATABASE_URL"] == f"postgresql+psycopg://pli@{pg}:5432/pli"
    assert env["PLI_DATABASE_PASSWORD_FILE"] == str(tmp_path / "secrets" / "db_password")
    assert env["PLI_MQTT_HOST"] == stack.services["mosquitto"].ip
    assert env["PLI_CLOUD_DIR"] == str(tmp_path / "st" / "volumes" / "cloud-data")
    assert stack.command(api)[-4:] == ["--host", api.ip, "--port", "8000"]
    assert stack.command(worker)[:3] == ["pli", "cloud", "worker"]
    assert stack.environment(worker)["PATH"].startswith(str(REPO / ".venv" / "bin"))  # torch: the learn extra
    assert env["PATH"].startswith(str(REPO / ".venv-cloud" / "bin"))
    cmd = stack.command(ground)
    assert cmd[:5] == ["pli", "ground", "run", "--port", "/dev/pts/9"] and "ground" in cmd  # its user
    assert stack.rewrite(ground, "/data/replay.db") == str(tmp_path / "st" / "volumes" / "ground-data" / "replay.db")
    names = [s.name for s in stack.order(["ingest-1"])]
    assert names.index("postgres") < names.index("api") < names.index("ingest-1")
    assert names.index("mosquitto") < names.index("ingest-1") and "label-studio" not in names


def test_mosquitto_requires_authentication_and_acls():
    conf = (REPO / "deploy/mosquitto/mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "acl_file" in conf and "password_file" in conf
    acl = (REPO / "deploy/mosquitto/acl").read_text()
    assert "pattern write pli/%u/alerts" in acl  # a drone (user <fleet>/<drone>) writes only under its own id
    assert "pli/+/%u" not in acl  # never under any fleet
    assert not (REPO / "deploy/mosquitto/passwd").exists()  # credentials are never committed
