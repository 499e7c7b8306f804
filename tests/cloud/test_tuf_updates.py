"""Signed model updates (TUF): the drone's update client against the cloud's repository served by
`pli cloud serve` on loopback. Every attack the issue lists is refused with one line, and what
should be taken is: a release for the drone's group, an operator's rollback (a newer version
naming old files), a root rotation signed by old and new keys."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Timestamp

from cloud.db import session_scope, upgrade
from cloud.local_server import CloudServer
from cloud.registry import keys
from cloud.registry.tuf_repo import TufRepo
from cloud.tokens import create_token
from edge.update import UpdateClient, UpdateRefused, install_root

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`pli cloud serve` with its TUF repository in a folder the tests write (and tamper with), and
    the online signing keys in its environment (as files), as a deployment has them."""
    work = tmp_path_factory.mktemp("tuf")
    url = f"sqlite:///{work / 'cloud.db'}"
    upgrade(url)
    with session_scope(url) as s:
        fleet = create_token(s, "uav-07", "fleet", "fleet1")
        operator = create_token(s, "ops", "operator")
        admin = create_token(s, "release-manager", "admin")
    env = {**os.environ, "PLI_DATABASE_URL": url, "PLI_CLOUD_DIR": str(work / "cloud"),
           "PLI_TUF_DIR": str(work / "repo")}
    for role in keys.ONLINE_ROLES:
        keys.generate(work / "online" / f"{role}.pem")
        env[f"PLI_TUF_{role.upper()}_KEY_FILE"] = str(work / "online" / f"{role}.pem")
    with CloudServer(env) as server:
        yield Served(server.base, work / "repo", fleet, operator, admin, env)


class Served(NamedTuple):
    base: str
    repo: Path
    fleet: str  # tokens of each role
    operator: str
    admin: str
    env: dict  # the server's environment (its online key files among it)


@pytest.fixture
def fleet_repo(server, tmp_path):
    """A fresh repository (3 offline root keys, threshold 2; online keys), release 1.0 for the
    canary group, and a drone of that group with the root installed."""
    base, repo_dir, token = server.base, server.repo, server.fleet
    shutil.rmtree(repo_dir, ignore_errors=True)
    root_keys = [keys.generate(tmp_path / "offline" / f"root-{i}.pem") for i in range(3)]
    root_signers = [keys.load_signer(tmp_path / "offline" / f"root-{i}.pem") for i in range(3)]
    online = {r: keys.load_signer(Path(server.env[f"PLI_TUF_{r.upper()}_KEY_FILE"]))
              for r in keys.ONLINE_ROLES}  # the server's own: it signs promotions with them
    repo = TufRepo.create(repo_dir, root_keys, root_signers[:2], online, threshold=2)
    model = tmp_path / "model.onnx"
    model.write_bytes(os.urandom(40_000))
    repo.release("1.0", {"model.onnx": model}, ["canary"], online)
    drone = tmp_path / "drone"
    install_root(drone, (repo_dir / "metadata" / "1.root.json").read_bytes())
    return repo, online, root_signers, UpdateClient(drone, base, token, "canary"), model


def test_a_release_for_the_drones_group_is_taken_and_nothing_without_a_token(fleet_repo, server):
    client, model = fleet_repo[3], fleet_repo[4]
    release = client.check()
    assert release.version == "1.0" and release.files["models/1.0/model.onnx"].read_bytes() == model.read_bytes()
    base = server.base
    assert httpx.get(f"{base}/tuf/metadata/timestamp.json").status_code == 401
    assert httpx.get(f"{base}/tuf/metadata/timestamp.json",
                     headers={"Authorization": f"Bearer {server.operator}"}).status_code == 403  # operators: no
    assert httpx.get(f"{base}/tuf/targets/../../cloud.db", headers={"Authorization": f"Bearer {server.fleet}"}
                     ).status_code == 404


def test_a_tampered_file_is_refused(fleet_repo):
    repo, client = fleet_repo[0], fleet_repo[3]
    (stored,) = (repo.targets_dir / "models" / "1.0").glob("*.model.onnx")
    data = bytearray(stored.read_bytes())
    data[100] ^= 1
    stored.write_bytes(bytes(data))
    with pytest.raises(UpdateRefused, match="update refused") as info:
        client.check()
    assert "\n" not in str(info.value)


def test_a_refused_update_keeps_the_model_and_is_reported(fleet_repo, flight, tmp_path, caplog):
    """Whatever TUF refuses (here a tampered file): the flight goes on with its model, one log
    line says why, and the drone's status report carries the refusal for the cloud."""
    import json

    from comms.outbox import Outbox
    from edge.runtime import RunConfig, run_flight
    from edge.update import UpdateLoop

    repo, client = fleet_repo[0], fleet_repo[3]
    (stored,) = (repo.targets_dir / "models" / "1.0").glob("*.model.onnx")
    stored.write_bytes(stored.read_bytes()[:-1] + b"x")
    shipped = ROOT / "models" / "pli-default.onnx"
    status = tmp_path / "status.json"
    with caplog.at_level("WARNING", logger="edge.update"):
        summary = run_flight(flight.out / "images", shipped, Outbox(tmp_path / "outbox.db", "UAV-07"),
                             RunConfig(flight_id="F-t", updates=UpdateLoop(client, tmp_path / "m", 3600),
                                       status=status), progress=False)
    assert summary.swaps == 0 and summary.model == "pli-default.onnx"
    lines = [r.getMessage() for r in caplog.records if "update refused" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]
    report = json.loads(status.read_text())
    card_version = json.loads(shipped.with_suffix(".json").read_text())["version"]
    assert report["model"] == f"pli-default/{card_version}" and report["state"] == "given"
    assert [r["model"] for r in report["refused"]] == ["update"] and "update refused" in report["refused"][0]["reason"]


def _forge_timestamp(repo: TufRepo, signer, expires: datetime, version: int | None = None) -> None:
    old = repo.load("timestamp").signed
    ts = Timestamp(version=version or old.version + 1, expires=expires,
                   snapshot_meta=MetaFile(old.snapshot_meta.version))
    md = Metadata(ts)
    md.sign(signer)
    (repo.metadata_dir / "timestamp.json").write_bytes(md.to_bytes())


def test_wrongly_signed_and_expired_metadata_are_refused(fleet_repo):
    repo, online, _, client, _ = fleet_repo
    _forge_timestamp(repo, CryptoSigner.generate_ed25519(), datetime.now(UTC) + timedelta(days=1))  # a stranger's key
    with pytest.raises(UpdateRefused, match="UnsignedMetadataError"):
        client.check()
    _forge_timestamp(repo, online["timestamp"], datetime.now(UTC) - timedelta(minutes=1))  # frozen
    with pytest.raises(UpdateRefused, match="ExpiredMetadataError"):
        client.check()
    repo.refresh_timestamp(online["timestamp"])  # the cloud re-signs it: taken again
    assert client.check().version == "1.0"


def test_older_metadata_replayed_is_refused_but_an_operators_rollback_is_taken(fleet_repo, tmp_path):
    repo, online, _, client, model = fleet_repo
    assert client.check().version == "1.0"
    old_timestamp = (repo.metadata_dir / "timestamp.json").read_bytes()
    v2 = tmp_path / "model-2.onnx"
    v2.write_bytes(os.urandom(30_000))
    repo.release("2.0", {"model.onnx": v2}, ["canary"], online)
    assert client.check().version == "2.0"
    current = (repo.metadata_dir / "timestamp.json").read_bytes()
    (repo.metadata_dir / "timestamp.json").write_bytes(old_timestamp)  # a mirror replays 1.0's
    with pytest.raises(UpdateRefused, match=r"BadVersionNumberError|older"):
        client.check()
    (repo.metadata_dir / "timestamp.json").write_bytes(current)
    repo.release("1.0", {"model.onnx": model}, ["canary"], online)  # the operator's rollback: newer metadata
    release = client.check()
    assert release.version == "1.0" and release.files["models/1.0/model.onnx"].read_bytes() == model.read_bytes()


def test_mix_and_match_of_metadata_versions_is_refused(fleet_repo, tmp_path):
    repo, online, _, client, _ = fleet_repo
    v2 = tmp_path / "model-2.onnx"
    v2.write_bytes(os.urandom(1000))
    repo.release("2.0", {"model.onnx": v2}, ["canary"], online)
    snap = repo.load("timestamp").signed.snapshot_meta.version
    # the snapshot the timestamp names, swapped for the previous one under its name
    shutil.copyfile(repo.metadata_dir / f"{snap - 1}.snapshot.json", repo.metadata_dir / f"{snap}.snapshot.json")
    with pytest.raises(UpdateRefused, match="update refused"):
        client.check()


def test_root_rotation_needs_old_and_new_thresholds(fleet_repo, tmp_path):
    repo, _, root_signers, client, _ = fleet_repo
    assert client.check().version == "1.0"
    new_keys = [keys.generate(tmp_path / "new" / f"root-{i}.pem") for i in range(3)]
    new_signers = [keys.load_signer(tmp_path / "new" / f"root-{i}.pem") for i in range(3)]
    saved = (repo.metadata_dir / "root.json").read_bytes()
    repo.rotate_root(new_keys, root_signers[:1], new_signers[:2])  # one old key: below the old threshold
    with pytest.raises(UpdateRefused, match=r"UnsignedMetadataError|threshold"):
        client.check()
    for f in repo.metadata_dir.glob("2.root.json"):
        f.unlink()
    (repo.metadata_dir / "root.json").write_bytes(saved)
    repo.rotate_root(new_keys, root_signers[1:], new_signers[:2])  # two old and two new: taken
    assert client.check().version == "1.0"
    trusted = (client.state_dir / "metadata" / "root.json").read_bytes()
    assert trusted == (repo.metadata_dir / "2.root.json").read_bytes()


def test_an_oversized_download_and_a_release_for_another_group_are_refused(fleet_repo, tmp_path, server):
    repo, online, _, client, _ = fleet_repo
    small = UpdateClient(client.state_dir, server.base, server.fleet, "canary", max_bytes=10_000)
    with pytest.raises(UpdateRefused, match="over the 10000 allowed"):
        small.check()
    # the canary index made to point at a file signed for the fleet group only
    big = tmp_path / "fleet-model.onnx"
    big.write_bytes(os.urandom(5000))
    repo.release("3.0", {"model.onnx": big}, ["fleet"], online)
    targets = repo.targets()
    import json

    forged = repo.add_data(json.dumps({"version": "3.0", "files": ["models/3.0/model.onnx"]}).encode(),
                           "groups/canary/release.json", {"release": "3.0", "groups": ["canary"]})
    targets["groups/canary/release.json"] = forged
    repo.publish(targets, online)
    with pytest.raises(UpdateRefused, match="not for this drone's group canary"):
        client.check()


def test_the_cli_makes_keys_a_repository_and_a_release_a_drone_takes(server, tmp_path):
    """`pli cloud tuf keygen | init | publish | timestamp` as an operator runs them: root keys as
    offline files (one given only as its public half), online keys from the environment."""
    base, repo_dir, token = server.base, server.repo, server.fleet
    shutil.rmtree(repo_dir, ignore_errors=True)
    env = {**os.environ, "PLI_TUF_DIR": str(repo_dir)}
    off, on = tmp_path / "offline", tmp_path / "online"

    def pli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "pli", "-q", "cloud", "tuf", *args], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    pli("keygen", *(str(off / f"root-{i}.pem") for i in range(3)), *(str(on / f"{r}.pem") for r in keys.ONLINE_ROLES))
    assert (off / "root-0.pem").stat().st_mode & 0o777 == 0o600
    for r in keys.ONLINE_ROLES:
        env[f"PLI_TUF_{r.upper()}_KEY_FILE"] = str(on / f"{r}.pem")
    pli("init", "--root-key", str(off / "root-0.pem"), "--root-key", str(off / "root-1.pem"),
        "--root-key", str(off / "root-2.pub.json"))
    model = tmp_path / "pli-next.onnx"
    model.write_bytes(os.urandom(2048))
    assert "signed for canary" in pli("publish", "2026.12.01", str(model), "--group", "canary")
    pli("timestamp")
    install_root(tmp_path / "drone", (repo_dir / "metadata" / "1.root.json").read_bytes())
    got = UpdateClient(tmp_path / "drone", base, token, "canary").check()
    assert got.version == "2026.12.01"
    assert got.files["models/2026.12.01/pli-next.onnx"].read_bytes() == model.read_bytes()
    assert UpdateClient(tmp_path / "drone", base, token, "fleet").check() is None  # nothing for the fleet yet


def test_a_running_flight_takes_a_signed_release_through_probation(fleet_repo, server, flight, tmp_path,
                                                                   monkeypatch):
    """`run_flight` with the update loop: the canary release (the shipped model re-released, with
    its card and golden frames) is verified, staged and swapped in between frames; a release
    for another group is not staged at all."""
    import hashlib
    import json

    import cv2

    from comms.outbox import Outbox
    from edge import golden
    from edge.detector import Detector
    from edge.runtime import RunConfig, run_flight
    from edge.update import UpdateLoop

    repo, online, _, client, _ = fleet_repo
    shipped = ROOT / "models" / "pli-default.onnx"
    images = {p.name: cv2.imread(str(p)) for p in sorted((flight.out / "images").glob("*.jpg"))}
    rel = tmp_path / "rel"
    rel.mkdir()
    shutil.copyfile(shipped, rel / "pli-next.onnx")
    (rel / "pli-next.golden.json").write_text(json.dumps(golden.make(Detector(shipped), images, 0.25)))
    card = {**json.loads(shipped.with_suffix(".json").read_text()), "version": "2026.12.01",
            "sha256": hashlib.sha256((rel / "pli-next.onnx").read_bytes()).hexdigest(),
            "golden": "pli-next.golden.json"}
    (rel / "pli-next.json").write_text(json.dumps(card))
    repo.release("2026.12.01", {p.name: p for p in rel.iterdir()}, ["canary"], online)
    from edge import model_state

    monkeypatch.setattr(model_state, "GOOD_AFTER_FRAMES", 5)
    loop = UpdateLoop(client, tmp_path / "models", every_s=3600)
    state = tmp_path / "models" / "state.json"
    outbox = Outbox(tmp_path / "o" / "outbox.db", "UAV-07")
    status = tmp_path / "status.json"
    summary = run_flight(flight.out / "images", shipped, outbox,
                         RunConfig(drone_id="UAV-07", flight_id="F-up", updates=loop, state=state, status=status),
                         progress=False)
    assert loop.installed == ["2026.12.01"] and summary.swaps == 1 and summary.model == "pli-next.onnx"
    report = json.loads(status.read_text())  # what the link reports: the release, past its trial
    assert (report["model"], report["release"], report["state"]) == ("pli-next/2026.12.01", "2026.12.01", "good")
    assert report["last_good"] == "pli-next/2026.12.01" and report["refused"] == []
    assert (tmp_path / "models" / "2026.12.01" / "pli-next.golden.json").exists()
    kept = model_state.ModelState.load(state)  # it ran its trial: the last good model now
    assert kept.current.endswith("2026.12.01/pli-next.onnx") and not kept.trial and kept.last_good == kept.current
    again = run_flight(flight.out / "images", shipped, outbox,  # a restart (power cut): the model it ran
                       RunConfig(drone_id="UAV-07", flight_id="F-up2", state=state), progress=False)
    assert again.model == "pli-next.onnx" and again.swaps == 0
    fleet = UpdateLoop(UpdateClient(client.state_dir, server.base, server.fleet, "fleet"), tmp_path / "fleet-models")
    assert fleet.check_once() is None and not (tmp_path / "fleet-models").exists()  # signed for canary only



def test_a_release_rolls_out_canary_then_fleet_and_back_through_the_api(fleet_repo, server, flight, tmp_path):
    """End to end on loopback: record a release (`pli cloud release add`), promote it to the
    canary group through the API, a running flight picks it up between frames, the deployments
    show it; approve to the fleet (the canary's health shown); roll back; an operator token can
    do none of the three."""
    import hashlib
    import json

    import cv2

    from comms.outbox import Outbox
    from edge import golden
    from edge.detector import Detector
    from edge.runtime import ModelSlot, RunConfig, run_flight
    from edge.update import UpdateLoop

    base, token, operator, env, admin = server.base, server.fleet, server.operator, server.env, server.admin
    shipped = ROOT / "models" / "pli-default.onnx"
    images = {p.name: cv2.imread(str(p)) for p in sorted((flight.out / "images").glob("*.jpg"))}
    made = golden.make(Detector(shipped), images, 0.25)

    def release_files(version: str) -> list[Path]:
        rel = tmp_path / version
        rel.mkdir()
        shutil.copyfile(shipped, rel / "pli-next.onnx")
        (rel / "pli-next.golden.json").write_text(json.dumps(made))
        card = {**json.loads(shipped.with_suffix(".json").read_text()), "version": version,
                "sha256": hashlib.sha256((rel / "pli-next.onnx").read_bytes()).hexdigest(),
                "golden": "pli-next.golden.json"}
        (rel / "pli-next.json").write_text(json.dumps(card))
        return sorted(rel.iterdir())

    for version in ("2026.12.01", "2026.12.02"):
        out = subprocess.run([sys.executable, "-m", "pli", "-q", "cloud", "release", "add", version,
                              *map(str, release_files(version))], env=env, cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
    h = {"Authorization": f"Bearer {admin}"}
    ops = {"Authorization": f"Bearer {operator}"}
    assert httpx.post(f"{base}/releases/2026.12.01/promote", json={"group": "canary"}, headers=ops).status_code == 403
    assert httpx.post(f"{base}/releases/2026.12.01/approve", headers=ops).status_code == 403
    assert httpx.post(f"{base}/rollback", json={"group": "fleet", "to": "2026.12.01"}, headers=ops).status_code == 403
    early = httpx.post(f"{base}/releases/2026.12.01/approve", headers=h)
    assert early.status_code == 409 and "canary" in early.json()["detail"]  # not before the canary
    assert httpx.post(f"{base}/releases/2026.12.01/promote", json={"group": "canary"}, headers=h).status_code == 200
    root = (fleet_repo[0].metadata_dir / "1.root.json").read_bytes()
    install_root(tmp_path / "canary", root)
    canary = UpdateClient(tmp_path / "canary", base, token, "canary")
    loop = UpdateLoop(canary, tmp_path / "canary" / "models", every_s=3600)
    status = tmp_path / "canary" / "status.json"
    summary = run_flight(flight.out / "images", shipped, Outbox(tmp_path / "o" / "outbox.db", "UAV-07"),
                         RunConfig(drone_id="UAV-07", flight_id="F-roll", updates=loop, status=status,
                                   state=tmp_path / "canary" / "models" / "state.json", fleet="fleet1"),
                         progress=False)
    assert summary.swaps == 1 and loop.installed == ["2026.12.01"]
    from cloud.registry import fleet_status
    from comms.mqtt_link import status_topic

    with session_scope(env["PLI_DATABASE_URL"]) as s:  # what the link publishes and the cloud's watcher records
        fleet_status.record(s, status_topic("fleet1", "UAV-07"), status.read_bytes())  # (test_fleet_status.py)
    deployments = httpx.get(f"{base}/deployments", headers=ops).json()
    assert [(d["version"], d["target"], d["status"]) for d in deployments] == [
        ("2026.12.01", "canary", "announced"), ("2026.12.01", "UAV-07", "trial")]  # the drone runs it, on trial
    approved = httpx.post(f"{base}/releases/2026.12.01/approve", headers=h).json()
    assert approved["group"] == "fleet" and approved["canary_health"]["deployed_to"] == ["canary"]
    install_root(tmp_path / "fleet", root)
    fleet = UpdateClient(tmp_path / "fleet", base, token, "fleet")
    drone = UpdateLoop(fleet, tmp_path / "fleet" / "models", every_s=3600)  # a fleet drone, running
    slot = ModelSlot(shipped, None, None, drone)
    drone.check_once()
    slot.maybe_swap(None)
    assert slot.path.parent.name == "2026.12.01" and slot.swaps == 1
    httpx.post(f"{base}/releases/2026.12.02/promote", json={"group": "canary"}, headers=h).raise_for_status()
    httpx.post(f"{base}/releases/2026.12.02/approve", headers=h).raise_for_status()
    drone.check_once()
    slot.maybe_swap(None)
    assert slot.path.parent.name == "2026.12.02" and slot.swaps == 2
    back = httpx.post(f"{base}/rollback", json={"group": "fleet", "to": "2026.12.01"}, headers=h)
    assert back.status_code == 200 and fleet.check().version == "2026.12.01"  # a newer version naming old files
    assert drone.check_once() is None  # staged before: nothing to download again...
    slot.maybe_swap(None)  # ...but the running drone goes back to it, between frames
    assert slot.path.parent.name == "2026.12.01" and slot.swaps == 3
    shown = httpx.get(f"{base}/releases/2026.12.01", headers=ops).json()
    assert [(x["group"], bool(x.get("rollback"))) for x in shown["rollout"]] == [
        ("canary", False), ("fleet", False), ("fleet", True)]


def test_a_drones_group_changes_only_by_a_signed_assignment(fleet_repo, server, tmp_path):
    """Written at `device init` (canary here), moved by `drones/<id>/group.json` in the signed
    targets; an assignment for another drone moves nothing, and a forged one is refused."""
    import json

    repo, online, _, _, _ = fleet_repo
    fleet_model = tmp_path / "fleet.onnx"
    fleet_model.write_bytes(os.urandom(30_000))
    repo.release("0.9", {"fleet.onnx": fleet_model}, ["fleet"], online)
    drone = tmp_path / "uav07"
    install_root(drone, (repo.metadata_dir / "1.root.json").read_bytes())
    client = UpdateClient(drone, server.base, server.fleet, "canary", drone_id="UAV-07")
    assert client.check().version == "1.0" and client.group == "canary"
    repo.assign("UAV-08", "fleet1", "fleet", online)  # another drone: nothing changes here
    assert client.check().version == "1.0" and client.group == "canary"
    repo.assign("UAV-07", "fleet1", "fleet", online)
    assert client.check().version == "0.9" and client.group == "fleet"
    assert ("UAV-07", "fleet1", "fleet") in repo.assignments()
    from cloud.registry.acl import render

    assert "user fleet1/UAV-07\ntopic read pli/fleet1/groups/fleet/release" in render(repo.assignments())

    # A forged assignment: the file changed in the repository without a new signature.
    (stored,) = (repo.targets_dir / "drones" / "UAV-07").glob("*.group.json")
    stored.write_text(json.dumps({"drone": "UAV-07", "fleet": "fleet1", "group": "canary"}, sort_keys=True))
    install_root(tmp_path / "fresh", (repo.metadata_dir / "1.root.json").read_bytes())  # nothing cached
    moved = UpdateClient(tmp_path / "fresh", server.base, server.fleet, "fleet", drone_id="UAV-07")
    with pytest.raises(UpdateRefused, match="update refused"):
        moved.check()
    assert moved.group == "fleet"
    with pytest.raises(ValueError, match="plain name"):
        repo.assign("UAV-07\ntopic readwrite #", "fleet1", "fleet", online)
