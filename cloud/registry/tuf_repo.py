"""The fleet's TUF repository (python-tuf's Metadata API): what a drone may install, signed.

Layout (consistent snapshots, as `tuf.ngclient` fetches them):

    <dir>/metadata/<N>.root.json    every root version (a client walks the chain), root.json the newest
    <dir>/metadata/<N>.targets.json, <N>.snapshot.json, timestamp.json
    <dir>/targets/<path dir>/<sha256>.<name>

Root is signed by a threshold of offline keys (two of three by default); targets, snapshot and
timestamp by online keys (cloud/registry/keys.py). Each target names the groups it is meant for
in its signed `custom` field (`{"groups": [...], "release": version}`): the group is part of
what is signed, not of the announcement. A rollback by an operator is a new targets version
naming old files; older metadata versions are refused by every client, as TUF's rule says.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

from securesystemslib.signer import Key, Signer
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Role,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from cloud.paths import cloud_dir
from cloud.registry.acl import NAME
from cloud.settings import settings

EXPIRY = {"root": timedelta(days=365), "targets": timedelta(days=90), "snapshot": timedelta(days=7),
          "timestamp": timedelta(days=1)}
ONLINE = ("targets", "snapshot", "timestamp")


def repo_dir() -> Path:
    """Where the cloud keeps the repository: `PLI_TUF_DIR`, else `<PLI_CLOUD_DIR>/tuf`."""

    return settings().tuf_dir or cloud_dir() / "tuf"


def _expires(role: str, now: datetime | None = None) -> datetime:
    return ((now or datetime.now(UTC)) + EXPIRY[role]).replace(microsecond=0)


class TufRepo:
    def __init__(self, path: Path):
        self.dir = Path(path)
        self.metadata_dir = self.dir / "metadata"
        self.targets_dir = self.dir / "targets"

    # -- reading and writing -------------------------------------------------------------------
    def load(self, role: str) -> Metadata:
        """The newest metadata of a top-level role, as the repository publishes it."""
        if role in ("root", "timestamp"):
            name = f"{role}.json"
        elif role == "snapshot":
            name = f"{self.load('timestamp').signed.snapshot_meta.version}.snapshot.json"
        else:
            name = f"{self.load('snapshot').signed.meta[f'{role}.json'].version}.{role}.json"
        return Metadata.from_file(str(self.metadata_dir / name))

    def _write(self, md: Metadata) -> None:
        role = md.signed.type
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        data = md.to_bytes(JSONSerializer(compact=False))
        names = {"root": [f"{md.signed.version}.root.json", "root.json"], "timestamp": ["timestamp.json"]}.get(
            role, [f"{md.signed.version}.{role}.json"])
        for name in names:
            tmp = self.metadata_dir / f".{name}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, self.metadata_dir / name)  # a reader sees the old file or the new, whole

    @staticmethod
    def _sign(md: Metadata, signers: list[Signer]) -> Metadata:
        md.signatures.clear()
        for s in signers:
            md.sign(s, append=True)
        return md

    # -- making it -----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, root_keys: list[Key], root_signers: list[Signer], online: dict[str, Signer],
               threshold: int = 2) -> TufRepo:
        """A new repository: root v1 (signed by `threshold` of the offline root keys), empty targets."""
        repo = cls(path)
        if (repo.metadata_dir / "root.json").exists():
            raise FileExistsError(f"{repo.metadata_dir} already holds a repository")
        if len(root_signers) < threshold:
            raise ValueError(f"a root needs {threshold} root signatures; {len(root_signers)} keys given")
        root = Root(expires=_expires("root"), consistent_snapshot=True)
        for k in root_keys:
            root.add_key(k, "root")
        root.roles["root"].threshold = threshold
        for role in ONLINE:
            root.add_key(online[role].public_key, role)
        repo._write(cls._sign(Metadata(root), root_signers))
        repo.publish({}, online)
        return repo

    def add_file(self, local: Path, path: str, custom: dict) -> TargetFile:
        """Copy a release file into the repository; its TargetFile (hashes, length, `custom`)."""
        return self.add_data(Path(local).read_bytes(), path, custom)

    def add_data(self, data: bytes, path: str, custom: dict) -> TargetFile:
        target = TargetFile.from_data(path, data, ["sha256"])
        target.unrecognized_fields["custom"] = custom
        p = PurePosixPath(path)
        dest = self.targets_dir / p.parent / f"{target.hashes['sha256']}.{p.name}"  # consistent snapshots
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name("." + dest.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, dest)
        return target

    def release(self, version: str, files: dict[str, Path], groups: list[str], online: dict[str, Signer]) -> int:
        """Sign release `version` (its files, under `models/<version>/`) for `groups`: each group's
        index (`groups/<group>/release.json`) names the files; other groups' indexes stay."""
        targets = self.targets()
        paths = []
        for name, local in files.items():
            path = f"models/{version}/{name}"
            old = targets.get(path)
            held = set((old.custom or {}).get("groups", [])) if old else set()
            targets[path] = self.add_file(local, path, {"release": version, "groups": sorted(held | set(groups))})
            paths.append(path)
        for group in groups:
            card = {"version": version, "group": group, "files": paths}
            path = f"groups/{group}/release.json"
            targets[path] = self.add_data(json.dumps(card, sort_keys=True).encode(), path,
                                          {"release": version, "groups": [group]})
        return self.publish(targets, online)

    def assign(self, drone: str, fleet: str, group: str, online: dict[str, Signer]) -> int:
        """Move a drone to a rollout group: a signed target `drones/<drone>/group.json`. The drone
        takes its group from nothing else after `device init` (edge/update.py)."""

        for value in (drone, fleet, group):
            if not NAME.match(value):
                raise ValueError(f"{value!r} is not a plain name")
        targets = self.targets()
        path = f"drones/{drone}/group.json"
        doc = {"drone": drone, "fleet": fleet, "group": group}
        targets[path] = self.add_data(json.dumps(doc, sort_keys=True).encode(), path, doc)
        return self.publish(targets, online)

    def assignments(self) -> list[tuple[str, str, str]]:
        """(drone, fleet, group) of every signed group assignment, as the ACL needs them."""
        rows = []
        for path, t in self.targets().items():
            c = t.custom or {}
            if path.startswith("drones/") and path.endswith("/group.json"):
                rows.append((c["drone"], c["fleet"], c["group"]))
        return sorted(rows)

    def targets(self) -> dict[str, TargetFile]:
        return dict(self.load("targets").signed.targets)

    def publish(self, targets: dict[str, TargetFile], online: dict[str, Signer]) -> int:
        """A new targets version holding exactly `targets`, then snapshot and timestamp (written
        last: until then clients see the previous release). Returns the targets version."""
        if (self.metadata_dir / "timestamp.json").exists():
            old_t, old_s = self.load("targets").signed.version, self.load("snapshot").signed.version
        else:
            old_t = old_s = 0
        t = Targets(version=old_t + 1, expires=_expires("targets"), targets=dict(targets))
        self._write(self._sign(Metadata(t), [online["targets"]]))
        s = Snapshot(version=old_s + 1, expires=_expires("snapshot"), meta={"targets.json": MetaFile(t.version)})
        self._write(self._sign(Metadata(s), [online["snapshot"]]))
        self.refresh_timestamp(online["timestamp"], snapshot_version=s.version)
        return t.version

    def refresh_timestamp(self, signer: Signer, snapshot_version: int | None = None) -> int:
        """A new timestamp (drones refuse an expired one: the cloud re-signs it at least daily)."""
        if (self.metadata_dir / "timestamp.json").exists():
            old = self.load("timestamp").signed
            version, snap = old.version + 1, snapshot_version or old.snapshot_meta.version
        else:
            version, snap = 1, snapshot_version or 1
        ts = Timestamp(version=version, expires=_expires("timestamp"), snapshot_meta=MetaFile(snap))
        self._write(self._sign(Metadata(ts), [signer]))
        return version

    def rotate_root(self, new_root_keys: list[Key], old_signers: list[Signer], new_signers: list[Signer],
                    threshold: int = 2, online: dict[str, Key] | None = None) -> int:
        """Root N+1 with other root keys (and, optionally, other online keys), signed, as TUF
        requires, by a threshold of the old root keys and a threshold of the new ones."""
        root = self.load("root").signed
        new = Root(version=root.version + 1, expires=_expires("root"), consistent_snapshot=True,
                   roles={r: Role([], root.roles[r].threshold) for r in root.roles})
        for k in new_root_keys:
            new.add_key(k, "root")
        new.roles["root"].threshold = threshold
        for role in ONLINE:
            keys = [online[role]] if online and role in online else [root.keys[k] for k in root.roles[role].keyids]
            for k in keys:
                new.add_key(k, role)
        md = Metadata(new)
        signers = {s.public_key.keyid: s for s in [*old_signers, *new_signers]}
        self._write(self._sign(md, list(signers.values())))
        return new.version
