"""Flight upload after landing: resumable, checked by sha256, idempotent; photos linked to their
alerts and served only to a logged-in operator or a valid token; the object store as a local
folder and, in server mode, an S3 emulator (moto's server: an emulator, not AWS)."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cloud.alerts import record, record_batch
from cloud.api.app import create_app
from cloud.db import session_scope, upgrade
from cloud.models import Alert, Image, Upload
from cloud.tokens import create_token
from cloud.upload_client import collect, hashes, upload
from comms import alert_json
from comms.alert import Alert as Record
from comms.classes import Severity

T0 = datetime(2026, 11, 22, 9, tzinfo=UTC)


def make_flight(root: Path, frames: int = 3, flight_id: str = "F7") -> Path:
    """A landed flight as the drone leaves it: photos, telemetry, flight.json."""
    rng = np.random.default_rng(7)
    (root / "images").mkdir(parents=True)
    for i in range(frames):
        img = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "images" / f"DJI_{i:04d}.JPG"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    (root / "telemetry.csv").write_text("frame,time,lat,lon,alt\n" + "".join(
        f"{i},2026-11-22T09:00:0{i}Z,25.30{i},103.10{i},1600\n" for i in range(frames)))
    (root / "flight.json").write_text(json.dumps({"flight_id": flight_id, "frames": frames}))
    return root


@pytest.fixture
def cloud(tmp_path, monkeypatch):
    """The app on a fresh SQLite database with a local object store, a fleet and an operator
    token, and two alerts of flight F7 taken from photos 0 and 2."""
    monkeypatch.setenv("PLI_CLOUD_DIR", str(tmp_path / "cloud"))
    monkeypatch.delenv("PLI_OBJECT_STORE", raising=False)
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    with session_scope(url) as s:
        tokens = {r: create_token(s, f"{r}-1", r, "fleet1" if r == "fleet" else None) for r in ("fleet", "operator")}
    for seq, frame in ((1, "DJI_0000.JPG"), (2, "DJI_0002.JPG")):
        a = Record("UAV-07", seq, "F7", T0 + timedelta(seconds=seq), 25.3, 103.1, 1600.0, "defect", 0.9,
                   Severity.HIGH, position_source="laser", epoch=1, class_list_version=1, source_frame=frame)
        with session_scope(url) as s:
            record(s, "pli/fleet1/UAV-07/alerts", alert_json.dumps(a, b"\xff\xd8crop"))
    return TestClient(create_app(url)), tokens, url


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_an_interrupted_upload_resumes_and_a_second_run_sends_nothing(cloud, tmp_path):
    client, tokens, url = cloud
    flight = make_flight(tmp_path / "flight")
    total = sum(p.stat().st_size for p in flight.rglob("*") if p.is_file())  # before the hash cache exists
    held: dict[str, int] = {}  # what the cloud took before the interruption

    def pull_the_plug(name: str, offset: int) -> None:
        held[name] = offset
        if len(held) == 2 and offset > 64 << 10:
            raise KeyboardInterrupt  # the crew closes the laptop mid-upload, a file half sent

    with pytest.raises(KeyboardInterrupt):
        upload(flight, "", tokens["fleet"], "UAV-07", chunk=64 << 10, progress=False, client=client,
               on_chunk=pull_the_plug)
    resumed = upload(flight, "", tokens["fleet"], "UAV-07", chunk=64 << 10, progress=False, client=client)
    assert resumed.refused == [] and resumed.already == 1 and resumed.stored == 4 and resumed.files == 5
    assert resumed.bytes_sent == total - sum(held.values())  # only the rest: nothing sent twice
    again = upload(flight, "", tokens["fleet"], "UAV-07", progress=False, client=client)
    assert again.bytes_sent == 0 and again.already == 5 and again.stored == 0
    with session_scope(url) as s:
        stored = {u.name: u for u in s.scalars(select(Upload))}
    assert {n for n, u in stored.items() if u.status == "stored"} == {
        "images/DJI_0000.JPG", "images/DJI_0001.JPG", "images/DJI_0002.JPG", "telemetry.csv", "flight.json",
        "manifest.json"}
    objects = tmp_path / "cloud" / "objects" / "flights" / "F7"
    for name in ("images/DJI_0001.JPG", "telemetry.csv"):
        assert _sha(objects / name) == _sha(flight / name) == stored[name].sha256
    assert json.loads((objects / "manifest.json").read_text())["drone_id"] == "UAV-07"
    assert not list((tmp_path / "cloud" / "staging").glob("*.part"))  # nothing left half-way


def test_a_corrupted_file_is_refused_by_its_hash_and_sent_again_next_time(cloud, tmp_path):
    client, tokens, _ = cloud
    flight = make_flight(tmp_path / "flight", frames=1)
    h = {"Authorization": f"Bearer {tokens['fleet']}"}
    photo = flight / "images" / "DJI_0000.JPG"
    good = photo.read_bytes()
    manifest = {"drone_id": "UAV-07", "files": [{"name": "images/DJI_0000.JPG", "size": len(good),
                                                  "sha256": hashlib.sha256(good).hexdigest(), "kind": "photo"}]}
    assert client.post("/flights/F7/manifest", json=manifest, headers=h).status_code == 200
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF  # one flipped bit on the card
    r = client.put("/flights/F7/files/images/DJI_0000.JPG", params={"offset": 0}, content=bytes(bad), headers=h)
    assert r.status_code == 422 and "sha256" in r.json()["detail"] and "\n" not in r.json()["detail"]
    wrong = client.put("/flights/F7/files/images/DJI_0000.JPG", params={"offset": 5}, content=b"x", headers=h)
    assert wrong.status_code == 409 and "offset 0" in wrong.json()["detail"]  # the refused bytes were dropped
    # A file that changes under the client's hash cache (same size and time) goes out with a stale
    # hash: the cloud refuses it, and the next run, with the file right, stores it.
    other = make_flight(tmp_path / "flight2", frames=1, flight_id="F8")
    photo = other / "images" / "DJI_0000.JPG"
    hashes(other, collect(other), progress=False)  # the cache, as a run that failed to connect left it
    stat = photo.stat()
    photo.write_bytes(bytes(bad))
    os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    refused = upload(other, "", tokens["fleet"], "UAV-07", progress=False, client=client)
    assert refused.refused == ["images/DJI_0000.JPG"] and refused.stored == 2  # the telemetry went
    photo.write_bytes(good)
    fixed = upload(other, "", tokens["fleet"], "UAV-07", progress=False, client=client)
    assert fixed.refused == [] and fixed.stored == 1 and fixed.already == 2


def test_alerts_point_at_their_photos_served_only_with_a_login_or_token(cloud, tmp_path):
    client, tokens, url = cloud
    flight = make_flight(tmp_path / "flight")
    upload(flight, "", tokens["fleet"], "UAV-07", progress=False, client=client)
    with session_scope(url) as s:
        by_id = {a.seq: a for a in s.scalars(select(Alert))}
        images = {i.id: i.name for i in s.scalars(select(Image))}
    assert images[by_id[1].image_id] == "images/DJI_0000.JPG" and images[by_id[2].image_id] == "images/DJI_0002.JPG"
    # an alert that reaches the cloud after the upload (its 4G copy, late) points at its photo too
    late = Record("UAV-07", 3, "F7", T0 + timedelta(seconds=3), 25.3, 103.1, 1600.0, "defect", 0.9, Severity.HIGH,
                  position_source="laser", epoch=1, class_list_version=1, source_frame="DJI_0001.JPG")
    with session_scope(url) as s:
        results, _ = record_batch(s, [("pli/fleet1/UAV-07/alerts", alert_json.dumps(late))])
        assert results[0].verdict == "new"
    with session_scope(url) as s:
        assert images[s.get(Alert, late.id).image_id] == "images/DJI_0001.JPG"
    photo_url = f"/alerts/{by_id[2].id}/photo"
    assert client.get(photo_url).status_code == 401
    assert client.get(f"/alerts/{by_id[2].id}/crop.jpg").status_code == 401
    assert client.get("/flights/F7/files/images/DJI_0002.JPG").status_code == 401
    got = client.get(photo_url, headers={"Authorization": f"Bearer {tokens['operator']}"})
    assert got.status_code == 200 and got.content == (flight / "images" / "DJI_0002.JPG").read_bytes()
    assert got.headers["content-type"] == "image/jpeg"
    # an operator may look but not upload; a file outside the manifest is refused
    h = {"Authorization": f"Bearer {tokens['operator']}"}
    assert client.post("/flights/F7/manifest", json={"drone_id": "UAV-07", "files": []}, headers=h).status_code == 403
    hf = {"Authorization": f"Bearer {tokens['fleet']}"}
    r = client.put("/flights/F7/files/other.jpg", params={"offset": 0}, content=b"x", headers=hf)
    assert r.status_code == 404 and "manifest" in r.json()["detail"]
    r = client.post("/flights/F7/manifest", json={"drone_id": "UAV-07", "files": [
        {"name": "../etc/passwd", "size": 1, "sha256": "0" * 64, "kind": "other"}]}, headers=hf)
    assert r.status_code == 400 and "clean relative path" in r.json()["detail"]


def test_the_object_store_in_server_mode_against_an_s3_emulator(tmp_path, monkeypatch):
    """moto's S3 server on loopback (an emulator, stated as such): the same upload lands in a
    bucket through boto3, and the photo comes back through the API."""
    from moto.server import ThreadedMotoServer

    from comms.local_broker import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                     "PLI_OBJECT_STORE": "s3://pli-flights/fleet1", "PLI_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                     "PLI_CLOUD_DIR": str(tmp_path / "cloud")}.items():
            monkeypatch.setenv(k, v)
        import boto3

        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}")
        s3.create_bucket(Bucket="pli-flights")
        url = f"sqlite:///{tmp_path / 'cloud.db'}"
        upgrade(url)
        with session_scope(url) as s:
            fleet = create_token(s, "f", "fleet", "fleet1", "UAV-07")
            operator = create_token(s, "o", "operator")
        client = TestClient(create_app(url))
        flight = make_flight(tmp_path / "flight", frames=2)
        done = upload(flight, "", fleet, "UAV-07", chunk=100 << 10, progress=False, client=client)
        assert done.stored == 4 and done.refused == []
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="pli-flights")["Contents"]}
        assert {"fleet1/flights/F7/images/DJI_0001.JPG", "fleet1/flights/F7/manifest.json"} <= keys
        body = s3.get_object(Bucket="pli-flights", Key="fleet1/flights/F7/images/DJI_0001.JPG")["Body"].read()
        assert body == (flight / "images" / "DJI_0001.JPG").read_bytes()
        got = client.get("/flights/F7/files/images/DJI_0001.JPG", headers={"Authorization": f"Bearer {operator}"})
        assert got.status_code == 200 and got.content == body
    finally:
        server.stop()


@pytest.mark.parametrize("flight_id", ["%2E", "%2E%2E", ".hidden", "F7%00", "x" * 65, "%E2%80%AE"])
def test_a_flight_id_that_is_no_clean_folder_name_is_a_clean_400(cloud, flight_id):
    """`.`, `..` or NUL used to reach the object store and answer 500; the boundary refuses them."""
    client, tokens, _ = cloud
    h = {"Authorization": f"Bearer {tokens['fleet']}"}
    ho = {"Authorization": f"Bearer {tokens['operator']}"}
    manifest = {"drone_id": "UAV-07", "files": [{"name": "a.jpg", "size": 3, "sha256": "0" * 64}]}
    answers = [client.post(f"/flights/{flight_id}/manifest", json=manifest, headers=h),
               client.put(f"/flights/{flight_id}/files/a.jpg", params={"offset": 0}, content=b"abc", headers=h),
               client.get(f"/flights/{flight_id}/uploads", headers=ho),
               client.get(f"/flights/{flight_id}", headers=ho)]
    for r in answers:
        assert r.status_code in (400, 404, 422) and "flight_id" in r.text, (r.request.url, r.status_code, r.text)
