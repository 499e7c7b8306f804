"""Issue 25, finding 4: a fleet token belongs to one fleet, a drone token to one drone. What one
fleet's token did to another's (read its alerts and crops, declared a flight for a drone that does
not exist, overwrote another flight's manifest, recorded a track as another drone) is refused, each
with one line; the cloud refuses a drone's alert that comes under another fleet's topic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cloud.alerts import IngestError, record, record_batch
from cloud.api.app import create_app
from cloud.db import session_scope, upgrade
from cloud.models import Alert, Drone
from cloud.tokens import create_token
from comms import alert_json
from comms.alert import Alert as Record
from comms.classes import Severity

T0 = datetime(2026, 11, 22, 9, tzinfo=UTC)


def _alert(drone: str, seq: int, flight: str) -> bytes:
    a = Record(drone, seq, flight, T0 + timedelta(seconds=seq), 25.3, 103.1, 1600.0, "defect", 0.9, Severity.HIGH,
               position_source="laser", epoch=1, class_list_version=1, source_frame="DJI_0000.JPG")
    return alert_json.dumps(a, b"\xff\xd8crop")


def _id(drone: str, seq: int) -> str:
    return alert_json.loads(_alert(drone, seq, "F"))[0].id


@pytest.fixture
def two_fleets(tmp_path, monkeypatch):
    """fleet1 with UAV-07 (drone token) and UAV-08; fleet2 with UAV-21 and its flight F21."""
    monkeypatch.setenv("PLI_CLOUD_DIR", str(tmp_path / "cloud"))
    monkeypatch.delenv("PLI_OBJECT_STORE", raising=False)
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    with session_scope(url) as s:
        tokens = {"fleet1": create_token(s, "fleet1 ground", "fleet", "fleet1"),
                  "uav07": create_token(s, "uav-07", "fleet", "fleet1", "UAV-07"),
                  "fleet2": create_token(s, "fleet2 ground", "fleet", "fleet2"),
                  "operator": create_token(s, "ops", "operator")}
    with session_scope(url) as s:
        record(s, "pli/fleet1/UAV-08/alerts", _alert("UAV-08", 1, "F8"))
        record(s, "pli/fleet2/UAV-21/alerts", _alert("UAV-21", 1, "F21"))
    client = TestClient(create_app(url))
    manifest = {"drone_id": "UAV-21", "files": [{"name": "a.jpg", "size": 3, "sha256": "a" * 64}]}
    r = client.post("/flights/F21/manifest", json=manifest, headers=_h(tokens["fleet2"]))
    assert r.status_code == 200, r.text
    return client, tokens, url


def _h(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_a_fleet_token_reads_no_alerts_crops_or_photos(two_fleets):
    client, tokens, _ = two_fleets
    alert_id = _id("UAV-21", 1)
    for path in ("/alerts", f"/alerts/{alert_id}", f"/alerts/{alert_id}/crop.jpg", "/flights/F21",
                 "/flights/F21/uploads", "/faults"):
        r = client.get(path, headers=_h(tokens["fleet1"]))
        assert r.status_code == 403 and "operator token" in r.json()["detail"], (path, r.text)
        assert client.get(path, headers=_h(tokens["operator"])).status_code in (200, 404), path


def test_a_fleet_token_cannot_declare_or_upload_for_another_fleets_drone(two_fleets):
    client, tokens, url = two_fleets
    bad = {"drone_id": "UAV-21", "files": [{"name": "b.jpg", "size": 1, "sha256": "b" * 64}]}
    r = client.post("/flights/F21/manifest", json=bad, headers=_h(tokens["fleet1"]))
    assert r.status_code == 403 and "not in this token's fleet fleet1" in r.json()["detail"]
    r = client.put("/flights/F21/files/a.jpg", params={"offset": 0}, content=b"abc", headers=_h(tokens["fleet1"]))
    assert r.status_code == 403
    with session_scope(url) as s:  # the manifest the cloud holds is still fleet2's
        from cloud.models import Upload

        names = sorted(u.name for u in s.scalars(select(Upload).where(Upload.flight_id == "F21")))
    assert names == ["a.jpg", "manifest.json"]  # b.jpg never declared


def test_no_flight_is_declared_for_a_drone_that_does_not_exist(two_fleets):
    client, tokens, url = two_fleets
    ghost = {"drone_id": "UAV-99", "files": []}
    r = client.post("/flights/G1/manifest", json=ghost, headers=_h(tokens["fleet1"]))
    assert r.status_code == 404 and r.json()["detail"].startswith("unknown drone UAV-99")
    with session_scope(url) as s:
        assert s.get(Drone, "UAV-99") is None


def test_a_drone_token_acts_only_for_its_drone(two_fleets):
    client, tokens, _ = two_fleets
    h = _h(tokens["uav07"])
    assert client.post("/flights/F7/manifest", json={"drone_id": "UAV-07", "files": []}, headers=h).status_code == 200
    r = client.post("/flights/F8/manifest", json={"drone_id": "UAV-08", "files": []}, headers=h)
    assert r.status_code == 403 and "drone UAV-07's" in r.json()["detail"]
    r = client.put("/flights/F8/track", json={"drone_id": "UAV-08", "points": [[25.3, 103.1]]}, headers=h)
    assert r.status_code == 403
    # the fleet's own token may act for every drone of the fleet
    r = client.put("/flights/F8/track", json={"drone_id": "UAV-08", "points": [[25.3, 103.1]]},
                   headers=_h(tokens["fleet1"]))
    assert r.status_code == 200, r.text
    r = client.put("/flights/F21/track", json={"drone_id": "UAV-21", "points": [[25.3, 103.1]]},
                   headers=_h(tokens["fleet1"]))
    assert r.status_code == 403


def test_tokens_name_their_fleet_and_a_drone_keeps_its_fleet(two_fleets):
    client, _, url = two_fleets
    with session_scope(url) as s:
        with pytest.raises(ValueError, match="belongs to one fleet"):
            create_token(s, "x", "fleet")
        with pytest.raises(ValueError, match="drone UAV-21 is in fleet fleet2"):
            create_token(s, "x", "fleet", "fleet1", "UAV-21")
        with pytest.raises(ValueError, match="names no fleet"):
            create_token(s, "x", "operator", "fleet1")
    with session_scope(url) as s:
        admin = create_token(s, "root", "admin")
    r = client.post("/tokens", json={"name": "g", "role": "fleet"}, headers=_h(admin))
    assert r.status_code == 400 and "belongs to one fleet" in r.json()["detail"]
    r = client.post("/tokens", json={"name": "g", "role": "fleet", "fleet": "fleet3", "drone": "UAV-31"},
                    headers=_h(admin))
    assert r.status_code == 201 and r.json()["fleet"] == "fleet3"
    listed = {t["name"]: t for t in client.get("/tokens", headers=_h(admin)).json()}
    assert (listed["g"]["fleet"], listed["g"]["drone"]) == ("fleet3", "UAV-31")
    with session_scope(url) as s:
        assert s.get(Drone, "UAV-31").fleet == "fleet3"


def test_an_alert_under_another_fleets_topic_is_refused_and_the_drone_told(two_fleets):
    _, _, url = two_fleets
    with session_scope(url) as s, pytest.raises(IngestError, match="drone UAV-08 is in fleet fleet1") as exc:
        record(s, "pli/fleet3/UAV-08/alerts", _alert("UAV-08", 2, "F8"))
    assert exc.value.refusal == ("fleet3", "UAV-08", _id("UAV-08", 2))
    with session_scope(url) as s:
        results, _ = record_batch(s, [("pli/fleet2/UAV-08/alerts", _alert("UAV-08", 3, "F8")),
                                      ("pli/fleet1/UAV-08/alerts", _alert("UAV-08", 4, "F8"))])
    assert isinstance(results[0], IngestError) and "fleet fleet1" in str(results[0])
    assert results[1].verdict == "new"
    with session_scope(url) as s:
        held = sorted(s.scalars(select(Alert.id).where(Alert.drone_id == "UAV-08")))
    assert held == [_id("UAV-08", 1), _id("UAV-08", 4)]


def test_a_lost_drone_is_revoked_by_the_cli_and_its_token_stops_working(tmp_path, monkeypatch):
    """The runbook's `pli cloud token revoke --drone`: every token of that drone, no other."""
    from cloud.tokens import lookup
    from pli.cli import main

    url = f"sqlite:///{tmp_path / 'pli.db'}"
    monkeypatch.setenv("PLI_DATABASE_URL", url)
    upgrade(url)
    with session_scope(url) as s:
        lost = [create_token(s, "uav-09", "fleet", "fleet1", "UAV-09"), create_token(s, "uav-09b", "fleet", "fleet1",
                                                                                    "UAV-09")]
        kept = create_token(s, "uav-10", "fleet", "fleet1", "UAV-10")
    assert main(["cloud", "token", "revoke", "--drone", "UAV-09"]) == 0
    assert main(["cloud", "token", "revoke", "--drone", "UAV-09"]) == 1  # nothing live left to revoke
    with session_scope(url) as s:
        assert [lookup(s, t) for t in lost] == [None, None]
        assert lookup(s, kept).drone == "UAV-10"
    assert main(["cloud", "token", "revoke"]) == 2  # a revoke that names nothing is an error, not "all"
