"""Dataset importers: each turns one source format into `Sample`s.

An importer is a function `(src: Path, report: Report) -> Iterator[Sample]` registered under
a format name; adding a format (Label Studio export, say) is one new module that registers.
Importers only read; clipping, dropping bad boxes and proving images readable happen once,
in `training.data_import`.
"""

from __future__ import annotations

from training.importers.registry import IMPORTERS, Importer, register

__all__ = ["IMPORTERS", "Importer", "get_importer", "register"]


def get_importer(name: str) -> Importer:
    # Import the built-in formats on first use so that registering stays declarative.
    from training.importers import coco, labelstudio, voc, yolo  # noqa: F401

    try:
        return IMPORTERS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; known: {sorted(IMPORTERS)}") from None
