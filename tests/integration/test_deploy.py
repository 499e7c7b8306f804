"""The compose file is deployment only (no Docker engine here): validate it as text."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_compose_publishes_only_on_loopback_and_takes_secrets_from_the_environment():
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"mosquitto", "postgres", "label-studio"} <= set(services)
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|USER_TOKEN", key):
                assert re.fullmatch(r"\$\{[A-Z_]+(:\?[^}]*)?\}", str(value)), f"{name}.{key} is not from the env"
        for volume in svc.get("volumes", []):
            host = str(volume).split(":")[0]
            if host.startswith("./"):
                assert (REPO / host).exists() or host.endswith(("passwd", "certs")), f"{name} mounts missing {host}"


def test_mosquitto_requires_authentication_and_acls():
    conf = (REPO / "deploy/mosquitto/mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "acl_file" in conf and "password_file" in conf
    acl = (REPO / "deploy/mosquitto/acl").read_text()
    assert "pattern write pli/%u/alerts" in acl  # a drone (user <fleet>/<drone>) writes only under its own id
    assert "pli/+/%u" not in acl  # never under any fleet
    assert not (REPO / "deploy/mosquitto/passwd").exists()  # credentials are never committed
