"""Exact duplicates by sha256 and near duplicates (resized, re-encoded, lightly cropped) by the
Hamming distance of perceptual hashes, against what this crawl kept and what was known before
(the cloud's campaigns, an earlier crawl's manifest)."""

from __future__ import annotations

from collections.abc import Iterable

import imagehash

NEAR = 8  # bits of 64: re-encodings and resizes of one photo sit within a few bits, different photos near 32


class Seen:
    """Hashes already kept. `near` returns the id of a near duplicate, or None."""

    def __init__(self, near_bits: int = NEAR):
        self.near_bits = near_bits
        self.sha: dict[str, str] = {}
        self.hashes: list[tuple[imagehash.ImageHash, str]] = []

    def add(self, sha256: str, phash: str, ident: str) -> None:
        self.sha[sha256] = ident
        self.hashes.append((imagehash.hex_to_hash(phash), ident))

    def add_many(self, rows: Iterable[tuple[str, str, str]]) -> int:
        n = 0
        for sha, ph, ident in rows:
            self.add(sha, ph, ident)
            n += 1
        return n

    def exact(self, sha256: str) -> str | None:
        return self.sha.get(sha256)

    def near(self, phash: str) -> str | None:
        h = imagehash.hex_to_hash(phash)
        best = min(((h - other, ident) for other, ident in self.hashes), default=None)
        return best[1] if best is not None and best[0] <= self.near_bits else None


def known_hashes(paths: Iterable) -> list[tuple[str, str, str]]:
    """(sha256, phash, id) of photos already held: a crawl's `manifest.jsonl`, or a folder of
    images (hashed here, recursively)."""
    import hashlib
    import json
    from pathlib import Path

    from PIL import Image

    rows: list[tuple[str, str, str]] = []
    for p in map(Path, paths):
        if p.is_file() and p.suffix == ".jsonl":
            for line in p.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    r = json.loads(line)
                    rows.append((r["sha256"], r["phash"], f"{p.parent.name}/{r['file']}"))
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff") and f.is_file():
                    data = f.read_bytes()
                    try:
                        with Image.open(f) as img:
                            ph = str(imagehash.phash(img.convert("RGB")))
                    except Exception:  # not a photo Pillow reads: nothing to compare with
                        continue
                    rows.append((hashlib.sha256(data).hexdigest(), ph, str(f)))
        else:
            raise ValueError(f"--known {p}: a crawl's manifest.jsonl or a folder of photos")
    return rows
