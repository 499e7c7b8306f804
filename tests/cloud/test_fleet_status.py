"""What a drone runs, reported on its retained status topic and followed by the cloud's
deployments: the runtime writes the report, `pli link`'s MqttLink publishes it through the
deployment broker config (per-drone ACL blocks), the cloud's StatusWatcher records it; the
canary's health counts the distance flown and the crashes reported."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from waiting import until

from cloud.db import session_scope, upgrade
from cloud.models import Deployment, ModelRelease
from cloud.registry import fleet_status, rollout
from cloud.registry.acl import read_groups, render
from comms.local_broker import LocalBroker
from comms.mqtt_link import MqttConfig, MqttLink, status_topic
from comms.outbox import Outbox
from edge.runtime import RunConfig, run_flight

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"fleet1/UAV-07": "pw-07", "cloud": "pw-cloud"}


def _release(tmp_path: Path, version: str) -> Path:
    """The shipped model under a release's version (its card says which)."""
    folder = tmp_path / "models" / version
    folder.mkdir(parents=True)
    shutil.copyfile(ROOT / "models" / "pli-default.onnx", folder / "pli-next.onnx")
    card = json.loads((ROOT / "models" / "pli-default.json").read_text())
    (folder / "pli-next.json").write_text(json.dumps({**card, "version": version}))
    return folder / "pli-next.onnx"


def test_a_drones_report_reaches_the_deployments_through_the_broker(flight, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    monkeypatch.setenv("PLI_DATABASE_URL", url)
    monkeypatch.setenv("PLI_CLOUD_DIR", str(tmp_path / "cloud"))
    upgrade(url)
    with session_scope(url) as s:
        s.add(ModelRelease(version="2026.12.01", class_list_version=1, sha256="0" * 64, card={"files": {}}))
    model = _release(tmp_path, "2026.12.01")
    status = tmp_path / "drone" / "tuf" / "status.json"
    outbox = Outbox(tmp_path / "drone" / "outbox.db", "UAV-07", "fleet1")
    summary = run_flight(flight.out / "images", model, outbox,
                         RunConfig(flight_id="F-status", status=status, fleet="fleet1"), progress=False)
    report = json.loads(status.read_text())
    assert report["drone"] == "UAV-07" and report["release"] == "2026.12.01" and report["state"] == "given"
    assert report["frames_on_model"] == summary.frames and report["km_on_model"] > 0  # the flight's own track

    acl = tmp_path / "acl"
    acl.write_text(render(read_groups("drone,fleet,group\nUAV-07,fleet1,canary\n")))
    broker = LocalBroker.deployment(tmp_path / "broker", PASSWORDS, acl=acl).start()
    watcher = link = None
    try:
        cloud = MqttConfig(port=broker.port, username="cloud", password=PASSWORDS["cloud"])
        watcher = fleet_status.StatusWatcher(cloud, url).start()
        assert watcher.subscribed.wait(10)
        link = MqttLink(outbox, MqttConfig(port=broker.port, fleet="fleet1", username="fleet1/UAV-07",
                                           password=PASSWORDS["fleet1/UAV-07"]), status_file=status)
        link.start()
        assert link.connected.wait(10)
        link.pump(limit=0)  # no alerts now: the status goes anyway
        assert until(lambda: watcher.recorded >= 1, 10)
        link.pump(limit=0)  # unchanged: not sent again
        time.sleep(0.3)
        assert watcher.recorded == 1
        with session_scope(url) as s:
            rows = s.scalars(select(Deployment).where(Deployment.target == "UAV-07")).all()
            assert [(r.status, r.report["model"]) for r in rows] == [("given", "pli-next/2026.12.01")]
            health = rollout.health(s, "2026.12.01")
        assert health["km"] == pytest.approx(report["km_on_model"], abs=1e-3) and health["drones_reporting"] == 1
        assert health["crashes"] == 0

        # The same drone, later: on trial with a newer release after one crashed start.
        with session_scope(url) as s:
            s.add(ModelRelease(version="2026.12.02", class_list_version=1, sha256="1" * 64, card={"files": {}}))
        status.write_text(json.dumps({**report, "model": "pli-next/2026.12.02", "release": "2026.12.02",
                                      "state": "trial", "crashes": 1, "km_on_model": 2.5}))
        link.pump(limit=0)
        assert until(lambda: watcher.recorded >= 2, 10)
        with session_scope(url) as s:
            rows = s.scalars(select(Deployment).where(Deployment.target == "UAV-07").order_by(Deployment.id)).all()
            assert [r.status for r in rows] == ["given", "trial"]
            h2 = rollout.health(s, "2026.12.02")
        assert h2["crashes"] == 1 and h2["km"] == 2.5
    finally:
        if link is not None:
            link.stop()
        if watcher is not None:
            watcher.stop()
        broker.stop()


def test_a_report_that_names_another_drone_or_no_state_is_refused(tmp_path):
    good = {"schema": "pli.status/1", "drone": "UAV-07", "state": "good", "release": "x", "model": "m/x"}
    assert fleet_status.parse(status_topic("fleet1", "UAV-07"), json.dumps(good).encode())[1] == "UAV-07"
    for topic, doc, why in [
        (status_topic("fleet1", "UAV-08"), good, "names drone 'UAV-07'"),
        (status_topic("fleet1", "UAV-07"), {**good, "state": "flying"}, "state 'flying'"),
        (status_topic("fleet1", "UAV-07"), {**good, "schema": "other"}, "not a pli.status/1"),
        ("pli/fleet1/UAV-07/alerts", good, "not a status topic"),
    ]:
        with pytest.raises(fleet_status.ReportError, match=why):
            fleet_status.parse(topic, json.dumps(doc).encode())
    with pytest.raises(fleet_status.ReportError, match="not JSON"):
        fleet_status.parse(status_topic("fleet1", "UAV-07"), b"\xff")
