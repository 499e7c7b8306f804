"""Backups of the cloud, and their restore: the database, the object store, the TUF repository
and the registry's files, each a part of its own, with a manifest of every file's sha256; the
online signing keys apart, in a folder of their own, so a data backup can be stored or shipped
where keys must not go.

A restore checks the whole backup against its manifest before it touches anything (a damaged
or incomplete backup changes nothing), and refuses a database that already holds alerts unless
told to replace it. Stop the API, the ingest and the worker first: a restore is not a merge.
SQLite is copied with its online backup API (a consistent copy under the ingest's writes);
PostgreSQL with pg_dump's custom format and pg_restore, the password in the environment of the
child (PGPASSWORD), never on its command line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from tqdm import tqdm

from cloud.db import database_url, session_scope
from cloud.models import Alert
from cloud.paths import registry_dir
from cloud.registry.tuf_repo import repo_dir
from cloud.storage import open_store

MANIFEST = "manifest.json"
ROLES = ("targets", "snapshot", "timestamp")  # online keys (root keys stay offline, never here)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A SQLAlchemy URL as libpq's, its password moved into the child's environment."""
    u = make_url(url)
    env = {**os.environ, "PGPASSWORD": u.password} if u.password else dict(os.environ)
    plain = u.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise FileNotFoundError(f"{name} is not installed (the PostgreSQL client: apt-get install postgresql-client)")


def _copy_tree(src: Path, dest: Path, skip_keys: bool = False) -> None:
    if not src.is_dir():
        return
    for path in sorted(src.rglob("*")):
        if path.is_file() and not (skip_keys and (path.suffix == ".pem" or "PRIVATE KEY" in _head(path))):
            out = dest / path.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out)


def _head(path: Path) -> str:
    with path.open("rb") as f:
        return f.read(64).decode("latin-1")


def backup(dest: Path, keys_dest: Path | None = None, progress: bool = True) -> dict:
    """Write a backup into `dest` (new or empty), and the online keys into `keys_dest` if given."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"{dest}: not empty (a backup goes into a new folder)")
    if keys_dest is not None and Path(keys_dest).resolve().is_relative_to(dest.resolve()):
        raise ValueError("the keys go apart from the data: --keys must not be inside the backup")
    dest.mkdir(parents=True, exist_ok=True)
    url = database_url()
    (dest / "database").mkdir()
    with session_scope() as s:
        alerts = s.scalar(select(func.count()).select_from(Alert))
        revision = s.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if url.startswith("sqlite"):
        src = sqlite3.connect(make_url(url).database)
        out = sqlite3.connect(dest / "database" / "pli.sqlite")
        with out:
            src.backup(out)  # consistent, while the ingest writes
        out.close()
        src.close()
        kind = "sqlite"
    else:
        dsn, env = _libpq(url)
        dump = dest / "database" / "pli.pgdump"
        subprocess.run([_pg_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={dump}", f"--dbname={dsn}"],
                       env=env, check=True, capture_output=True)
        kind = "postgresql"
    store = open_store()
    keys = list(store.keys())
    for key in tqdm(keys, desc="objects", unit="obj", disable=not progress):
        out = dest / "objects" / key
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(store.read(key))
    _copy_tree(repo_dir(), dest / "tuf", skip_keys=True)  # metadata and targets: public by design
    _copy_tree(registry_dir(), dest / "registry")
    files = {str(p.relative_to(dest)): _sha256(p) for p in sorted(dest.rglob("*")) if p.is_file()}
    doc = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "database": kind, "revision": revision,
           "alerts": alerts, "objects": len(keys), "files": files}
    (dest / MANIFEST).write_text(json.dumps(doc, indent=1))
    if keys_dest is not None:
        doc["keys"] = _backup_keys(Path(keys_dest))
    return doc


def _backup_keys(dest: Path) -> list[str]:
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    dest.chmod(0o700)
    saved = []
    for role in ROLES:
        path = os.environ.get(f"PLI_TUF_{role.upper()}_KEY_FILE")
        if path and Path(path).is_file():
            out = dest / f"{role}.pem"
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(Path(path).read_bytes())
            saved.append(role)
    (dest / MANIFEST).write_text(json.dumps({"roles": saved, "files": {f"{r}.pem": _sha256(dest / f"{r}.pem")
                                                                       for r in saved}}, indent=1))
    return saved


def verify(src: Path) -> dict:
    """The backup's manifest, once every file in it matches (and no file is missing or extra)."""
    src = Path(src)
    try:
        doc = json.loads((src / MANIFEST).read_text())
        files = dict(doc["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{src}: no readable {MANIFEST} ({type(exc).__name__}): not a backup") from None
    present = {str(p.relative_to(src)) for p in src.rglob("*") if p.is_file()} - {MANIFEST}
    if missing := sorted(set(files) - present):
        raise ValueError(f"{src}: {len(missing)} files of the backup missing, e.g. {missing[0]}")
    if extra := sorted(present - set(files)):
        raise ValueError(f"{src}: {len(extra)} files not in the backup's manifest, e.g. {extra[0]}")
    for name, digest in files.items():
        if _sha256(src / name) != digest:
            raise ValueError(f"{src}: {name} does not match its sha256 in the manifest (damaged)")
    return doc


def restore(src: Path, keys_src: Path | None = None, replace: bool = False, progress: bool = True) -> dict:
    """Restore a backup into the configured database, object store, TUF repository and registry."""
    src = Path(src)
    doc = verify(src)
    keys_doc = verify(Path(keys_src)) if keys_src is not None else None
    url = database_url()
    kind = "sqlite" if url.startswith("sqlite") else "postgresql"
    if kind != doc["database"]:
        raise ValueError(f"the backup holds a {doc['database']} database; this cloud's is {kind}")
    if not replace and _alerts_now(url):
        raise ValueError("the database already holds alerts: give --replace to put the backup's in their place")
    if keys_doc is not None:
        _key_targets(keys_doc, Path(keys_src), replace)  # every key has a place, before anything changes
    if kind == "sqlite":
        target = Path(make_url(url).database)
        target.parent.mkdir(parents=True, exist_ok=True)
        back = sqlite3.connect(src / "database" / "pli.sqlite")
        out = sqlite3.connect(target)
        with out:
            back.backup(out)  # page by page into the live file (its WAL too), not a file copy under it
        out.close()
        back.close()
    else:
        dsn, env = _libpq(url)
        subprocess.run([_pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
                        f"--dbname={dsn}", str(src / "database" / "pli.pgdump")], env=env, check=True,
                       capture_output=True)
    store = open_store()
    objects = sorted(p for p in (src / "objects").rglob("*") if p.is_file()) if (src / "objects").is_dir() else []
    for path in tqdm(objects, desc="objects", unit="obj", disable=not progress):
        store.put_file(str(path.relative_to(src / "objects")), path)
    for part, where in (("tuf", repo_dir()), ("registry", registry_dir())):
        if (src / part).is_dir():
            tmp = where.with_name(where.name + ".restoring")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(src / part, tmp)
            old = where.with_name(where.name + ".before-restore")
            shutil.rmtree(old, ignore_errors=True)
            if where.exists():
                where.rename(old)
            tmp.rename(where)
            shutil.rmtree(old, ignore_errors=True)
    restored = {"alerts": _alerts_now(url), "objects": len(objects), "revision": doc["revision"]}
    if keys_doc is not None:
        restored["keys"] = _restore_keys(Path(keys_src), keys_doc, replace)
    return restored


def _alerts_now(url: str) -> int:
    try:
        with session_scope(url) as s:
            return int(s.scalar(select(func.count()).select_from(Alert)) or 0)
    except Exception:  # no schema yet: nothing to lose
        return 0


def _key_targets(doc: dict, src: Path, replace: bool) -> dict[str, Path]:
    out = {}
    for role in doc["roles"]:
        path = os.environ.get(f"PLI_TUF_{role.upper()}_KEY_FILE")
        if not path:
            raise ValueError(f"PLI_TUF_{role.upper()}_KEY_FILE is not set: where should the {role} key go?")
        dest = Path(path)
        if dest.exists() and dest.read_bytes() != (src / f"{role}.pem").read_bytes() and not replace:
            raise ValueError(f"{dest}: a different {role} key is there (give --replace to overwrite it)")
        out[role] = dest
    return out


def _restore_keys(src: Path, doc: dict, replace: bool) -> list[str]:
    done = []
    for role, dest in _key_targets(doc, src, replace).items():
        data = (src / f"{role}.pem").read_bytes()
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        done.append(role)
    return done
