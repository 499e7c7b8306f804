"""`pli cloud backup` and `pli cloud restore`. Only argparse at module level (see pli/cli.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(csub: argparse._SubParsersAction) -> None:
    p = csub.add_parser("backup", help="back up the database, object store, TUF repository and registry",
                        description="Write a backup into DEST (a new folder): the database (SQLite's online "
                        "backup, or pg_dump), every object of the store, the TUF repository's metadata and "
                        "targets and the registry's files, with a manifest of sha256s. The online signing keys "
                        "(PLI_TUF_<ROLE>_KEY_FILE) go only into --keys, a separate folder (0700): a data backup "
                        "holds no secret.")
    p.add_argument("dest", type=Path)
    p.add_argument("--keys", type=Path, help="folder for the online TUF keys (kept apart from the data)")
    p.set_defaults(func=_backup)
    p = csub.add_parser("restore", help="restore a backup (checked against its manifest first)",
                        description="Restore a backup made by `pli cloud backup` into the configured database, "
                        "object store, TUF repository and registry. Every file is checked against the manifest "
                        "before anything changes; a database that already holds alerts is kept unless --replace. "
                        "Stop the API, ingest and worker first.")
    p.add_argument("src", type=Path)
    p.add_argument("--keys", type=Path, help="a keys folder from `backup --keys`: written to PLI_TUF_<ROLE>_KEY_FILE")
    p.add_argument("--replace", action="store_true", help="replace a database with alerts, and different keys")
    p.set_defaults(func=_restore)


def _backup(args: argparse.Namespace) -> int:
    from cloud.backup import backup

    doc = backup(args.dest, args.keys, progress=not args.quiet)
    print(json.dumps({k: doc[k] for k in ("database", "revision", "alerts", "objects")} | {
        "files": len(doc["files"]), "keys": doc.get("keys", [])}))
    return 0


def _restore(args: argparse.Namespace) -> int:
    from cloud.backup import restore

    print(json.dumps(restore(args.src, args.keys, args.replace, progress=not args.quiet)))
    return 0
