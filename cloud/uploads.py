"""A flight's files home after landing: declared in a manifest, sent in chunks, checked, stored.

The drone's side (`pli cloud upload`, cloud/upload_client.py) declares every file with its size
and sha256; the cloud answers, per file, how much it already holds (stored, or the length of a
partial upload), so an interrupted upload goes on where it stopped and a second run sends nothing.
Chunks are appended to a staging file at the offset the cloud expects; when the declared size is
reached the whole file is hashed, and only a file whose sha256 matches goes to the object store
(cloud/storage.py) and is recorded. A photo becomes an `images` row, and the flight's alerts
whose provenance names it (`source_frame`) point at it.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud.models import Alert, Drone, Flight, Image, Upload
from cloud.paths import cloud_dir
from cloud.storage import ObjectStore, store

KINDS = ("photo", "telemetry", "manifest", "other")
MAX_FILE = 2 << 30  # 2 GiB: no photo or log is near it


class UploadError(ValueError):
    """A request the upload cannot take (one line); `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def clean_name(name: str) -> str:
    """A file's name within its flight: a relative path without `..` or empty parts."""
    p = PurePosixPath(name)
    if not name or name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in name.split("/")) \
            or len(name) > 255:
        raise UploadError(f"file name {name!r} is not a clean relative path")
    return str(p)


def object_key(flight_id: str, name: str) -> str:
    return f"flights/{flight_id}/{name}"


def _staging(flight_id: str, name: str) -> Path:
    digest = hashlib.sha256(f"{flight_id}/{name}".encode()).hexdigest()[:32]
    return cloud_dir() / "staging" / f"{digest}.part"


def declare(session: Session, flight_id: str, drone_id: str, files: list[dict]) -> list[dict]:
    """Record the manifest's files (idempotent); returns each one's state: stored, or the offset
    to send from."""
    if session.get(Drone, drone_id) is None:  # the API checked the caller's scope; a library caller too
        raise UploadError(f"unknown drone {drone_id[:32]}: register it first (its first alert or its token)", 404)
    flight = session.get(Flight, flight_id)
    if flight is None:
        session.add(Flight(id=flight_id, drone_id=drone_id))
        session.flush()
    elif flight.drone_id != drone_id:
        raise UploadError(f"flight {flight_id} is drone {flight.drone_id}'s, not {drone_id}'s", 409)
    held = {u.name: u for u in session.scalars(select(Upload).where(Upload.flight_id == flight_id))}
    out = []
    for f in files:
        name = clean_name(f["name"])
        size, sha, kind = int(f["size"]), str(f["sha256"]).lower(), f.get("kind", "other")
        if kind not in KINDS or not 0 <= size <= MAX_FILE or len(sha) != 64:
            raise UploadError(f"{name}: a file is declared with a kind ({', '.join(KINDS)}), a size and a sha256")
        row = held.get(name)
        if row is not None and row.status == "stored":
            if row.sha256 != sha:
                raise UploadError(f"{name} is stored with another sha256 ({row.sha256[:12]}...): refused", 409)
            out.append({"name": name, "status": "stored", "offset": size})
            continue
        if row is None:
            row = Upload(flight_id=flight_id, name=name, kind=kind, size=size, sha256=sha, status="pending")
            session.add(row)
        elif (row.sha256, row.size) != (sha, size):  # declared anew with other content: start over
            row.sha256, row.size, row.kind = sha, size, kind
            _staging(flight_id, name).unlink(missing_ok=True)
        part = _staging(flight_id, name)
        out.append({"name": name, "status": "partial" if part.exists() else "missing",
                    "offset": part.stat().st_size if part.exists() else 0})
    session.flush()
    return out


def receive(session: Session, flight_id: str, name: str, offset: int, chunk: bytes,
            objects: ObjectStore | None = None) -> dict:
    """Append `chunk` at `offset` of a declared file; store the file once it is whole and its hash
    matches. Returns the file's state."""
    name = clean_name(name)
    row = session.scalar(select(Upload).where(Upload.flight_id == flight_id, Upload.name == name)
                         .with_for_update())
    if row is None:
        raise UploadError(f"{name} is not in flight {flight_id}'s manifest: declare it first", 404)
    if row.status == "stored":
        return {"name": name, "status": "stored", "offset": row.size}
    part = _staging(flight_id, name)
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if offset != have:
        raise UploadError(f"{name}: the cloud holds {have} bytes; send from offset {have}, not {offset}", 409)
    if have + len(chunk) > row.size:
        raise UploadError(f"{name}: {have + len(chunk)} bytes is more than the {row.size} declared", 400)
    with open(part, "ab") as f:
        f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    have += len(chunk)
    if have < row.size:
        return {"name": name, "status": "partial", "offset": have}
    digest = hashlib.sha256()
    with open(part, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    if digest.hexdigest() != row.sha256:
        part.unlink(missing_ok=True)
        raise UploadError(f"{name}: sha256 {digest.hexdigest()[:12]}... is not the declared {row.sha256[:12]}...: "
                          "refused, send it again", 422)
    key = object_key(flight_id, name)
    (objects or store()).put_file(key, part)
    row.status, row.key, row.stored_at = "stored", key, datetime.now(UTC)
    if row.kind == "photo":
        link_photo(session, flight_id, name, row.sha256, key)
    part.unlink(missing_ok=True)
    return {"name": name, "status": "stored", "offset": have}


def link_photo(session: Session, flight_id: str, name: str, sha256: str, key: str) -> Image:
    """The photo's `images` row; the flight's alerts taken from it (by name) point at it."""
    image = session.scalar(select(Image).where(Image.flight_id == flight_id, Image.name == name))
    if image is None:
        image = Image(flight_id=flight_id, name=name, sha256=sha256, key=key)
        session.add(image)
        session.flush()
    base = PurePosixPath(name).name
    session.execute(update(Alert).where(Alert.flight_id == flight_id, Alert.source_frame.in_({name, base}))
                    .values(image_id=image.id))
    return image


def store_manifest(session: Session, flight_id: str, body: bytes, objects: ObjectStore | None = None) -> None:
    """The manifest itself, kept beside the files it lists."""
    key = object_key(flight_id, "manifest.json")
    (objects or store()).put_bytes(key, body)
    row = session.scalar(select(Upload).where(Upload.flight_id == flight_id, Upload.name == "manifest.json"))
    sha = hashlib.sha256(body).hexdigest()
    if row is None:
        session.add(Upload(flight_id=flight_id, name="manifest.json", kind="manifest", size=len(body), sha256=sha,
                           status="stored", key=key, stored_at=datetime.now(UTC)))
    else:
        row.size, row.sha256, row.status, row.key, row.stored_at = len(body), sha, "stored", key, datetime.now(UTC)


def link_alerts(session: Session, alert_ids: list[str]) -> None:
    """Alerts stored after their flight's photos (a 4G copy arriving after the upload) point at
    them too. One statement; nothing asked while no photo was ever uploaded."""
    if not alert_ids:
        return
    if "any_images" not in session.info:
        session.info["any_images"] = session.scalar(select(Image.id).limit(1)) is not None
    if not session.info["any_images"]:
        return
    photo = (select(Image.id).where(Image.flight_id == Alert.flight_id,
                                    (Image.name == Alert.source_frame) | Image.name.endswith("/" + Alert.source_frame))
             .limit(1).scalar_subquery())
    session.execute(update(Alert).where(Alert.id.in_(alert_ids), Alert.image_id.is_(None),
                                        Alert.source_frame.is_not(None)).values(image_id=photo)
                    .execution_options(synchronize_session=False))
