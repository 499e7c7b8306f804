"""Model updates on the drone: only what the fleet's TUF repository signs for this drone's group.

`tuf.ngclient` does the checking: a root chain walked from the root installed at `device init`
(a threshold of root keys, rotations included), signatures of every role, versions that never
go back (an older timestamp, snapshot or targets is a rollback attack), expiry (the drone needs a
trusted clock: GNSS time), snapshot and targets versions that match what the timestamp and the
snapshot name (no mix-and-match), and each file's length and sha256. On top: the release index
of this drone's group (`groups/<group>/release.json`) and each file it lists must name the group
in their *signed* `custom` field, and no file may be larger than `max_bytes`. Files land in a
staging folder; installing them (probation, the atomic swap) is the runtime's business.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tuf.api.exceptions import DownloadError, DownloadHTTPError, RepositoryError
from tuf.api.metadata import TargetFile
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

log = logging.getLogger(__name__)
MAX_BYTES = 200 << 20  # no model of this project is near it


class UpdateRefused(RuntimeError):
    """What the repository offers cannot be trusted or taken (one line; the current model stays)."""


class TokenFetcher(FetcherInterface):
    """HTTP(S) with the drone's fleet token (the cloud answers nothing without one); stdlib only."""

    def __init__(self, token: str, timeout_s: float = 30.0):
        self.token, self.timeout_s = token, timeout_s

    def _fetch(self, url: str) -> Iterator[bytes]:
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})
        try:
            resp = urllib.request.urlopen(req, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            raise DownloadHTTPError(f"{url}: HTTP {exc.code}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise DownloadError(f"{url}: {exc}") from None

        def chunks() -> Iterator[bytes]:
            with resp:
                while chunk := resp.read(1 << 16):
                    yield chunk

        return chunks()


@dataclass(frozen=True)
class Release:
    version: str
    group: str
    files: dict[str, Path]  # target path -> verified local copy
    card: dict  # the release index as signed


def install_root(state_dir: Path, root_json: bytes) -> None:
    """The trust anchor: the fleet's root metadata, put on the drone at `device init`."""
    meta = Path(state_dir) / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "root.json").write_bytes(root_json)


class UpdateClient:
    def __init__(self, state_dir: Path, base_url: str, token: str, group: str, max_bytes: int = MAX_BYTES,
                 fetcher: FetcherInterface | None = None, drone_id: str | None = None):
        """`group`: the one written at `device init`; a signed assignment for `drone_id`
        (`drones/<drone>/group.json` in the targets) overrides it, and nothing else does."""
        self.state_dir, self.group, self.max_bytes = Path(state_dir), group, max_bytes
        self.drone_id = drone_id
        self.base_url = base_url.rstrip("/")
        self.fetcher = fetcher or TokenFetcher(token)
        (self.state_dir / "staging").mkdir(parents=True, exist_ok=True)
        if not (self.state_dir / "metadata" / "root.json").exists():
            raise FileNotFoundError(f"{self.state_dir}/metadata/root.json: install the fleet's root first "
                                    "(pli device init)")

    def _updater(self) -> Updater:
        return Updater(str(self.state_dir / "metadata"), f"{self.base_url}/tuf/metadata/",
                       str(self.state_dir / "staging"), f"{self.base_url}/tuf/targets/", self.fetcher,
                       UpdaterConfig(), bootstrap=None)

    def _take(self, updater: Updater, path: str, for_group: bool = True) -> tuple[TargetFile, Path]:
        info = updater.get_targetinfo(path)
        if info is None:
            raise UpdateRefused(f"{path} is not in the signed targets")
        groups = (info.custom or {}).get("groups", [])
        if for_group and self.group not in groups:
            raise UpdateRefused(f"{path} is signed for {groups}, not for this drone's group {self.group}")
        if info.length > self.max_bytes:
            raise UpdateRefused(f"{path} is {info.length} bytes, over the {self.max_bytes} allowed")
        local = updater.find_cached_target(info) or updater.download_target(info)
        return info, Path(local)

    def _follow_assignment(self, updater: Updater) -> None:
        if self.drone_id is None:
            return
        path = f"drones/{self.drone_id}/group.json"
        if updater.get_targetinfo(path) is None:
            return  # never moved: the group of `device init`
        info, local = self._take(updater, path, for_group=False)
        doc = json.loads(local.read_text())
        signed = info.custom or {}
        if doc.get("drone") != self.drone_id or signed.get("drone") != self.drone_id \
                or doc.get("group") != signed.get("group") or not isinstance(doc.get("group"), str):
            raise UpdateRefused(f"{path} does not assign this drone ({self.drone_id}) a group")
        if doc["group"] != self.group:
            log.info("drone %s moves from group %s to %s (signed assignment)", self.drone_id, self.group,
                     doc["group"])
            self.group = doc["group"]

    def check(self) -> Release | None:
        """The release signed for this drone's group, downloaded and verified; None when the
        group has none. Raises UpdateRefused on anything TUF or the group rule refuses."""
        try:
            updater = self._updater()
            updater.refresh()
            self._follow_assignment(updater)
            index = f"groups/{self.group}/release.json"
            if updater.get_targetinfo(index) is None:
                return None
            _, local = self._take(updater, index)
            card = json.loads(local.read_text())
            files = {p: self._take(updater, p)[1] for p in card.get("files", [])}
        except (RepositoryError, DownloadError, ValueError, OSError) as exc:
            raise UpdateRefused(f"update refused: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
        return Release(str(card.get("version", "?")), self.group, files, card)


def install(release: Release, watch: Path) -> Path:
    """The release's files into `watch/<version>/`, whole or not at all (a folder renamed into
    place), for the runtime's probation to take."""
    dest = Path(watch) / release.version
    for stale in Path(watch).glob(f".{release.version}.*.tmp"):  # a stager killed mid-copy (power cut)
        shutil.rmtree(stale, ignore_errors=True)
    if dest.exists():
        return dest
    tmp = Path(watch) / f".{release.version}.{os.getpid()}.tmp"
    tmp.mkdir(parents=True)
    for path, local in release.files.items():
        shutil.copyfile(local, tmp / Path(path).name)
    os.replace(tmp, dest)
    return dest


class UpdateLoop:
    """Checks for a release every `every_s` seconds (the first check at once) and installs a new
    one for probation. A refusal is one log line; the model in use stays."""

    def __init__(self, client: UpdateClient, watch: Path, every_s: float = 300.0):
        self.client, self.watch, self.every_s = client, Path(watch), every_s
        self.installed: list[str] = []
        self.wanted: Path | None = None  # the model of the group's current release, once staged
        self.last_refusal: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_once(self) -> Path | None:
        try:
            release = self.client.check()
        except UpdateRefused as exc:
            self.last_refusal = str(exc)
            log.warning("%s; keeping the current model", exc)
            return None
        if release is None:
            return None
        dest = install(release, self.watch)
        models = sorted(dest.glob("*.onnx"))
        self.wanted = models[0] if models else None  # a rollback points back at a release staged before
        if release.version in self.installed:
            return None
        self.installed.append(release.version)
        log.info("release %s for group %s verified and staged in %s", release.version, release.group, dest)
        return dest

    def start(self) -> UpdateLoop:
        self.check_once()
        self._thread = threading.Thread(target=self._run, name="pli-updates", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.check_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
