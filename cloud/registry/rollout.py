"""Releases and their rollout: recorded once, signed for a group, canary first, then the fleet.

A release is a folder of files (each ONNX build with its model card and its golden frames),
kept under `<PLI_CLOUD_DIR>/registry/<version>/` and recorded in `model_releases` with every
file's sha256; it is never changed afterwards. Promoting it signs it for a group in the TUF
repository (cloud/registry/tuf_repo.py); approving it to the next group needs a canary
deployment first, and the canary's health (what operators found of its alerts) is shown on the
way; a rollback signs an older release for the group again, as a newer targets version.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.models import Alert, Deployment, ModelRelease
from cloud.paths import registry_dir, weights_dir
from cloud.registry import keys
from cloud.registry.fleet_status import release_figures
from cloud.registry.tuf_repo import TufRepo, repo_dir
from cloud.settings import secret, settings
from comms.mqtt_link import MqttConfig, announce_topic, make_client
from edge.model_card import ModelCard

GROUPS = ("canary", "fleet")  # in rollout order


class RolloutError(ValueError):
    """A rollout step that may not happen (one line); `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


def tuf_repo() -> TufRepo:
    return TufRepo(repo_dir())


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def release_json(r: ModelRelease) -> dict:
    """A release as the API and `pli cloud release list/show` show it."""
    return {"version": r.version, "class_list_version": r.class_list_version, "sha256": r.sha256,
            "created_at": r.created_at.isoformat(), "files": (r.card or {}).get("files", {}),
            "parent": (r.card or {}).get("parent"), "rollout": (r.card or {}).get("rollout", [])}


def check_new_version(session: Session, version: str) -> None:
    """Releases are immutable: refuse a version the registry holds (checked again by add_release;
    callers check first too, before minutes of exporting)."""
    if session.scalar(select(ModelRelease.id).where(ModelRelease.version == version)) is not None:
        raise RolloutError(f"release {version} exists: releases are immutable, give a new version")


def add_release(session: Session, version: str, files: list[Path], parent: str | None = None,
                weights: Path | None = None) -> ModelRelease:
    """Record a release from its files: every `.onnx` needs its card (`<stem>.json`, whose sha256
    matches) naming golden frames that lie among the files. `weights`: the PyTorch weights it was
    built from, kept beside the registry for the next learning run (never a TUF target)."""
    check_new_version(session, version)
    by_name = {f.name: f for f in files}
    models = [f for f in files if f.suffix == ".onnx"]
    if not models:
        raise RolloutError("a release holds at least one .onnx build", 400)
    cards = {}
    for m in models:
        card_file = by_name.get(ModelCard.path_for(m).name)
        if card_file is None:
            raise RolloutError(f"{m.name}: its model card {m.stem}.json is not among the files", 400)
        try:
            card = ModelCard.load(card_file)
        except ValueError as exc:
            raise RolloutError(str(exc), 400) from None
        if card.sha256 != _sha(m):
            raise RolloutError(f"{m.name}: sha256 differs from its card", 400)
        if card.version != version:
            raise RolloutError(f"{m.name}: its card says version {card.version!r}, not {version}", 400)
        if card.golden not in by_name:
            raise RolloutError(f"{m.name}: its card names no golden frames among the files", 400)
        cards[m.name] = card.to_dict()
    dest = registry_dir() / version
    dest.mkdir(parents=True, exist_ok=False)
    for f in files:
        shutil.copyfile(f, dest / f.name)
    if weights is not None:
        weights_dir().mkdir(parents=True, exist_ok=True)
        shutil.copy2(weights, weights_dir() / f"{version}.pt")
    first = cards[models[0].name]
    class_list_version = first.get("class_list_version")
    if class_list_version is None and first.get("classes"):
        from comms.classes import class_list_for

        try:  # a build made elsewhere: its class names say which list it packs alerts with
            class_list_version = class_list_for(first["classes"]).version
        except ValueError as exc:
            raise RolloutError(f"{models[0].name}: {exc}", 400) from None
    row = ModelRelease(version=version, class_list_version=class_list_version, sha256=_sha(models[0]),
                       card={"files": {f.name: _sha(dest / f.name) for f in files}, "parent": parent,
                             "builds": {n: {k: c.get(k) for k in ("precision", "classes", "imgsz", "conf", "golden",
                                                                  "metrics")}
                                        for n, c in cards.items()},
                             "metrics": first.get("metrics"), "class_list": first.get("class_list"),
                             "dataset": first.get("dataset"), "test_sets": first.get("test_sets")})
    session.add(row)
    session.flush()
    return row


def _files(release: ModelRelease) -> dict[str, Path]:
    folder = registry_dir() / release.version
    files = {name: folder / name for name in release.card["files"]}
    for name, path in files.items():
        if _sha(path) != release.card["files"][name]:
            raise RolloutError(f"release {release.version}: {name} changed on disk since it was recorded", 500)
    return files


def ship(session: Session, version: str, out: Path, name: str = "pli-default") -> list[Path]:
    """A release's builds as the files a checkout carries (`models/<name>[-int8].onnx`, cards,
    golden frames, the PyTorch weights): renamed, each card's `file` and `golden` following, and
    `release` naming the registry release it is, so `pli cloud release add` of the copy is not
    needed to know where it came from. The bytes (and so every sha256) stay the release's."""

    release = get_release(session, version)
    files = _files(release)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for build, info in release.card["builds"].items():
        stem = name if info.get("precision") == "fp32" else f"{name}-{info.get('precision')}"
        card = ModelCard.load(files[ModelCard.path_for(build).name])
        shutil.copyfile(files[build], out / f"{stem}.onnx")
        shutil.copyfile(files[card.golden], out / f"{stem}.golden.json")
        card = card.with_(file=f"{stem}.onnx", golden=f"{stem}.golden.json", release=version,
                          parent=release.card.get("parent") or card.parent)
        card.save(out / f"{stem}.json")
        written += [out / f"{stem}.onnx", out / f"{stem}.golden.json", out / f"{stem}.json"]
    if "dataset.json" in files:
        shutil.copyfile(files["dataset.json"], out / f"{name}.dataset.json")
        written.append(out / f"{name}.dataset.json")
    weights = weights_dir() / f"{version}.pt"
    if weights.exists():
        shutil.copyfile(weights, out / f"{name}.pt")
        written.append(out / f"{name}.pt")
    return written


def get_release(session: Session, version: str) -> ModelRelease:
    row = session.scalar(select(ModelRelease).where(ModelRelease.version == version))
    if row is None:
        raise RolloutError(f"no release {version}", 404)
    return row


def promote(session: Session, version: str, group: str, by: str, signers: dict | None = None) -> Deployment:
    """Sign `version` for `group`. The fleet only after a canary deployment of it (`approve`)."""
    if group not in GROUPS:
        raise RolloutError(f"group {group!r}: one of {', '.join(GROUPS)}", 400)
    release = get_release(session, version)
    before = GROUPS[:GROUPS.index(group)]
    for g in before:
        if not _deployed(session, release, g):
            raise RolloutError(f"release {version} is not on the {g} group yet: promote it there first")
    targets_version = tuf_repo().release(version, _files(release), [group], signers or keys.online_signers())
    announce(group, version, targets_version)
    d = Deployment(release_id=release.id, target=group, status="announced")
    session.add(d)
    session.flush()
    d_note = {"by": by, "targets_version": targets_version, "at": datetime.now(UTC).isoformat()}
    release.card = {**release.card, "rollout": [*release.card.get("rollout", []), {"group": group, **d_note}]}
    return d


def _deployed(session: Session, release: ModelRelease, group: str) -> bool:
    """Signed for `group` (a drone's own rows, from its reports, are not a group's)."""
    return session.scalar(select(Deployment.id).where(Deployment.release_id == release.id,
                                                     Deployment.target == group)) is not None


def health(session: Session, version: str) -> dict:
    """The canary's health for the approval step: its alerts and what operators found of them,
    the distance its drones flew on it (alerts per km) and the crashes they reported."""
    release = get_release(session, version)
    model = f"%/{version}"
    rows = dict(session.execute(select(Alert.status, func.count()).where(Alert.model_version.like(model))
                                .group_by(Alert.status)).all())
    total = sum(rows.values())
    reviewed = total - rows.get("new", 0)
    false = rows.get("false_alarm", 0)
    flown = release_figures(session, release)  # from the drones' own status reports
    return {"version": release.version, "alerts": total, "reviewed": reviewed, "false_alarms": false,
            "false_alarm_rate": round(false / reviewed, 3) if reviewed else None,
            "alerts_per_km": round(total / flown["km"], 3) if flown["km"] > 0 else None,
            "drones": session.scalar(select(func.count(func.distinct(Alert.drone_id)))
                                     .where(Alert.model_version.like(model))) or 0,
            **flown, "deployed_to": [g for g in GROUPS if _deployed(session, release, g)]}


def rollback(session: Session, group: str, to_version: str, by: str, signers: dict | None = None) -> Deployment:
    """Sign an older release for `group` again: a newer targets version that drones take."""
    release = get_release(session, to_version)
    targets_version = tuf_repo().release(release.version, _files(release), [group], signers or keys.online_signers())
    announce(group, release.version, targets_version)
    d = Deployment(release_id=release.id, target=group, status="rolled_back_to")
    session.add(d)
    session.flush()
    release.card = {**release.card, "rollout": [*release.card.get("rollout", []), {
        "group": group, "by": by, "rollback": True, "targets_version": targets_version,
        "at": datetime.now(UTC).isoformat()}]}
    return d


def assign(drone: str, fleet: str, group: str, acl_out: Path | None = None, signers: dict | None = None) -> int:
    """Move a drone to a group by signed metadata; with `acl_out`, rewrite the broker's ACL from
    every signed assignment (the broker re-reads it on SIGHUP). Returns the targets version."""
    if group not in GROUPS:
        raise RolloutError(f"group {group!r}: one of {', '.join(GROUPS)}", 400)
    repo = tuf_repo()
    version = repo.assign(drone, fleet, group, signers or keys.online_signers())
    if acl_out is not None:
        import os

        from cloud.registry.acl import render

        tmp = acl_out.with_name(acl_out.name + ".tmp")
        tmp.write_text(render(repo.assignments()))
        os.replace(tmp, acl_out)
    return version  # the drone finds it at its next check (no announcement: it reads its old group's topic)


PREANNOTATE = "preannotate.json"


def set_preannotation(session: Session, version: str, by: str) -> Path:
    """Name the release whose FP32 build pre-annotates Label Studio tasks (never the fleet's
    model: that is promote's business)."""
    release = get_release(session, version)
    files = _files(release)
    fp32 = [n for n, b in (release.card.get("builds") or {}).items() if b.get("precision") == "fp32"]
    name = fp32[0] if fp32 else next((n for n in files if n.endswith(".onnx")), None)
    if name is None:
        raise RolloutError(f"release {version} has no ONNX build", 400)
    return set_preannotation_model(files[name], version, by)


def set_preannotation_model(model: Path, version: str, by: str) -> Path:
    """Point pre-annotation at a model file: a release's build, or an interactive refresh's
    (cloud/learning.py) that never reaches the fleet."""
    doc = {"version": version, "model": str(model), "by": by, "at": datetime.now(UTC).isoformat()}
    out = registry_dir() / PREANNOTATE
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(out)
    return Path(model)


def preannotation_model() -> Path | None:
    """The model the registry names for pre-annotation, if it names one."""
    try:
        return Path(json.loads((registry_dir() / PREANNOTATE).read_text())["model"])
    except (OSError, ValueError, KeyError):
        return None


def announce(group: str, version: str, targets_version: int, fleet: str | None = None) -> bool:
    """A retained message on the group's topic (cloud/registry/acl.py) telling its drones to check
    now: a hint only, what they install is what TUF verifies. Sent when `PLI_MQTT_HOST` names the
    broker (user `PLI_MQTT_USER`, password `PLI_MQTT_PASSWORD`, CA `PLI_MQTT_TLS_CA`)."""
    import os

    import paho.mqtt.client as mqtt

    s = settings()
    if not s.mqtt_host:
        return False
    cfg = MqttConfig(host=s.mqtt_host, port=s.mqtt_port, username=s.mqtt_user, password=secret(s.mqtt_password),
                     tls_ca=str(s.mqtt_tls_ca) if s.mqtt_tls_ca else None)
    client = make_client(f"pli-registry-{os.getpid()}", cfg)
    try:
        client.connect(cfg.host, cfg.port)
        client.loop_start()
        body = json.dumps({"group": group, "version": version, "targets_version": targets_version})
        info = client.publish(announce_topic(fleet or s.fleet, group), body, qos=1,
                              retain=True)
        info.wait_for_publish(10)
        return info.rc == mqtt.MQTT_ERR_SUCCESS and info.is_published()
    except (OSError, RuntimeError, ValueError) as exc:
        import logging

        logging.getLogger(__name__).warning("announcement of %s to %s not sent (%s): drones still find it on "
                                            "their next check", version, group, exc)
        return False
    finally:
        client.loop_stop()
        client.disconnect()


def check_ready() -> None:
    """What `promote` needs (the online roles' keys, an initialised repository), checked before a
    learning run's hour of training rather than after it."""
    keys.online_signers()
    if not (tuf_repo().metadata_dir / "root.json").exists():
        raise FileNotFoundError(f"no TUF repository at {repo_dir()}: run `pli cloud tuf init` first")

