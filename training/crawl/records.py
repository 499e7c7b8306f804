"""The crawl's records: JSON lines appended one at a time (fsync), read back tolerating a line a
kill cut short. Light (no Scrapy), so the cloud reads a crawl's folder without the crawler."""

from __future__ import annotations

import json
import os
from pathlib import Path

MANIFEST, DROPPED, CANDIDATES = "manifest.jsonl", "dropped.jsonl", "candidates.jsonl"


def read_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: its photo is judged again
            continue
    return rows


def append_line(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
