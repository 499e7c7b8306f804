"""`pli cloud upload FLIGHT_DIR`: a landed flight's photos and telemetry to the cloud.

Every file is declared first (name, size, sha256, kind: the upload manifest); the cloud answers
how much of each it holds, and only the rest is sent, in chunks, from where it stopped. A second
run sends nothing. Hashes are remembered in `FLIGHT_DIR/.pli-upload.json` (by size and mtime) so
a rerun does not read every photo again. The cloud checks each whole file against its declared
sha256 and refuses one that does not match (sent again on the next run).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tqdm import tqdm

log = logging.getLogger(__name__)
PHOTO = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".dng"}
TELEMETRY = {".csv", ".srt", ".log", ".bin", ".tlog", ".json", ".gpx"}
CACHE = ".pli-upload.json"
CHUNK = 4 << 20


class UploadFailed(RuntimeError):
    """The cloud refused the upload or a file (one line)."""


@dataclass
class Summary:
    flight_id: str
    files: int = 0
    already: int = 0  # stored before this run
    stored: int = 0  # stored by this run
    refused: list[str] = field(default_factory=list)
    bytes_sent: int = 0


def collect(flight_dir: Path) -> list[tuple[Path, str, str]]:
    """(path, name within the flight, kind) of what goes home: photos and telemetry."""
    out = []
    for p in sorted(flight_dir.rglob("*")):
        if not p.is_file() or p.name.startswith(".") or p.name == "manifest.json":
            continue
        rel = p.relative_to(flight_dir).as_posix()
        suffix = p.suffix.lower()
        if suffix in PHOTO:
            out.append((p, rel, "photo"))
        elif suffix in TELEMETRY and "/" not in rel:  # the flight's logs sit at its top
            out.append((p, rel, "telemetry"))
    return out


def hashes(flight_dir: Path, files: list[tuple[Path, str, str]], progress: bool) -> dict[str, str]:
    cache_path = flight_dir / CACHE
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    out = {}
    for path, name, _ in tqdm(files, desc="sha256", unit="file", disable=not progress):
        st = path.stat()
        hit = cache.get(name)
        if hit and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
            out[name] = hit["sha256"]
            continue
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        out[name] = h.hexdigest()
        cache[name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": out[name]}
    with contextlib.suppress(OSError):  # a read-only card: hashes are computed again next time
        cache_path.write_text(json.dumps(cache))
    return out


def _check(r: httpx.Response) -> dict:
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail")
        except ValueError:
            detail = r.text[:200]
        raise UploadFailed(f"the cloud answered {r.status_code}: {detail}")
    return r.json()


def upload(flight_dir: Path, base_url: str, token: str, drone_id: str, flight_id: str | None = None,
           chunk: int = CHUNK, progress: bool = True, client: httpx.Client | None = None,
           on_chunk: Callable[[str, int], None] | None = None) -> Summary:
    """Send what the cloud lacks of `flight_dir`. `on_chunk(name, offset)` is called after each
    chunk the cloud took (a progress hook)."""
    flight_dir = Path(flight_dir)
    if flight_id is None:
        try:
            flight_id = json.loads((flight_dir / "flight.json").read_text())["flight_id"]
        except (OSError, ValueError, KeyError):
            raise UploadFailed(f"{flight_dir}: no flight.json with a flight_id; give --flight-id") from None
    files = collect(flight_dir)
    if not files:
        raise UploadFailed(f"{flight_dir}: no photos or telemetry to send")
    sums = hashes(flight_dir, files, progress)
    manifest = {"drone_id": drone_id, "files": [{"name": n, "size": p.stat().st_size, "sha256": sums[n], "kind": k}
                                                for p, n, k in files]}
    own = client is None
    http = client or httpx.Client(base_url=base_url, timeout=60)
    headers = {"Authorization": f"Bearer {token}"}
    summary = Summary(flight_id, files=len(files))
    try:
        states = {s["name"]: s for s in _check(http.post(f"/flights/{flight_id}/manifest", json=manifest,
                                                         headers=headers))["files"]}
        todo = [(p, n) for p, n, _ in files if states[n]["status"] != "stored"]
        summary.already = len(files) - len(todo)
        remaining = sum(p.stat().st_size - states[n]["offset"] for p, n in todo)
        with tqdm(total=remaining, desc=f"upload {flight_id}", unit="B", unit_scale=True,
                  disable=not progress) as bar:
            for path, name in todo:
                offset = states[name]["offset"]
                with open(path, "rb") as f:
                    f.seek(offset)
                    while True:
                        data = f.read(chunk)
                        r = http.put(f"/flights/{flight_id}/files/{name}", params={"offset": offset}, content=data,
                                     headers={**headers, "Content-Type": "application/octet-stream"})
                        if r.status_code == 422:  # the whole file did not hash to what was declared
                            summary.refused.append(name)
                            log.error("%s: %s", name, r.json().get("detail"))
                            break
                        state = _check(r)
                        summary.bytes_sent += len(data)
                        bar.update(len(data))
                        offset = state["offset"]
                        if on_chunk is not None:
                            on_chunk(name, offset)
                        if state["status"] == "stored":
                            summary.stored += 1
                            break
                        if not data:
                            raise UploadFailed(f"{name}: the file is shorter than declared (changed during upload?)")
    finally:
        if own:
            http.close()
    return summary
