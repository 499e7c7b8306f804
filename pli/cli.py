"""The `pli` command: one entry point, each package contributes its subcommands.

Subcommand modules import only argparse at load time, so `pli --help` runs on the drone
(edge extra only) as well as in the cloud. Errors the user can fix print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pli import __version__

# Each module has `register(subparsers)`.
COMMAND_MODULES = ("training.cli", "edge.cli", "comms.cli", "cloud.cli", "cloud.cli.annotate")
OWN_PACKAGES = {"pli", "comms", "edge", "training", "annotation", "cloud"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pli",
        description="Edge-cloud UAV power-line inspection: datasets, training, edge runtime, links, cloud.",
    )
    parser.add_argument("--version", action="version", version=f"pli {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top in OWN_PACKAGES:
            raise
        extra = "cloud" if args.command == "cloud" else "training"
        print(f"pli: error: `pli {args.command}` needs {top!r}, which is not installed here "
              f"(install the project with its extra: pip install '.[{extra}]')", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:  # ModelError is a ValueError
        print(f"pli: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pli: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
