"""`pli cloud`: model releases and their rollout. Only argparse at module level (see pli/cli.py)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def register(csub: argparse._SubParsersAction) -> None:
    r = csub.add_parser("release", help="model releases and their rollout (canary, then fleet)",
                        description="Releases are recorded once (immutable) and signed for a group in the TUF "
                        "repository; the online signing keys come from the environment (see `pli cloud tuf`).")
    rsub = r.add_subparsers(dest="release_command", required=True,
                            metavar="{add,list,show,promote,preannotate,assign,rollback,ship}")
    p = rsub.add_parser("add", help="build and record a release from training weights (or from built files)",
                        description="`add WEIGHTS.pt --campaign NAME=DATA.yaml[:SPLIT] ...`: export FP32 and INT8 "
                        "ONNX, score both on every campaign's frozen test set, make golden frames per build, "
                        "snapshot the training data, record it all as an immutable release. `add VERSION FILES...`: "
                        "record builds made elsewhere (each .onnx with its card and golden frames).")
    p.add_argument("sources", nargs="+", metavar="WEIGHTS.pt | VERSION FILES...")
    p.add_argument("--version", dest="release_version", help="the release's version (default: UTC date and time)")
    p.add_argument("--campaign", action="append", default=[], metavar="NAME=DATA.yaml[:SPLIT]",
                   help="a campaign's frozen test set (split default: test, else val); repeat for each campaign")
    p.add_argument("--data", type=Path, help="the data.yaml that trained the weights (default: the one the "
                   "checkpoint names)")
    p.add_argument("--calib", type=Path, help="images to calibrate INT8 on (default: the training images)")
    p.add_argument("--golden-images", type=Path, help="folder of candidate golden frames (default: the first "
                   "campaign's test images)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--parent", help="the release it was trained from")
    p.set_defaults(func=_release_add)
    p = rsub.add_parser("list", help="releases and where they are rolled out")
    p.set_defaults(func=_release_list)
    p = rsub.add_parser("show", help="one release, with the canary's health")
    p.add_argument("version")
    p.set_defaults(func=_release_show)
    p = rsub.add_parser("promote", help="sign a release for a group (the fleet only after the canary)")
    p.add_argument("version")
    p.add_argument("--group", choices=["canary", "fleet"], default="canary")
    p.set_defaults(func=_release_promote)
    p = rsub.add_parser("preannotate", help="the release whose FP32 build pre-annotates Label Studio tasks")
    p.add_argument("version")
    p.set_defaults(func=_release_preannotate)
    p = rsub.add_parser("assign", help="move a drone to a rollout group (signed metadata; the ACL follows)",
                        description="Signs drones/DRONE/group.json in the TUF targets: a drone takes its group "
                        "from this and from nothing else after `pli device init`. With --acl, the broker's ACL is "
                        "rewritten from every signed assignment; --reload-pid sends mosquitto its SIGHUP.")
    p.add_argument("drone")
    p.add_argument("group", choices=["canary", "fleet"])
    p.add_argument("--fleet", default="fleet1")
    p.add_argument("--acl", type=Path, help="the ACL file to rewrite")
    p.add_argument("--reload-pid", type=int, help="mosquitto's pid, to re-read the ACL")
    p.set_defaults(func=_release_assign)
    p = rsub.add_parser("rollback", help="sign an older release for a group again")
    p.add_argument("--group", choices=["canary", "fleet"], required=True)
    p.add_argument("--to", required=True, help="the release to go back to")
    p.set_defaults(func=_release_rollback)
    p = rsub.add_parser("ship", help="copy a release's builds, cards, golden frames and weights out as NAME.*",
                        description="What a checkout carries as its default model (models/pli-default.*): the "
                        "release's files byte for byte, renamed, each card naming the release it is.")
    p.add_argument("version")
    p.add_argument("--out", type=Path, default=Path("models"))
    p.add_argument("--name", default="pli-default")
    p.set_defaults(func=_release_ship)


def _release_add(args: argparse.Namespace) -> int:
    from cloud.db import session_scope, upgrade
    from cloud.registry.rollout import add_release, check_new_version

    sources = [Path(x) for x in args.sources]
    if len(sources) == 1 and sources[0].suffix == ".pt":
        import tempfile
        from datetime import UTC, datetime

        from cloud.registry.build import TestSet, build

        version = args.release_version or datetime.now(UTC).strftime("%Y.%m.%d-%H%M")
        upgrade()
        with session_scope() as s:  # before minutes of exporting, not after
            check_new_version(s, version)
        golden_images = None
        if args.golden_images:
            golden_images = sorted(p for p in args.golden_images.iterdir() if p.suffix.lower() in (".jpg", ".png"))
        with tempfile.TemporaryDirectory(prefix="pli-release-") as tmp:
            files = build(sources[0], version, Path(tmp), [TestSet.parse(c) for c in args.campaign], args.calib,
                          args.data, golden_images, args.parent, args.imgsz)
            with session_scope() as s:
                row = add_release(s, version, files, args.parent)
                print(f"release {row.version}: {len(row.card['files'])} files recorded")
                for name, b in row.card["builds"].items():
                    scores = ", ".join(f"{k} mAP50 {v['map50']:.3f}" for k, v in (b.get("metrics") or {}).items()
                                       if k != "training_val")
                    print(f"  {name}: {scores}")
        return 0
    if len(sources) < 2 or sources[0].exists():
        raise SystemExit("release add: give WEIGHTS.pt, or VERSION and the built files")
    upgrade()
    with session_scope() as s:
        row = add_release(s, str(sources[0]), sources[1:], args.parent)
        print(f"release {row.version}: {len(row.card['files'])} files recorded")
    return 0


def _release_ship(args: argparse.Namespace) -> int:
    from cloud.db import session_scope, upgrade
    from cloud.registry.rollout import ship

    upgrade()
    with session_scope() as s:
        for path in ship(s, args.version, args.out, args.name):
            print(path)
    return 0


def _release_list(args: argparse.Namespace) -> int:
    from cloud.db import session_scope, upgrade
    from cloud.models import ModelRelease
    from cloud.registry.rollout import release_json

    upgrade()
    with session_scope() as s:
        from sqlalchemy import select

        for r in s.scalars(select(ModelRelease).order_by(ModelRelease.id)):
            doc = release_json(r)
            steps = [x["group"] + (" (rollback)" if x.get("rollback") else "") for x in doc["rollout"]]
            print(f"{doc['version']:<20} {doc['created_at'][:19]}  groups: {', '.join(steps) or '-'}")
    return 0


def _release_show(args: argparse.Namespace) -> int:
    from cloud.db import session_scope, upgrade
    from cloud.registry import rollout

    upgrade()
    with session_scope() as s:
        doc = {**rollout.release_json(rollout.get_release(s, args.version)), "health": rollout.health(s, args.version)}
        print(json.dumps(doc, indent=1))
    return 0


def _release_promote(args: argparse.Namespace) -> int:
    import getpass

    from cloud.db import session_scope, upgrade
    from cloud.registry import rollout

    upgrade()
    with session_scope() as s:
        d = rollout.promote(s, args.version, args.group, f"{getpass.getuser()} (cli)")
        print(f"release {args.version} signed for {d.target}")
    return 0


def _release_preannotate(args: argparse.Namespace) -> int:
    import getpass

    from cloud.db import session_scope, upgrade
    from cloud.registry import rollout

    upgrade()
    with session_scope() as s:
        model = rollout.set_preannotation(s, args.version, f"{getpass.getuser()} (cli)")
    print(f"Label Studio tasks are pre-annotated by {model} (release {args.version}) from now on")
    return 0


def _release_assign(args: argparse.Namespace) -> int:
    from cloud.registry import rollout

    version = rollout.assign(args.drone, args.fleet, args.group, args.acl)
    print(f"drone {args.drone} assigned to {args.group} (targets version {version})")
    if args.acl is not None:
        print(f"wrote {args.acl}")
        if args.reload_pid:
            import signal

            os.kill(args.reload_pid, signal.SIGHUP)
    return 0


def _release_rollback(args: argparse.Namespace) -> int:
    import getpass

    from cloud.db import session_scope, upgrade
    from cloud.registry import rollout

    upgrade()
    with session_scope() as s:
        rollout.rollback(s, args.group, args.to, f"{getpass.getuser()} (cli)")
        print(f"{args.group} goes back to release {args.to}")
    return 0
