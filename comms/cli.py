"""`pli beidou ...`: BeiDou RDSS tools. Only argparse at module level (see pli/cli.py)."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    bd = sub.add_parser("beidou", help="BeiDou RDSS short-message tools",
                        description="Decode BeiDou terminal sentences and frames (text 2.1, binary 4.0, BDS-3).")
    bsub = bd.add_subparsers(dest="beidou_command", required=True, metavar="{parse}")
    p = bsub.add_parser("parse", help="decode a sentence or frame to JSON",
                        description="Decode one text sentence, or a binary frame given with --hex, and print it "
                        "as JSON (dialect, type, named fields). With '-', read one item per line from stdin: a "
                        "text sentence, or 'hex:' and a binary frame; a bad line prints {\"error\": ...}. "
                        "Exit 2 when anything failed.")
    p.add_argument("sentence", nargs="?", help="a text sentence such as '$BDBSI,...*5F', or - for stdin")
    p.add_argument("--hex", help="a binary (or text) frame as hex bytes, spaces allowed")
    p.set_defaults(func=_parse)


def _bytes_of_hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text.replace(" ", "").replace(":", ""))
    except ValueError:
        raise ValueError(f"not hex bytes: {text[:40]!r}") from None


def _parse(args: argparse.Namespace) -> int:
    from comms.beidou.protocol import ParseError, decode_any, decode_text

    if args.sentence == "-":
        failed = False
        for line in sys.stdin.buffer:
            item = line.strip()
            if not item:
                continue
            try:
                frame = decode_any(_bytes_of_hex(item[4:].decode("ascii", "replace"))) \
                    if item[:4].lower() == b"hex:" else decode_text(item)
                print(json.dumps(frame.to_json(), ensure_ascii=False))
            except (ParseError, ValueError) as exc:
                failed = True
                print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}, ensure_ascii=False))
        return 2 if failed else 0
    if (args.sentence is None) == (args.hex is None):
        raise ValueError("give one sentence, --hex BYTES, or - for stdin")
    data = _bytes_of_hex(args.hex) if args.hex is not None else args.sentence.encode("latin-1", "replace")
    try:
        frame = decode_any(data)
    except ParseError as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    print(json.dumps(frame.to_json(), ensure_ascii=False))
    return 0
