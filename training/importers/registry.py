"""The importers' registry: a format name -> its function. Its own module, so that each importer
registers without importing the package that loads them (no import circle)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from training.dataset import Report, Sample

Importer = Callable[[Path, Report], Iterator[Sample]]
IMPORTERS: dict[str, Importer] = {}


def register(name: str) -> Callable[[Importer], Importer]:
    def wrap(fn: Importer) -> Importer:
        IMPORTERS[name] = fn
        return fn

    return wrap
