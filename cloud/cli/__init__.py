"""`pli cloud ...`: the cloud service's commands, one module per area. Only argparse at module
level (see pli/cli.py)."""

from __future__ import annotations

import argparse

from cloud.cli import access, backups, flights, learning, releases, service, tuf
from comms.settings import with_env_help


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("cloud", help="the cloud service: database, ingest, API, jobs",
                       description="Cloud service commands. The database is PLI_DATABASE_URL (PostgreSQL: "
                       "postgresql+psycopg://user@host:port/db), else the SQLite file pli-cloud/pli.db "
                       "(PLI_CLOUD_DIR moves it).")
    csub = c.add_subparsers(dest="cloud_command", required=True,
                            metavar="{db,ingest,serve,worker,token,operator,towers,flights,upload,report,tuf,release,campaign,select,"
                            "pseudo-label,learn,acl,openapi,backup,restore}")
    for area in (service, access, flights, tuf, releases, learning, backups):
        area.register(csub)
    with_env_help(c, _settings_table)


def _settings_table() -> str:
    from cloud.settings import help_table  # pydantic: imported only when the help is shown

    return help_table()
