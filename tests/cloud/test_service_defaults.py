"""The service's defaults are what the experiments found, as docs/benchmarks.md states them
(issue 27): the table between its `service-defaults` markers names each default and the code
must agree with it, so changing one without the other fails here."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def documented() -> dict[str, str]:
    text = DOCS.read_text()
    block = text.split("<!-- service-defaults -->", 1)[1].split("<!-- /service-defaults -->", 1)[0]
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[1].strip("`")
    return rows


def test_the_defaults_are_what_the_docs_say():
    from cloud.api.routes.campaigns import Selection
    from cloud.learning import QUICK
    from cloud.selection import DEFAULT_STRATEGY
    from cloud.settings import Settings
    from pli.cli import build_parser

    docs = documented()
    assert set(docs) >= {"pli cloud select --strategy", "PLI_REFRESH_EVERY", "refresh epochs", "refresh threshold"}
    assert docs["pli cloud select --strategy"] == DEFAULT_STRATEGY
    args = build_parser().parse_args(["cloud", "select", "--campaign", "idd", "--budget", "20"])
    assert args.strategy == DEFAULT_STRATEGY == Selection(budget=20).strategy
    assert int(re.match(r"\d+", docs["PLI_REFRESH_EVERY"])[0]) == Settings.model_fields["refresh_every"].default
    assert int(re.match(r"\d+", docs["refresh epochs"])[0]) == QUICK.epochs
    assert ("everything trainable" in docs["refresh epochs"]) == (QUICK.freeze == 0)
    assert docs["refresh threshold"].startswith("fewest edits") == QUICK.tune_conf
