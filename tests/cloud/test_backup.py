"""`pli cloud backup` / `restore` on both databases: alerts, objects, the TUF repository and the
registry come back byte for byte into a fresh cloud; the signing keys only into their own folder;
a damaged backup changes nothing; a database with alerts is kept unless told to replace it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from cloud.alerts import record
from cloud.db import session_scope
from cloud.models import Alert
from cloud.storage import open_store
from comms import alert_json
from comms.alert import Alert as Record
from comms.classes import Severity

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 7, 9, tzinfo=UTC)


def _pli(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "pli", "-q", "cloud", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode == 0) == ok, done.stdout + done.stderr[-2000:]
    return done


def _cloud(tmp: Path, name: str, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLI_")}
    keys = tmp / f"{name}-online-keys"
    return {**env, "PLI_CLOUD_DIR": str(tmp / name), "PLI_DATABASE_URL": url,
            **{f"PLI_TUF_{r.upper()}_KEY_FILE": str(keys / f"{r}.pem") for r in ("targets", "snapshot", "timestamp")}}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_backup_restores_into_a_fresh_cloud_and_keeps_its_keys_apart(new_db, tmp_path, monkeypatch):
    url = new_db()
    env = _cloud(tmp_path, "old", url)
    off = tmp_path / "offline"
    _pli(env, "tuf", "keygen", *(str(off / f"root-{i}.pem") for i in range(3)),
         *(env[f"PLI_TUF_{r.upper()}_KEY_FILE"] for r in ("targets", "snapshot", "timestamp")))
    _pli(env, "tuf", "init", "--root-key", str(off / "root-0.pem"), "--root-key", str(off / "root-1.pem"),
         "--root-key", str(off / "root-2.pub.json"))
    model = tmp_path / "pli-next.onnx"
    model.write_bytes(os.urandom(4096))
    _pli(env, "tuf", "publish", "2026.12.07", str(model), "--group", "canary")
    for k, v in env.items():
        if k.startswith("PLI_"):
            monkeypatch.setenv(k, v)
    ids = []
    with session_scope(url) as s:
        for seq in range(1, 4):
            a = Record("UAV-07", seq, "F1", T0 + timedelta(seconds=seq), 25.3 + seq / 1e4, 103.1, 1650.0, "defect", 0.9,
                       Severity.HIGH, position_source="laser", epoch=1, class_list_version=1,
                       model_version="pli-default/2026.11.22", source_frame=f"DJI_{seq:04d}.JPG",
                       box=(100.0, 120.0, 180.0, 200.0))
            record(s, "pli/fleet1/UAV-07/alerts", alert_json.dumps(a, b"\xff\xd8thumb"))
            ids.append(a.id)
    store = open_store()
    store.put_bytes("flights/F1/images/DJI_0001.JPG", b"\xff\xd8" + os.urandom(3000))
    store.put_bytes("flights/F1/telemetry.csv", b"t,lat,lon\n0,25.3,103.1\n")
    tuf_before = _files(tmp_path / "old" / "tuf")

    dest, keys = tmp_path / "backup", tmp_path / "backup-keys"
    _pli(env, "backup", str(dest / "inside"), "--keys", str(dest / "inside" / "keys"), ok=False)  # keys never inside
    out = _pli(env, "backup", str(dest), "--keys", str(keys)).stdout
    assert '"alerts": 3' in out and '"objects": 2' in out and '"keys": ["targets", "snapshot", "timestamp"]' in out
    assert not any(b"PRIVATE KEY" in data for data in _files(dest).values())  # the data backup holds no secret
    assert sorted(p.name for p in keys.iterdir()) == ["manifest.json", "snapshot.pem", "targets.pem", "timestamp.pem"]
    assert all((keys / f"{r}.pem").stat().st_mode & 0o777 == 0o600 for r in ("targets", "snapshot", "timestamp"))

    new_url = new_db()
    fresh = _cloud(tmp_path, "new", new_url)
    damaged = tmp_path / "damaged"
    subprocess.run(["cp", "-a", str(dest), str(damaged)], check=True)
    photo = damaged / "objects" / "flights" / "F1" / "images" / "DJI_0001.JPG"
    data = photo.read_bytes()
    photo.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # always a change (random bytes may end in 0x00)
    err = _pli(fresh, "restore", str(damaged), ok=False).stderr
    assert "DJI_0001.JPG does not match its sha256" in err
    assert not (tmp_path / "new" / "objects").exists() and not (tmp_path / "new" / "tuf").exists()  # nothing changed

    _pli(fresh, "restore", str(dest), "--keys", str(keys))
    with session_scope(new_url) as s:
        assert sorted(s.scalars(select(Alert.id))) == sorted(ids)
    assert _files(tmp_path / "new" / "objects") == _files(dest / "objects")
    assert _files(tmp_path / "new" / "tuf") == tuf_before
    for r in ("targets", "snapshot", "timestamp"):
        assert Path(fresh[f"PLI_TUF_{r.upper()}_KEY_FILE"]).read_bytes() == Path(env[f"PLI_TUF_{r.upper()}_KEY_FILE"]) \
            .read_bytes()
    again = _pli(fresh, "restore", str(dest), ok=False).stderr
    assert "already holds alerts" in again
    _pli(fresh, "restore", str(dest), "--replace")  # told to: the same three alerts, none twice
    with session_scope(new_url) as s:
        assert sorted(s.scalars(select(Alert.id))) == sorted(ids)
