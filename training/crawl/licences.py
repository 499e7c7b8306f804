"""Licence names as the sources write them, made one spelling, and the `--licence` filter.

Wikimedia's `extmetadata` says "CC BY-SA 4.0", "cc-by-sa-4.0", "Public domain", "CC0"; pages say
nothing (unknown). A filter names families: `cc-by`, `cc-by-sa`, `cc0`, `pd` (and `unknown`, to
keep photos whose licence nobody stated, for an operator to check)."""

from __future__ import annotations

import re

FAMILIES = ("cc0", "pd", "cc-by", "cc-by-sa", "cc-by-nd", "cc-by-nc", "cc-by-nc-sa", "cc-by-nc-nd", "other",
            "unknown")
OPEN = ("cc0", "pd", "cc-by", "cc-by-sa")  # what a campaign may train on and share: the default filter


def normalise(text: str | None) -> tuple[str, str]:
    """(family, the licence as written, tidied): ("cc-by-sa", "CC BY-SA 4.0")."""
    if not text or not text.strip():
        return "unknown", ""
    raw = re.sub(r"\s+", " ", text.strip())[:120]
    t = raw.lower().replace("_", "-")
    if re.search(r"\bcc0\b|cc-zero|creative commons zero", t):
        return "cc0", raw
    if re.search(r"public domain|^pd\b|\bpd-", t):
        return "pd", raw
    m = re.search(r"\bcc[- ]?(by(?:[- ](?:nc|sa|nd))*)", t)
    if m:
        parts = re.split(r"[- ]", m.group(1))
        order = [p for p in ("by", "nc", "sa", "nd") if p in parts]
        family = "cc-" + "-".join(order)
        if family in FAMILIES:
            return family, raw
        return "other", raw
    return "other", raw


def parse_filter(spec: str) -> tuple[str, ...]:
    """`cc-by,cc-by-sa,cc0,pd` -> those families; `any` -> every family."""
    if spec.strip().lower() == "any":
        return FAMILIES
    wanted = tuple(s.strip().lower() for s in spec.split(",") if s.strip())
    unknown = [w for w in wanted if w not in FAMILIES]
    if unknown or not wanted:
        bad = ", ".join(unknown) or repr(spec)
        raise ValueError(f"--licence: families among {', '.join(FAMILIES)} (or any), not {bad}")
    return wanted
