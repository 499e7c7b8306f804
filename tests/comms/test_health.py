"""Heartbeat files: what the health checks of the non-HTTP services (ingest, worker, ground station) read."""

from __future__ import annotations

import json
import time

from comms.health import Heartbeat, check
from pli.cli import main


def test_a_fresh_ok_beat_is_healthy_and_a_stale_sick_or_missing_one_is_not(tmp_path):
    path = tmp_path / "hb" / "ingest.json"
    assert "no heartbeat" in check(path)
    state = {"problem": None}
    beat = Heartbeat(path, lambda: state["problem"], every_s=0.05, name="ingest-1").start()
    deadline = time.monotonic() + 5
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert check(path) is None
    assert main(["health", str(path)]) == 0
    assert "15 s: hung" in check(path, now=time.time() + 60)  # no beat for a minute
    state["problem"] = "not connected to the broker"
    time.sleep(0.3)
    assert check(path) == f"{path}: not connected to the broker"
    assert main(["health", str(path)]) == 1
    beat.stop()
    assert not path.exists()  # a stopped service is not healthy


def test_a_check_that_raises_is_a_problem_and_a_damaged_file_is_unhealthy(tmp_path):
    path = tmp_path / "worker.json"

    def down() -> str | None:
        raise ConnectionError("Redis refused the connection")

    Heartbeat(path, down, name="worker").beat()
    assert json.loads(path.read_text())["ok"] is False
    assert "ConnectionError: Redis refused" in check(path)
    path.write_text('{"at": "soon"')
    assert "unreadable" in check(path)


def test_secrets_come_from_files_named_by_the_variable_with_FILE(tmp_path, monkeypatch):
    import pytest

    from cloud.db import database_url
    from comms.settings import DroneSettings

    secret = tmp_path / "mqtt_password"
    secret.write_text("s3cret\n")
    assert DroneSettings.from_env({"PLI_MQTT_PASSWORD_FILE": str(secret)}).mqtt_password == "s3cret"
    assert DroneSettings.from_env({"PLI_MQTT_PASSWORD_FILE": str(secret), "PLI_MQTT_PASSWORD": "env"}) \
        .mqtt_password == "env"  # the variable itself wins
    with pytest.raises(ValueError, match=r"PLI_MQTT_PASSWORD_FILE=.*nope"):
        DroneSettings.from_env({"PLI_MQTT_PASSWORD_FILE": str(tmp_path / "nope")})
    (tmp_path / "db_password").write_text("p@ss:word\n")
    monkeypatch.setenv("PLI_DATABASE_PASSWORD_FILE", str(tmp_path / "db_password"))
    monkeypatch.setenv("PLI_DATABASE_URL", "postgresql+psycopg://pli@127.0.0.1:5432/pli")
    assert database_url() == "postgresql+psycopg://pli:p%40ss%3Aword@127.0.0.1:5432/pli"  # quoted into the URL
    monkeypatch.setenv("PLI_DATABASE_URL", "postgresql+psycopg://pli:given@127.0.0.1:5432/pli")
    assert database_url().endswith("pli:given@127.0.0.1:5432/pli")  # a URL's own password is kept
