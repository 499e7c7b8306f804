"""`pli cloud`: the fleet's signed update repository (TUF). Only argparse at module level (see pli/cli.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(csub: argparse._SubParsersAction) -> None:
    t = csub.add_parser("tuf", help="the fleet's signed update repository (TUF)",
                        description="The TUF repository drones take models from (PLI_TUF_DIR, default "
                        "pli-cloud/tuf). Root keys are offline files; the online roles' keys come from "
                        "PLI_TUF_TARGETS_KEY, PLI_TUF_SNAPSHOT_KEY, PLI_TUF_TIMESTAMP_KEY (PEM) or their _FILE "
                        "variants.")
    tsub = t.add_subparsers(dest="tuf_command", required=True, metavar="{keygen,init,publish,timestamp,rotate-root}")
    p = tsub.add_parser("keygen", help="make an Ed25519 key file (0600) and its public half (.pub.json)")
    p.add_argument("out", type=Path, nargs="+", help="key files to write (e.g. offline/root-1.pem)")
    p.set_defaults(func=_tuf_keygen)
    p = tsub.add_parser("init", help="a new repository: root signed by THRESHOLD of the offline root keys")
    p.add_argument("--root-key", type=Path, action="append", required=True,
                   help="a root key: its .pub.json, or the private .pem when it signs (repeat)")
    p.add_argument("--threshold", type=int, default=2)
    p.set_defaults(func=_tuf_init)
    p = tsub.add_parser("publish", help="sign release VERSION's files for groups (a new targets version)")
    p.add_argument("version")
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--group", action="append", required=True, help="canary, fleet, ... (repeat)")
    p.set_defaults(func=_tuf_publish)
    p = tsub.add_parser("timestamp", help="re-sign the timestamp (run at least daily: drones refuse an expired one)")
    p.set_defaults(func=_tuf_timestamp)
    p = tsub.add_parser("rotate-root", help="a new root with other root keys, signed by old and new thresholds")
    p.add_argument("--old-key", type=Path, action="append", required=True, help="old root private key (repeat)")
    p.add_argument("--new-key", type=Path, action="append", required=True, help="new root private key (repeat)")
    p.add_argument("--threshold", type=int, default=2)
    p.set_defaults(func=_tuf_rotate)


def _tuf_dir() -> Path:
    from cloud.registry.tuf_repo import repo_dir

    return repo_dir()


def _tuf_keygen(args: argparse.Namespace) -> int:
    from cloud.registry import keys

    for path in args.out:
        key = keys.generate(path)
        print(f"{path}: ed25519 key {key.keyid[:16]}... (public half in {keys.public_path(path)})")
    return 0


def _tuf_init(args: argparse.Namespace) -> int:
    from cloud.registry import keys
    from cloud.registry.tuf_repo import TufRepo

    public = [keys.load_public(p) for p in args.root_key]
    signers = [keys.load_signer(p) for p in args.root_key if p.suffix == ".pem"]
    repo = TufRepo.create(_tuf_dir(), public, signers, keys.online_signers(), args.threshold)
    print(f"repository in {repo.dir}: root v1 ({args.threshold} of {len(public)} root keys); give drones "
          f"{repo.metadata_dir / '1.root.json'} at device init")
    return 0


def _tuf_publish(args: argparse.Namespace) -> int:
    from cloud.registry import keys
    from cloud.registry.tuf_repo import TufRepo

    files = {f.name: f for f in args.files}
    version = TufRepo(_tuf_dir()).release(args.version, files, args.group, keys.online_signers())
    print(f"release {args.version} signed for {', '.join(args.group)} (targets version {version})")
    return 0


def _tuf_timestamp(args: argparse.Namespace) -> int:
    from cloud.registry import keys
    from cloud.registry.tuf_repo import TufRepo

    print(f"timestamp version {TufRepo(_tuf_dir()).refresh_timestamp(keys.online_signer('timestamp'))}")
    return 0


def _tuf_rotate(args: argparse.Namespace) -> int:
    from cloud.registry import keys
    from cloud.registry.tuf_repo import TufRepo

    new = [keys.load_signer(p) for p in args.new_key]
    version = TufRepo(_tuf_dir()).rotate_root([s.public_key for s in new], [keys.load_signer(p) for p in args.old_key],
                                              new, args.threshold)
    print(f"root version {version}")
    return 0
