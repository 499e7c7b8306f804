"""`pli cloud`: who may do what: API tokens, operators, the broker's ACL.
Only argparse at module level (see pli/cli.py)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def register(csub: argparse._SubParsersAction) -> None:
    t = csub.add_parser("token", help="API tokens", description="API tokens (stored hashed).")
    tsub = t.add_subparsers(dest="token_command", required=True, metavar="{create,revoke}")
    p = tsub.add_parser("create", help="make a token and print it (the only time it is shown)")
    p.add_argument("--name", required=True)
    p.add_argument("--role", required=True, choices=["operator", "fleet", "admin"])
    p.add_argument("--fleet", help="a fleet token's fleet (required for --role fleet)")
    p.add_argument("--drone", help="make it one drone's token (registers the drone in --fleet)")
    p.set_defaults(func=_token_create)
    p = tsub.add_parser("revoke", help="revoke tokens by id, name or drone (a lost drone: every token it had)")
    p.add_argument("--id", type=int)
    p.add_argument("--name")
    p.add_argument("--drone")
    p.set_defaults(func=_token_revoke)

    o = csub.add_parser("operator", help="operators who log in to the pages",
                        description="People at the pages log in with a name and password (machines use tokens).")
    osub = o.add_subparsers(dest="operator_command", required=True, metavar="{add}")
    p = osub.add_parser("add", help="add an operator, or set an operator's password",
                        description="The password comes from $PLI_OPERATOR_PASSWORD, else --password-file, else "
                        "it is asked for (never on the command line, where other users could read it).")
    p.add_argument("name")
    p.add_argument("--role", choices=["operator", "admin"], default="operator")
    p.add_argument("--password-file", type=Path)
    p.set_defaults(func=_operator_add)

    a = csub.add_parser("acl", help="the broker's ACL with per-drone rollout topics",
                        description="Mosquitto's patterns substitute only %u and %c: write the static ACL "
                        "(deploy/mosquitto/acl) plus one block per drone (its group's announcements, its status). "
                        "Then SIGHUP mosquitto to re-read it.")
    asub = a.add_subparsers(dest="acl_command", required=True, metavar="{render}")
    p = asub.add_parser("render", help="write the ACL from a CSV of drone,fleet,group, or from the signed "
                        "group assignments (`pli cloud release assign`)")
    p.add_argument("groups", type=Path, nargs="?", help="CSV of drone,fleet,group (default: the signed assignments)")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_acl_render)


def _token_create(args: argparse.Namespace) -> int:
    from cloud.db import session_scope, upgrade
    from cloud.tokens import create_token

    upgrade()
    with session_scope() as s:
        token = create_token(s, args.name, args.role, args.fleet, args.drone)
    print(token)
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from cloud.db import session_scope, upgrade
    from cloud.tokens import revoke_tokens

    upgrade()
    with session_scope() as s:
        ids = revoke_tokens(s, args.id, args.name, args.drone)
    print(json.dumps({"revoked": ids}))
    return 0 if ids else 1


def _operator_add(args: argparse.Namespace) -> int:
    import getpass

    from cloud.db import session_scope
    from cloud.operators import add_operator
    from cloud.settings import secret, settings

    password = secret(settings().operator_password)
    if password is None and args.password_file is not None:
        password = args.password_file.read_text().strip()
    if password is None:
        password = getpass.getpass(f"password for {args.name}: ")
    with session_scope() as s:
        add_operator(s, args.name, password, args.role)
    print(f"operator {args.name} ({args.role}) can log in")
    return 0


def _acl_render(args: argparse.Namespace) -> int:
    from cloud.registry.acl import read_groups, render

    if args.groups is not None:
        rows = read_groups(args.groups.read_text())
    else:
        from cloud.registry.rollout import tuf_repo

        rows = tuf_repo().assignments()
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(render(rows))
    os.replace(tmp, args.out)  # the broker never reads half a file
    print(f"wrote {args.out}: {len(rows)} drones; now SIGHUP mosquitto")
    return 0
