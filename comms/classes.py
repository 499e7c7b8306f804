"""The class list and per-class alert rules, loaded from configuration.

Every side (dataset import, training, the edge tracker, the ground station) reads the same
file so that class ids and severities never drift apart between drone and cloud.
"""

from __future__ import annotations

import enum
import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

ENV_VAR = "PLI_CLASSES"


class Severity(enum.IntEnum):
    """Ordered so that a larger value is more urgent (outbox priority sorts on it)."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(
                f"unknown severity {text!r}; expected one of {[s.name.lower() for s in cls]}"
            ) from None


@dataclass(frozen=True)
class ClassRule:
    name: str
    fault: bool
    severity: Severity | None
    description: str = ""


@dataclass(frozen=True)
class ClassList:
    rules: tuple[ClassRule, ...]

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rules]

    def id_of(self, name: str) -> int:
        for i, rule in enumerate(self.rules):
            if rule.name == name:
                return i
        raise KeyError(f"class {name!r} is not in the class list {self.names}")

    def rule(self, name: str) -> ClassRule:
        return self.rules[self.id_of(name)]

    def severity_of(self, name: str) -> Severity | None:
        """Severity of an alert for this class, or None when the class raises no alert."""
        rule = self.rule(name)
        return rule.severity if rule.fault else None

    @property
    def fault_names(self) -> list[str]:
        return [r.name for r in self.rules if r.fault]


def parse_class_list(text: str, source: str = "<string>") -> ClassList:
    data = tomllib.loads(text)
    entries = data.get("class")
    if not entries:
        raise ValueError(f"{source}: no [[class]] entries")
    rules = []
    seen: set[str] = set()
    for entry in entries:
        name = str(entry.get("name", "")).strip()
        if not name:
            raise ValueError(f"{source}: a [[class]] entry has no name")
        if name in seen:
            raise ValueError(f"{source}: class {name!r} is listed twice")
        seen.add(name)
        fault = bool(entry.get("fault", False))
        severity = None
        if fault:
            if "severity" not in entry:
                raise ValueError(f"{source}: fault class {name!r} needs a severity")
            severity = Severity.parse(str(entry["severity"]))
        rules.append(ClassRule(name, fault, severity, str(entry.get("description", ""))))
    return ClassList(tuple(rules))


@lru_cache(maxsize=8)
def _load(path: str | None) -> ClassList:
    if path is None:
        text = resources.files("comms").joinpath("classes.toml").read_text(encoding="utf-8")
        return parse_class_list(text, "comms/classes.toml")
    return parse_class_list(Path(path).read_text(encoding="utf-8"), path)


def load_class_list(path: str | os.PathLike[str] | None = None) -> ClassList:
    """The configured class list: `path`, else $PLI_CLASSES, else the packaged default."""
    chosen = path if path is not None else os.environ.get(ENV_VAR)
    return _load(str(chosen) if chosen is not None else None)
